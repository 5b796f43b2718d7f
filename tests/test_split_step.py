"""The split step (issue 18's speed): parts of each batch of a convolutional network run at once
in worker processes, one replica each, and the gradients are summed — the eager step's numbers
up to the order of sums, chosen by the trainer only where it pays, and loud when a worker
fails."""

from __future__ import annotations

import glob
import os
import signal
import tempfile
import time

import numpy as np
import pytest

import chainrule as cr
from chainrule import nn
from chainrule._random import use_generator
from chainrule.nn.cost import layer_flops
from chainrule.training import EagerPlan, Trainer
from chainrule.training.parallel import DistributedTrainer
from chainrule.training.split_step import SPLIT_STEP_MACS, SplitStepPlan, WorkerError


@pytest.fixture(autouse=True)
def two_processes(monkeypatch):
    monkeypatch.setenv("CHAINRULE_STEP_PROCESSES", "2")  # the same on every machine


@pytest.fixture
def split_small(monkeypatch):
    """The trainer's own choice, for steps of any size and in float64 too (the tests' networks
    are small and mostly float64)."""
    monkeypatch.setattr(SplitStepPlan, "min_macs", 0)
    monkeypatch.setattr(SplitStepPlan, "dtypes", None)


def lenet(rng=0):
    return nn.Sequential(
        nn.Conv2d(1, 6, 5, padding=2, rng=rng), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(6, 16, 5, rng=rng + 1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
        nn.Linear(400, 120, rng=rng + 2), nn.ReLU(), nn.Linear(120, 84, rng=rng + 3), nn.ReLU(),
        nn.Linear(84, 10, rng=rng + 4),
    )  # fmt: skip


def small_cnn(dtype=np.float64):
    # no bias before batch norm: its gradient is rounding noise, which Adam scales to a step
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1, bias=False, rng=1), nn.BatchNorm2d(4), nn.ReLU(),
        nn.Dropout2d(0.2), nn.MaxPool2d(2), nn.Conv2d(4, 6, 3, rng=2), nn.ReLU(), nn.Flatten(),
        nn.Dropout(0.3), nn.Linear(6 * 2 * 2, 3, rng=3),
    ).to(dtype)  # fmt: skip


def images(n=96, size=8, seed=0, dtype=np.float64):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 1, size, size)).astype(dtype)
    y = (X[:, 0, :4].mean(axis=(1, 2)) > 0).astype(np.int64) + (X[:, 0, 4:, :4].mean((1, 2)) > 0)
    return X, y


def test_pool_output_shapes_follow_the_forward_pass():
    """layer_flops follows shapes through pooling now (it stopped at the first pooling layer,
    so LeNet's second convolution counted as its weights only)."""
    rng = np.random.default_rng(0)
    checked = 0
    for cls, d in ((nn.MaxPool2d, 2), (nn.MaxPool1d, 1), (nn.AvgPool2d, 2), (nn.AvgPool1d, 1)):
        for _ in range(60):
            k = int(rng.integers(1, 5))
            kw = {
                "kernel_size": k,
                "stride": [None, 1, 2, 3][rng.integers(4)],
                "padding": int(rng.integers(0, k // 2 + 1)),
                "ceil_mode": bool(rng.integers(2)),
            }
            if cls is nn.MaxPool2d or cls is nn.MaxPool1d:
                kw["dilation"] = int(rng.integers(1, 3))
            layer = cls(**kw)
            shape = (2, 3, *(int(rng.integers(1, 12)) for _ in range(d)))
            try:
                want = layer(np.zeros(shape, np.float32)).shape
            except ValueError:
                want = None
            assert layer.output_shape(shape) == want, (cls.__name__, kw, shape)
            checked += 1
    assert checked == 240
    assert nn.AdaptiveAvgPool2d((2, None)).output_shape((5, 3, 7, 9)) == (5, 3, 2, 9)
    assert nn.MaxPool2d(2).output_shape((None, 6, None, 28)) == (None, 6, None, 14)
    costs = layer_flops(lenet(), (64, 1, 28, 28))
    assert costs["3"] == 64 * 16 * 10 * 10 * 6 * 5 * 5  # the second convolution, in full
    assert sum(costs.values()) >= SPLIT_STEP_MACS


def test_the_trainer_splits_lenet_and_nothing_it_was_not_measured_on(monkeypatch):
    loss = nn.CrossEntropyLoss()

    def plans(model, batch=64):
        tr = Trainer(model, loss, cr.optim.Adam(model.parameters()), verbose=0)
        found = tr._candidate_plans()
        return [type(p).__name__ for p in found], found[0]

    names, plan = plans(lenet())
    assert names == ["SplitStepPlan", "EagerPlan"]
    assert plan.splits((64, 1, 28, 28))  # 26.7 M multiply-adds
    assert not plan.splits((8, 1, 28, 28))  # 3.3 M: this process alone
    assert not plan.splits((3, 1, 28, 28))
    assert plans(nn.mlp([4, 8, 3], rng=0))[0] == ["FusedMLPPlan", "EagerPlan"]
    bn_mlp = nn.Sequential(nn.Linear(4, 8, rng=0), nn.BatchNorm1d(8), nn.Linear(8, 3, rng=1))
    assert plans(bn_mlp)[0] == ["EagerPlan"]  # no convolution: not measured to pay

    class Mine(nn.Module):  # a user's layer: its copy might not compute what it computes
        def forward(self, x):
            return x

    assert plans(nn.Sequential(*lenet(), Mine()))[0] == ["EagerPlan"]
    assert plans(lenet().to(np.float64))[0] == ["EagerPlan"]  # measured slower split
    mixed = lenet()
    mixed[0].weight.data = mixed[0].weight.data.astype(np.float64)
    assert plans(mixed)[0] == ["EagerPlan"]
    monkeypatch.setenv("CHAINRULE_STEP_PROCESSES", "1")
    assert plans(lenet())[0] == ["EagerPlan"]
    monkeypatch.setenv("CHAINRULE_STEP_PROCESSES", "zero")
    with pytest.raises(ValueError, match="CHAINRULE_STEP_PROCESSES must be 'auto' or a posit"):
        plans(lenet())
    monkeypatch.setenv("CHAINRULE_STEP_PROCESSES", "2")
    # data-parallel replicas are processes already: never a split inside one
    dt = DistributedTrainer(lenet(), loss, "adam", distributed=False, verbose=0)
    assert [type(p.inner).__name__ for p in dt._candidate_plans()] == ["EagerPlan"]
    # a forward hook: the copies would not call it, so the eager plan runs
    model = lenet()
    plan = SplitStepPlan.create(model, loss, cr.optim.Adam(model.parameters()))
    assert plan is not None and plan.usable()
    model[1].register_forward_hook(lambda m, i, o: None)
    assert not plan.usable()


def _fit(model, X, y, **kw):
    opt = cr.optim.Adam(model.parameters(), lr=0.01)
    tr = Trainer(model, "cross_entropy", opt, seed=3, verbose=0, **kw)
    tr.fit(X, y, epochs=3, batch_size=32, validation_split=0.0)
    return tr


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_a_split_fit_is_the_eager_fit(dtype, split_small, monkeypatch):
    """Dropout, Dropout2d and BatchNorm2d see the whole batch; frozen parameters stay frozen;
    a sub-module in eval mode stays in it: three epochs in two processes give the weights,
    running statistics and losses of three epochs in one."""
    X, y = images(dtype=dtype)
    runs = {}
    for mode in ("1", "2"):
        monkeypatch.setenv("CHAINRULE_STEP_PROCESSES", mode)
        model = small_cnn(dtype)
        model[5].weight.requires_grad_(False)
        tr = _fit(model, X, y)
        assert type(tr._plans[0]).__name__ == ("SplitStepPlan" if mode == "2" else "EagerPlan")
        runs[mode] = (model.state_dict(), tr.history.history["loss"])
    tol = 1e-10 if dtype == np.float64 else 2e-4
    (one, loss1), (two, loss2) = runs["1"], runs["2"]
    np.testing.assert_allclose(loss2, loss1, rtol=tol)
    for name in one:
        np.testing.assert_allclose(two[name], one[name], rtol=tol, atol=tol, err_msg=name)
        assert two[name].dtype == one[name].dtype
    assert np.array_equal(two["5.weight"], small_cnn(dtype)[5].weight.data)  # frozen


def test_split_runs_repeat_bitwise_and_resume_bitwise(split_small, tmp_path):
    X, y = images(n=64)
    a = small_cnn()
    _fit(a, X, y)
    b = small_cnn()
    _fit(b, X, y)
    for (name, va), vb in zip(a.state_dict().items(), b.state_dict().values()):
        assert va.tobytes() == vb.tobytes(), name
    # a checkpoint after epoch 2, resumed, ends where the uninterrupted run ends
    ckpt = str(tmp_path / "ckpt.npz")
    c = small_cnn()
    opt = cr.optim.Adam(c.parameters(), lr=0.01)
    tr = Trainer(c, "cross_entropy", opt, seed=3, verbose=0,
                 callbacks=[cr.training.ModelCheckpoint(ckpt, save_best_only=False)])  # fmt: skip
    tr.fit(X, y, epochs=2, batch_size=32)
    d = small_cnn()
    opt = cr.optim.Adam(d.parameters(), lr=0.01)
    tr = Trainer(d, "cross_entropy", opt, seed=3, verbose=0)
    tr.fit(X, y, epochs=3, batch_size=32, resume_from=ckpt)
    for (name, va), vd in zip(a.state_dict().items(), d.state_dict().values()):
        assert va.tobytes() == vd.tobytes(), name


def _plan(model, opt=None):
    opt = opt or cr.optim.SGD(model.parameters(), lr=0.1)
    plan = SplitStepPlan(model, nn.CrossEntropyLoss(), opt, processes=2)
    plan.min_macs = 0
    return plan, opt


def test_a_worker_that_dies_is_reported_and_replaced():
    X, y = images(n=32)
    model = small_cnn()
    plan, _ = _plan(model)
    plan.run(X, y, None)
    pid = plan._workers[0].proc.pid
    os.kill(pid, signal.SIGKILL)
    time.sleep(0.2)
    with pytest.raises(WorkerError, match=r"ended unexpectedly \(exit code -9\).*STEP_PROCESSES=1"):
        plan.run(X, y, None)
    loss, out = plan.run(X, y, None)  # started again
    assert np.isfinite(loss) and out.shape == (32, 3)
    assert plan._workers[0].proc.pid != pid
    plan.close()


def test_a_worker_error_is_raised_here_with_its_traceback():
    """Only the worker's rows hold a bad class index: its ValueError is raised in this
    process, with a note naming the worker; the next step runs."""
    X, y = images(n=32)
    model = small_cnn()
    plan, _ = _plan(model)
    bad = y.copy()
    bad[-1] = 7
    with pytest.raises(ValueError, match="target") as info:
        plan.run(X, bad, None)
    notes = "\n".join(getattr(info.value, "__notes__", []))
    assert "raised in a worker process of the split training step" in notes
    loss, _ = plan.run(X, y, None)
    assert np.isfinite(loss)
    plan.close()


def test_workers_ignore_ctrl_c_and_end_with_the_fit(split_small):
    X, y = images(n=64)
    model = small_cnn()
    plan, _ = _plan(model)
    plan.run(X, y, None)
    proc = plan._workers[0].proc
    os.kill(proc.pid, signal.SIGINT)  # Ctrl-C reaches the whole process group
    time.sleep(0.2)
    assert proc.poll() is None
    plan.run(X, y, None)
    plan.close()
    assert proc.wait(5) == 0
    # a fit ends its workers, and leaves no shared-memory file behind
    before = set(glob.glob(os.path.join("/dev/shm", "chainrule-step-*")))
    before |= set(glob.glob(os.path.join(tempfile.gettempdir(), "chainrule-step-*")))
    tr = _fit(small_cnn(), X, y)
    split = tr._plans[0]
    assert isinstance(split, SplitStepPlan) and split._workers == []
    after = set(glob.glob(os.path.join("/dev/shm", "chainrule-step-*")))
    after |= set(glob.glob(os.path.join(tempfile.gettempdir(), "chainrule-step-*")))
    assert after == before


def test_a_changed_model_gets_new_workers():
    """model.to(float64) between epochs: the workers copy the model again, and the split
    step's gradients are the eager step's."""
    X, y = images(n=64, dtype=np.float32)
    model = small_cnn(np.float32)
    plan, opt = _plan(model)
    plan.run(X, y, None)
    first = plan._workers[0].proc.pid
    model.to(np.float64)
    assert plan.usable()
    X64 = X.astype(np.float64)
    with use_generator(np.random.default_rng(5)):
        loss, out = plan.run(X64, y, None)
    assert out.dtype == np.float64 and plan._workers[0].proc.pid != first
    grads = [p.grad.copy() for p in model.parameters()]
    with use_generator(np.random.default_rng(5)):
        loss_e, out_e = EagerPlan(model, nn.CrossEntropyLoss(), opt).run(X64, y, None)
    assert loss == pytest.approx(loss_e, rel=1e-12)
    np.testing.assert_allclose(out, out_e, rtol=1e-12, atol=1e-12)
    for g, p in zip(grads, model.parameters()):
        assert g.dtype == np.float64
        np.testing.assert_allclose(g, p.grad, rtol=1e-10, atol=1e-12)
    plan.close()


def _step_both(model_fn, X, y, w=None, loss=None, seed=5):
    """One step of the split plan and of the eager plan on identical models: (loss, output,
    gradients) of each; an exception is returned instead of raised."""
    results = []
    for split in (True, False):
        model = model_fn()
        opt = cr.optim.SGD(model.parameters(), lr=0.1)
        loss_fn = loss or nn.CrossEntropyLoss()
        if split:
            plan = SplitStepPlan(model, loss_fn, opt, processes=2)
            plan.min_macs = 0
        else:
            plan = EagerPlan(model, loss_fn, opt)
        try:
            with use_generator(np.random.default_rng(seed)):
                value, out = plan.run(X, y, w)
            results.append((value, np.array(out), [np.array(p.grad) for p in model.parameters()]))
        except Exception as exc:
            results.append(exc)
        finally:
            plan.close()
    return results


def _same(split, eager):
    if isinstance(eager, Exception):
        assert type(split) is type(eager) and str(split) == str(eager)
        return
    assert not isinstance(split, Exception), split
    np.testing.assert_allclose(split[0], eager[0], rtol=1e-12)
    np.testing.assert_allclose(split[1], eager[1], rtol=1e-12, atol=1e-12)
    for a, b in zip(split[2], eager[2]):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-13)


def test_class_weights_and_ignored_targets_with_float_class_indices():
    """Class indices given as integral floats weigh the replicas as integer ones do (they were
    weighted by rows: a gradient 18 % off)."""
    X, y = images(n=32)
    y[[1, 20, 21]] = -100
    loss = nn.CrossEntropyLoss(weight=cr.tensor([1.0, 3.0, 0.5]), ignore_index=-100)
    for target in (y, y.astype(np.float64)):
        _same(*_step_both(small_cnn, X, target, loss=loss))


def test_batch_norm_without_running_statistics_in_eval_mode_sees_the_whole_batch():
    def model():
        m = nn.Sequential(
            nn.Conv2d(1, 4, 3, padding=1, bias=False, rng=1),
            nn.BatchNorm2d(4, track_running_stats=False), nn.ReLU(), nn.Flatten(),
            nn.Linear(4 * 8 * 8, 3, rng=3),
        ).to(np.float64)  # fmt: skip
        m[1].eval()  # normalises with the batch's statistics all the same
        return m

    X, y = images(n=32)
    _same(*_step_both(model, X, y))


def test_a_replaced_buffer_reaches_the_workers():
    X, y = images(n=32)
    model = small_cnn()
    model[1].eval()
    plan, _ = _plan(model)
    with use_generator(np.random.default_rng(1)):
        plan.run(X, y, None)
    model[1].running_mean = np.full(4, 3.0)  # a new array, not written in place
    model[1].running_var = np.full(4, 0.25)
    with use_generator(np.random.default_rng(1)):
        value, out = plan.run(X, y, None)
    with use_generator(np.random.default_rng(1)):
        value_e, out_e = EagerPlan(model, nn.CrossEntropyLoss(), plan.optimizer).run(X, y, None)
    np.testing.assert_allclose(out, out_e, rtol=1e-12, atol=1e-12)
    assert value == pytest.approx(value_e, rel=1e-12)
    plan.close()


def test_a_batch_that_weighs_nothing_says_so_as_one_process_does():
    X, y = images(n=32)
    ignored = np.full_like(y, -100)
    split, eager = _step_both(small_cnn, X, ignored)
    assert np.isnan(split[0]) and np.isnan(eager[0])
    zero = np.zeros(32)
    split, eager = _step_both(small_cnn, X, y, w=zero)
    assert np.isnan(split[0]) and np.isnan(eager[0])
    _same(*_step_both(small_cnn, X, np.zeros((32, 3)), w=zero, loss=nn.MSELoss()))


def test_a_model_that_cannot_be_copied_trains_in_one_process_with_a_warning(split_small):
    X, y = images(n=64)
    model = small_cnn()
    model.scale = lambda v: v  # a lambda does not pickle
    with pytest.warns(RuntimeWarning, match="split training step is off.*cannot be copied"):
        tr = _fit(model, X, y)
    assert tr._plans[0].off and tr.plan.name == "eager"

    class MyLoss(nn.CrossEntropyLoss):  # a user's loss: a worker could not import it
        pass

    m = lenet()
    assert SplitStepPlan.create(m, MyLoss(), cr.optim.Adam(m.parameters())) is None


def test_the_workers_end_when_a_callback_fails(split_small):
    X, y = images(n=64)

    class Boom(cr.training.Callback):
        def on_batch_end(self, batch, logs=None):
            if batch == 1:
                raise RuntimeError("boom")

    model = small_cnn()
    opt = cr.optim.Adam(model.parameters(), lr=0.01)
    tr = Trainer(model, "cross_entropy", opt, seed=3, verbose=0, callbacks=[Boom()])
    with pytest.raises(RuntimeError, match="boom"):
        tr.fit(X, y, epochs=2, batch_size=32)
    split = tr._plans[0]
    assert isinstance(split, SplitStepPlan) and split._workers == []


def test_no_room_for_shared_memory_trains_in_one_process_with_a_warning(split_small, monkeypatch):
    """A full /dev/shm (64 MB in a default Docker container) would kill the process with
    SIGBUS at the first write of a page: the blocks are allocated up front, and where there is
    no room in /dev/shm nor in the temporary directory the plan turns off."""
    X, y = images(n=64)
    tried = []

    def full(fd, offset, length):
        tried.append(length)
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "posix_fallocate", full)
    model = small_cnn()
    with pytest.warns(RuntimeWarning, match="split training step is off.*no room for"):
        tr = _fit(model, X, y)
    assert tr._plans[0].off and len(tried) == 2  # /dev/shm, then the temporary directory
    monkeypatch.undo()
    twin = small_cnn()
    monkeypatch.setenv("CHAINRULE_STEP_PROCESSES", "1")
    _fit(twin, X, y)
    for (name, a), b in zip(model.state_dict().items(), twin.state_dict().values()):
        assert a.tobytes() == b.tobytes(), name  # one process all along: the same bits
