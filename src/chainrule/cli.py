"""The ``chainrule`` command: train on a CSV or built-in data set, evaluate, predict, inspect.

Bad input (a missing file, an unknown column, non-numeric or missing values, a model given data
with the wrong columns, a corrupt model file) prints one line naming the problem and exits with
status 2.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

from . import __version__, distributed
from ._cli_train import (  # noqa: F401 - importable from here as before the split
    _chance_note,
    _load_config,
    _loss_for,
    _names,
    _parse_layers,
    _plot_path,
    _settings_from,
    _split_list,
    _start_workers,
    cmd_bench_grad,
    cmd_datasets,
    cmd_lr_find,
    cmd_train,
)
from ._convert import add_parser as add_convert_parser
from ._numerics import softmax
from ._options import check_count, check_option
from ._outputs import predictions_path
from ._run import (
    DEFAULTS,
    CLIError,
    TrainSettings,
    _score,
    data_path,
    run_training,
)
from .data import datasets
from .data.impute import DataNote, drop_missing_target
from .data.tabular import Table, TabularPreprocessor, read_table
from .io import ModelFileError, atomic_write_text, load_file
from .nn import ACTIVATIONS
from .playground.command import add_parser as add_playground_parser
from .training.fit import OPTIMIZERS, predict

__all__ = ["DEFAULTS", "TrainSettings", "main", "run_training"]

EXAMPLES = """\
examples:
  chainrule datasets
  chainrule train --dataset digits --out runs/digits
  chainrule train --data houses.csv --target price --layers 64,32 --epochs 300 --out runs/houses
  chainrule train --data patients.csv --target outcome --early-stopping --val-split 0.15
  chainrule evaluate --model runs/digits --dataset digits
  chainrule predict --model runs/houses --data new_houses.csv --out predictions.csv
  chainrule info --model runs/houses/model.chainrule
  chainrule train --dataset digits --gradient-flow --report --out runs/digits-flow
  chainrule train --dataset digits --epochs 400 --out runs/digits --overwrite
  chainrule explain --model runs/digits --dataset digits --weight "2.weight[3,1]" --lr 0.001
  chainrule lr-find --dataset digits --plot lr.png
  chainrule gradcheck --model runs/digits --dataset digits
  chainrule bench-grad --plot backprop_vs_fd.png
  chainrule convert --data big.csv --target label --out big_npy
  chainrule train --data big_npy --out runs/big --workers 2
"""


GRADCHECK_MAX_ROWS = 100_000  # finite differences over more rows take hours and prove no more


# ----- model loading and prediction -------------------------------------------------------------
def _model_path(path: str) -> str:
    if os.path.isdir(path):
        candidate = os.path.join(path, "model.chainrule")
        if not os.path.exists(candidate):
            raise CLIError(f"{path!r} is a directory without a model.chainrule file")
        return candidate
    if not os.path.exists(path):
        raise CLIError(f"no such model file or run directory: {path!r}")
    if not os.path.isfile(path):
        raise CLIError(
            f"--model {path!r} is not a regular file (a device, pipe or socket); give a model "
            "file or a run directory"
        )
    return path


def _load_run(path: str) -> tuple[Any, TabularPreprocessor]:
    mf = load_file(_model_path(path))
    pre = mf.extra.get("preprocessing")
    if pre is None:
        raise CLIError(
            f"{path!r} holds a model without preprocessing (saved from Python); the CLI needs a "
            "model written by 'chainrule train'"
        )
    return mf.model, TabularPreprocessor.from_dict(pre)


def _input_table(args: argparse.Namespace, prep: TabularPreprocessor) -> Table:
    if getattr(args, "dataset", None):
        ds = datasets.load(args.dataset, seed=getattr(args, "seed", 0) or 0)
        return Table.from_arrays(
            ds.X, ds.feature_names, ds.y, prep.target or "target", ds.class_names, source=ds.name
        )
    if not args.data:
        raise CLIError("give --data FILE (or --dataset NAME)")
    return read_table(data_path(args.data), prep.target)


def _predictions_csv(prep: TabularPreprocessor, out: np.ndarray) -> str:
    import csv
    import io

    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    if prep.task == "classification":
        proba = softmax(out, axis=1)
        classes = prep.classes or []
        w.writerow(["prediction", *[f"p({c})" for c in classes]])
        for label, row in zip(prep.decode_classes(out.argmax(axis=1)), proba):
            w.writerow([label, *[f"{p:.6g}" for p in row]])
    else:
        w.writerow(["prediction"])
        for v in prep.decode_values(out):
            w.writerow([f"{v:.8g}"])
    return buf.getvalue()


# ----- commands ---------------------------------------------------------------------------------


def _labelled(
    args: argparse.Namespace, prep: TabularPreprocessor, rows: int | None
) -> tuple[Any, Any]:
    table = _input_table(args, prep)
    if prep.target not in table.values:
        raise CLIError(f"{table.source} has no target column {prep.target!r}")
    if rows is not None:
        table = table.select(np.arange(min(rows, len(table))))
    _check_target_finite(table, prep.target)
    return prep.transform(table), prep.encode_target(table)


def _check_target_finite(table: Table, target: str | None) -> None:
    """An infinite or NaN target (possible in .npy/.npz data) is refused by name and row."""
    col = table.values.get(target or "")
    if col is None or col.dtype.kind != "f":
        return
    bad = np.flatnonzero(~np.isfinite(col))
    if len(bad):
        raise CLIError(
            f"{table.source}: the target column {target!r} holds {col[bad[0]]} at row "
            f"{int(bad[0]) + 1}"
            + (f" and {len(bad) - 1} more rows" if len(bad) > 1 else "")
            + "; remove or fix those rows"
        )


def cmd_explain(args: argparse.Namespace) -> int:
    from .diagnostics import explain

    check_count("--rows", args.rows)
    if args.lr is not None:
        check_option("lr", args.lr)
    model, prep = _load_run(args.model)
    X, y = _labelled(args, prep, args.rows)
    print(explain(model, X, y, _loss_for(prep), args.weight, lr=args.lr))
    return 0


def cmd_gradcheck(args: argparse.Namespace) -> int:
    from .diagnostics import gradcheck_model

    check_count("--rows", args.rows, high=GRADCHECK_MAX_ROWS)  # "OK" over no rows checks nothing
    check_count("--max-params", args.max_params)
    model, prep = _load_run(args.model)
    if args.data or args.dataset:
        X, y = _labelled(args, prep, args.rows)
    else:  # gradients can be checked at any point: random standardised inputs and targets
        rng = np.random.default_rng(0)
        X = rng.normal(size=(args.rows, prep.n_inputs))
        if prep.task == "classification":
            y = rng.integers(0, prep.n_outputs, args.rows)
        else:
            y = rng.normal(size=(args.rows, 1))
        print(f"(no --data: checking at {args.rows} random input rows)")
    res = gradcheck_model(model, X, y, _loss_for(prep), max_params=args.max_params)
    print(res)
    return 0 if res.ok else 1


def cmd_evaluate(args: argparse.Namespace) -> int:
    model, prep = _load_run(args.model)
    table = _input_table(args, prep)
    if prep.target not in table.values:
        raise CLIError(f"{table.source} has no target column {prep.target!r} to evaluate against")
    table = drop_missing_target(table, prep.target or "")
    _check_target_finite(table, prep.target)
    res = _score(prep, predict(model, prep.transform(table)), table)
    if args.json:
        print(json.dumps(res, indent=2, default=float))
        return 0
    for k, v in res.items():
        if k == "confusion_matrix":
            print("confusion_matrix (rows: true class, columns: predicted):")
            for name, row in zip(prep.classes or [], v):
                print(f"  {name:>12}: {' '.join(f'{c:5d}' for c in row)}")
        elif isinstance(v, float):
            print(f"{k}: {v:.6g}")
        else:
            print(f"{k}: {v}")
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    path = None
    if args.out and args.out != "-":  # checked first: never replace the input or a model file
        protected = [("input data", args.data or ""), ("model file", _model_path(args.model))]
        path = predictions_path(args.out, overwrite=args.overwrite, protected=protected)
    model, prep = _load_run(args.model)
    table = _input_table(args, prep)
    text = _predictions_csv(prep, predict(model, prep.transform(table)))
    if path:
        atomic_write_text(path, text)
        print(f"wrote {len(table)} predictions to {path}")
    else:
        sys.stdout.write(text)
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    if getattr(args, "arch_out", None):  # refused before anything is printed
        from .nn.arch import check_architecture_path

        check_architecture_path(args.arch_out)
    path = _model_path(args.model)
    mf = load_file(path)
    print(f"model file: {path}")
    print(repr(mf.model))
    print(f"parameters: {mf.model.num_parameters():,}")
    for name, p in mf.model.named_parameters():
        print(f"  {name:<16} {p.shape!s:<14} {p.dtype}")
    pre = mf.extra.get("preprocessing")
    if pre is not None:
        print("preprocessing:")
        for line in TabularPreprocessor.from_dict(pre).describe().splitlines():
            print(f"  {line}")
    if isinstance(mf.training, dict):
        print(f"checkpoint: after epoch {mf.training.get('epoch')}")
    elif mf.training is not None:
        print("checkpoint: training state unreadable (resuming from it will be refused)")
    if getattr(args, "arch_out", None):
        from .nn.arch import write_architecture

        write_architecture(mf.model, args.arch_out)
        print(f"architecture written to {args.arch_out} (chainrule train --arch {args.arch_out})")
    return 0


def _model_and_data(parser: argparse.ArgumentParser, data_help: str) -> None:
    """The --model, --data and --dataset options shared by the commands that use a model."""
    parser.add_argument("--model", required=True, help="model file or run directory")
    parser.add_argument("--data", help=data_help)
    parser.add_argument("--dataset", help="a built-in data set")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="chainrule",
        description="Train neural networks on tables from the command line "
        "(backpropagation on NumPy).",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"chainrule {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    t = sub.add_parser(
        "train",
        help="train a network and write the model, history, metrics and plots",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    src = t.add_argument_group("data")
    src.add_argument("--dataset", help="a built-in data set (see 'chainrule datasets')")
    src.add_argument(
        "--data",
        help="a CSV file with a header row (or .npy / .npz), or a directory written by "
        "'chainrule convert' (read a batch at a time)",
    )
    src.add_argument("--target", help="the column to predict (with --data)")
    src.add_argument(
        "--task",
        choices=["auto", "classification", "regression"],
        default=None,
        help="default: auto (from the target's values)",
    )
    src.add_argument("--categorical", help="comma-separated columns to one-hot encode")
    src.add_argument("--drop", help="comma-separated columns to ignore (identifiers, text)")
    src.add_argument(
        "--missing",
        choices=["impute", "drop", "error"],
        default=None,
        help="missing values: impute (default: median + indicator, most frequent category; "
        "learned on training rows, stored in the model), drop incomplete rows, or error",
    )
    net = t.add_argument_group("network and training")
    net.add_argument(
        "--arch",
        help="a network file (JSON or TOML, the form 'chainrule info --arch-out' writes) "
        "instead of --layers/--activation",
    )
    net.add_argument(
        "--layers", help=f"hidden layer widths, e.g. 64,32 (default {DEFAULTS['layers']})"
    )
    net.add_argument(
        "--activation", help=f"hidden activation: {', '.join(sorted(ACTIVATIONS))} (default relu)"
    )
    net.add_argument(
        "--init",
        help="initial weights: auto (default: He/Kaiming uniform for relu, leaky_relu, elu, "
        "gelu; Glorot/Xavier uniform for tanh, softplus, identity, and for sigmoid with gain 4 "
        "because its slope is 1/4), he (nn.init.kaiming_uniform_), glorot "
        "(nn.init.xavier_uniform_, gain 4 for sigmoid), lecun (nn.init.lecun_normal_), default "
        "(Linear's U(±1/√fan_in), the classic setting where deep sigmoid nets lose their "
        "gradient)",
    )
    net.add_argument("--optimizer", help=f"{', '.join(sorted(OPTIMIZERS))} (default adam)")
    net.add_argument("--lr", type=float, help=f"learning rate (default {DEFAULTS['lr']})")
    net.add_argument("--epochs", type=int, help=f"default {DEFAULTS['epochs']}")
    net.add_argument(
        "--batch-size", dest="batch_size", type=int, help=f"default {DEFAULTS['batch_size']}"
    )
    net.add_argument("--dropout", type=float, help="dropout after each hidden layer (default 0)")
    net.add_argument(
        "--batch-norm",
        dest="batch_norm",
        action="store_const",
        const=True,
        help="batch normalisation before each hidden activation",
    )
    net.add_argument(
        "--weight-decay", dest="weight_decay", type=float, help="L2 penalty (default 0)"
    )
    net.add_argument(
        "--clip-grad-norm",
        dest="clip_grad_norm",
        type=float,
        help="rescale the gradients so that their global L2 norm is at most this value "
        "(default: no clipping)",
    )
    net.add_argument(
        "--seed", type=int, help="seed for splits, initial weights and shuffling (default 0)"
    )
    net.add_argument(
        "--val-split",
        dest="val_split",
        type=float,
        help="fraction of training rows held out for validation curves (default 0.1; 0 for none)",
    )
    net.add_argument(
        "--test-split",
        dest="test_split",
        type=float,
        help="fraction of rows held out for the final test metrics (default 0.25; "
        "--dataset mnist1d and mnist keep their own 4000/1000 split unless this is given)",
    )
    net.add_argument(
        "--early-stopping",
        dest="early_stopping",
        action="store_const",
        const=True,
        help="stop when the validation loss stops improving (uses --val-split, 0.1 if unset)",
    )
    net.add_argument(
        "--patience", type=int, help="epochs without improvement before stopping (default 10)"
    )
    out = t.add_argument_group("output")
    out.add_argument("--out", help="output directory (default runs/<data name>)")
    out.add_argument(
        "--overwrite",
        action="store_const",
        const=True,
        help="replace the run already in --out as a whole (refused without it)",
    )
    out.add_argument(
        "--no-plots", dest="plots", action="store_const", const=False, help="skip the PNG plots"
    )
    out.add_argument(
        "--gradient-flow",
        dest="gradient_flow",
        action="store_const",
        const=True,
        help="record per-layer gradient flow, plot it and report problems",
    )
    out.add_argument(
        "--report",
        action="store_const",
        const=True,
        help="also write report.html (curves, gradient flow, warnings)",
    )
    out.add_argument("--config", help="a TOML file with any of these options (flags override it)")
    out.add_argument("-q", "--quiet", action="store_true", help="no progress output")
    t.add_argument(
        "--workers",
        type=int,
        help="train on N processes started with this environment's mpiexec (data-parallel, "
        "the same result as one process; needs chainrule[distributed]); under mpiexec -n N, "
        "chainrule train uses those processes without it",
    )
    t.set_defaults(func=cmd_train)

    lf = sub.add_parser("lr-find", help="learning-rate range test: sweep the rate, suggest one")
    for a in t._actions:
        skip = ("help", "out", "overwrite", "plots", "report", "gradient_flow", "workers")
        if a.dest not in skip and a.option_strings:
            lf._add_action(a)
    lf.add_argument("--plot", help="write the loss-against-rate plot to this PNG")
    lf.set_defaults(func=cmd_lr_find)

    ex = sub.add_parser(
        "explain", help="a weight's gradient as the chain rule's product, with numbers"
    )
    _model_and_data(ex, "CSV/NPY/NPZ file with the model's columns and target")
    ex.add_argument(
        "--weight",
        required=True,
        help='e.g. "2.weight[3,1]" (input 3 -> unit 1), "2.bias[1]" (unit 1), or a '
        'convolution\'s "1.weight[3,0,1,2]" (out channel, in channel, kernel row, column); the '
        "number before the dot is the layer's position in the model, activations counted "
        "(Linear, ReLU, Linear: the second Linear is 2); `chainrule info` lists the names",
    )
    ex.add_argument(
        "--rows", type=int, default=32, help="how many rows form the batch (default 32)"
    )
    ex.add_argument("--lr", type=float, help="also show the update w - lr·∂C/∂w")
    ex.set_defaults(func=cmd_explain)

    gc = sub.add_parser("gradcheck", help="check a model's gradients against finite differences")
    _model_and_data(
        gc, "CSV/NPY/NPZ file with the model's columns and target (default: random rows)"
    )
    gc.add_argument("--rows", type=int, default=16, help="rows in the batch (default 16)")
    gc.add_argument(
        "--max-params",
        dest="max_params",
        type=int,
        default=500,
        help="check this many randomly chosen parameters (default 500)",
    )
    gc.set_defaults(func=cmd_gradcheck)

    bg = sub.add_parser("bench-grad", help="time backpropagation against finite differences")
    bg.add_argument("--plot", help="write the comparison plot to this PNG")
    bg.set_defaults(func=cmd_bench_grad)

    e = sub.add_parser("evaluate", help="metrics of a trained model on labelled data")
    _model_and_data(e, "CSV/NPY/NPZ file with the model's columns and its target")
    e.add_argument("--json", action="store_true", help="print the metrics as JSON")
    e.set_defaults(func=cmd_evaluate)

    p = sub.add_parser(
        "predict", help="predictions for new rows (class names and probabilities, or values)"
    )
    _model_and_data(p, "CSV/NPY/NPZ file with the model's columns")
    p.add_argument(
        "--out", help="CSV file (or DIR for DIR/predictions.csv) to write (default or -: stdout)"
    )
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    p.set_defaults(func=cmd_predict)

    i = sub.add_parser("info", help="layers, shapes, parameter count and preprocessing of a model")
    i.add_argument("--model", required=True, help="model file or run directory")
    i.add_argument("--arch-out", help="also write the network's architecture to this JSON file")
    i.set_defaults(func=cmd_info)

    d = sub.add_parser("datasets", help="list the built-in data sets")
    d.set_defaults(func=cmd_datasets)
    add_convert_parser(sub)
    add_playground_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (0 success, 2 bad input)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # for --workers
    if args.command is None:  # plain `chainrule`: the help with the list of commands
        parser.print_help()
        return 2
    try:
        with warnings.catch_warnings():
            warnings.showwarning = _show_note
            warnings.simplefilter("always", DataNote)
            status = int(args.func(args))
        sys.stdout.flush()  # a reader that has gone is noticed here, not at interpreter exit
        return status
    except BrokenPipeError:  # the reader left (chainrule ... | head): stop quietly, as Unix tools
        return _broken_pipe()
    except (
        CLIError,
        ModelFileError,
        ValueError,
        TypeError,
        ImportError,
        OSError,
        OverflowError,
    ) as exc:
        message = " ".join(str(exc).split()) or type(exc).__name__
        if isinstance(exc, FileNotFoundError) and exc.filename and str(exc.filename) not in message:
            message = f"{message}: {exc.filename}"
        print(f"chainrule: error: {distributed.where()}{message}", file=sys.stderr)
        return 2
    except MemoryError as exc:
        print(f"chainrule: error: out of memory ({exc or 'MemoryError'})", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("chainrule: interrupted", file=sys.stderr)
        return 130


def _show_note(message: Any, category: Any, *args: Any, **kwargs: Any) -> None:
    """Data notes as one line on stderr (other warnings as Python shows them)."""
    if issubclass(category, DataNote):
        print(f"chainrule: note: {message}", file=sys.stderr)
    else:
        sys.stderr.write(warnings.formatwarning(message, category, *args[:2]))


def _broken_pipe() -> int:
    """Standard output's reader has gone: silence the final flush and exit as SIGPIPE would."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):  # not a real file (e.g. captured in tests)
        pass
    return 128 + 13  # 141: what a shell reports for a command killed by SIGPIPE


def _entry() -> None:  # console script
    status = main()
    if status:  # one process of an MPI job (`mpiexec -n N chainrule train`) ends them all
        distributed.abort_job(status, None)
    sys.exit(status)
