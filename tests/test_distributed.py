"""Data-parallel training (issue 19), run under ``mpiexec -n 2`` and ``-n 3`` from pytest.

Every MPI run is a subprocess with a timeout (the mpich wheel's mpiexec, oversubscribing this
machine's cores); the programs are in ``distributed_worker.py`` and write ``.npz`` files that
the tests compare with a single-process run of the same program.
"""

from __future__ import annotations

import glob
import itertools
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import chainrule as cr
from chainrule import _launch
from chainrule.training import parallel as dist

HERE = Path(__file__).resolve().parent
SRC = HERE.parent / "src"
WORKER = HERE / "distributed_worker.py"
MPIEXEC = _launch.find_mpiexec()  # the distributed extra is a dev dependency: never skipped
TIMEOUT = 180  # generous: 2 cores shared with other jobs; a hang fails instead of blocking


def _env(tmp: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PMI_", "PMIX_", "HYDRA"))}
    env["PYTHONPATH"] = os.pathsep.join([str(SRC), env.get("PYTHONPATH", "")])
    env["TMPDIR"] = str(tmp)
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env[var] = "1"
    return env


def run(tmp: Path, n: int, *args: str, timeout: float = TIMEOUT, mpi4py: bool = True):
    """The worker on ``n`` processes under mpiexec (``n = 0``: alone, without mpiexec)."""
    cmd = [sys.executable, str(WORKER), *args]
    if n:
        cmd = [MPIEXEC, "-n", str(n), sys.executable, *(["-m", "mpi4py"] if mpi4py else [])]
        cmd += [str(WORKER), *args]
    return subprocess.run(
        cmd, capture_output=True, text=True, timeout=timeout, env=_env(tmp), cwd=tmp
    )


def ok(proc: subprocess.CompletedProcess[str]) -> None:
    assert proc.returncode == 0, proc.stderr[-3000:]


def left_behind(marker: str) -> list[str]:
    """Command lines of live processes that mention ``marker`` (a test's own path)."""
    found = []
    for path in glob.glob("/proc/[0-9]*/cmdline"):
        try:
            with open(path, "rb") as fh:
                cmd = fh.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if marker in cmd and int(path.split("/")[2]) != os.getpid():
            found.append(cmd)
    return found


def none_left(marker: str, within: float = 30.0) -> list[str]:
    """Wait (for a state, up to ``within`` seconds) until no process mentions ``marker``;
    returns those still alive then (a process being killed takes a moment to go)."""
    deadline = time.monotonic() + within
    while True:
        alive = left_behind(marker)
        if not alive or time.monotonic() > deadline:
            return alive
        time.sleep(0.1)


def rel(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    assert a.shape == b.shape
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(a)), 1e-300)) if a.size else 0.0


def assert_same_run(ref: dict, got: dict, tol: float = 1e-10) -> None:
    keys = ("weights", "buffers", "loss", "val_loss", "accuracy", "val_accuracy", "predictions")
    for key in keys:
        assert rel(ref[key], got[key]) <= tol, (key, rel(ref[key], got[key]))
    assert str(ref["stop_reason"]) == str(got["stop_reason"])
    assert int(ref["epochs_run"]) == int(got["epochs_run"])


def load(path: Path) -> dict:
    with np.load(path) as f:
        return {k: f[k] for k in f.files}


# ----- point 3: the same mathematics on any number of processes -----
@pytest.mark.parametrize(
    "model, optimizer",
    [("bn", "sgd"), ("mlp", "adam")],
    ids=["dropout+batchnorm(eager)", "mlp(fused)"],
)
def test_one_two_three_processes_give_the_same_run(tmp_path, model, optimizer):
    # 103 rows, 20 % validation: 82 training rows in batches of 10 -> a last batch of 2 rows
    # (on 3 processes one of them has no row of it); per-sample weights throughout
    common = ["--model", model, "--optimizer", optimizer, "--epochs", "3"]
    ok(run(tmp_path, 0, "train", str(tmp_path / "p1.npz"), *common))
    ref = load(tmp_path / "p1.npz")
    for n in (2, 3):
        out = tmp_path / f"p{n}.npz"
        ok(run(tmp_path, n, "train", str(out), *common, "--distributed"))
        assert_same_run(ref, load(out))
    assert np.isfinite(ref["weights"]).all() and ref["loss"][-1] < ref["loss"][0]


def test_early_stopping_stops_every_process_at_the_same_epoch(tmp_path):
    common = ["--model", "bn", "--epochs", "6", "--early-stopping"]
    ok(run(tmp_path, 0, "train", str(tmp_path / "p1.npz"), *common))
    ok(run(tmp_path, 2, "train", str(tmp_path / "p2.npz"), *common, "--distributed"))
    ref, got = load(tmp_path / "p1.npz"), load(tmp_path / "p2.npz")
    assert str(ref["stop_reason"]) == "early_stopping" and int(ref["epochs_run"]) == 2
    assert_same_run(ref, got)  # the best (restored) weights too


def test_checkpoint_written_by_two_processes_resumes_on_one_and_three(tmp_path):
    # NOTE: SGD, not Adam: the bias of a Linear layer just before batch norm has a gradient of
    # exactly 0 in theory, rounding noise in practice, and Adam's g/√v turns that noise into
    # full-size steps (a 3e-9 difference after 4 epochs, single process against two)
    common = ["--model", "bn", "--optimizer", "sgd"]
    ok(run(tmp_path, 0, "train", str(tmp_path / "full.npz"), *common, "--epochs", "4"))
    ck = str(tmp_path / "ck.chainrule")
    ok(
        run(
            tmp_path, 2, "train", str(tmp_path / "half.npz"), *common, "--epochs", "2",
            "--checkpoint", ck, "--distributed",
        )
    )  # fmt: skip
    assert os.path.isfile(ck)
    resumed = ["--epochs", "4", "--resume", ck]
    ok(run(tmp_path, 0, "train", str(tmp_path / "r1.npz"), *common, *resumed))
    ok(
        run(
            tmp_path, 3, "train", str(tmp_path / "r3.npz"), *common, "--epochs", "4",
            "--resume", ck, "--distributed",
        )
    )  # fmt: skip
    full = load(tmp_path / "full.npz")
    for name in ("r1.npz", "r3.npz"):
        assert_same_run(full, load(tmp_path / name))


def test_gradient_accumulation_on_two_processes_equals_one(tmp_path):
    # batches of 6 rows, 3 per step: steps of 18 rows (the last of 10), each batch split in 2
    common = ["--model", "bn", "--batch-size", "6", "--accumulate", "3", "--epochs", "2"]
    ok(run(tmp_path, 0, "train", str(tmp_path / "p1.npz"), *common))
    ok(run(tmp_path, 2, "train", str(tmp_path / "p2.npz"), *common, "--distributed"))
    assert_same_run(load(tmp_path / "p1.npz"), load(tmp_path / "p2.npz"))


@pytest.mark.parametrize("act", ["tanh", "elu"], ids=["fused plan", "eager plan"])
def test_gradient_accumulation_equals_the_larger_batch(act):
    rng = np.random.default_rng(5)
    X, y = rng.normal(size=(47, 4)), rng.integers(0, 3, 47)
    w = rng.uniform(0.1, 3.0, 47)
    runs = []
    for batch, k in ((4, 3), (12, 1)):  # 47 rows: steps of 12, the last of 11 (4 + 4 + 3)
        model = cr.nn.mlp([4, 6, 3], act, rng=0).to(np.float64)
        h = cr.fit(
            model, X, y, loss="cross_entropy", optimizer="adam", lr=0.01, epochs=3, seed=0,
            batch_size=batch, accumulate_steps=k, sample_weight=w, verbose=0,
            metrics=["accuracy"],
        )  # fmt: skip
        runs.append((np.concatenate([p.data.ravel() for p in model.parameters()]), h.history))
    (w1, h1), (w2, h2) = runs
    assert rel(w1, w2) < 1e-12
    assert rel(h1["loss"], h2["loss"]) < 1e-12 and h1["accuracy"] == h2["accuracy"]
    with pytest.raises(ValueError, match="accumulate_steps must be"):
        cr.fit(cr.nn.mlp([4, 3], rng=0), X, y, loss="cross_entropy", accumulate_steps=0)


# ----- point 2: the building blocks -----
def test_broadcast_parameters_makes_models_built_from_different_seeds_identical(tmp_path):
    ok(run(tmp_path, 3, "broadcast", str(tmp_path / "b.npz")))
    b = load(tmp_path / "b.npz")
    assert not np.array_equal(b["before"][0], b["before"][1])  # they did differ
    for r in range(3):
        np.testing.assert_array_equal(b["after"][r], b["before"][0])  # rank 0's, bit for bit


def test_distributed_optimizer_averages_with_one_allreduce_per_step(tmp_path):
    ok(run(tmp_path, 2, "reduce_once", str(tmp_path / "d.npz")))
    d = load(tmp_path / "d.npz")
    assert int(d["allreduces"]) == int(d["steps"])  # one flat buffer (float64, one group)
    np.testing.assert_allclose(d["reduced"], d["last_local"].mean(axis=0), rtol=1e-13, atol=0)
    assert bool(d["is_optimizer"])  # still an instance of the optimizer's class


def test_shard_bounds_cover_every_row_once():
    for rows in (0, 1, 5, 10, 103):
        for parts in (1, 2, 3, 7):
            bounds = [dist._bounds(rows, parts, k) for k in range(parts)]
            assert bounds[0][0] == 0 and bounds[-1][1] == rows
            assert all(a[1] == b[0] for a, b in itertools.pairwise(bounds))
            sizes = [hi - lo for lo, hi in bounds]
            assert sizes == [len(s) for s in np.array_split(np.arange(rows), parts)]


# ----- point 4: each process reads only its rows of a memory-mapped file -----
def test_memory_mapped_rows_are_read_by_their_process_only(tmp_path):
    X = np.random.default_rng(0).normal(size=(64, 5))
    np.save(tmp_path / "X.npy", X)
    ok(run(tmp_path, 2, "rows_read", str(tmp_path / "r.npz"), "--data", str(tmp_path / "X.npy")))
    r = load(tmp_path / "r.npz")
    # 64 rows in batches of 10: every batch splits 5 + 5 (the last 2 + 2): 32 rows each epoch
    for epoch in range(2):
        mine = [set(r[f"rank{k}"][epoch * 32 : (epoch + 1) * 32].tolist()) for k in range(2)]
        assert len(r["rank0"]) == len(r["rank1"]) == 64
        assert mine[0].isdisjoint(mine[1]) and mine[0] | mine[1] == set(range(64))


# ----- point 5: faults end the whole job -----
@pytest.mark.parametrize("mpi4py", [True, False], ids=["python -m mpi4py", "plain python"])
def test_a_rank_that_raises_ends_the_job(tmp_path, mpi4py):
    out = str(tmp_path / "never.npz")
    proc = run(
        tmp_path, 2, "train", out, "--epochs", "50", "--fault", "raise", "--distributed",
        timeout=30, mpi4py=mpi4py,
    )  # fmt: skip
    assert proc.returncode != 0
    assert "rank 1 of 2 failed: RuntimeError: bad shard on purpose" in proc.stderr
    assert not os.path.exists(out)
    assert none_left(str(tmp_path)) == []


def test_a_rank_killed_with_sigkill_ends_the_job(tmp_path):
    out = str(tmp_path / "never.npz")
    proc = run(
        tmp_path, 3, "train", out, "--epochs", "50", "--fault", "kill", "--distributed",
        timeout=30,
    )  # fmt: skip
    assert proc.returncode != 0
    report = proc.stdout + proc.stderr  # MPICH reports a dead process on standard output
    assert "EXIT CODE: 9" in report and "Killed (signal 9)" in report
    assert none_left(str(tmp_path)) == []


def test_non_finite_data_in_one_process_stops_every_process_at_the_same_step(tmp_path):
    X = np.random.default_rng(0).normal(size=(60, 5))
    X[37, 2] = np.nan  # in epoch 1's batch 3 or so, on one process only
    np.save(tmp_path / "X.npy", X)
    data = ["--data", str(tmp_path / "X.npy")]
    ok(run(tmp_path, 0, "nan_data", str(tmp_path / "one.npz"), *data))
    ok(run(tmp_path, 3, "nan_data", str(tmp_path / "three.npz"), *data, "--distributed"))
    one, three = load(tmp_path / "one.npz"), load(tmp_path / "three.npz")
    assert str(one["stop_reason"]) == str(three["stop_reason"]) == "diverged"
    assert "training diverged at epoch 1" in str(three["message"])
    assert len(one["loss"]) == len(three["loss"]) == 0  # the epoch was left unrecorded
    assert rel(one["weights"], three["weights"]) < 1e-12  # the last finite weights


def test_models_that_differ_are_refused_naming_the_first_difference(tmp_path):
    proc = run(tmp_path, 2, "mismatch", str(tmp_path / "x.npz"), timeout=60)
    assert proc.returncode != 0
    assert (
        "the processes hold different models (entry 0 is parameter '0.weight' (5, 8) float64 "
        "on rank 0 but parameter '0.weight' (5, 9) float64 on rank 1)" in proc.stderr
    )


def test_distributed_outside_mpiexec_says_what_to_run(monkeypatch):
    for var in dist._MPIEXEC_VARS:
        monkeypatch.delenv(var, raising=False)
    model = cr.nn.mlp([2, 3], rng=0)
    X, y = np.zeros((4, 2), np.float32), np.array([0, 1, 2, 0])
    with pytest.raises(RuntimeError, match=r"mpiexec -n 2 python -m mpi4py your_script.py"):
        cr.fit(model, X, y, loss="cross_entropy", verbose=0, distributed=True)


def test_distributed_without_the_extra_says_what_to_install(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "mpi4py" else real(name, *a)
    )
    model = cr.nn.mlp([2, 3], rng=0)
    X, y = np.zeros((4, 2), np.float32), np.array([0, 1, 2, 0])
    with pytest.raises(ImportError, match=r'pip install "chainrule\[distributed\]"'):
        cr.fit(model, X, y, loss="cross_entropy", verbose=0, distributed=True)


# ----- point 1: the command line -----
def _cli(tmp: Path, *args: str, timeout: float = TIMEOUT) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "chainrule", *args]
    return subprocess.run(
        cmd, capture_output=True, text=True, timeout=timeout, env=_env(tmp), cwd=tmp
    )


def _history(path: Path) -> np.ndarray:
    rows = path.read_text().splitlines()
    return np.array([[float(v) for v in r.split(",")[1:-2]] for r in rows[1:]])  # no lr, time


def test_chainrule_train_workers_equals_one_process(tmp_path):
    train = ["train", "--dataset", "iris", "--epochs", "4", "--no-plots", "--batch-size", "16"]
    one = _cli(tmp_path, *train, "--out", "one", "-q")
    ok(one)
    two = _cli(tmp_path, *train, "--out", "two", "--workers", "2")
    ok(two)
    assert two.stdout.count("test accuracy") == 1  # printed by rank 0 only
    assert two.stdout.count("epoch 4/4") == 1
    # float32: equal to float32 rounding (the sums run in a different order)
    np.testing.assert_allclose(
        _history(tmp_path / "two" / "history.csv"), _history(tmp_path / "one" / "history.csv"),
        rtol=2e-5,
    )  # fmt: skip
    assert sorted(os.listdir(tmp_path)) == ["one", "two"]  # nothing written elsewhere


def test_mpiexec_runs_chainrule_train_on_its_processes(tmp_path):
    train = ["train", "--dataset", "iris", "--epochs", "2", "--no-plots", "-q"]
    proc = subprocess.run(
        [MPIEXEC, "-n", "3", sys.executable, "-m", "chainrule", *train, "--out", "three"],
        capture_output=True, text=True, timeout=TIMEOUT, env=_env(tmp_path), cwd=tmp_path,
    )  # fmt: skip
    ok(proc)
    assert proc.stdout.count("test accuracy") == 1
    assert (tmp_path / "three" / "model.chainrule").is_file()


def test_workers_option_is_checked(tmp_path):
    proc = _cli(tmp_path, "train", "--dataset", "iris", "--workers", "0")
    assert proc.returncode == 2
    assert (
        proc.stderr.strip().splitlines() == [proc.stderr.strip().splitlines()[0]]
        and "--workers" in proc.stderr
    )


def test_a_rank_of_chainrule_train_that_fails_ends_the_job_with_one_line(tmp_path):
    # --out is checked on rank 0 only: an existing run there fails that rank, mid-start
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "notes.txt").write_text("mine")
    proc = _cli(
        tmp_path, "train", "--dataset", "iris", "--out", str(tmp_path / "taken"), "--workers", "2",
        timeout=60,
    )  # fmt: skip
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("chainrule: error: rank 0 of 2: "), lines
    assert (tmp_path / "taken" / "notes.txt").read_text() == "mine"
    assert none_left(str(tmp_path)) == []


def test_a_killed_worker_of_chainrule_train_is_named_in_one_line(tmp_path):
    # absolute paths: none_left() finds the processes by the test's directory in their commands
    out = str(tmp_path / "run")
    train = ["train", "--dataset", "digits", "--epochs", "100000", "--no-plots", "--out", out]
    proc = subprocess.Popen(
        [sys.executable, "-m", "chainrule", *train, "--workers", "2"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(tmp_path),
        cwd=tmp_path,
    )  # fmt: skip
    assert proc.stdout is not None
    for line in proc.stdout:  # wait for training to be under way (a state, not a time)
        if line.startswith("epoch 2/"):
            break
    files = glob.glob(str(tmp_path / "chainrule-ranks-*" / "rank1"))
    assert len(files) == 1
    pid = int(Path(files[0]).read_text())
    os.kill(pid, signal.SIGKILL)
    t0 = time.monotonic()
    _, err = proc.communicate(timeout=30)
    assert time.monotonic() - t0 < 30
    assert proc.returncode != 0
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert lines == [
        f"chainrule: rank 1 of 2 (pid {pid}) was killed by signal 9 (SIGKILL); the other "
        "processes were ended"
    ], err
    assert none_left(str(tmp_path)) == []


def test_launcher_helpers():
    assert _launch.without_workers(["train", "--workers", "3", "--x", "--workers=2", "y"]) == [
        "train",
        "--x",
        "y",
    ]
    banner = [
        "=" * 83,
        "=   BAD TERMINATION OF ONE OF YOUR APPLICATION PROCESSES",
        "=   PID 4242 RUNNING AT vm",
        "=   EXIT CODE: 9",
        "=   CLEANING UP REMAINING PROCESSES",
        "=" * 83,
        "YOUR APPLICATION TERMINATED WITH THE EXIT STRING: Killed (signal 9)",
    ]
    assert _launch._one_line(banner, {4242: 3}, 4) == (
        "chainrule: rank 3 of 4 (pid 4242) was killed by signal 9 (SIGKILL); the other "
        "processes were ended"
    )


def test_scaling_benchmark_runs(capsys):
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "bench_distributed", HERE.parent / "benchmarks" / "bench_distributed.py"
    )
    assert spec and spec.loader
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    (row,) = bench.main(["--quick", "--no-write"])
    assert row["case"] == "A128" and row["params"] == 235_146
    assert row["samples_per_s_1"] > 0 and row["samples_per_s_2"] > 0  # timings: no thresholds
    assert 0 <= row["comm_share_2"] <= 1
    assert "Allreduce between 2 processes" in capsys.readouterr().out
