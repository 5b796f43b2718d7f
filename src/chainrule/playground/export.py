"""What the playground exports besides the model file: the data as CSV, the equivalent
``chainrule train`` command and Python code that builds and trains the same network."""

from __future__ import annotations

import csv
import io
import shlex
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._parts import SessionParts

__all__ = ["data_csv", "python_code", "train_command"]


def _column_names(session: SessionParts) -> list[str]:
    st = session.state
    if session.data.preprocessor is not None:
        return list(session.data.input_names)
    return list(st.features)


def data_csv(session: SessionParts) -> str:
    """Training rows then test rows: the network's input columns and ``label`` (or ``value``)."""
    d = session.data
    names = _column_names(session)
    target = "value" if d.task == "regression" else "label"
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow([*names, target, "split"])
    for X, y, split in ((d.X_train, d.y_train, "train"), (d.X_test, d.y_test, "test")):
        for row, t in zip(X.tolist(), y.reshape(len(y), -1)[:, 0].tolist()):
            w.writerow(
                [*(repr(float(v)) for v in row), t if d.task == "regression" else int(t), split]
            )
    return buf.getvalue()


def _optimizer_args(session: SessionParts) -> list[str]:
    st = session.state
    return ["--optimizer", "sgd" if st.optimizer == "momentum" else st.optimizer]


def train_command(session: SessionParts) -> str:
    """The ``chainrule train`` command for the same data, network and settings.

    Built-in data sets are written by the page's "data.csv" export; an uploaded file is
    named as it was uploaded. The CLI standardises the input columns (the playground feeds a
    built-in data set's features as they are), trains for whole epochs and keeps a validation
    split unless ``--val-split 0``: the command trains the same network, not the same steps.
    """
    st, d = session.state, session.data
    csv_name = d.source if d.preprocessor is not None else f"playground-{st.dataset}.csv"
    if d.preprocessor is not None:
        target = d.preprocessor.target
    else:
        target = "value" if d.task == "regression" else "label"
    steps_per_epoch = max(1, -(-len(d.X_train) // st.batchSize))
    epochs = max(1, round(session.step / steps_per_epoch))
    args = [
        "chainrule",
        "train",
        "--data",
        csv_name,
        "--target",
        target,
    ]
    if d.preprocessor is None:
        args += ["--drop", "split"]
    args += [
        "--task",
        d.task,
        "--layers",
        ",".join(map(str, st.layers)),
        "--activation",
        st.activation,
        "--init",
        "auto",
        *_optimizer_args(session),
        "--lr",
        repr(st.lr),
        "--batch-size",
        str(st.batchSize),
        "--epochs",
        str(epochs),
        "--test-split",
        repr(round(1 - st.ratio / 100, 4)),
        "--val-split",
        "0",
        "--seed",
        str(st.seed),
    ]
    if st.reg == "l2" and st.regRate:
        args += ["--weight-decay", repr(st.regRate)]
    cmd = " ".join(shlex.quote(a) for a in args)
    notes = []
    if d.task == "classification" and session.n_outputs == 1:
        notes.append(
            "# chainrule train gives two classes two softmax outputs (cross-entropy); the "
            "playground one sigmoid output (binary cross-entropy): the same family of models"
        )
    if st.optimizer == "momentum":
        notes.append(
            "# chainrule train has no momentum option (plain SGD here): the Python code has it"
        )
    if st.reg == "l1" and st.regRate:
        notes.append("# L1 regularisation has no chainrule train option: the Python code has it")
    return "\n".join([cmd, *notes])


def python_code(session: SessionParts) -> str:
    """Python that rebuilds the data and the network and trains them as the playground does."""
    st, d = session.state, session.data
    widths = [d.X_train.shape[1], *st.layers, session.n_outputs]
    if d.task == "regression":
        loss = "cr.nn.MSELoss()"
    elif session.n_outputs == 1:
        loss = "cr.nn.BCEWithLogitsLoss()"
    else:
        loss = "cr.nn.CrossEntropyLoss()"
    if st.optimizer == "adam":
        opt = f"cr.optim.Adam(model.parameters(), lr={st.lr!r})"
    else:
        mom = ", momentum=0.9" if st.optimizer == "momentum" else ""
        opt = f"cr.optim.SGD(model.parameters(), lr={st.lr!r}{mom})"
    lines = ["import numpy as np", "import chainrule as cr"]
    if d.preprocessor is not None:
        lines += [
            "from chainrule.playground.data import load_csv",
            "from chainrule.playground.state import PlaygroundState",
            "",
            f"state = PlaygroundState.from_hash({st.to_hash()!r})",
            f"data = load_csv({d.source!r}, {d.preprocessor.target!r}, state)  # your CSV file",
        ]
    else:
        lines += [
            "from chainrule.playground.data import make_data",
            "from chainrule.playground.state import PlaygroundState",
            "",
            f"state = PlaygroundState.from_hash({st.to_hash()!r})",
            "data = make_data(state)  # the same points as in the page",
        ]
    y = (
        "data.y_train.astype(np.float32).reshape(-1, 1)"
        if (d.task == "classification" and session.n_outputs == 1)
        else "data.y_train"
    )
    lines += [
        f"model = cr.nn.mlp({widths}, {st.activation!r}, rng={st.seed})",
        f"base_loss = {loss}",
    ]
    if st.reg != "none" and st.regRate:
        term = "cr.abs(w).sum()" if st.reg == "l1" else "0.5 * (w * w).sum()"
        lines += [
            "weights = [m.weight for m in model if isinstance(m, cr.nn.Linear)]",
            "",
            "",
            "def loss(out, y):  # the data loss plus the penalty on the weights",
            f"    return base_loss(out, y) + sum({st.regRate!r} * {term} for w in weights)",
            "",
            "",
        ]
    else:
        lines.append("loss = base_loss")
    steps_per_epoch = max(1, -(-len(d.X_train) // st.batchSize))
    epochs = max(1, round(session.step / steps_per_epoch))
    lines += [
        f"optimizer = {opt}",
        f"y_train = {y}",
        f"cr.fit(model, data.X_train, y_train, loss=loss, optimizer=optimizer, epochs={epochs},",
        f"       batch_size={st.batchSize}, seed={st.seed}, verbose=0)",
        "cr.save(model, 'model.chainrule')",
    ]
    return "\n".join(lines) + "\n"
