"""``chainrule train ... --workers N``: start N training processes with the environment's mpiexec.

The command becomes ``mpiexec -n N python -m mpi4py -m chainrule train ...`` (``-m mpi4py``
turns an unhandled exception into ``MPI_Abort``, so no process waits forever). Each process
gets ``cores // N`` BLAS threads (at least one) unless the thread variables are already set.
MPICH's report of a process that died (a banner of a dozen lines) is turned into one line that
names the rank, found from the process ids the ranks record at start-up.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator, Sequence
from typing import IO, Any

__all__ = ["find_mpiexec", "launch", "without_workers"]

RANK_DIR = "CHAINRULE_RANK_DIR"  # where each rank writes its process id (see distributed.init)
_THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def find_mpiexec() -> str:
    """The ``mpiexec`` of this Python's environment (the mpich wheel's), else the one on PATH."""
    here = os.path.join(os.path.dirname(sys.executable), "mpiexec")
    if os.path.isfile(here) and os.access(here, os.X_OK):
        return here
    found = shutil.which("mpiexec")
    if found is None:
        raise ImportError(
            "--workers needs mpiexec, and neither this environment nor PATH has one: "
            'pip install "chainrule[distributed]" (mpi4py and the mpich wheel, which brings '
            "mpiexec)"
        )
    return found


def without_workers(argv: Sequence[str]) -> list[str]:
    """``argv`` with ``--workers N`` / ``--workers=N`` removed."""
    out: list[str] = []
    skip = False
    for a in argv:
        if skip:
            skip = False
            continue
        if a == "--workers":
            skip = True
            continue
        if a.startswith("--workers="):
            continue
        out.append(a)
    return out


def _ranks(directory: str) -> dict[int, int]:
    """{process id: rank} from the files the ranks wrote."""
    out: dict[int, int] = {}
    for name in os.listdir(directory):
        if name.startswith("rank"):
            try:
                with open(os.path.join(directory, name), encoding="utf-8") as fh:
                    out[int(fh.read().strip())] = int(name[4:])
            except (OSError, ValueError):
                continue
    return out


def _signal_name(code: int) -> str:
    try:
        return f"signal {code} ({signal.Signals(code).name})"
    except ValueError:
        return f"signal {code}"


def launch(argv: Sequence[str], workers: int) -> int:
    """Run ``chainrule <argv>`` on ``workers`` processes; returns the job's exit status."""
    import importlib.util

    mpiexec = find_mpiexec()
    if importlib.util.find_spec("mpi4py") is None:  # said once here, not by every process
        raise ImportError(
            '--workers needs mpi4py, which this environment lacks: pip install "chainrule['
            'distributed]" (mpi4py and the mpich wheel, which brings mpiexec)'
        )
    env = dict(os.environ)
    threads = str(max(1, (os.cpu_count() or 1) // workers))
    for var in _THREAD_VARS:
        env.setdefault(var, threads)
    cmd = [mpiexec, "-n", str(workers), sys.executable, "-m", "mpi4py", "-m", "chainrule"]
    cmd += without_workers(argv)
    with tempfile.TemporaryDirectory(prefix="chainrule-ranks-") as ranks:
        env[RANK_DIR] = ranks
        # mpiexec in a session of its own: Ctrl-C at a terminal reaches this process
        # only, which passes exactly one SIGINT on per Ctrl-C (mpiexec takes a second one as
        # "abort now", and the terminal would otherwise send it one as well)
        proc = subprocess.Popen(
            cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, bufsize=1,
            start_new_session=True,
        )  # fmt: skip
        banner: list[str] = []
        pumps = [
            threading.Thread(target=_pump, args=(stream, dest, banner), daemon=True)
            for stream, dest in ((proc.stdout, sys.stdout), (proc.stderr, sys.stderr))
        ]
        for t in pumps:
            t.start()
        with _passing_on(proc):
            status = _wait(proc)
        for t in pumps:
            t.join()
        if banner:
            sys.stderr.write(_one_line(banner, _ranks(ranks), workers) + "\n")
            sys.stderr.flush()
    return status if status >= 0 else 128 - status


def _wait(proc: subprocess.Popen[str]) -> int:
    """Wait for mpiexec; each Ctrl-C is passed on to it (the first asks the processes to stop
    after their current step and save, a second makes mpiexec end them at once)."""
    while True:
        try:
            return proc.wait()
        except KeyboardInterrupt:
            proc.send_signal(signal.SIGINT)


@contextlib.contextmanager
def _passing_on(proc: subprocess.Popen[str]) -> Iterator[None]:
    """SIGTERM and SIGHUP (a closed terminal) sent to this process go to mpiexec too, which
    is no longer in this process's group: nothing is left running when the launcher ends."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    kinds = (signal.SIGTERM, signal.SIGHUP)
    previous = {k: signal.getsignal(k) for k in kinds}

    def forward(signum: int, frame: Any) -> None:
        proc.send_signal(signum)

    for k in kinds:
        signal.signal(k, forward)
    try:
        yield
    finally:
        for k in kinds:
            signal.signal(k, previous[k])


def _pump(stream: IO[str] | None, dest: IO[str], banner: list[str]) -> None:
    """Copy ``stream`` to ``dest`` line by line, keeping MPICH's report of a process that died
    (a banner of "=" lines, on standard output) and its echo of an abort out of it."""
    if stream is None:
        return
    blank = False  # a blank line is held back: the report starts with one
    for line in stream:
        text = line.rstrip("\n")
        if text.startswith(("=", "YOUR APPLICATION TERMINATED")):
            banner.append(text)
            blank = False
            continue
        if not text.strip():
            blank = True
            continue
        if text.startswith(("This typically refers", "Please see the FAQ")):
            continue
        if re.match(r"^Abort\(\d+\) on node \d+", text):
            continue  # MPICH's echo of the abort the failing rank announced itself
        if blank:
            dest.write("\n")
            blank = False
        dest.write(line)
        dest.flush()


def _one_line(banner: list[str], ranks: dict[int, int], workers: int) -> str:
    """MPICH's "BAD TERMINATION" banner as one line naming the rank and the cause."""
    text = " ".join(banner)
    pid_m = re.search(r"PID (\d+)", text)
    code_m = re.search(r"EXIT CODE: (\d+)", text)
    string_m = re.search(r"EXIT STRING: ([^=]+?)(?:\s*$|\s{2,})", text)
    who = "a worker"
    if pid_m is not None:
        pid = int(pid_m.group(1))
        rank = ranks.get(pid)
        who = f"rank {rank} of {workers} (pid {pid})" if rank is not None else f"pid {pid}"
    why = "ended abnormally"
    if string_m is not None and "signal" in string_m.group(1):
        num = re.search(r"signal (\d+)", string_m.group(1))
        why = f"was killed by {_signal_name(int(num.group(1)))}" if num else string_m.group(1)
    elif code_m is not None:
        why = f"exited with status {code_m.group(1)}"
    return f"chainrule: {who} {why}; the other processes were ended"
