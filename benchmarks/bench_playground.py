"""Frames per second of the playground for a 6×8 network, and what streaming costs training.

Starts the real server (``chainrule playground --no-browser`` in its own process, as with a
browser) and plays a network of six hidden layers of eight tanh units on the spiral with all
seven features. Each round measures the same server, side by side:

- **with a client**: a real WebSocket client (the ``websockets`` library, as a page would:
  it counts and decodes every binary frame) stays connected for ``--seconds``;
- **no client**: the client disconnects, training goes on for ``--seconds`` with no
  listener (no frame is built or sent), then a client reconnects.

Both count steps the same way (the step number the session reports when the client pauses
it, at the start and at the end; ``play`` resumes at once), so the only difference is a
page listening. Besides steps per second of wall-clock time the benchmark reports steps per
second of the *server process's CPU time* (user + system, from ``/proc``): on a shared
machine that figure moves less with what other programs do. The ratios (with / without a
client) are what drawing costs training: frames are throttled, steps are not. Medians over
the rounds, the two modes alternating, and the median of each round's ratio. On a machine
that other programs share, those ratios move by ±10 % or more from run to run (an A/A run,
both modes without a client, gave 1.04-1.06); the last two lines measure the cost directly
and steadily, on the server's own threads: the share of the training thread's CPU time that
went into building frames (``frameShare`` in each frame's header) and the event-loop
thread's share of the server's CPU time (sending frames and answering commands).

    python benchmarks/bench_playground.py            # 12 rounds of 2 s
    python benchmarks/bench_playground.py --quick    # smoke run (CI)
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HASH = (
    "dataset=spiral&features=x1,x2,x1sq,x2sq,x1x2,sinx1,sinx2&layers=8,8,8,8,8,8"
    "&lr=0.01&activation=tanh"
)


def _cpu_seconds(pid: int, thread: int | None = None) -> float:
    """User + system CPU seconds of process ``pid`` (or of its thread ``thread``) so far
    (Linux ``/proc``)."""
    path = f"/proc/{pid}/stat" if thread is None else f"/proc/{pid}/task/{thread}/stat"
    with open(path) as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class _Client:
    """A WebSocket connection to the playground that sends commands and reads frames."""

    def __init__(self, url: str) -> None:
        from websockets.sync.client import connect

        base, token = url.split("/?token=")
        ws_url = base.replace("http://", "ws://") + f"/ws?token={token}"
        self._stack = contextlib.ExitStack()
        self.ws = self._stack.enter_context(connect(ws_url, origin=base, max_size=None))  # type: ignore[arg-type]
        self.ident = 0
        self.frames = 0
        self.last_header: dict[str, Any] | None = None
        self.shares: list[float] = []  # the frames' frameShare

    def _receive(self) -> Any:
        from chainrule.playground.session import decode_frame

        msg = self.ws.recv()
        if isinstance(msg, bytes):
            self.last_header, _ = decode_frame(msg)
            self.frames += 1
            if self.last_header.get("playing"):
                self.shares.append(float(self.last_header["frameShare"]))
        return msg

    def call(self, kind: str, **args: Any) -> Any:
        self.ident += 1
        self.ws.send(json.dumps({"id": self.ident, "type": kind, **args}))
        while True:
            msg = self._receive()
            if isinstance(msg, str):
                answer = json.loads(msg)
                if answer.get("id") == self.ident:
                    if "error" in answer:
                        raise RuntimeError(answer["error"])
                    return answer["reply"]

    def step_now(self) -> tuple[int, float]:
        """Pause, read the step count, play again: (step, time of the reading)."""
        step = self.call("pause")["step"]
        t = time.perf_counter()
        self.call("play")
        return int(step), t

    def listen(self, seconds: float) -> None:
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            self._receive()

    def close(self) -> None:
        self._stack.close()


def _measure(url: str, pid: int, seconds: float, with_client: bool) -> dict[str, float]:
    client = _Client(url)
    step0, t0 = client.step_now()
    cpu0, loop0 = _cpu_seconds(pid), _cpu_seconds(pid, pid)
    if with_client:
        client.listen(seconds)
    else:
        client.close()
        time.sleep(seconds)
        client = _Client(url)
    cpu1, loop1 = _cpu_seconds(pid), _cpu_seconds(pid, pid)
    frames_before = client.frames
    shares = client.shares[len(client.shares) // 2 :]  # once the moving figures have settled
    step1, t1 = client.step_now()
    client.close()
    steps = step1 - step0
    return {
        "steps_per_s": steps / (t1 - t0),
        "steps_per_cpu_s": steps / max(cpu1 - cpu0, 1e-9),
        "fps": frames_before / (t1 - t0) if with_client else 0.0,
        "frame_share": statistics.median(shares) if shares else 0.0,
        "loop_share": (loop1 - loop0) / max(cpu1 - cpu0, 1e-9),
    }


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="one short round (smoke run)")
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--seconds", type=float, default=2.0)
    args = parser.parse_args(argv)
    rounds, seconds = (1, 1.0) if args.quick else (args.rounds, args.seconds)

    src = str(Path(__file__).resolve().parent.parent / "src")
    env = dict(os.environ, PYTHONPATH=src + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.Popen(
        [sys.executable, "-m", "chainrule", "playground", "--no-browser"],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert proc.stdout is not None
    url = proc.stdout.readline().split()[-1]
    if not url.startswith("http://"):
        proc.kill()
        raise RuntimeError(f"the playground server did not start: {url!r}")
    with_client: list[dict[str, float]] = []
    without: list[dict[str, float]] = []
    try:
        setup = _Client(url)
        setup.call("set_hash", hash=HASH)
        setup.call("play")
        setup.listen(min(1.0, seconds))  # warm up
        setup.close()
        for r in range(rounds):  # alternate the two, round by round
            order = (True, False) if r % 2 == 0 else (False, True)
            for mode in order:
                (with_client if mode else without).append(_measure(url, proc.pid, seconds, mode))
    finally:
        proc.terminate()
        proc.wait(30)

    def med(runs: list[dict[str, float]], key: str) -> float:
        return statistics.median(r[key] for r in runs)

    result = {
        "fps": med(with_client, "fps"),
        "steps_per_s_client": med(with_client, "steps_per_s"),
        "steps_per_s_no_client": med(without, "steps_per_s"),
        "steps_per_cpu_s_client": med(with_client, "steps_per_cpu_s"),
        "steps_per_cpu_s_no_client": med(without, "steps_per_cpu_s"),
    }
    result["frame_share"] = med(with_client, "frame_share")
    result["loop_share"] = med(with_client, "loop_share")
    result["ratio_wall"] = result["steps_per_s_client"] / result["steps_per_s_no_client"]
    result["ratio_cpu"] = result["steps_per_cpu_s_client"] / result["steps_per_cpu_s_no_client"]
    # each round's two measurements are neighbours in time: their ratio cancels most of what
    # other programs do to the machine, which drifts over seconds
    pairs = list(zip(without, with_client, strict=True))
    result["paired_ratio_wall"] = statistics.median(
        b["steps_per_s"] / a["steps_per_s"] for a, b in pairs
    )
    result["paired_ratio_cpu"] = statistics.median(
        b["steps_per_cpu_s"] / a["steps_per_cpu_s"] for a, b in pairs
    )
    print(
        f"playground, 6×8 tanh network, spiral, 7 features ({rounds} round(s) of {seconds:g} s "
        "per mode, alternating; medians)"
    )
    print("                                   no client   client connected   ratio")
    print(
        f"  training steps/s (wall clock)    {result['steps_per_s_no_client']:9.0f}"
        f"   {result['steps_per_s_client']:16.0f}   {result['ratio_wall']:5.2f}"
    )
    print(
        f"  steps per server CPU second      {result['steps_per_cpu_s_no_client']:9.0f}"
        f"   {result['steps_per_cpu_s_client']:16.0f}   {result['ratio_cpu']:5.2f}"
    )
    print(
        f"  median of the rounds' ratios:    wall clock {result['paired_ratio_wall']:.2f}, "
        f"CPU time {result['paired_ratio_cpu']:.2f}"
    )
    print(f"  frames/s over the WebSocket:     {result['fps']:.1f}")
    print(
        f"  building frames: {100 * result['frame_share']:.1f} % of the training thread's CPU time"
        " (the session's own count);"
    )
    print(
        f"  sending them: {100 * result['loop_share']:.1f} % of the server's CPU time"
        " (its event-loop thread)"
    )
    print("  per round: steps/s (no client, client), steps per CPU second (no client, client)")
    for a, b in zip(without, with_client, strict=True):
        print(
            f"    {a['steps_per_s']:7.0f} {b['steps_per_s']:7.0f}   "
            f"{a['steps_per_cpu_s']:7.0f} {b['steps_per_cpu_s']:7.0f}   fps {b['fps']:.1f}"
        )
    return result


if __name__ == "__main__":
    main()
