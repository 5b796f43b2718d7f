"""Learning-rate schedules (against torch.optim.lr_scheduler) and gradient clipping."""

from __future__ import annotations

import math

import numpy as np
import pytest

from chainrule import nn, optim
from chainrule.optim import lr_scheduler as S


def opt_with(lr=0.1, cls=optim.SGD, **kw):
    return cls([nn.Parameter(np.zeros(2, np.float32))], lr=lr, **kw)


def lrs(sched, opt, n):
    out = []
    for _ in range(n):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


def test_closed_forms():
    o = opt_with(1.0)
    assert lrs(S.StepLR(o, 2, gamma=0.5), o, 5) == [1.0, 1.0, 0.5, 0.5, 0.25]
    o = opt_with(1.0)
    assert lrs(S.MultiStepLR(o, [1, 3], gamma=0.1), o, 4) == pytest.approx([1.0, 0.1, 0.1, 0.01])
    o = opt_with(1.0)
    assert lrs(S.ExponentialLR(o, 0.5), o, 3) == [1.0, 0.5, 0.25]
    o = opt_with(1.0)
    got = lrs(S.CosineAnnealingLR(o, T_max=4, eta_min=0.0), o, 5)
    assert got == pytest.approx([(1 + math.cos(math.pi * e / 4)) / 2 for e in range(5)])


def test_linear_warmup_composes_with_cosine():
    o = opt_with(1.0)
    cos = S.CosineAnnealingLR(o, T_max=4)
    warm = S.LinearWarmup(o, 2, start_factor=0.5, then=cos)
    got = lrs(warm, o, 7)
    assert got == pytest.approx(
        [
            0.5,
            0.75,
            1.0,
            (1 + math.cos(math.pi / 4)) / 2,
            0.5,
            (1 + math.cos(3 * math.pi / 4)) / 2,
            0.0,
        ]
    )


def test_reduce_on_plateau():
    o = opt_with(1.0)
    s = S.ReduceLROnPlateau(o, factor=0.5, patience=1)
    for metric in [1.0, 0.9, 0.95, 0.95, 0.95, 0.5]:
        s.step(metric)
    assert o.param_groups[0]["lr"] == 0.5
    with pytest.raises(ValueError, match="mode"):
        S.ReduceLROnPlateau(o, mode="up")


def test_scheduler_state_dict_round_trip():
    o = opt_with(1.0)
    s = S.LinearWarmup(o, 3, then=S.StepLR(o, 2))
    for _ in range(4):
        s.step()
    state = s.state_dict()
    o2 = opt_with(1.0)
    s2 = S.LinearWarmup(o2, 3, then=S.StepLR(o2, 2))
    s2.load_state_dict(state)
    assert s2.last_epoch == 4 and s2.then.last_epoch == s.then.last_epoch
    s.step()
    s2.step()
    assert o.param_groups[0]["lr"] == o2.param_groups[0]["lr"]


def test_scheduler_validation():
    with pytest.raises(ValueError, match="step_size must be >= 1"):
        S.StepLR(opt_with(), 0)
    with pytest.raises(ValueError, match="total_steps"):
        S.OneCycleLR(opt_with(), max_lr=1.0)


# ----- clipping ---------------------------------------------------------------------------------


def test_clip_grad_norm_global_norm_and_return_value():
    a, b = nn.Parameter(np.zeros(2)), nn.Parameter(np.zeros(1))
    a.grad, b.grad = np.array([3.0, 0.0]), np.array([4.0])
    total = optim.clip_grad_norm([a, b], max_norm=1.0)
    assert total == pytest.approx(5.0)
    np.testing.assert_allclose(np.sqrt((a.grad**2).sum() + (b.grad**2).sum()), 1.0, rtol=1e-5)
    np.testing.assert_allclose(a.grad / b.grad[0], [0.75, 0.0])  # direction kept
    a.grad = np.array([0.3, 0.4])
    assert optim.clip_grad_norm([a], 1.0) == pytest.approx(0.5)
    np.testing.assert_array_equal(a.grad, [0.3, 0.4])  # under the limit: unchanged


def test_clip_grad_norm_nonfinite():
    a = nn.Parameter(np.zeros(2))
    a.grad = np.array([np.nan, 1.0])
    assert math.isnan(optim.clip_grad_norm([a], 1.0))
    with pytest.raises(RuntimeError, match="NaN or infinite"):
        optim.clip_grad_norm([a], 1.0, error_if_nonfinite=True)


def test_clip_grad_value():
    a = nn.Parameter(np.zeros(3))
    a.grad = np.array([-5.0, 0.2, 3.0])
    optim.clip_grad_value([a], 1.0)
    np.testing.assert_array_equal(a.grad, [-1.0, 0.2, 1.0])


# ----- against torch ----------------------------------------------------------------------------

torch = pytest.importorskip("torch")


def torch_lrs(make, n, opt_cls="SGD", **okw):
    p = torch.zeros(2, requires_grad=True)
    o = getattr(torch.optim, opt_cls)([p], lr=0.1, **okw)
    s = make(o)
    out = []
    for _ in range(n):
        out.append(o.param_groups[0]["lr"])
        o.step()
        s.step()
    return out, o


T = torch.optim.lr_scheduler


@pytest.mark.parametrize(
    "mine,theirs",
    [
        (lambda o: S.StepLR(o, 3, 0.5), lambda o: T.StepLR(o, 3, 0.5)),
        (lambda o: S.MultiStepLR(o, [2, 5, 6], 0.3), lambda o: T.MultiStepLR(o, [2, 5, 6], 0.3)),
        (lambda o: S.ExponentialLR(o, 0.9), lambda o: T.ExponentialLR(o, 0.9)),
        (lambda o: S.CosineAnnealingLR(o, 10, 0.001), lambda o: T.CosineAnnealingLR(o, 10, 0.001)),
        (
            lambda o: S.LinearWarmup(o, 4, start_factor=0.25),
            lambda o: T.LinearLR(o, start_factor=0.25, total_iters=4),
        ),
        (
            lambda o: S.OneCycleLR(o, 1.0, total_steps=20),
            lambda o: T.OneCycleLR(o, 1.0, total_steps=20),
        ),
        (
            lambda o: S.OneCycleLR(
                o, 0.5, total_steps=15, three_phase=True, anneal_strategy="linear"
            ),
            lambda o: T.OneCycleLR(
                o, 0.5, total_steps=15, three_phase=True, anneal_strategy="linear"
            ),
        ),
    ],
)
def test_schedules_match_torch(mine, theirs):
    n = 15
    o = opt_with(0.1, momentum=0.9)
    got = lrs(mine(o), o, n)
    want, topt = torch_lrs(theirs, n, momentum=0.9)
    np.testing.assert_allclose(got, want, rtol=1e-12)
    assert o.param_groups[0]["momentum"] == pytest.approx(topt.param_groups[0]["momentum"])


def test_one_cycle_cycles_adam_beta1_like_torch():
    o = opt_with(0.1, cls=optim.Adam)
    s = S.OneCycleLR(o, 0.01, total_steps=10)
    want, topt = torch_lrs(lambda to: T.OneCycleLR(to, 0.01, total_steps=10), 6, opt_cls="Adam")
    got = lrs(s, o, 6)
    np.testing.assert_allclose(got, want, rtol=1e-12)
    assert o.param_groups[0]["betas"][0] == pytest.approx(topt.param_groups[0]["betas"][0])


def test_reduce_on_plateau_matches_torch():
    metrics = [1.0, 0.99995, 0.8, 0.8, 0.8, 0.81, 0.7, 0.7, 0.7, 0.7, 0.7, 0.69]
    o = opt_with(0.1)
    s = S.ReduceLROnPlateau(o, factor=0.5, patience=1, cooldown=1, min_lr=0.02)
    p = torch.zeros(1, requires_grad=True)
    to = torch.optim.SGD([p], lr=0.1)
    ts = T.ReduceLROnPlateau(to, factor=0.5, patience=1, cooldown=1, min_lr=0.02)
    for m in metrics:
        s.step(m)
        ts.step(m)
        assert o.param_groups[0]["lr"] == pytest.approx(to.param_groups[0]["lr"])


def test_clip_grad_norm_matches_torch():
    rng = np.random.default_rng(0)
    gs = [rng.normal(size=(3, 2)) * 5, rng.normal(size=4)]
    ps = [nn.Parameter(np.zeros_like(g)) for g in gs]
    tps = [torch.zeros(g.shape, dtype=torch.float64, requires_grad=True) for g in gs]
    for p, tp, g in zip(ps, tps, gs):
        p.grad = g.copy()
        tp.grad = torch.tensor(g)
    for norm_type in (2.0, 1.0, math.inf):
        a = optim.clip_grad_norm(ps, 2.0, norm_type=norm_type)
        b = torch.nn.utils.clip_grad_norm_(tps, 2.0, norm_type=norm_type)
        assert a == pytest.approx(float(b), rel=1e-12)
        for p, tp in zip(ps, tps):
            np.testing.assert_allclose(p.grad, tp.grad.numpy(), rtol=1e-12)
