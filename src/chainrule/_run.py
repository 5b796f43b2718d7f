"""One training run of the ``chainrule`` command: its settings, the training, the run directory.

:func:`run_training` reads the data, fits the preprocessing on the training rows, trains, scores
the test rows and writes the run directory as one unit (built aside, renamed into place).
``chainrule.cli`` parses the options into :class:`TrainSettings` and prints the result.
"""

import json
import os
import sys
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import __version__
from ._numerics import softmax
from ._options import OPTIONS, check_network_size, check_option
from ._outputs import RunDirectory, check_run_out
from .data import datasets
from .data.impute import DataNote, drop_missing_target
from .data.tabular import Table, TabularPreprocessor, read_table, train_test_split
from .io import atomic_write_text, save
from .nn import ACTIVATIONS, mlp
from .training import metrics as M
from .training.callbacks import EarlyStopping
from .training.fit import OPTIMIZERS, fit, predict

DEFAULTS: dict[str, Any] = {
    "task": "auto",
    "layers": "100",
    "activation": "relu",
    "init": "auto",
    "optimizer": "adam",
    "lr": 1e-3,
    "epochs": 200,
    "batch_size": 64,
    "seed": 0,
    "val_split": 0.1,
    "test_split": 0.25,
    "early_stopping": False,
    "patience": 10,
    "dropout": 0.0,
    "batch_norm": False,
    "weight_decay": 0.0,
    "clip_grad_norm": None,
    "categorical": "",
    "drop": "",
    "missing": "impute",
    "plots": True,
    "gradient_flow": False,
    "report": False,
    "overwrite": False,
}


# the options of the --layers network: an --arch file replaces them (refused with it, left out
# of metrics.json's settings)
MLP_OPTIONS = ("layers", "activation", "init", "dropout", "batch_norm")


class CLIError(ValueError):
    """A problem with the command line's input, reported in one line."""


def data_path(path: str) -> str:
    """``--data``: a regular file; standard input (``-``), pipes and devices are refused."""
    if path == "-":
        raise CLIError(
            "--data -: reading rows from standard input is not supported (the file is read more "
            "than once); save them to a file and give its path"
        )
    if os.path.exists(path) and not os.path.isfile(path):
        kind = "a directory" if os.path.isdir(path) else "not a regular file (a pipe or device)"
        raise CLIError(f"--data {path!r} is {kind}; give a CSV, .npy or .npz file")
    return path


@dataclass
class TrainSettings:
    """Everything ``chainrule train`` needs (the CLI's options, with their defaults)."""

    dataset: str | None = None
    data: str | None = None
    target: str | None = None
    out: str | None = None
    task: str = DEFAULTS["task"]
    layers: Sequence[int] = (100,)
    arch: str | None = None  # an architecture file (JSON/TOML) instead of layers/activation
    activation: str = DEFAULTS["activation"]
    init: str = DEFAULTS["init"]
    optimizer: str = DEFAULTS["optimizer"]
    lr: float = DEFAULTS["lr"]
    epochs: int = DEFAULTS["epochs"]
    batch_size: int | None = DEFAULTS["batch_size"]
    seed: int = DEFAULTS["seed"]
    val_split: float = DEFAULTS["val_split"]
    test_split: float = DEFAULTS["test_split"]
    early_stopping: bool = DEFAULTS["early_stopping"]
    patience: int = DEFAULTS["patience"]
    dropout: float = DEFAULTS["dropout"]
    batch_norm: bool = DEFAULTS["batch_norm"]
    weight_decay: float = DEFAULTS["weight_decay"]
    clip_grad_norm: float | None = DEFAULTS["clip_grad_norm"]
    categorical: Sequence[str] = ()
    drop: Sequence[str] = ()
    missing: str = DEFAULTS["missing"]
    plots: bool = True
    gradient_flow: bool = False
    report: bool = False
    overwrite: bool = False
    verbose: int = 1
    callbacks: list[Any] = field(default_factory=list)
    distributed: bool = False  # data-parallel on the processes of mpiexec (--workers)


@dataclass
class RunResult:
    model: Any
    preprocessor: TabularPreprocessor
    history: Any
    metrics: dict[str, Any]
    files: dict[str, str]
    flow: Any = None
    history_lr: float | None = None


# a built-in data set's own train/test rows, noted when its table is made (None: it has none)
_FIXED_SPLITS: dict[tuple[str, Any], Any] = {}


def _table_for(settings: TrainSettings) -> tuple[Table, str]:
    if (settings.dataset is None) == (settings.data is None):
        raise CLIError("give exactly one of --dataset NAME or --data FILE")
    if settings.dataset is not None:
        ds = datasets.load(settings.dataset, seed=settings.seed)
        _FIXED_SPLITS[(settings.dataset, settings.seed)] = ds.extra.get("split")
        table = Table.from_arrays(
            ds.X, ds.feature_names, ds.y, "target", ds.class_names, source=ds.name
        )
        if settings.task == "auto":
            settings.task = ds.task
        return table, "target"
    if not settings.target:
        raise CLIError("--data needs --target COLUMN (the column to predict)")
    table = read_table(data_path(settings.data or ""), settings.target)
    table.column(settings.target)
    return table, settings.target


def _score(prep: TabularPreprocessor, out: np.ndarray, table: Table) -> dict[str, Any]:
    return score_encoded(prep, out, prep.encode_target(table))


def score_encoded(prep: TabularPreprocessor, out: np.ndarray, y: np.ndarray) -> dict[str, Any]:
    """Test or training scores of the outputs ``out`` for the encoded targets ``y``."""
    if prep.task == "classification":
        pred = out.argmax(axis=1)
        proba = softmax(out, axis=1)
        labels = list(range(len(prep.classes or [])))
        return {
            "n": len(y),
            "accuracy": M.accuracy(y, pred),
            "precision": M.precision(y, pred, labels),
            "recall": M.recall(y, pred, labels),
            "f1": M.f1(y, pred, labels),
            "log_loss": M.log_loss(y, proba),
            "confusion_matrix": M.confusion_matrix(y, pred, labels).tolist(),
        }
    y = prep.decode_values(y)  # the raw target (prep.target_values)
    values = prep.decode_values(out)
    return {"n": len(y), "r2": M.r2(y, values), "mae": M.mae(y, values), "rmse": M.rmse(y, values)}


def run_training(settings: TrainSettings) -> RunResult:
    """Load, split, preprocess, train, score on the test split, and write the run's files."""
    for name, value in vars(settings).items():  # the same checks as the CLI's options
        if name in OPTIONS and not (name == "batch_size" and value is None):
            check_option(name, list(value) if isinstance(value, tuple) else value)
    if settings.activation not in ACTIVATIONS:
        raise CLIError(
            f"--activation must be one of {', '.join(sorted(ACTIVATIONS))}, "
            f"got {settings.activation!r}"
        )
    if settings.optimizer not in OPTIMIZERS:
        raise CLIError(
            f"--optimizer must be one of {', '.join(sorted(OPTIMIZERS))}, "
            f"got {settings.optimizer!r}"
        )
    if settings.out:  # refused before training, not after: a run already there is kept
        check_run_out(settings.out, overwrite=settings.overwrite)
    from ._run_shared import is_converted, run_shared

    if settings.distributed or is_converted(settings.data):  # rows shared through .npy files
        return run_shared(settings)  # type: ignore[return-value]  # None on ranks other than 0
    prep, train, test = split_table(settings)
    prep.fit(train)  # scaling, categories and the target encoding come from training rows only
    X, y = prep.transform(train), prep.encode_target(train)
    model, history, flow = train_model(settings, prep, X, y)
    # weights kept from a diverged run can overflow: the figures say so, NumPy need not
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        test_scores = _score(prep, predict(model, prep.transform(test)), test)
        train_scores = _score(prep, predict(model, X), train)
    result_metrics = result_record(settings, prep, history, test_scores, train_scores, flow)
    files: dict[str, str] = {}
    if settings.out:
        files = _write_run(settings, model, prep, history, result_metrics, train, test, flow)
    return RunResult(model, prep, history, result_metrics, files, flow, settings.lr)


def split_table(settings: TrainSettings) -> tuple[TabularPreprocessor, Table, Table]:
    """The run's table read, its incomplete rows handled and split into training and test
    rows (stratified by the raw target labels when they look like classes); the returned
    preprocessor is not fitted yet (it is fitted on the training rows only)."""
    table, target = _table_for(settings)
    table = drop_missing_target(table, target)  # a target is never imputed
    if len(table) < 4:
        raise CLIError(f"{table.source} has only {len(table)} rows: too few to train and test")
    prep = TabularPreprocessor(
        target, settings.task, settings.categorical, settings.drop, missing=settings.missing
    )
    # the test split is stratified by the raw target labels when they look like classes
    with warnings.catch_warnings():  # the notes come once, from the fit on the training rows
        warnings.simplefilter("ignore", DataNote)
        probe = TabularPreprocessor(
            target, settings.task, settings.categorical, settings.drop, missing=settings.missing
        ).fit(table)
    if settings.missing == "drop":
        table = probe.drop_incomplete(table)
    strat = probe.task == "classification"
    if strat:
        check_classes(probe, table, target)
    train_idx, test_idx = train_test_rows(settings, table, target, strat)
    train, test = table.select(train_idx), table.select(test_idx)
    return prep, train, test


def train_test_rows(
    settings: TrainSettings, table: Table, target: str, stratify: bool
) -> tuple[np.ndarray, np.ndarray]:
    """The training and test rows of ``table``: a built-in data set's own split if it has one
    (``--dataset mnist1d``: 4 000 / 1 000, as the benchmark's figures use) and ``--test-split``
    is left at its default; otherwise a split of ``--test-split`` of the rows, stratified by
    the raw target labels when they look like classes."""
    if settings.dataset is not None and settings.test_split == DEFAULTS["test_split"]:
        key = (settings.dataset, settings.seed)
        if key not in _FIXED_SPLITS:  # (the table came from elsewhere: load it once)
            _table_for(settings)
        fixed = _FIXED_SPLITS[key]
        if fixed is not None and sum(len(part) for part in fixed) == len(table):
            return np.asarray(fixed[0]), np.asarray(fixed[1])
    labels = np.asarray([str(v) for v in table.column(target)], dtype=object)
    return train_test_split(labels, settings.test_split, seed=settings.seed, stratify=stratify)


def build_model(settings: TrainSettings, prep: TabularPreprocessor) -> Any:
    """The network of ``settings`` for the inputs and outputs of ``prep``."""
    if settings.arch:
        from .nn.arch import check_architecture, read_architecture

        model = read_architecture(settings.arch, rng=settings.seed)
        check_architecture(model, prep.n_inputs, prep.n_outputs)
    else:
        check_network_size([prep.n_inputs, *settings.layers, prep.n_outputs])
        model = mlp(
            [prep.n_inputs, *settings.layers, prep.n_outputs],
            settings.activation,
            dropout=settings.dropout,
            batch_norm=settings.batch_norm,
            init_scheme=settings.init,
            rng=settings.seed,
        )
    return model


def train_model(
    settings: TrainSettings,
    prep: TabularPreprocessor,
    X: Any,
    y: Any,
    validation_data: tuple[Any, Any] | None = None,
    seed: Any = None,
) -> tuple[Any, Any, Any]:
    """Build and fit the model: ``(model, history, gradient flow or None)``.

    The validation rows are split off by :func:`~chainrule.fit` (``--val-split``) unless
    ``validation_data`` is given; ``seed`` (default ``settings.seed``) may be the generator
    that split them, so the run continues as if fit had split them itself.
    """
    model = build_model(settings, prep)
    loss = "cross_entropy" if prep.task == "classification" else "mse"
    kwargs: dict[str, Any] = {"lr": settings.lr}
    if settings.weight_decay:
        kwargs["weight_decay"] = settings.weight_decay
    optimizer = OPTIMIZERS[settings.optimizer](model.parameters(), **kwargs)
    callbacks = list(settings.callbacks)
    flow = None
    if settings.gradient_flow or settings.report:
        from .diagnostics import GradientFlow

        flow = GradientFlow()
        callbacks.append(flow)
    val_split = validation_fraction(settings)
    if settings.early_stopping:
        callbacks.append(EarlyStopping(monitor="val_loss", patience=settings.patience))
    metric_names = ["accuracy"] if prep.task == "classification" else ["r2"]
    history = fit(
        model,
        X,
        y,
        loss=loss,
        optimizer=optimizer,
        epochs=settings.epochs,
        batch_size=settings.batch_size,
        validation_split=val_split if validation_data is None else 0.0,
        validation_data=validation_data,
        seed=settings.seed if seed is None else seed,
        metrics=metric_names,
        callbacks=callbacks,
        verbose=settings.verbose,
        clip_grad_norm=settings.clip_grad_norm,
        distributed=settings.distributed,
    )
    return model, history, flow


def validation_fraction(settings: TrainSettings) -> float:
    """The share of the training rows held out for validation (early stopping needs some)."""
    return (settings.val_split or 0.1) if settings.early_stopping else settings.val_split


def result_record(
    settings: TrainSettings,
    prep: TabularPreprocessor,
    history: Any,
    test_scores: dict[str, Any],
    train_scores: dict[str, Any],
    flow: Any,
) -> dict[str, Any]:
    """What ``metrics.json`` holds."""
    result_metrics = {
        "task": prep.task,
        "data": settings.dataset or os.path.basename(settings.data or ""),
        "test": test_scores,
        "train": train_scores,
        "epochs_run": len(history),
        "stop_reason": history.stop_reason,
        "best_epoch": history.best_epoch,
        "imputed": {f["name"]: f["imputed"] for f in prep.features if f.get("imputed")},
        "left_out_columns": prep.ignored,
        "settings": {
            k: (list(v) if isinstance(v, tuple) else v)
            for k, v in vars(settings).items()
            if k not in ("callbacks", "verbose", "distributed")
            and not (settings.arch and k in MLP_OPTIONS)
        },
    }
    if flow is not None:
        result_metrics["gradient_flow_warnings"] = flow.warnings
    return result_metrics


def check_classes(prep: TabularPreprocessor, table: Table, target: str) -> None:
    """Refuse classification of a target that is a continuous quantity (one class per row)."""
    n_classes, n = len(prep.classes or []), len(table)
    if n_classes <= max(20, n // 2):
        return
    fractional, numeric = "", True
    for v in table.column(target):
        try:
            x = float(v)
        except (TypeError, ValueError):
            numeric = False
            continue
        if not fractional and np.isfinite(x) and x != round(x):
            fractional = f" (non-integer numbers such as {x:g})"
    head = f"classification: the target {target!r} has {n_classes} distinct values in {n} rows"
    if not numeric:  # text: an identifier or free text, not classes
        raise CLIError(
            f"{head}, so most classes have a single row: it looks like an identifier or free "
            "text; choose another --target"
        )
    raise CLIError(
        f"--task {head}{fractional}, so most classes have a single row: it looks like a "
        "continuous quantity; use --task regression (or auto)"
    )


def _write_run(
    settings: TrainSettings,
    model: Any,
    prep: TabularPreprocessor,
    history: Any,
    result: dict[str, Any],
    train: Table,
    test: Table,
    flow: Any = None,
) -> dict[str, str]:
    # the run is built in a fresh sibling directory and renamed into place as one unit
    with RunDirectory(settings.out or ".", overwrite=settings.overwrite) as run:
        files = _write_run_files(run, settings, model, prep, history, result, train, test, flow)
        run.commit()
    return files


def _write_run_files(
    run: RunDirectory,
    settings: TrainSettings,
    model: Any,
    prep: TabularPreprocessor,
    history: Any,
    result: dict[str, Any],
    train: Table,
    test: Table,
    flow: Any = None,
) -> dict[str, str]:
    files = {
        "model": run.write(
            "model.chainrule",
            lambda path: save(
                model,
                path,
                extra={"preprocessing": prep.to_dict(), "created_by": f"chainrule {__version__}"},
            ),
        ),
        "history": run.write("history.csv", history.to_csv),
        "metrics": run.write(
            "metrics.json",
            lambda path: atomic_write_text(
                path, json.dumps(result, indent=2, default=float) + "\n"
            ),
        ),
    }
    figures: dict[str, Any] = {}  # also shown in the report
    if settings.plots:
        try:
            from .plots import confusion_matrix_figure, decision_boundary_figure

            fig = history.plot()
            files["curves"] = run.write("curves.png", lambda path: fig.savefig(path, dpi=100))
            if prep.task == "classification":
                cm = np.array(result["test"]["confusion_matrix"])
                fig = confusion_matrix_figure(cm, prep.classes or [], "confusion matrix (test set)")
                files["confusion_matrix"] = run.write(
                    "confusion_matrix.png", lambda path: fig.savefig(path, dpi=100)
                )
                figures["Confusion matrix (test set)"] = fig
                numeric = [f for f in prep.features if f["kind"] == "numeric"]
                if len(prep.features) == 2 and len(numeric) == 2:
                    names = [f["name"] for f in numeric]

                    def classify(rows: np.ndarray) -> np.ndarray:
                        t = Table(names, {n: rows[:, i] for i, n in enumerate(names)}, "grid")
                        with np.errstate(over="ignore", invalid="ignore"):
                            return predict(model, prep.transform(t)).argmax(axis=1)

                    raw = np.stack([test.values[n].astype(np.float64) for n in names], axis=1)
                    fig = decision_boundary_figure(
                        classify, raw, prep.encode_target(test), prep.classes or [], names
                    )
                    files["decision_boundary"] = run.write(
                        "decision_boundary.png", lambda path: fig.savefig(path, dpi=100)
                    )
                    figures["Decision boundary (test set)"] = fig
            if flow is not None:
                fig = flow.plot()
                files["gradient_flow"] = run.write(
                    "gradient_flow.png", lambda path: fig.savefig(path, dpi=100)
                )
        except ImportError as exc:
            print(f"chainrule: note: no plots ({exc})", file=sys.stderr)
    if settings.report:
        from .diagnostics import write_report

        scalars = {k: v for k, v in result["test"].items() if isinstance(v, (int, float))}
        shown = test if len(test) else train  # one example for the feature maps of a CNN
        sample = prep.transform(shown.select(np.arange(min(1, len(shown)))))
        files["report"] = run.write(
            "report.html",
            lambda path: write_report(
                path,
                history,
                flow,
                scalars,
                title=f"chainrule: {result['data']}",
                extra_figures=figures,
                settings={**result["settings"], "task": result["task"]},
                model=model,
                sample=sample if len(sample) else None,
            ),
        )
    return files
