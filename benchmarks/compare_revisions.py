"""Before/after speed of chainrule itself: two git revisions side by side, in one run.

A refactor must not make training slower. This script checks a *base* revision out into a
temporary git worktree and times chainrule's own systems of ``bench_training.py``
(``chainrule_fit``: ``cr.fit``; ``chainrule_loop``: a plain forward/backward/step loop on the
engine) and the engine's bookkeeping (``bench_overhead.py``'s per-op cases are not included:
they print, they do not return numbers) for the base and for the working tree. Every
(revision, system, case) runs in a fresh process with ``PYTHONPATH`` pointing at that
revision's ``src``; the two revisions alternate inside each round and the table gives medians
and the ratio ``base time / new time`` (above 1: the new code is faster; the issue's bar is
≥ 0.95, i.e. no case more than 5 % slower).

    python benchmarks/compare_revisions.py --base 6670638            # all cases, 5 rounds
    python benchmarks/compare_revisions.py --base main~3 --cases A32,B32 --rounds 7

The worker script is this tree's ``bench_training.py`` for both revisions (same shapes, same
data, same measuring code); only the imported ``chainrule`` differs (checked: the worker
reports the file it imported).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)

import bench_training as bt  # noqa: E402 - the harness lives beside this file

SYSTEMS = ["chainrule_fit", "chainrule_loop"]


def _worker(src: str, system: str, case: str, data: str) -> float | None:
    env = dict(os.environ, PYTHONPATH=src)
    code = (
        "import sys, json, chainrule; sys.argv = sys.argv[:1];"
        f"sys.path.insert(0, {HERE!r}); import bench_training as bt;"
        f"r = bt.worker({system!r}, {case!r}, False, {data!r});"
        "r['file'] = chainrule.__file__; print(json.dumps(r))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=1800
    )
    if proc.returncode != 0:
        print(f"  {src} {system} {case} failed: {proc.stderr.strip()[-300:]}", file=sys.stderr)
        return None
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    if not res["file"].startswith(src):
        raise RuntimeError(f"the worker imported {res['file']}, not the revision under {src}")
    return float(res["seconds"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", required=True, help="git revision to compare against")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--cases", default="A1,A32,A128,A512,B32,C128,D")
    parser.add_argument("--systems", default=",".join(SYSTEMS))
    args = parser.parse_args(argv)
    cases = [c for c in args.cases.split(",") if c]
    systems = [s for s in args.systems.split(",") if s]
    with tempfile.TemporaryDirectory() as tmp:
        base_tree = os.path.join(tmp, "base")
        subprocess.run(
            ["git", "-C", ROOT, "worktree", "add", "--detach", "-q", base_tree, args.base],
            check=True,
        )
        try:
            trees = {"base": os.path.join(base_tree, "src"), "new": os.path.join(ROOT, "src")}
            data = {c: bt.data_file(c, False, tmp) for c in cases}
            times: dict[tuple[str, str, str], list[float]] = {}
            for r in range(args.rounds):
                order = ["base", "new"] if r % 2 == 0 else ["new", "base"]
                for case in cases:
                    for system in systems:
                        if system == "chainrule_loop" and case == "D":
                            continue
                        for rev in order:
                            sec = _worker(trees[rev], system, case, data[case])
                            if sec is not None:
                                times.setdefault((rev, system, case), []).append(sec)
                print(f"round {r + 1}/{args.rounds} done", file=sys.stderr)
        finally:
            subprocess.run(
                ["git", "-C", ROOT, "worktree", "remove", "--force", base_tree], check=False
            )
    print(f"base {args.base} vs working tree; medians of {args.rounds} alternating rounds\n")
    print("| case | system | base ms | new ms | base/new |")
    print("|---|---|---|---|---|")
    worst = float("inf")
    for case in cases:
        for system in systems:
            b, n = times.get(("base", system, case)), times.get(("new", system, case))
            if not b or not n:
                continue
            mb, mn = statistics.median(b), statistics.median(n)
            worst = min(worst, mb / mn)
            print(f"| {case} | {system} | {mb * 1e3:.2f} | {mn * 1e3:.2f} | {mb / mn:.3f} |")
    print(f"\nworst ratio base/new: {worst:.3f} (≥ 0.95 means no case is more than 5 % slower)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
