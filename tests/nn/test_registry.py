"""Layers register themselves; model files, the fused step, the diagnostics, the thread policy
and the fit loop ask the registry or the layer, not a hand-kept list (issue 17, point 4)."""

from __future__ import annotations

import contextlib
import inspect
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import chainrule as cr
from chainrule import nn
from chainrule.nn.cost import layer_flops
from chainrule.nn.registry import ACTIVATION_KINDS, LAYERS, activation_kind, spec_of
from chainrule.training import blas_threads_for
from chainrule.training._threads import SMALL_STEP_MACS, largest_layer_flops
from chainrule.training.evaluation import task_of as _task_of
from chainrule.training.fastpath import _activate, _backward_act

CONTAINERS = {"Sequential", "ModuleList", "ModuleDict"}


def _example(cls: type[nn.Module]) -> nn.Module:
    """An instance of a registered layer: required integer arguments get 3, rng a seed."""
    kwargs = {}
    for name, p in inspect.signature(cls).parameters.items():
        if name == "rng":
            kwargs[name] = 0
        elif p.default is inspect.Parameter.empty and p.kind in (
            p.POSITIONAL_OR_KEYWORD,
            p.KEYWORD_ONLY,
        ):
            kwargs[name] = 3
    return cls(**kwargs)


@pytest.mark.parametrize("name", sorted(set(LAYERS) - CONTAINERS))
def test_every_registered_layer_round_trips_through_a_model_file(name, tmp_path):
    cls = LAYERS[name]
    layer = _example(cls)
    for p in layer.parameters():  # weights that differ from any initialisation
        p.data[...] = np.random.default_rng(7).normal(size=p.shape)
    model = nn.Sequential(layer) if name != "Flatten" else layer
    path = tmp_path / f"{name}.chainrule"
    cr.save(model, path)
    again = cr.load(path)
    got = again[0] if isinstance(again, nn.Sequential) else again
    assert type(got) is cls
    assert spec_of(got).name == name and spec_of(got).builtin
    assert got.get_config() == layer.get_config()
    assert cls.from_config(layer.get_config()).get_config() == layer.get_config()
    want, have = layer.state_dict(), got.state_dict()
    assert list(want) == list(have)
    # what the loader checks against the file before building: the count from the config alone
    assert cls.config_elements(layer.get_config()) == sum(np.size(v) for v in want.values())
    for k in want:
        assert want[k].dtype == have[k].dtype and np.array_equal(want[k], have[k])


def test_the_layer_list_is_the_registry():
    assert {"Linear", "ReLU", "Dropout", "BatchNorm1d", "Flatten", "Sequential"} <= set(LAYERS)
    with pytest.raises(TypeError):
        LAYERS["Mine"] = nn.Linear  # a read-only view: layers join by registering
    assert all(spec_of(cls).builtin for cls in LAYERS.values())
    assert cr.nn.LAYERS is LAYERS


def test_a_custom_layer_registered_with_an_activation_kind_is_known_everywhere(tmp_path):
    @nn.register_module(name="TestHardTanh", same_shape=True)
    class HardTanh(nn.Module):
        def forward(self, x):
            return cr.clip(x, -1.0, 1.0)

    assert activation_kind(HardTanh()) is None
    assert HardTanh().output_shape((4, 2)) == (4, 2)
    with pytest.raises(ValueError, match="activation must be one of"):
        nn.register_module(activation="swish")


@pytest.mark.parametrize("kind", ["relu", "leaky_relu", "tanh", "sigmoid", "identity"])
def test_the_fused_step_kernel_of_each_registered_activation_is_its_forward(kind):
    """The fused MLP step replaces the forward of a layer by the kernel of the kind its class
    registered: forward values and gradients must agree (float64, to rounding)."""
    classes = [cls for cls in LAYERS.values() if spec_of(cls).activation == kind]
    assert classes, kind
    rng = np.random.default_rng(0)
    for cls in classes:
        act = cls()
        z = rng.normal(size=(5, 4)) * 3
        x = cr.tensor(z, requires_grad=True)
        out = act(x)
        g = rng.normal(size=z.shape)
        out.backward(g)
        fused = z.copy()
        _activate(act, fused)
        np.testing.assert_allclose(fused, out.data, rtol=1e-12, atol=1e-15)
        grad = g.copy()
        _backward_act(act, fused, grad, np.empty_like(grad))
        np.testing.assert_allclose(grad, x.grad, rtol=1e-12, atol=1e-15)


def test_a_subclass_does_not_inherit_its_bases_activation_kind():
    class Shifted(nn.ReLU):
        def forward(self, x):
            return super().forward(x) + 1.0

    assert activation_kind(nn.ReLU()) == "relu"
    assert activation_kind(Shifted()) is None  # the fused step must not run relu for it
    assert activation_kind(Shifted(), inherited=True) == "relu"  # diagnostics may
    model = nn.Sequential(nn.Linear(3, 4, rng=0), Shifted(), nn.Linear(4, 2, rng=1))
    from chainrule.training.fastpath import FastMLP

    opt = cr.optim.SGD(model.parameters(), lr=0.1)
    opt.prepare()
    assert FastMLP.create(model, nn.MSELoss(), opt) is None
    assert set(ACTIVATION_KINDS) >= {spec_of(c).activation for c in LAYERS.values()} - {None}


# ----- cost estimate and the BLAS-thread policy ------------------------------
def test_layer_flops_follows_shapes_through_a_sequential():
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 5, rng=0), nn.ReLU(), nn.Linear(5, 2, rng=1))
    # batch 8 of 3x4 inputs: Flatten gives (8, 12); the products are 8·12·5 and 8·5·2
    assert layer_flops(model, (8, 3, 4)) == {"1": 8 * 12 * 5, "3": 8 * 5 * 2}
    assert model.output_shape((8, 3, 4)) == (8, 2)
    # Linear on (batch, time, features): rows = batch·time
    assert layer_flops(nn.Linear(6, 7, rng=0), (2, 5, 6)) == {"": 2 * 5 * 6 * 7}


def test_layer_flops_counts_layers_inside_a_custom_module_from_the_batch_size():
    class TwoHeads(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = nn.Linear(10, 20, rng=0)
            self.heads = [nn.Linear(20, 1, rng=1), nn.Linear(20, 3, rng=2)]

        def forward(self, x):
            h = cr.relu(self.body(x))
            return cr.concatenate([head(h) for head in self.heads], axis=1)

    assert layer_flops(TwoHeads(), (16, 10)) == {
        "body": 16 * 10 * 20,
        "heads.0": 16 * 20 * 1,
        "heads.1": 16 * 20 * 3,
    }


class _Patches(nn.Module):
    """A stand-in for a convolution: a layer chainrule did not know when the policy was written.
    Its cost is ``N·out_h·out_w·(C·k·k)·out_channels`` (im2col's GEMM), k=3, no padding."""

    def __init__(self, channels, out_channels):
        super().__init__()
        self.c, self.o = channels, out_channels

    def flops(self, input_shape):
        n, c, h, w = input_shape
        return n * (h - 2) * (w - 2) * c * 9 * self.o

    def output_shape(self, input_shape):
        n, _, h, w = input_shape
        return (n, self.o, h - 2, w - 2)


def _threads_limited(ctx) -> bool:
    return not isinstance(ctx, contextlib.nullcontext)


def test_the_thread_policy_counts_any_layer_that_reports_its_cost(monkeypatch):
    monkeypatch.delenv("CHAINRULE_BLAS_THREADS", raising=False)
    model = nn.Sequential(_Patches(3, 64), nn.Flatten(), nn.Linear(64 * 30 * 30, 10, rng=0))
    shape = (32, 3, 32, 32)
    costs = layer_flops(model, shape)
    assert costs["0"] == 32 * 30 * 30 * 27 * 64  # 49.8 M multiply-adds: not a small step
    assert costs["2"] == 32 * 57600 * 10
    assert largest_layer_flops(model, shape) == costs["0"] > SMALL_STEP_MACS
    assert not _threads_limited(blas_threads_for(model, shape))
    # the same layer on tiny images is a small step: one BLAS thread (if threadpoolctl sees BLAS)
    small = nn.Sequential(_Patches(1, 4), nn.Flatten(), nn.Linear(4 * 6 * 6, 2, rng=0))
    assert largest_layer_flops(small, (8, 1, 8, 8)) == 8 * 36 * 9 * 4 < SMALL_STEP_MACS
    try:
        from threadpoolctl import ThreadpoolController

        sees_blas = bool(ThreadpoolController().select(user_api="blas").lib_controllers)
    except Exception:
        sees_blas = False
    assert _threads_limited(blas_threads_for(small, (8, 1, 8, 8))) == sees_blas
    # a model no layer of which reports a cost is left alone
    assert largest_layer_flops(nn.Sequential(nn.ReLU()), (8, 3)) is None
    assert not _threads_limited(blas_threads_for(nn.Sequential(nn.ReLU()), (8, 3)))


# ----- losses declare their task ------------------------------
def test_losses_declare_what_the_outputs_are():
    assert _task_of(nn.CrossEntropyLoss()) == "multiclass"
    assert _task_of(nn.NLLLoss()) == "multiclass_logprob"
    assert _task_of(nn.BCEWithLogitsLoss()) == "binary_logits"
    assert _task_of(nn.BCELoss()) == "binary_proba"
    assert _task_of(nn.MSELoss()) == "regression"
    assert _task_of(lambda out, y: ((out - y) ** 2).mean()) == "regression"

    class Smoothed(nn.CrossEntropyLoss):
        pass

    assert _task_of(Smoothed()) == "multiclass"


# ----- GradientFlow follows any layer that reports its fans ------------------------------
def test_gradient_flow_follows_a_custom_weighted_layer():
    class Dense(nn.Module):
        """A Linear written by a user: it reports its fans, so the diagnostics follow it."""

        def __init__(self, n_in, n_out, seed):
            super().__init__()
            w = np.random.default_rng(seed).normal(0, (2 / n_in) ** 0.5, (n_in, n_out))
            self.weight = nn.Parameter(w.astype(np.float32))

        def forward(self, x):
            return x @ self.weight

        def fans(self):
            return self.weight.shape

    model = nn.Sequential(Dense(4, 8, 0), nn.Tanh(), Dense(8, 1, 1))
    flow = cr.GradientFlow()
    X = np.random.default_rng(0).normal(size=(64, 4)).astype(np.float32)
    y = X[:, :1] - X[:, 1:2]
    cr.fit(model, X, y, loss="mse", epochs=3, batch_size=16, callbacks=[flow], seed=0, verbose=0)
    assert flow.layers == ["0", "2"]
    assert flow.labels == {"0": "0: Dense(4→8)", "2": "2: Dense(8→1)"}
    assert flow.activations == {"0": "Tanh"}
    assert all(g > 0 for g in flow.records["0"]["grad_rms"])
    assert flow.cell("0", "dead_fraction")[0] is None  # tanh units cannot die
    assert flow.cell("0", "saturated_fraction")[0] is not None


# ----- estimator files load without importing the estimators first ------------------------------
@pytest.mark.filterwarnings("ignore:Stochastic Optimizer")
def test_an_estimator_file_loads_in_a_fresh_process_that_never_imported_the_estimators(tmp_path):
    pytest.importorskip("sklearn")
    from chainrule.sklearn import MLPClassifier

    X = np.random.default_rng(0).normal(size=(60, 3))
    y = (X[:, 0] + X[:, 1] > 0).astype(int)
    est = MLPClassifier(hidden_layer_sizes=(5,), max_iter=30, random_state=0).fit(X, y)
    path = tmp_path / "est.chainrule"
    cr.save(est, path)
    np.save(tmp_path / "X.npy", X)
    script = textwrap.dedent(
        f"""
        import sys
        import numpy as np
        import chainrule as cr
        assert "chainrule.sklearn" not in sys.modules, "imported too early"
        assert "sklearn" not in sys.modules, "scikit-learn imported by import chainrule"
        est = cr.load({str(path)!r})
        print(type(est).__module__, type(est).__name__)
        print(" ".join(map(str, est.predict(np.load({str(tmp_path / "X.npy")!r})))))
        """
    )
    run = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=False, env=_env()
    )
    assert run.returncode == 0, run.stderr
    head, preds = run.stdout.splitlines()
    assert head == "chainrule.sklearn MLPClassifier"
    assert preds == " ".join(map(str, est.predict(X)))


@pytest.mark.filterwarnings("ignore:Stochastic Optimizer")
def test_loading_an_estimator_file_without_scikit_learn_says_what_to_install(tmp_path):
    pytest.importorskip("sklearn")
    from chainrule.sklearn import MLPRegressor

    X = np.random.default_rng(0).normal(size=(30, 2))
    est = MLPRegressor(hidden_layer_sizes=(3,), max_iter=5, random_state=0).fit(X, X[:, 0])
    path = tmp_path / "reg.chainrule"
    cr.save(est, path)
    script = textwrap.dedent(
        f"""
        import sys
        sys.modules["sklearn"] = None  # as if scikit-learn were not installed
        import chainrule as cr
        try:
            cr.load({str(path)!r})
        except ImportError as exc:
            print(exc)
        """
    )
    run = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=False, env=_env()
    )
    assert run.returncode == 0, run.stderr
    assert "holds a chainrule.sklearn estimator" in run.stdout
    assert 'pip install "chainrule[datasets]"' in run.stdout


def _env() -> dict[str, str]:
    import os

    env = dict(os.environ)
    src = str(__import__("pathlib").Path(cr.__file__).resolve().parents[1])
    env["PYTHONPATH"] = src + os.pathsep + env.get("PYTHONPATH", "")
    return env
