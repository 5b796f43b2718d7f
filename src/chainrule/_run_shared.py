"""``chainrule train`` on data shared through memory-mapped files: several processes, or a
directory converted by ``chainrule convert`` / :func:`chainrule.data.csv_to_npy`.

One process (rank 0) prepares the rows and writes the parts of the run, each as ``.npy``
files in a temporary directory: the training rows, the validation rows and (for a converted
directory) the test rows. Every process then memory-maps them, so it reads only the rows of
its share of each batch (:class:`~chainrule.training.parallel.DistributedTrainer` reads a
memory map with ``pread``, batch by batch) and never holds the data set.

- ``--data FILE`` or ``--dataset NAME`` under ``--workers N``: rank 0 reads and preprocesses
  the data exactly as a single process does (the same test split, the preprocessing fitted on
  the training rows, the validation rows split off with the run's generator as
  :func:`~chainrule.fit` does), so the run equals ``chainrule train`` without ``--workers``;
  the other processes never read the file.
- ``--data DIR`` (``X.npy``, ``y.npy`` and ``preprocessing.json`` written by the conversion):
  no process reads more than a batch at a time, on 1 or N processes alike. The preprocessing
  was learnt from every row of the file (in chunks, during the conversion); the test and
  validation rows are drawn with ``--seed`` as above.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from typing import Any

import numpy as np

from ._run import (
    CLIError,
    RunResult,
    TrainSettings,
    _score,
    _write_run,
    result_record,
    score_encoded,
    split_table,
    train_model,
    validation_fraction,
)
from .data.tabular import Table, TabularPreprocessor, train_test_split
from .training.evaluation import predict
from .training.trainer import Trainer

__all__ = ["CONVERTED", "is_converted", "run_shared"]

CONVERTED = ("X.npy", "y.npy", "preprocessing.json")
_CHUNK_BYTES = 16 << 20  # rows are copied and scored 16 MiB at a time


def is_converted(path: str | None) -> bool:
    """True if ``path`` is a directory written by ``chainrule convert`` / ``csv_to_npy``."""
    if path is None or not os.path.isdir(path):
        return False
    if not all(os.path.isfile(os.path.join(path, f)) for f in CONVERTED[:2]):
        raise CLIError(
            f"--data {path!r} is a directory without X.npy and y.npy; give a CSV, .npy or .npz "
            "file, or a directory written by `chainrule convert`"
        )
    if not os.path.isfile(os.path.join(path, CONVERTED[2])):
        raise CLIError(
            f"--data {path!r} has X.npy and y.npy but no preprocessing.json (the model file "
            "needs the preprocessing): convert the CSV again with `chainrule convert` or "
            "chainrule.data.csv_to_npy"
        )
    return True


def run_shared(settings: TrainSettings) -> RunResult | None:
    """The run of every process; returns the result on rank 0 (None on the others)."""
    from . import distributed

    main = not settings.distributed or distributed.is_main()
    rng = np.random.default_rng(settings.seed)  # the generator fit would create from --seed
    held: dict[str, Any] = {}  # what rank 0 keeps for scoring
    message: dict[str, Any] | None = None
    if main:
        where = _parts_directory(settings)
        try:
            message = _prepare(settings, where, rng, held)
        except BaseException:
            shutil.rmtree(where, ignore_errors=True)
            raise
    try:
        if settings.distributed:  # the barrier: nobody reads a part before rank 0 wrote it
            message = distributed.broadcast_object(message)
            if not os.path.isdir(message["dir"]):
                raise CLIError(
                    f"rank 0 wrote the training rows to {message['dir']!r}, which this process "
                    "cannot see: on several hosts, convert the data (chainrule convert) into a "
                    "directory every host shares and give it as --data"
                )
            rng.bit_generator.state = message["rng"]  # as if this process had split the rows
        assert message is not None
        prep = held["prep"] if main else TabularPreprocessor.from_dict(message["prep"])
        parts = message["dir"]
        X = np.load(os.path.join(parts, "X_train.npy"), mmap_mode="r")
        y = np.load(os.path.join(parts, "y_train.npy"))
        val = None
        if message["validation"]:
            val = (
                np.load(os.path.join(parts, "X_val.npy"), mmap_mode="r"),
                np.load(os.path.join(parts, "y_val.npy")),
            )
        model, history, flow = train_model(settings, prep, X, y, val, seed=rng)
        if not main:
            return None
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            test_scores, train_scores = _scores(model, prep, parts, held)
        result = result_record(settings, prep, history, test_scores, train_scores, flow)
        files: dict[str, str] = {}
        if settings.out:
            train = held.get("train", Table([], {}, "data"))
            test = held["test"] if "test" in held else _raw_test_table(prep, parts)
            files = _write_run(settings, model, prep, history, result, train, test, flow)
        return RunResult(model, prep, history, result, files, flow, settings.lr)
    finally:
        if main:
            shutil.rmtree(message["dir"] if message else where, ignore_errors=True)


# ----- rank 0: the parts ---------------------------------------------------------------------
def _parts_directory(settings: TrainSettings) -> str:
    """A new directory for the parts: inside a converted directory or next to the data file
    (paths every host of a job shares as much as the data), else the temporary directory."""
    data = settings.data
    base = None
    if data is not None:
        here = data if os.path.isdir(data) else os.path.dirname(os.path.abspath(data))
        if os.access(here, os.W_OK):
            base = here
    return tempfile.mkdtemp(prefix=".chainrule-run-", dir=base)


def _prepare(
    settings: TrainSettings, where: str, rng: np.random.Generator, held: dict[str, Any]
) -> dict[str, Any]:
    """Write the parts of the run into ``where``; returns what the other processes need."""
    if is_converted(settings.data):
        prep, validation = _split_converted(settings, where, rng)
    else:
        prep, validation = _split_in_memory(settings, where, rng, held)
    held["prep"] = prep
    return {
        "dir": where,
        "prep": prep.to_dict(),
        "validation": validation,
        "rng": rng.bit_generator.state,
    }


def _validation(y: np.ndarray, fraction: float, rng: np.random.Generator) -> Any:
    """fit's own split of the validation rows (the same draws from the same generator)."""
    if not fraction > 0:
        return None
    split = Trainer.__new__(Trainer)
    split.rng = rng
    return split._split(y, fraction)


def _split_in_memory(
    settings: TrainSettings, where: str, rng: np.random.Generator, held: dict[str, Any]
) -> tuple[TabularPreprocessor, bool]:
    """Read and preprocess as a single process does, then write the parts."""
    prep, train, test = split_table(settings)  # as a single process does
    prep.fit(train)
    X, y = prep.transform(train), prep.encode_target(train)
    held.update(train=train, test=test)
    split = _validation(y, validation_fraction(settings), rng)
    if split is None:
        np.save(os.path.join(where, "X_train.npy"), X)
        np.save(os.path.join(where, "y_train.npy"), y)
        return prep, False
    fit_idx, val_idx = split
    for name, rows in (("train", fit_idx), ("val", val_idx)):
        np.save(os.path.join(where, f"X_{name}.npy"), X[rows])
        np.save(os.path.join(where, f"y_{name}.npy"), y[rows])
    return prep, True


def _split_converted(
    settings: TrainSettings, where: str, rng: np.random.Generator
) -> tuple[TabularPreprocessor, bool]:
    """Test, validation and training rows of a converted directory, copied chunk by chunk."""
    data = settings.data or ""
    with open(os.path.join(data, CONVERTED[2]), encoding="utf-8") as fh:
        prep = TabularPreprocessor.from_dict(json.load(fh))
    if settings.target is not None and settings.target != prep.target:
        raise CLIError(
            f"--target {settings.target!r}: {data!r} was converted for the target "
            f"{prep.target!r}; leave --target out or convert again"
        )
    if settings.task != "auto" and settings.task != prep.task:
        raise CLIError(
            f"--task {settings.task}: {data!r} was converted for {prep.task}; leave --task out "
            "or convert again with --task"
        )
    from ._run import DEFAULTS

    for option, value in (("categorical", settings.categorical), ("drop", settings.drop)):
        if list(value):  # the columns were chosen when converting; the directory has no others
            raise CLIError(
                f"--{option} applies when converting (chainrule convert --{option} ...): "
                f"{data!r} is already converted"
            )
    if settings.missing != DEFAULTS["missing"]:
        raise CLIError(
            f"--missing {settings.missing}: {data!r} is already converted (a converted file "
            "has no missing values)"
        )
    settings.task = prep.task
    X = np.load(os.path.join(data, "X.npy"), mmap_mode="r")
    y = np.load(os.path.join(data, "y.npy"))
    if X.ndim != 2 or len(X) != len(y) or X.shape[1] != prep.n_inputs:
        raise CLIError(
            f"{data!r}: X.npy {X.shape} and y.npy {y.shape} do not match its preprocessing "
            f"({prep.n_inputs} inputs); convert the CSV again"
        )
    if len(y) < 4:
        raise CLIError(f"{data!r} has only {len(y)} rows: too few to train and test")
    strat = prep.task == "classification"
    train_idx, test_idx = train_test_split(
        y, settings.test_split, seed=settings.seed, stratify=strat
    )
    parts: dict[str, np.ndarray] = {"test": test_idx}
    split = _validation(y[train_idx], validation_fraction(settings), rng)
    if split is None:
        parts["train"] = train_idx
    else:
        parts["train"], parts["val"] = train_idx[split[0]], train_idx[split[1]]
    _copy_rows(X, y, parts, where)
    return prep, split is not None


def _copy_rows(X: np.ndarray, y: np.ndarray, parts: dict[str, np.ndarray], where: str) -> None:
    """Write ``X[rows]`` and ``y[rows]`` of every part, reading ``X`` a chunk at a time with
    ``pread`` (its pages never stay in this process) and writing with plain writes."""
    row_bytes = X[0].nbytes
    start = getattr(X, "offset", None)  # np.load(mmap_mode="r"): where the rows start
    if not isinstance(start, int) or not X.flags.c_contiguous:
        raise CLIError("X.npy must be a plain C-ordered .npy file; convert the CSV again")
    chunk = max(1, _CHUNK_BYTES // max(row_bytes, 1))
    owner = np.full(len(X), -1, np.int8)
    names = sorted(parts)
    outs, pos = [], []
    for k, name in enumerate(names):
        rows = np.sort(parts[name])
        owner[rows] = k
        np.save(os.path.join(where, f"y_{name}.npy"), y[rows])
        path = os.path.join(where, f"X_{name}.npy")
        np.lib.format.open_memmap(path, mode="w+", dtype=X.dtype, shape=(len(rows), X.shape[1]))
        fd = os.open(path, os.O_WRONLY)
        outs.append(fd)
        pos.append(np.load(path, mmap_mode="r").offset)
    src = os.open(os.fspath(X.filename), os.O_RDONLY)  # type: ignore[attr-defined]
    try:
        buf = np.empty((chunk, X.shape[1]), X.dtype)
        for lo in range(0, len(X), chunk):
            n = min(chunk, len(X) - lo)
            view = memoryview(buf[:n].reshape(-1).view(np.uint8))  # type: ignore[arg-type]
            if os.preadv(src, [view], start + lo * row_bytes) != n * row_bytes:
                raise CLIError(f"{X.filename!r} ended early: convert the CSV again")  # type: ignore[attr-defined]
            for k, fd in enumerate(outs):
                rows = buf[:n][owner[lo : lo + n] == k]
                if len(rows):
                    os.pwrite(fd, rows.tobytes(), pos[k])
                    pos[k] += rows.nbytes
    finally:
        os.close(src)
        for fd in outs:
            os.close(fd)


# ----- rank 0: the scores --------------------------------------------------------------------
def _scores(
    model: Any, prep: TabularPreprocessor, parts: str, held: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Test and training scores (the training rows include the validation rows, as always)."""
    if "test" in held:  # read in memory by this process: scored as a single process does
        train, test = held["train"], held["test"]
        return (
            _score(prep, predict(model, prep.transform(test)), test),
            _score(prep, predict(model, prep.transform(train)), train),
        )
    outs, ys = [], []
    for name in ("train", "val"):
        if os.path.isfile(os.path.join(parts, f"X_{name}.npy")):
            outs.append(_predict_file(model, os.path.join(parts, f"X_{name}.npy")))
            ys.append(np.load(os.path.join(parts, f"y_{name}.npy")))
    test_out = _predict_file(model, os.path.join(parts, "X_test.npy"))
    return (
        score_encoded(prep, test_out, np.load(os.path.join(parts, "y_test.npy"))),
        score_encoded(prep, np.concatenate(outs), np.concatenate(ys)),
    )


def _predict_file(model: Any, path: str) -> np.ndarray:
    """The model's outputs for the rows of a ``.npy`` file, read 16 MiB at a time."""
    X = np.load(path, mmap_mode="r")
    row_bytes = max(X[0].nbytes if len(X) else 1, 1)
    chunk = max(1, _CHUNK_BYTES // row_bytes)
    buf = np.empty((min(chunk, len(X)), *X.shape[1:]), X.dtype)
    outs = []
    with open(path, "rb") as fh:
        for lo in range(0, len(X), chunk):
            n = min(chunk, len(X) - lo)
            fh.seek(X.offset + lo * row_bytes)
            fh.readinto(memoryview(buf[:n].reshape(-1).view(np.uint8)))  # type: ignore[arg-type]
            outs.append(predict(model, buf[:n]))
    return np.concatenate(outs)


def _raw_test_table(prep: TabularPreprocessor, parts: str) -> Table:
    """The test rows in their units, for the decision-boundary figure (drawn only for two
    numeric features: the other figures need no rows)."""
    numeric = [f for f in prep.features if f["kind"] == "numeric"]
    if len(prep.features) != 2 or len(numeric) != 2:
        return Table([], {}, "test")
    X = np.load(os.path.join(parts, "X_test.npy"))  # two columns
    cols = {
        f["name"]: X[:, i].astype(np.float64) * f["std"] + f["mean"] for i, f in enumerate(numeric)
    }
    return Table(list(cols), cols, "test")
