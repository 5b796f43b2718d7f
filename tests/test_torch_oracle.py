"""Random compositions of primitives against torch.autograd in float64 (relative 1e-10).

Skipped only when PyTorch is not installed; CI installs torch==2.13.0.
"""

from __future__ import annotations

import numpy as np
import pytest

import chainrule as cr

torch = pytest.importorskip("torch")
F = torch.nn.functional

# Each entry: (arity, chainrule fn, torch fn). All keep the shape (4, 3) so they compose.
OPS = [
    (1, cr.tanh, torch.tanh),
    (1, cr.sigmoid, torch.sigmoid),
    (1, cr.relu, torch.relu),
    (1, lambda x: cr.leaky_relu(x, 0.1), lambda x: F.leaky_relu(x, 0.1)),
    (1, lambda x: cr.elu(x, 0.7), lambda x: F.elu(x, 0.7)),
    (1, cr.gelu, F.gelu),
    (1, lambda x: cr.gelu(x, approximate="tanh"), lambda x: F.gelu(x, approximate="tanh")),
    (1, lambda x: cr.softplus(x, beta=1.5), lambda x: F.softplus(x, beta=1.5)),
    (1, lambda x: cr.exp(cr.tanh(x)), lambda x: torch.exp(torch.tanh(x))),
    (1, lambda x: cr.log(cr.sigmoid(x) + 0.5), lambda x: torch.log(torch.sigmoid(x) + 0.5)),
    (1, lambda x: cr.sqrt(x * x + 1), lambda x: torch.sqrt(x * x + 1)),
    (1, cr.abs, torch.abs),
    (1, lambda x: x**2, lambda x: x**2),
    (1, lambda x: 1.5 - x, lambda x: 1.5 - x),
    (1, lambda x: cr.softmax(x, axis=1), lambda x: torch.softmax(x, dim=1)),
    (1, lambda x: cr.log_softmax(x, axis=0), lambda x: torch.log_softmax(x, dim=0)),
    (
        1,
        lambda x: x - cr.logsumexp(x, axis=1, keepdims=True),
        lambda x: x - torch.logsumexp(x, dim=1, keepdim=True),
    ),
    (1, lambda x: x * x.mean(axis=0, keepdims=True), lambda x: x * x.mean(dim=0, keepdim=True)),
    (
        1,
        lambda x: x + x.var(axis=1, keepdims=True),
        lambda x: x + x.var(dim=1, keepdim=True, unbiased=False),
    ),
    (1, lambda x: x * x.max(axis=1, keepdims=True), lambda x: x * x.amax(dim=1, keepdim=True)),
    (1, lambda x: x - x.min(axis=0, keepdims=True), lambda x: x - x.amin(dim=0, keepdim=True)),
    (1, lambda x: x * x.sum(), lambda x: x * x.sum()),
    (1, lambda x: cr.clip(x, -0.5, 0.8), lambda x: torch.clamp(x, -0.5, 0.8)),
    (1, lambda x: x[::-1] * x, lambda x: torch.flip(x, [0]) * x),
    (1, lambda x: x[np.array([1, 1, 0, 3])] + x, lambda x: x[torch.tensor([1, 1, 0, 3])] + x),
    (1, lambda x: x.T.reshape(4, 3), lambda x: x.T.reshape(4, 3)),
    (1, lambda x: cr.concatenate([x[:2], x[2:] * 2]), lambda x: torch.cat([x[:2], x[2:] * 2])),
    (
        1,
        lambda x: cr.stack([x[:, 0], x[:, 1], x[:, 2]], axis=1),
        lambda x: torch.stack([x[:, 0], x[:, 1], x[:, 2]], dim=1),
    ),
    (2, lambda a, b: a + b, lambda a, b: a + b),
    (2, lambda a, b: a * b, lambda a, b: a * b),
    (2, lambda a, b: a - b, lambda a, b: a - b),
    (2, lambda a, b: a / (b * b + 1), lambda a, b: a / (b * b + 1)),
    (2, cr.maximum, torch.maximum),
    (2, cr.minimum, torch.minimum),
    (
        2,
        lambda a, b: cr.where(a.data > b.data, a, b * 2),
        lambda a, b: torch.where(a > b, a, b * 2),
    ),
    (2, lambda a, b: (a @ b.T) @ b * 0.3, lambda a, b: (a @ b.T) @ b * 0.3),
    (2, lambda a, b: cr.linear(a, b[:3] * 0.5, b[0]), lambda a, b: a @ (b[:3] * 0.5) + b[0]),
    (
        2,
        lambda a, b: (cr.sigmoid(a) + 0.5) ** cr.tanh(b),
        lambda a, b: (torch.sigmoid(a) + 0.5) ** torch.tanh(b),
    ),
]


def run_program(seed: int):
    rng = np.random.default_rng(seed)
    values = [rng.normal(size=(4, 3)) for _ in range(3)]
    c_in = [cr.tensor(v, requires_grad=True) for v in values]
    t_in = [torch.tensor(v, requires_grad=True) for v in values]
    c_pool, t_pool = list(c_in), list(t_in)
    for _ in range(int(rng.integers(3, 9))):
        arity, cf, tf = OPS[int(rng.integers(len(OPS)))]
        picks = [int(rng.integers(len(c_pool))) for _ in range(arity)]
        c_pool.append(cf(*[c_pool[p] for p in picks]))
        t_pool.append(tf(*[t_pool[p] for p in picks]))
    w = rng.normal(size=(4, 3))
    c_loss = (c_pool[-1] * w).sum() + c_pool[-2].mean()
    t_loss = (t_pool[-1] * torch.tensor(w)).sum() + t_pool[-2].mean()
    return c_in, t_in, c_loss, t_loss


@pytest.mark.parametrize("seed", range(150))
def test_random_composition_matches_torch_autograd(seed):
    c_in, t_in, c_loss, t_loss = run_program(seed)
    np.testing.assert_allclose(c_loss.data, t_loss.detach().numpy(), rtol=1e-10, atol=1e-12)
    if not t_loss.requires_grad or not c_loss.requires_grad:
        return
    c_loss.backward()
    t_loss.backward()
    for c, t in zip(c_in, t_in):
        tg = np.zeros((4, 3)) if t.grad is None else t.grad.numpy()
        cg = np.zeros((4, 3)) if c.grad is None else c.grad
        scale = max(np.abs(tg).max(), 1.0)
        np.testing.assert_allclose(cg, tg, rtol=1e-10, atol=1e-10 * scale)


@pytest.mark.parametrize(
    "shapes",
    [((3,), (3,)), ((3,), (3, 4)), ((2, 3), (3,)), ((5, 2, 3), (3, 4)), ((1, 2, 3), (4, 3, 2))],
)
def test_matmul_shapes_match_torch(shapes):
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=shapes[0]), rng.normal(size=shapes[1])
    ca, cb = cr.tensor(a, requires_grad=True), cr.tensor(b, requires_grad=True)
    ta, tb = torch.tensor(a, requires_grad=True), torch.tensor(b, requires_grad=True)
    (cr.matmul(ca, cb) ** 2).sum().backward()
    (torch.matmul(ta, tb) ** 2).sum().backward()
    np.testing.assert_allclose(ca.grad, ta.grad.numpy(), rtol=1e-10)
    np.testing.assert_allclose(cb.grad, tb.grad.numpy(), rtol=1e-10)


def test_extreme_logits_match_torch():
    x = np.array([[800.0, 1.0, 1.0], [-431.0, 279.0, 427.0], [1e4, -1e4, 0.0]])
    for cf, tf in [(cr.log_softmax, torch.log_softmax), (cr.softmax, torch.softmax)]:
        np.testing.assert_allclose(
            cf(cr.tensor(x), axis=1).data,
            tf(torch.tensor(x), dim=1).numpy(),
            rtol=1e-12,
            atol=1e-300,
        )
    np.testing.assert_allclose(
        cr.sigmoid(cr.tensor(x)).data,
        torch.sigmoid(torch.tensor(x)).numpy(),
        rtol=1e-12,
        atol=1e-300,
    )
