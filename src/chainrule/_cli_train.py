"""The ``chainrule`` commands that train: ``train`` (and ``--workers``), ``lr-find``,
``bench-grad`` and ``datasets``, with the parsing of the training options. Split out of
:mod:`chainrule.cli`, which builds the parser and runs the commands; every name stays importable
from there.
"""

from __future__ import annotations

import argparse
import os
import time
import warnings
from typing import Any

import numpy as np

from . import distributed
from ._options import check_count, check_option
from ._outputs import predictions_path
from ._run import (
    DEFAULTS,
    MLP_OPTIONS,
    CLIError,
    RunResult,
    TrainSettings,
    _table_for,
    build_model,
    run_training,
    train_test_rows,
)
from .data import datasets
from .data.impute import DataNote, drop_missing_target, imputation_summary
from .data.tabular import TabularPreprocessor


def _split_list(text: str | None) -> list[str]:
    return [t.strip() for t in (text or "").split(",") if t.strip()]


def _names(value: Any) -> list[str]:
    """Column names from a comma-separated string (flag) or a list (config file)."""
    return _split_list(value) if isinstance(value, str) else [str(v) for v in value]


def _parse_layers(text: Any) -> list[int]:
    if isinstance(text, (list, tuple)):
        items = list(text)
    else:
        items = _split_list(str(text))
    try:
        widths = [int(t) for t in items]
    except (TypeError, ValueError):
        raise CLIError(
            f"--layers must be comma-separated positive integers such as 64,32, got {text!r}"
        ) from None
    if any(w <= 0 for w in widths):
        raise CLIError(f"--layers must be positive integers, got {text!r}")
    return widths


def _load_config(path: str) -> dict[str, Any]:
    try:
        import tomllib
    except ImportError:  # Python 3.10
        try:
            import tomli as tomllib  # type: ignore[no-redef]
        except ImportError:
            raise CLIError("--config needs Python 3.11+ or the tomli package") from None
    if not os.path.exists(path):
        raise CLIError(f"no such config file: {path!r}")
    if not os.path.isfile(path):
        raise CLIError(f"--config {path!r} is not a regular file; give a TOML file")
    try:
        with open(path, "rb") as fh:
            cfg = tomllib.load(fh)
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise CLIError(f"config file {path!r} is not valid TOML: {exc}") from None
    cfg = {k.replace("-", "_"): v for k, v in cfg.items()}
    known = set(DEFAULTS) | {"dataset", "data", "target", "out", "arch"}
    unknown = sorted(set(cfg) - known)
    if unknown:
        raise CLIError(f"config file {path!r} has unknown keys: {', '.join(unknown)}")
    return cfg


def _settings_from(args: argparse.Namespace) -> TrainSettings:
    cfg = _load_config(args.config) if args.config else {}

    def pick(name: str) -> Any:  # every value checked for type and range, never coerced
        v = getattr(args, name, None)
        if v is not None:
            return check_option(name, v)
        if name in cfg:
            return check_option(name, cfg[name], config=args.config)
        return check_option(name, DEFAULTS.get(name))

    dataset, data = pick("dataset"), pick("data")
    out = pick("out") or os.path.join(
        "runs", dataset or os.path.splitext(os.path.basename(data or "run"))[0]
    )
    s = TrainSettings(
        dataset=dataset,
        data=data,
        target=pick("target"),
        out=out,
        task=pick("task"),
        layers=_parse_layers(pick("layers")),
        arch=pick("arch"),
        activation=pick("activation"),
        optimizer=pick("optimizer"),
        lr=float(pick("lr")),
        epochs=int(pick("epochs")),
        batch_size=int(pick("batch_size")) if pick("batch_size") else None,
        seed=int(pick("seed")),
        val_split=float(pick("val_split")),
        test_split=float(pick("test_split")),
        early_stopping=bool(pick("early_stopping")),
        patience=int(pick("patience")),
        dropout=float(pick("dropout")),
        batch_norm=bool(pick("batch_norm")),
        weight_decay=float(pick("weight_decay")),
        init=str(pick("init")),
        clip_grad_norm=None if pick("clip_grad_norm") is None else float(pick("clip_grad_norm")),
        categorical=_names(pick("categorical")),
        drop=_names(pick("drop")),
        missing=str(pick("missing")),
        plots=bool(pick("plots")),
        gradient_flow=bool(pick("gradient_flow")),
        report=bool(pick("report")),
        overwrite=bool(pick("overwrite")),
        verbose=0 if args.quiet else 1,
    )
    if s.arch:  # the architecture file gives the whole network: its options would be ignored
        for name in MLP_OPTIONS:
            where = (
                f"--{name.replace('_', '-')}"
                if getattr(args, name, None) is not None
                else f"{name!r} in {args.config!r}"
                if name in cfg
                else None
            )
            if where:
                raise CLIError(
                    f"{where} cannot be used with --arch {s.arch!r}: the architecture file "
                    "gives the whole network (layers, activations, dropout, batch "
                    f"normalisation, initialisation); leave {where.split(' in ')[0]} out"
                )
    if s.task not in ("auto", "classification", "regression"):
        raise CLIError(f"--task must be auto, classification or regression, got {s.task!r}")
    return s


def _start_workers(args: argparse.Namespace) -> int:
    """``--workers N``: this command again on N processes under mpiexec (``_launch.py``)."""
    from ._launch import launch

    workers = check_count("--workers", args.workers)
    if distributed.launched_by_mpiexec():
        raise CLIError(
            "--workers starts the processes itself and this one already runs under mpiexec: "
            "leave --workers out (mpiexec -n N chainrule train ...) or run without mpiexec"
        )
    return launch(args.argv, workers)


def _chance_note(result: RunResult) -> str | None:
    """A plain sentence when the test score is no better than a constant prediction."""
    test = result.metrics["test"]
    if result.preprocessor.task == "classification":
        counts = np.asarray(test["confusion_matrix"]).sum(axis=1)
        if counts.sum() == 0:
            return None
        base = float(counts.max() / counts.sum())
        if test["accuracy"] > base + 0.02:
            return None
        return (
            f"This model is no better than chance: test accuracy {test['accuracy']:.2%}, while "
            f"always predicting the most frequent class gives {base:.2%}. Do not use it"
            + (
                f"; retrain with a lower learning rate (e.g. --lr {result.history_lr / 10:g})."
                if result.history.stop_reason == "diverged" and result.history_lr
                else "; see the advice above."
            )
        )
    if not np.isfinite(test["r2"]):
        return (
            "This model's predictions are not finite (its weights overflow): do not use it; see "
            "the advice above."
        )
    if not test["r2"] > 0.0:
        return (
            f"This model is no better than predicting the mean: test R² {test['r2']:.3g} "
            "(0 is the mean's). Do not use it; see the advice above."
        )
    return None


def cmd_train(args: argparse.Namespace) -> int:
    if args.workers is not None:  # start the processes: mpiexec -n N ... chainrule train
        return _start_workers(args)
    settings = _settings_from(args)
    settings.distributed = distributed.launched_by_mpiexec()
    if settings.distributed and not distributed.is_main():
        settings.out, settings.verbose = None, 0  # rank 0 prints and writes the run
        run_training(settings)
        return 0
    t0 = time.perf_counter()
    result = run_training(settings)
    test = result.metrics["test"]
    if result.preprocessor.task == "classification":
        score = (
            f"test accuracy {test['accuracy']:.2%}, macro F1 {test['f1']:.3f} ({test['n']} rows)"
        )
    else:
        r2 = f"{test['r2']:.3f}" if abs(test["r2"]) < 1e4 else f"{test['r2']:.3g}"
        score = f"test R² {r2}, MAE {test['mae']:.4g}, RMSE {test['rmse']:.4g} ({test['n']} rows)"
    imputed = imputation_summary(result.preprocessor.features)
    if imputed:
        print(f"\n{imputed}", end="")
    print(f"\n{score}; trained in {time.perf_counter() - t0:.1f}s")
    chance = _chance_note(result)
    if chance:
        print(chance)
    print(f"Wrote to {settings.out}/:")
    descriptions = {
        "model": "the model with its preprocessing (chainrule predict --model "
        f"{settings.out} --data FILE)",
        "history": "loss and metrics per epoch",
        "metrics": "test and training metrics, settings",
        "curves": "loss and metric curves",
        "confusion_matrix": "test-set confusion matrix",
        "decision_boundary": "decision boundary over the two features",
        "gradient_flow": "per-layer gradient norms and activation distributions",
        "report": "one self-contained HTML report (curves, gradient flow, warnings)",
    }
    for key, path in result.files.items():
        print(f"  {os.path.basename(path):<24} {descriptions.get(key, '')}")
    if result.flow is not None:
        print("Gradient flow: " + ("no problems found" if not result.flow.warnings else ""))
        for w in result.flow.warnings:
            print(f"  - {w}")
    return 0


def _loss_for(prep: TabularPreprocessor) -> Any:
    from .nn import CrossEntropyLoss, MSELoss

    return CrossEntropyLoss() if prep.task == "classification" else MSELoss()


def cmd_lr_find(args: argparse.Namespace) -> int:
    from .diagnostics import lr_find

    settings = _settings_from(args)
    if args.plot:  # a plot never replaces the data or a model file
        args.plot = _plot_path(args.plot, settings.data)
    table, target = _table_for(settings)
    table = drop_missing_target(table, target)
    # the same training rows, preprocessing and model as 'chainrule train' with these options
    with warnings.catch_warnings():  # the notes come once, from the fit on the training rows
        warnings.simplefilter("ignore", DataNote)
        probe = TabularPreprocessor(
            target, settings.task, settings.categorical, settings.drop, missing=settings.missing
        )
        strat = probe.fit(table).task == "classification"
    if settings.missing == "drop":
        table = probe.drop_incomplete(table)
    train_idx, _ = train_test_rows(settings, table, target, strat)
    train = table.select(train_idx)
    prep = TabularPreprocessor(
        target, settings.task, settings.categorical, settings.drop, missing=settings.missing
    ).fit(train)
    model = build_model(settings, prep)  # the --arch network, or the --layers MLP
    res = lr_find(
        model,
        prep.transform(train),
        prep.encode_target(train),
        _loss_for(prep),
        optimizer=settings.optimizer,
        batch_size=settings.batch_size or len(train),
        seed=settings.seed,
        weight_decay=settings.weight_decay,
        clip_grad_norm=settings.clip_grad_norm,
    )
    if settings.arch:
        n_params = sum(p.size for p in model.parameters())
        print(
            f"model: {settings.arch} ({n_params} parameters), {prep.n_inputs} inputs, "
            f"{prep.n_outputs} outputs; {len(train)} training rows"
        )
    else:
        print(
            f"model: {prep.n_inputs} inputs, hidden layers {','.join(map(str, settings.layers))}"
            f", {settings.activation}, {prep.n_outputs} outputs"
            + (f", dropout {settings.dropout:g}" if settings.dropout else "")
            + (", batch normalisation" if settings.batch_norm else "")
            + f"; {len(train)} training rows"
        )
    print(res)
    if args.plot:
        res.plot().savefig(args.plot, dpi=100)
        print(f"wrote {args.plot}")
    print(f"train with: --lr {res.suggestion:.2g}")
    return 0


def _plot_path(path: str, data: str | None) -> str:
    return predictions_path(
        path,
        overwrite=True,
        protected=[("input data", data or "")],
        option="--plot",
        writing="plots",
        default_name="plot.png",
    )


def cmd_bench_grad(args: argparse.Namespace) -> int:
    from .diagnostics import bench_grad, bench_grad_figure, format_bench_grad

    if args.plot:
        args.plot = _plot_path(args.plot, None)
    rows = bench_grad()
    print(format_bench_grad(rows))
    if args.plot:
        bench_grad_figure(rows).savefig(args.plot, dpi=100)
        print(f"wrote {args.plot}")
    return 0


def cmd_datasets(args: argparse.Namespace) -> int:
    rows = datasets.list_datasets()
    print(f"{'name':<15}{'task':<16}{'samples':>8}{'features':>10}  description")
    for r in rows:
        print(
            f"{r['name']:<15}{r['task']:<16}{r['n_samples']:>8}{r['n_features']:>10}  "
            f"{r['description']}"
        )
    return 0
