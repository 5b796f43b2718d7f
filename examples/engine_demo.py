"""Train a small network on two moons with the engine alone.

Everything is explicit: the forward pass (z = x W + b, a = tanh(z)), the loss (log loss on
logits), one backward() for every gradient, and the gradient-descent update w <- w - lr * dC/dw.

Run:  python examples/engine_demo.py
"""

from __future__ import annotations

import itertools

import numpy as np

import chainrule as cr


def two_moons(n: int, noise: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Two interleaving half circles (as scikit-learn's make_moons), labels 0 and 1."""
    n0 = n // 2
    t0 = rng.uniform(0, np.pi, n0)
    t1 = rng.uniform(0, np.pi, n - n0)
    upper = np.stack([np.cos(t0), np.sin(t0)], axis=1)
    lower = np.stack([1 - np.cos(t1), 0.5 - np.sin(t1)], axis=1)
    X = np.concatenate([upper, lower]) + rng.normal(scale=noise, size=(n, 2))
    y = np.concatenate([np.zeros(n0), np.ones(n - n0)])
    return X.astype(np.float32), y.astype(np.float32)


def main(epochs: int = 600, lr: float = 0.5, seed: int = 0) -> float:
    rng = np.random.default_rng(seed)
    X, y = two_moons(600, noise=0.15, rng=rng)
    X = (X - X.mean(axis=0)) / X.std(axis=0)  # standardise the inputs
    y = y.reshape(-1, 1)

    # 2 -> 16 -> 16 -> 1, Glorot-uniform weights, zero biases
    sizes = [2, 16, 16, 1]
    params = []
    for fan_in, fan_out in itertools.pairwise(sizes):
        bound = np.sqrt(6.0 / (fan_in + fan_out))
        W = cr.tensor(
            rng.uniform(-bound, bound, (fan_in, fan_out)).astype(np.float32), requires_grad=True
        )
        b = cr.tensor(np.zeros(fan_out, np.float32), requires_grad=True)
        params += [W, b]

    def forward(x: np.ndarray) -> cr.Tensor:
        a = cr.tensor(x)
        for i in range(0, len(params) - 2, 2):
            a = cr.tanh(a @ params[i] + params[i + 1])  # hidden layer: a = tanh(x W + b)
        return a @ params[-2] + params[-1]  # output logits z

    print(f"two moons: {len(X)} points, network {'-'.join(map(str, sizes))}, tanh, lr={lr}")
    for epoch in range(epochs + 1):
        z = forward(X)
        # log loss on logits, stable form: softplus(z) - y z  (= -[y log σ(z) + (1-y) log(1-σ(z))])
        loss = (cr.softplus(z) - y * z).mean()
        for p in params:
            p.grad = None
        loss.backward()  # one backward pass: ∂C/∂w for every weight
        with cr.no_grad():
            for p in params:
                p.data -= lr * p.grad  # gradient descent: w <- w - lr * ∂C/∂w
        if epoch % 100 == 0:
            print(f"epoch {epoch:4d}  loss {loss.item():.4f}")

    with cr.no_grad():
        accuracy = float(((forward(X).data > 0) == (y > 0.5)).mean())
    print(f"final training accuracy: {accuracy:.1%}")
    return accuracy


if __name__ == "__main__":
    main()
