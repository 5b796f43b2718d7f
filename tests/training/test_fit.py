"""The fit loop: batching, the weighted epoch loss, validation, stopping, the divergence guard."""

from __future__ import annotations

import math
import os

import numpy as np
import pytest

import chainrule as cr
from chainrule import nn, optim


def blobs(n=300, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    centres = np.array([[0.0, 3.0], [3.0, -2.0], [-3.0, -2.0]])
    X = (centres[y] + rng.normal(size=(n, 2))).astype(np.float32)
    return X, y


def test_fit_learns_and_reports_history():
    X, y = blobs()
    model = nn.mlp([2, 16, 3], "relu", rng=0)
    h = cr.fit(
        model,
        X,
        y,
        loss=nn.CrossEntropyLoss(),
        optimizer=optim.Adam(model.parameters(), 0.01),
        epochs=15,
        seed=0,
        verbose=0,
        metrics=["accuracy"],
        validation_split=0.2,
    )
    assert h.epoch == list(range(1, 16))
    assert set(h.keys()) >= {"loss", "accuracy", "val_loss", "val_accuracy", "lr", "time"}
    assert h["loss"][-1] < h["loss"][0] / 3
    assert h["val_accuracy"][-1] > 0.95
    assert h.stop_reason == "epochs" and "Trained 15 epochs" in h.summary
    assert all(v == 0.01 for v in h["lr"])


@pytest.mark.parametrize("batch_size", [None, 1, 4, 7])
def test_epoch_loss_is_the_exact_sample_weighted_mean(batch_size):
    rng = np.random.default_rng(1)
    X = rng.normal(size=(10, 3)).astype(np.float32)
    y = rng.normal(size=(10, 1)).astype(np.float32)
    w = rng.uniform(0.1, 3.0, size=10)
    model = nn.mlp([3, 4, 1], "tanh", rng=0)
    # a learning rate far below float32 resolution: the model does not move, so the epoch loss
    # must equal the loss of the whole set, however it is cut into batches
    opt = optim.SGD(model.parameters(), lr=1e-30)
    h = cr.fit(
        model,
        X,
        y,
        loss="mse",
        optimizer=opt,
        epochs=1,
        batch_size=batch_size,
        sample_weight=w,
        shuffle=True,
        seed=3,
        verbose=0,
    )
    out = cr.predict(model, X).astype(np.float64)
    per_sample = ((out - y) ** 2).mean(axis=1)
    assert h["loss"][0] == pytest.approx(float((w * per_sample).sum() / w.sum()), rel=1e-6)
    h2 = cr.fit(
        model,
        X,
        y,
        loss="mse",
        optimizer=optim.SGD(model.parameters(), lr=1e-30),
        epochs=1,
        batch_size=batch_size,
        seed=3,
        verbose=0,
    )
    assert h2["loss"][0] == pytest.approx(float(per_sample.mean()), rel=1e-6)


def test_batch_counts_full_batch_minibatch_and_stochastic():
    X, y = blobs(10)
    seen = []
    cb = cr.training.LambdaCallback(on_batch_end=lambda b, logs: seen.append(logs["size"]))
    for bs, expected in [(None, [10]), (4, [4, 4, 2]), (1, [1] * 10)]:
        seen.clear()
        cr.fit(
            nn.mlp([2, 3, 3], rng=0),
            X,
            y,
            loss="cross_entropy",
            epochs=1,
            batch_size=bs,
            callbacks=[cb],
            verbose=0,
            seed=0,
        )
        assert seen == expected


def test_same_seed_bitwise_identical_and_global_rng_untouched():
    X, y = blobs()
    np.random.seed(0)
    before = np.random.get_state()[1].copy()
    runs = []
    for _ in range(2):
        model = nn.mlp([2, 8, 3], "relu", dropout=0.2, rng=5)
        cr.fit(
            model, X, y, loss="cross_entropy", epochs=3, seed=11, verbose=0, validation_split=0.1
        )
        runs.append(b"".join(p.data.tobytes() for p in model.parameters()))
    assert runs[0] == runs[1]
    np.testing.assert_array_equal(np.random.get_state()[1], before)


def test_validation_split_is_stratified():
    X, y = blobs(300)
    seen = {}

    class Grab(cr.training.Callback):
        def on_train_begin(self, logs=None):
            seen["n"] = self.trainer.steps_per_epoch

    cr.fit(
        nn.mlp([2, 4, 3], rng=0),
        X,
        y,
        loss="cross_entropy",
        epochs=1,
        batch_size=1,
        validation_split=0.2,
        seed=0,
        verbose=0,
        callbacks=[Grab()],
    )
    assert seen["n"] == 240


def test_class_weight_balanced_changes_the_loss():
    X, y = blobs(90)
    y = np.where(np.arange(90) < 80, 0, 1)
    a = cr.fit(
        nn.mlp([2, 4, 2], rng=0),
        X,
        y,
        loss="cross_entropy",
        epochs=1,
        verbose=0,
        seed=0,
        optimizer=optim.SGD(nn.mlp([2, 4, 2], rng=0).parameters(), lr=1e-30),
    )
    model = nn.mlp([2, 4, 2], rng=0)
    b = cr.fit(
        model,
        X,
        y,
        loss="cross_entropy",
        epochs=1,
        verbose=0,
        seed=0,
        class_weight="balanced",
        optimizer=optim.SGD(model.parameters(), lr=1e-30),
    )
    assert a["loss"][0] != pytest.approx(b["loss"][0])
    with pytest.raises(ValueError, match="class_weight names classes not in y"):
        cr.fit(
            nn.mlp([2, 4, 2], rng=0), X, y, loss="cross_entropy", class_weight={7: 1.0}, verbose=0
        )


def test_convergence_by_tol_like_scikit_learn():
    X, y = blobs()
    h = cr.fit(
        nn.mlp([2, 8, 3], rng=0),
        X,
        y,
        loss="cross_entropy",
        epochs=500,
        tol=1e-2,
        n_iter_no_change=3,
        lr=0.01,
        seed=0,
        verbose=0,
    )
    assert h.stop_reason == "converged" and len(h) < 500
    assert "Converged" in h.summary


def test_divergence_guard_stops_and_keeps_last_finite_weights():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(64, 3)).astype(np.float32) * 10
    y = rng.normal(size=(64, 1)).astype(np.float32) * 100
    model = nn.mlp([3, 8, 1], "relu", rng=0)
    snapshots = []
    record = cr.training.LambdaCallback(
        on_batch_begin=lambda b, logs: snapshots.append(model.state_dict())
    )
    h = cr.fit(
        model,
        X,
        y,
        loss="mse",
        optimizer=optim.SGD(model.parameters(), lr=10.0),
        epochs=50,
        batch_size=8,
        verbose=0,
        callbacks=[record],
        seed=0,
    )
    assert h.stop_reason == "diverged"
    assert "epoch" in h.message and "batch" in h.message
    assert "last finite loss" in h.message and "learning rate" in h.message
    params = model.state_dict()
    assert all(np.all(np.isfinite(v)) for v in params.values())
    # the weights are those from before the failing step
    last = snapshots[-1]
    assert all(np.array_equal(params[k], last[k]) for k in params)


def test_divergence_guard_raise_policy_and_nan_input_message():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(16, 3)).astype(np.float32)
    y = rng.normal(size=(16, 1)).astype(np.float32)
    model = nn.mlp([3, 4, 1], rng=0)
    with pytest.raises(cr.DivergenceError, match=r"diverged at epoch \d+, batch \d+"):
        cr.fit(
            model,
            X,
            y,
            loss="mse",
            optimizer=optim.SGD(model.parameters(), lr=1e12),
            epochs=20,
            verbose=0,
            on_nonfinite="raise",
        )
    assert all(np.all(np.isfinite(p.data)) for p in model.parameters())
    X[3, 1] = np.nan
    with pytest.raises(
        ValueError, match=r"X contains NaN or infinite values \(first at row 3, column 1\)"
    ):
        cr.fit(model, X, y, loss="mse", verbose=0)


def test_ctrl_c_stops_cleanly_and_keeps_history():
    X, y = blobs()
    calls = {"n": 0}

    def interrupt(batch, logs):
        calls["n"] += 1
        if calls["n"] == 15:
            raise KeyboardInterrupt

    model = nn.mlp([2, 8, 3], rng=0)
    h = cr.fit(
        model,
        X,
        y,
        loss="cross_entropy",
        epochs=5,
        batch_size=32,
        verbose=0,
        callbacks=[cr.training.LambdaCallback(on_batch_end=interrupt)],
    )
    assert h.stop_reason == "interrupted" and len(h) == 1  # 10 batches per epoch
    assert "Interrupted" in h.summary
    assert all(np.all(np.isfinite(p.data)) for p in model.parameters())


def test_predict_builds_no_graph_and_restores_mode():
    X, _ = blobs(20)
    model = nn.mlp([2, 4, 3], dropout=0.5, rng=0)
    model.train()
    out = cr.predict(model, X, batch_size=7)
    assert isinstance(out, np.ndarray) and out.shape == (20, 3) and out.dtype == np.float32
    np.testing.assert_array_equal(out, cr.predict(model, X))  # dropout off: deterministic
    assert model.training
    res = cr.evaluate(model, X, np.zeros(20, np.int64), loss="cross_entropy", metrics=["accuracy"])
    assert set(res) == {"loss", "accuracy"}


def test_summary_gives_advice_for_unscaled_inputs():
    X, y = blobs()
    X = X * 1000 + 5000
    h = cr.fit(nn.mlp([2, 8, 3], rng=0), X, y, loss="cross_entropy", epochs=3, lr=1e-4, verbose=0)
    assert "unscaled" in h.summary


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"epochs": -1}, "epochs must be >= 0"),
        ({"batch_size": 0}, "batch_size must be >= 1"),
        ({"validation_split": 1.0}, "validation_split must be < 1"),
        ({"loss": "hinge"}, "unknown loss 'hinge'"),
        ({"optimizer": "lbfgs"}, "unknown optimizer 'lbfgs'"),
        ({"metrics": ["auc_roc"]}, "unknown metric"),
        ({"on_nonfinite": "warn"}, "on_nonfinite must be"),
        ({"sample_weight": np.ones(3)}, r"sample_weight must have shape \(30,\)"),
    ],
)
def test_fit_argument_errors(kwargs, match):
    X, y = blobs(30)
    args = {"loss": "cross_entropy", "verbose": 0, **kwargs}
    with pytest.raises((ValueError, TypeError), match=match):
        cr.fit(nn.mlp([2, 3, 3], rng=0), X, y, **args)


def test_fit_data_errors():
    X, y = blobs(30)
    model = nn.mlp([2, 3, 3], rng=0)
    with pytest.raises(ValueError, match="different numbers of samples: 30 and 29"):
        cr.fit(model, X, y[:-1], loss="cross_entropy", verbose=0)
    with pytest.raises(ValueError, match="0 samples"):
        cr.fit(model, X[:0], y[:0], loss="cross_entropy", verbose=0)
    with pytest.raises(TypeError, match="numeric"):
        cr.fit(model, np.array([["a", "b"]] * 30), y, loss="cross_entropy", verbose=0)
    with pytest.raises(ValueError, match=r"Linear\(2, 3\) expected input with last dimension 2"):
        cr.fit(model, np.ones((30, 5)), y, loss="cross_entropy", verbose=0)


def test_scheduler_hookup_records_lr():
    X, y = blobs(64)
    model = nn.mlp([2, 4, 3], rng=0)
    opt = optim.SGD(model.parameters(), lr=0.1)
    h = cr.fit(
        model,
        X,
        y,
        loss="cross_entropy",
        optimizer=opt,
        epochs=4,
        verbose=0,
        scheduler=optim.lr_scheduler.StepLR(opt, 2, gamma=0.5),
    )
    assert h["lr"] == pytest.approx([0.1, 0.1, 0.05, 0.05])


def test_history_exports(tmp_path):
    X, y = blobs(64)
    h = cr.fit(
        nn.mlp([2, 4, 3], rng=0),
        X,
        y,
        loss="cross_entropy",
        epochs=3,
        verbose=0,
        validation_split=0.25,
        metrics=["accuracy"],
    )
    text = h.to_csv(tmp_path / "h.csv")
    assert text.splitlines()[0].startswith("epoch,loss,accuracy,val_loss")
    assert (tmp_path / "h.csv").read_text() == text
    d = h.to_dict()
    assert d["epoch"] == [1, 2, 3] and d["stop_reason"] == "epochs"
    assert cr.History.from_dict(d).history == h.history
    pytest.importorskip("matplotlib")
    fig = h.plot()
    assert type(fig).__name__ == "Figure" and len(fig.axes) == 2
    fig.savefig(tmp_path / "curves.png")
    assert (tmp_path / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_nan_history_padding():
    h = cr.History()
    h.append(1, {"loss": 1.0})
    h.append(2, {"loss": 0.5, "val_loss": 0.7})
    assert math.isnan(h["val_loss"][0]) and h["val_loss"][1] == 0.7


def test_real_ctrl_c_in_a_subprocess_stops_cleanly():
    import signal
    import subprocess
    import sys

    code = (
        "import numpy as np, chainrule as cr, sys\n"
        "X = np.random.default_rng(0).normal(size=(4000, 20)).astype(np.float32)\n"
        "y = (X[:, 0] > 0).astype(np.int64)\n"
        "m = cr.nn.mlp([20, 64, 2], rng=0)\n"
        # announce a state, not a time: when epoch 2 begins, epoch 1 is in the history (its
        # on_epoch_end runs before the history records it, so announcing there was a race)
        "cb = cr.training.LambdaCallback(\n"
        "    on_epoch_begin=lambda e, l: e == 2 and print('EPOCH 2 BEGINS', flush=True))\n"
        "h = cr.fit(m, X, y, loss='cross_entropy', epochs=100000, batch_size=8, verbose=0,\n"
        "           callbacks=[cb])\n"
        "ok = all(np.all(np.isfinite(p.data)) for p in m.parameters())\n"
        "print('STOP', h.stop_reason, len(h) >= 1, ok, flush=True)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    try:
        assert proc.stdout.readline().startswith("EPOCH 2 BEGINS")
        proc.send_signal(signal.SIGINT)
        out = proc.communicate(timeout=60)[0]
    finally:
        if proc.poll() is None:  # a failed run must not leave a training process behind
            proc.kill()
            proc.wait()
    assert proc.returncode == 0
    assert "STOP interrupted True True" in out


def test_fault_injection_names_where_values_became_non_finite():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(32, 3)).astype(np.float32)
    y = rng.integers(0, 2, 32)
    # a NaN planted in a weight
    model = nn.mlp([3, 4, 2], rng=0)
    model[2].weight.data[1, 0] = np.nan
    h = cr.fit(model, X, y, loss="cross_entropy", epochs=1, verbose=0)
    assert h.stop_reason == "diverged" and "parameter '2.weight' holds NaN" in h.message
    # an activation that overflows in the middle of the network
    model = nn.mlp([3, 4, 2], "relu", rng=0)
    model[0].weight.data[...] = 1e30
    h = cr.fit(model, X * 1e10, y, loss="cross_entropy", epochs=1, verbose=0)
    assert h.stop_reason == "diverged" and "output of layer" in h.message
    # a NaN injected into a gradient only: sqrt(0) is finite forward, its slope is not
    model = nn.mlp([3, 4, 2], rng=0)
    state = {"batch": -1}

    def poison(mod, inputs, out):
        if state["batch"] == 1:
            return out + 0 * cr.sqrt(out - out)
        return None

    model[0].register_forward_hook(poison)
    count = cr.training.LambdaCallback(on_batch_begin=lambda b, logs: state.update(batch=b))
    h = cr.fit(
        model, X, y, loss="cross_entropy", epochs=1, batch_size=8, verbose=0, callbacks=[count]
    )
    assert h.stop_reason == "diverged" and "batch 1" in h.message
    assert "gradient of '0.weight' is not finite" in h.message
    assert all(np.all(np.isfinite(p.data)) for p in model.parameters())


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_flat_buffer_finiteness_check_matches_elementwise_test(dtype):
    """The guard's one-dot-product test agrees with np.isfinite, overflow of a·a included."""
    from chainrule.training.steps import all_finite as _all_finite

    rng = np.random.default_rng(0)
    for n in (1, 7, 1000, 100_003):
        a = rng.normal(size=n).astype(dtype)
        assert _all_finite(a)
        a[-1] = np.finfo(dtype).max  # a·a overflows, yet every element is finite
        with np.errstate(all="raise"):
            assert _all_finite(a)
        for bad in (np.nan, np.inf, -np.inf):
            for pos in sorted({0, n // 2, n - 1}):
                b = a.copy()
                b[pos] = bad
                assert not _all_finite(b), (n, bad, pos)
    assert not _all_finite(np.array([[1.0, np.nan]], dtype))  # non-flat: elementwise


def _blas_threads_during_fit(widths, batch_size, monkeypatch, env=None):
    threadpoolctl = pytest.importorskip("threadpoolctl")
    if env is not None:
        monkeypatch.setenv("CHAINRULE_BLAS_THREADS", env)
    seen = []

    def record(*_):
        info = threadpoolctl.threadpool_info()
        seen.append(min(i["num_threads"] for i in info if i["user_api"] == "blas"))

    rng = np.random.default_rng(0)
    X = rng.normal(size=(64, widths[0])).astype(np.float32)
    y = rng.integers(0, widths[-1], 64)
    with threadpoolctl.threadpool_limits(2, user_api="blas"):
        cr.fit(
            nn.mlp(widths, rng=0),
            X,
            y,
            loss="cross_entropy",
            epochs=1,
            batch_size=batch_size,
            verbose=0,
            callbacks=[cr.training.callbacks.LambdaCallback(on_batch_end=record)],
        )
        after = threadpoolctl.threadpool_info()  # restored after fit
        assert all(i["num_threads"] == 2 for i in after if i["user_api"] == "blas")
    return seen


def test_small_steps_train_with_one_blas_thread(monkeypatch):
    from chainrule.training._threads import SMALL_STEP_MACS

    assert SMALL_STEP_MACS > 32 * 30 * 64
    assert set(_blas_threads_during_fit([30, 64, 2], 32, monkeypatch)) == {1}
    # a large step keeps the threads it had; so does a small one with the policy turned off
    assert SMALL_STEP_MACS <= 64 * 784 * 512
    if os.cpu_count() and os.cpu_count() > 1:
        assert set(_blas_threads_during_fit([784, 512, 2], 64, monkeypatch)) == {2}
        assert set(_blas_threads_during_fit([30, 64, 2], 32, monkeypatch, env="keep")) == {2}


def test_validation_split_with_many_small_classes_is_never_empty():
    # 30 classes of 3 rows: stratified rounding gives each class 0 validation rows
    rng = np.random.default_rng(0)
    X = rng.normal(size=(90, 2)).astype(np.float32)
    y = np.arange(90) % 30
    model = cr.nn.Sequential(cr.nn.Linear(2, 30, rng=0))
    h = cr.fit(
        model,
        X,
        y,
        loss=nn.CrossEntropyLoss(),
        optimizer=optim.SGD(model.parameters(), 0.1),
        epochs=1,
        validation_split=0.1,
        seed=0,
        verbose=0,
    )
    assert np.isfinite(h["val_loss"][0])
