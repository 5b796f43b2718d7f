"""Issue 19: Ctrl-C during a data-parallel run, and what "no process left behind" means.

A real subprocess each time; a test that fails kills what it started (the launcher, mpiexec
and the ranks all carry the test's directory in their command lines)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import chainrule as cr

from .test_distributed import MPIEXEC, _env, left_behind, none_left

TRAIN = ["train", "--dataset", "digits", "--epochs", "100000", "--no-plots"]


def _kill_all(marker: str) -> None:
    """SIGKILL every process whose command line mentions ``marker`` (cleanup on failure)."""
    for path in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            cmd = path.read_bytes().replace(b"\0", b" ").decode(errors="replace")
            pid = int(path.parent.name)
        except (OSError, ValueError):
            continue
        if marker in cmd and pid != os.getpid():
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)


def _interrupt_after_epoch_2(cmd: list[str], tmp: Path, group: bool) -> tuple[int, str, str]:
    """Start ``cmd``; once epoch 2 is reported, send SIGINT as a terminal's Ctrl-C does (to
    the process group of ``cmd``) or to ``cmd`` alone; returns (status, stdout, stderr)."""
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(tmp), cwd=tmp,
        start_new_session=True,
    )  # fmt: skip
    assert proc.stdout is not None
    try:
        seen = []
        for line in proc.stdout:  # a state, not a time: training is under way
            seen.append(line)
            if line.startswith("epoch 2/"):
                break
        assert seen and seen[-1].startswith("epoch 2/"), "".join(seen)
        if group:
            os.killpg(proc.pid, signal.SIGINT)
        else:
            proc.send_signal(signal.SIGINT)
        t0 = time.monotonic()
        out, err = proc.communicate(timeout=60)
        assert time.monotonic() - t0 < 30
        return proc.returncode, "".join(seen) + out, err
    finally:
        if proc.poll() is None:
            proc.kill()
        _kill_all(str(tmp))


def _check_run_kept(run: Path, out: str) -> None:
    assert "Interrupted after" in out and "the weights so far are kept" in out
    assert out.count("test accuracy") == 1  # rank 0 alone reports
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["stop_reason"] == "interrupted" and metrics["epochs_run"] >= 2
    history = (run / "history.csv").read_text().strip().splitlines()
    assert len(history) == 1 + metrics["epochs_run"]  # the epochs completed, none half-done
    model = cr.load(str(run / "model.chainrule"))
    assert all(bool((abs(p.data) < 1e6).all()) for p in model.parameters())


def test_ctrl_c_during_chainrule_train_workers_stops_every_process_and_keeps_the_run(tmp_path):
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "chainrule", *TRAIN, "--out", str(run), "--workers", "2"]
    status, out, err = _interrupt_after_epoch_2(cmd, tmp_path, group=True)
    assert status == 0, err
    _check_run_kept(run, out)
    assert none_left(str(tmp_path)) == []


def test_sigint_to_mpiexec_stops_chainrule_train_on_every_process(tmp_path):
    run = tmp_path / "run"
    cmd = [MPIEXEC, "-n", "2", sys.executable, "-m", "chainrule", *TRAIN, "--out", str(run)]
    status, out, err = _interrupt_after_epoch_2(cmd, tmp_path, group=False)
    assert status == 0, err
    _check_run_kept(run, out)
    assert none_left(str(tmp_path)) == []


def test_ctrl_c_reaching_one_process_only_stops_them_all_as_interrupted(tmp_path):
    # SIGINT to rank 1 alone (mpiexec passes Ctrl-C to every process, one maybe a step later
    # than another): rank 0 stops after the same step and reports an interrupted run too
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "chainrule", *TRAIN, "--out", str(run), "--workers", "2"]
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(tmp_path),
        cwd=tmp_path, start_new_session=True,
    )  # fmt: skip
    assert proc.stdout is not None
    try:
        seen = []
        for line in proc.stdout:
            seen.append(line)
            if line.startswith("epoch 2/"):
                break
        (rank1,) = tmp_path.glob("chainrule-ranks-*/rank1")
        os.kill(int(rank1.read_text()), signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
        _kill_all(str(tmp_path))
    assert proc.returncode == 0, err
    _check_run_kept(run, "".join(seen) + out)
    assert none_left(str(tmp_path)) == []


def test_the_process_checks_see_the_processes_they_look_for(tmp_path):
    # none_left() looks for the test's directory in command lines: make sure it finds a live
    # one, so that "nothing left" above cannot pass by looking for the wrong thing
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", str(tmp_path)])
    try:
        deadline = time.monotonic() + 30  # until the child has exec'd its command (a state)
        while not left_behind(str(tmp_path)) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert any(str(tmp_path) in c for c in left_behind(str(tmp_path)))
    finally:
        proc.kill()
        proc.wait()
    assert none_left(str(tmp_path)) == []


def test_workers_without_mpi4py_says_what_to_install(monkeypatch, capsys):
    import importlib.util

    from chainrule.cli import main

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "mpi4py" else real(name, *a)
    )
    for var in ("PMI_RANK", "PMI_SIZE", "PMIX_RANK", "OMPI_COMM_WORLD_SIZE"):
        monkeypatch.delenv(var, raising=False)
    assert main(["train", "--dataset", "iris", "--workers", "2"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        "chainrule: error: --workers needs mpi4py, which this environment lacks: pip install "
        '"chainrule[distributed]" (mpi4py and the mpich wheel, which brings mpiexec)'
    ]
