"""Data-parallel training throughput: ``fit(distributed=True)`` on 1 and 2 processes.

For the MLP cases of ``bench_training.py`` (same widths, activation, Adam, global batch), each
configuration runs in fresh processes under the environment's ``mpiexec`` with one BLAS thread
per process, alternating 1 and 2 processes inside each round; the table reports medians over
rounds of training samples per second (epochs after the first, which warms up), the speed-up
of 2 processes over 1, and the share of each step spent in communication (the gradient
all-reduce, the loss all-reduce and the stop agreement, timed inside the run). The same
global batch on 1 and 2 processes is the same mathematics, so this is strong scaling.

    python benchmarks/bench_distributed.py            # A32, A128, A512, C128 (a few minutes)
    python benchmarks/bench_distributed.py --quick    # seconds: tiny sizes, smoke test

Results go to benchmarks/results/distributed.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
CASES = {
    "A32": {"widths": [784, 256, 128, 10], "act": "relu", "batch": 32},
    "A128": {"widths": [784, 256, 128, 10], "act": "relu", "batch": 128},
    "A512": {"widths": [784, 256, 128, 10], "act": "relu", "batch": 512},
    "C128": {"widths": [784] + [128] * 8 + [10], "act": "tanh", "batch": 128},
}


def worker(case: str, rows: int, epochs: int) -> None:
    """Runs under mpiexec: one timed fit; rank 0 prints a JSON line."""
    import chainrule as cr
    from chainrule.training import parallel as dist

    spec = CASES[case]
    rng = np.random.default_rng(0)
    X = rng.normal(size=(rows, spec["widths"][0])).astype(np.float32)
    y = rng.integers(0, spec["widths"][-1], size=rows)
    comm_time = [0.0]

    def timed(fn):  # type: ignore[no-untyped-def]
        def inner(*a, **k):  # type: ignore[no-untyped-def]
            t0 = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                comm_time[0] += time.perf_counter() - t0

        return inner

    dist.allreduce_gradients = timed(dist.allreduce_gradients)
    dist.Replicas.sum_scalar = timed(dist.Replicas.sum_scalar)
    dist.Replicas.max_int = timed(dist.Replicas.max_int)
    epoch_times: list[float] = []
    comm_at_epoch: list[float] = []

    class Clock(cr.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):  # type: ignore[no-untyped-def]
            self.t0 = time.perf_counter()
            self.c0 = comm_time[0]

        def on_epoch_end(self, epoch, logs=None):  # type: ignore[no-untyped-def]
            epoch_times.append(time.perf_counter() - self.t0)
            comm_at_epoch.append(comm_time[0] - self.c0)

    model = cr.nn.mlp(spec["widths"], spec["act"], rng=0)
    cr.fit(
        model, X, y, loss="cross_entropy", optimizer="adam", lr=1e-3, epochs=epochs,
        batch_size=spec["batch"], seed=0, verbose=0, callbacks=[Clock()], distributed=True,
    )  # fmt: skip
    comm = dist._comm()
    # the slowest process sets the pace
    t = comm.allreduce(sum(epoch_times[1:]), op=__import__("mpi4py").MPI.MAX)
    c = comm.allreduce(sum(comm_at_epoch[1:]), op=__import__("mpi4py").MPI.MAX)
    if dist.is_main():
        params = sum(p.size for p in model.parameters())
        print(
            json.dumps(
                {
                    "samples_per_s": rows * (epochs - 1) / t,
                    "comm_share": c / t,
                    "params": int(params),
                    "steps_per_s": (epochs - 1) * -(-rows // spec["batch"]) / t,
                }
            )
        )


def _command(procs: int, *args: str) -> tuple[list[str], dict[str, str]]:
    mpiexec = os.path.join(os.path.dirname(sys.executable), "mpiexec")
    env = dict(os.environ)
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env[var] = "1"
    src = os.path.join(os.path.dirname(HERE), "src")
    env["PYTHONPATH"] = os.pathsep.join([src, env.get("PYTHONPATH", "")])
    return [mpiexec, "-n", str(procs), sys.executable, "-m", "mpi4py", __file__, *args], env


def run_allreduce(reps: int) -> dict:
    cmd, env = _command(2, "--worker", "allreduce", "--rows", str(reps))
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def run_one(case: str, procs: int, rows: int, epochs: int) -> dict:
    cmd, env = _command(procs, "--worker", case, "--rows", str(rows), "--epochs", str(epochs))
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=1800, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def allreduce_worker(reps: int) -> None:
    """Runs under mpiexec: time one Allreduce of 8 bytes and of model A's float32 gradient."""
    from mpi4py import MPI

    comm = MPI.COMM_WORLD
    out = {}
    for name, size in (("latency_s", 2), ("model_A_s", 235_146)):
        buf = np.zeros(size, np.float32)
        comm.Barrier()
        times = []
        for _ in range(reps):
            t0 = time.perf_counter()
            comm.Allreduce(MPI.IN_PLACE, buf)
            times.append(time.perf_counter() - t0)
        out[name] = statistics.median(times)
    if comm.Get_rank() == 0:
        print(json.dumps(out))


def main(argv: list[str] | None = None) -> list[dict]:
    p = argparse.ArgumentParser()
    p.add_argument("--worker")
    p.add_argument("--rows", type=int, default=8192)
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--cases", default="A32,A128,A512,C128")
    p.add_argument("--quick", action="store_true")
    p.add_argument("--no-write", action="store_true", help="print, do not write results/")
    args = p.parse_args(argv)
    if args.worker == "allreduce":
        allreduce_worker(args.rows)
        return []
    if args.worker:
        worker(args.worker, args.rows, args.epochs)
        return []
    if args.quick:
        args.rows, args.epochs, args.rounds, args.cases = 1024, 2, 1, "A128"
    cases = args.cases.split(",")
    results: dict[str, dict[int, list[dict]]] = {c: {1: [], 2: []} for c in cases}
    for _ in range(args.rounds):
        for case in cases:
            for procs in (1, 2):
                results[case][procs].append(run_one(case, procs, args.rows, args.epochs))
    table = []
    for case in cases:
        one = statistics.median(r["samples_per_s"] for r in results[case][1])
        two = statistics.median(r["samples_per_s"] for r in results[case][2])
        share = statistics.median(r["comm_share"] for r in results[case][2])
        table.append(
            {
                "case": case,
                "global_batch": CASES[case]["batch"],
                "params": results[case][1][0]["params"],
                "samples_per_s_1": one,
                "samples_per_s_2": two,
                "speedup": two / one,
                "comm_share_2": share,
            }
        )
    micro = run_allreduce(200 if not args.quick else 20)
    meta = {
        "allreduce_2_processes": micro,
        "rows": args.rows,
        "epochs_timed": args.epochs - 1,
        "rounds": args.rounds,
        "cpus": os.cpu_count(),
        "blas_threads_per_process": 1,
    }
    lines = [
        "| case | global batch | parameters | samples/s, 1 process | samples/s, 2 processes "
        "| speed-up | communication share (2) |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in table:
        lines.append(
            f"| {r['case']} | {r['global_batch']} | {r['params']:,} | "
            f"{r['samples_per_s_1']:,.0f} | {r['samples_per_s_2']:,.0f} | "
            f"{r['speedup']:.2f}× | {r['comm_share_2']:.1%} |"
        )
    md = "\n".join(lines) + "\n"
    md += (
        f"\nOne Allreduce between 2 processes here (shared memory): "
        f"{micro['latency_s'] * 1e6:.1f} µs for 8 bytes, {micro['model_A_s'] * 1e3:.2f} ms for "
        "model A's 0.94 MB of float32 gradients.\n"
    )
    if not args.no_write:
        os.makedirs(os.path.join(HERE, "results"), exist_ok=True)
        with open(os.path.join(HERE, "results", "distributed.json"), "w") as fh:
            json.dump({"meta": meta, "table": table}, fh, indent=2)
        with open(os.path.join(HERE, "results", "distributed.md"), "w") as fh:
            fh.write(md)
    print(md)
    return table


if __name__ == "__main__":
    main()
