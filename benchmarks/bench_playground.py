"""Frames per second of the playground for a 6×8 network, and what streaming costs training.

Starts the real server (``chainrule playground --no-browser`` in its own process, as with a
browser), connects over a real WebSocket (the ``websockets`` client, as a page would; it
only counts and decodes frames), plays a network of
six hidden layers of eight tanh units on the spiral with all seven features, and counts the
binary frames and the training steps over a few seconds, round after round. Then the same
training without any listener (no frames built): the ratio of the two step rates is what
drawing costs training (frames are throttled, not steps). Medians over the rounds.

    python benchmarks/bench_playground.py            # 3 rounds of 5 s
    python benchmarks/bench_playground.py --quick    # smoke run (CI)
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from typing import Any

HASH = "dataset=spiral&features=x1,x2,x1sq,x2sq,x1x2,sinx1,sinx2&layers=8,8,8,8,8,8&lr=0.01&activation=tanh"


def _stream(url: str, seconds: float) -> dict[str, float]:
    from websockets.sync.client import connect

    from chainrule.playground.session import decode_frame

    base, token = url.split("/?token=")
    ws_url = base.replace("http://", "ws://") + f"/ws?token={token}"
    with connect(ws_url, origin=base, max_size=None) as ws:  # type: ignore[arg-type]
        ident = 0

        def call(kind: str, **args: Any) -> None:
            nonlocal ident
            ident += 1
            ws.send(json.dumps({"id": ident, "type": kind, **args}))
            while True:
                msg = ws.recv()
                if isinstance(msg, str) and json.loads(msg).get("id") == ident:
                    return

        call("set_hash", hash=HASH)
        call("play")
        frames, first_step, last_step = 0, None, 0
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            msg = ws.recv()
            if isinstance(msg, bytes):
                header, _ = decode_frame(msg)
                frames += 1
                first_step = header["step"] if first_step is None else first_step
                last_step = header["step"]
        elapsed = time.perf_counter() - t0
        call("pause")
    return {"fps": frames / elapsed, "steps_per_s": (last_step - (first_step or 0)) / elapsed}


def _alone(seconds: float) -> float:
    """Steps per second of the same session with no page connected (no frames at all)."""
    from chainrule.playground.session import Session
    from chainrule.playground.state import PlaygroundState

    s = Session(PlaygroundState.from_hash(HASH))
    s._one_step()
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        s._one_step()
        n += 1
    return n / (time.perf_counter() - t0)


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="one short round (smoke run)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args(argv)
    rounds, seconds = (1, 1.0) if args.quick else (args.rounds, args.seconds)

    import os
    import subprocess
    import sys
    from pathlib import Path

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
    streamed, alone = [], []
    try:
        for _ in range(rounds):  # alternate the two, round by round
            streamed.append(_stream(url, seconds))
            alone.append(_alone(seconds))
    finally:
        proc.terminate()
        proc.wait(30)
    result = {
        "fps": statistics.median(r["fps"] for r in streamed),
        "steps_per_s_streaming": statistics.median(r["steps_per_s"] for r in streamed),
        "steps_per_s_alone": statistics.median(alone),
    }
    result["training_speed_ratio"] = result["steps_per_s_streaming"] / result["steps_per_s_alone"]
    print(
        f"playground, 6×8 tanh network, spiral, 7 features ({rounds} round(s) of {seconds:g} s, medians)"
    )
    print(f"  frames/s over the WebSocket:          {result['fps']:.1f}")
    print(f"  training steps/s while streaming:     {result['steps_per_s_streaming']:.0f}")
    print(f"  training steps/s with no page:        {result['steps_per_s_alone']:.0f}")
    print(f"  ratio (streaming / no page):          {result['training_speed_ratio']:.2f}")
    return result


if __name__ == "__main__":
    main()
