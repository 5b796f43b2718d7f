"""The training step as a unit (issue 17.3): step plans and their contract, the train_step
override point, the sync_gradients hook, one place for stop decisions, the steps() generator,
and all trainer state created in __init__."""

from __future__ import annotations

import copy

import numpy as np
import pytest

import chainrule as cr
from chainrule import nn, optim
from chainrule.training import (
    Callback,
    EagerPlan,
    FusedMLPPlan,
    LambdaCallback,
    StepPlan,
    Trainer,
    check_step_plan,
)
from chainrule.training.split_step import SplitStepPlan
from chainrule.training.trainer import PLANS, STOP_AFTER_EPOCH, STOP_NOW


class SplitAlways(SplitStepPlan):
    """The split step on every batch of every model (the trainer's choice splits only the
    steps of convolutional networks of at least 10 M multiply-adds): the contract's cases
    then run in two processes."""

    min_macs = 0
    min_rows = 1
    conv_only = False
    dtypes = None


# every plan of the trainer, the split step splitting every case
TESTED_PLANS = [SplitAlways if p is SplitStepPlan else p for p in PLANS]


@pytest.fixture
def two_processes(monkeypatch):
    monkeypatch.setenv("CHAINRULE_STEP_PROCESSES", "2")  # also on a 1-core machine


def _data(n=120, d=4, classes=3, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    y = (X[:, 0] > 0).astype(np.int64) + (X[:, 1] > 0.5)
    return X, np.minimum(y, classes - 1)


def _weights(model):
    return [p.data.copy() for p in model.parameters()]


# ----- the contract every plan must pass -----
@pytest.mark.parametrize("plan", TESTED_PLANS, ids=[p.__name__ for p in TESTED_PLANS])
def test_every_plan_passes_check_step_plan(plan, two_processes):
    report = check_step_plan(plan)
    assert "passed" in report.values()
    if plan in (EagerPlan, SplitAlways):
        assert set(report.values()) == {"passed"}


def test_fused_plan_runs_the_mlp_cases_and_declines_the_rest():
    report = check_step_plan(FusedMLPPlan)
    for case in ("cross_entropy", "cross_entropy_weighted", "mse_weighted", "frozen_parameters"):
        assert report[case] == "passed"
    assert report["dropout_batch_norm"] == "declined"  # the engine runs those


class _Scaled(EagerPlan):
    """Gradients off by one part in 10⁹: a plan check must see it."""

    def run(self, xb, yb, wb):
        loss, out = super().run(xb, yb, wb)
        for p in self.model.parameters():
            if p.grad is not None:
                p.grad *= 1 + 1e-9
        return loss, out


class _NoWeights(EagerPlan):
    def run(self, xb, yb, wb):
        return super().run(xb, yb, None)


class _TouchesFrozen(EagerPlan):
    def run(self, xb, yb, wb):
        loss, out = super().run(xb, yb, wb)
        for p in self.model.parameters():
            if not p.requires_grad:
                p.grad = np.zeros_like(p.data)
        return loss, out


class _OwnMasks(EagerPlan):
    """Draws dropout masks from its own generator instead of the run's."""

    def run(self, xb, yb, wb):
        from chainrule._random import use_generator

        with use_generator(np.random.default_rng(123)):
            return super().run(xb, yb, wb)


class _DeclinesAll(EagerPlan):
    @classmethod
    def create(cls, model, loss_fn, optimizer):
        return None


@pytest.mark.parametrize(
    ("plan", "message"),
    [
        (_Scaled, "gradient of"),
        (_NoWeights, "case 'cross_entropy_weighted'"),
        (_TouchesFrozen, "frozen parameter"),
        (_OwnMasks, "case 'dropout_batch_norm'"),
        (_DeclinesAll, "declined every case"),
    ],
)
def test_check_step_plan_catches_a_wrong_plan(plan, message):
    with pytest.raises(AssertionError, match=message):
        check_step_plan(plan)


# ----- plan choice -----
def test_trainer_chooses_the_fused_plan_for_an_mlp_and_eager_otherwise():
    X, y = _data()
    tr = Trainer(nn.mlp([4, 8, 3], rng=0), "cross_entropy", verbose=0, seed=0)
    tr.fit(X.astype(np.float32), y, epochs=1)
    assert isinstance(tr.plan, FusedMLPPlan)
    model = nn.Sequential(
        nn.Linear(4, 8, rng=0), nn.ReLU(), nn.Dropout(0.2), nn.Linear(8, 3, rng=1)
    )
    tr = Trainer(model, "cross_entropy", verbose=0, seed=0)
    tr.fit(X.astype(np.float32), y, epochs=1)
    assert type(tr.plan) is EagerPlan


def test_eager_plan_forced_gives_the_fused_plans_weights():
    X, y = _data()
    results = []
    for plan in (None, EagerPlan):
        model = nn.mlp([4, 8, 3], rng=0).to(np.float64)
        tr = Trainer(model, "cross_entropy", seed=1, verbose=0, plan=plan)
        tr.fit(X, y, epochs=3, batch_size=16)
        results.append(_weights(model))
    for a, b in zip(*results):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-12)


def test_a_plan_that_cannot_run_the_model_is_refused():
    X, y = _data()
    model = nn.Sequential(nn.Linear(4, 3, rng=0), nn.Dropout(0.1))
    tr = Trainer(model, "cross_entropy", verbose=0, plan=FusedMLPPlan)
    with pytest.raises(ValueError, match="FusedMLPPlan cannot run this model"):
        tr.fit(X.astype(np.float32), y, epochs=1)
    with pytest.raises(TypeError, match="plan must be a StepPlan"):
        Trainer(model, "cross_entropy", plan="fused")


# ----- train_step: the override point -----
def test_overriding_train_step_changes_training():
    X, y = _data()

    class Twice(Trainer):
        calls = 0

        def train_step(self, batch):
            Twice.calls += 1
            super().train_step(batch)  # two updates per batch
            return super().train_step(batch)

    twice = nn.mlp([4, 8, 3], rng=0).to(np.float64)
    Twice(twice, "cross_entropy", "sgd", lr=0.1, seed=0, verbose=0).fit(
        X, y, epochs=1, batch_size=40, shuffle=False
    )
    assert Twice.calls == 3
    # the same six updates by hand
    model = nn.mlp([4, 8, 3], rng=0).to(np.float64)
    opt = optim.SGD(model.parameters(), lr=0.1)
    for start in (0, 40, 80):
        for _ in range(2):
            opt.zero_grad()
            nn.CrossEntropyLoss()(model(X[start : start + 40]), y[start : start + 40]).backward()
            opt.step()
    for a, b in zip(_weights(twice), _weights(model)):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-12)


def test_train_step_outside_fit_is_one_optimizer_step():
    X, y = _data()
    model = nn.mlp([4, 8, 3], rng=0).to(np.float64)
    twin = copy.deepcopy(model)
    tr = Trainer(model, "cross_entropy", "sgd", lr=0.1, verbose=0)
    logs = tr.train_step((X[:10], y[:10]))
    opt = optim.SGD(twin.parameters(), lr=0.1)
    loss = nn.CrossEntropyLoss()(twin(X[:10]), y[:10])
    loss.backward()
    opt.step()
    assert logs["loss"] == pytest.approx(loss.item(), abs=1e-14) and logs["size"] == 10
    for a, b in zip(_weights(model), _weights(twin)):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-14)
    assert tr.iterations == 1
    with pytest.raises(ValueError, match="contains class 7"):  # checked, not read out of range
        tr.train_step((X[:3], np.array([0, 7, 1])))
    with pytest.raises(TypeError, match="batch must be a tuple"):
        tr.train_step(X[:3])


# ----- sync_gradients: after backward, before the finiteness check and clipping -----
def test_sync_gradients_runs_before_the_finiteness_check():
    X, y = _data()

    class Poisoned(Trainer):
        def sync_gradients(self):
            self.model[0].weight.grad[0, 0] = np.nan

    model = nn.mlp([4, 8, 3], rng=0).to(np.float64)
    before = _weights(model)
    tr = Poisoned(model, "cross_entropy", verbose=0)
    tr.fit(X, y, epochs=2)
    assert tr.stop_reason == "diverged"
    assert "the gradient of '0.weight' is not finite" in tr.history.message
    for a, b in zip(_weights(model), before):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("plan", TESTED_PLANS, ids=[p.__name__ for p in TESTED_PLANS])
def test_sync_gradients_runs_before_clipping(plan, two_processes):
    X, y = _data()
    seen = []

    class Scaled(Trainer):
        def sync_gradients(self):  # as if the other processes' gradients were 1000 times larger
            for p in self.model.parameters():
                p.grad *= 1000.0

        def train_step(self, batch):
            logs = super().train_step(batch)
            seen.append(np.sqrt(sum(float((p.grad**2).sum()) for p in self.model.parameters())))
            return logs

    tr = Scaled(nn.mlp([4, 8, 3], rng=0), "cross_entropy", verbose=0, clip_grad_norm=0.5, plan=plan)
    tr.fit(X.astype(np.float32), y, epochs=1)
    assert np.allclose(seen, 0.5, rtol=1e-5)  # clipping saw (and clipped) the synced gradients


# ----- decide_stop: one place, agreed through agree_stop -----
class _Recorder(Trainer):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.flags = []

    def agree_stop(self, flag):
        self.flags.append(flag)
        return flag


def test_early_stopping_and_convergence_stop_through_decide_stop():
    X, y = _data()
    es = cr.callbacks.EarlyStopping(monitor="loss", patience=1, min_delta=10.0)
    tr = _Recorder(nn.mlp([4, 8, 3], rng=0), "cross_entropy", verbose=0, callbacks=[es])
    tr.fit(X.astype(np.float32), y, epochs=10)
    assert tr.stop_reason == "early_stopping" and tr.history.epoch == [1, 2]
    assert tr.flags[-1] == STOP_AFTER_EPOCH and tr.flags.count(STOP_AFTER_EPOCH) == 1
    tr = _Recorder(
        nn.mlp([4, 8, 3], rng=0), "cross_entropy", verbose=0, tol=10.0, n_iter_no_change=1
    )
    tr.fit(X.astype(np.float32), y, epochs=10)
    assert tr.stop_reason == "converged" and tr.flags[-1] == STOP_AFTER_EPOCH


def test_divergence_and_ctrl_c_stop_at_once_through_decide_stop():
    X, y = _data()
    tr = _Recorder(nn.mlp([4, 8, 3], rng=0), "cross_entropy", "sgd", lr=1e30, verbose=0)
    tr.fit(X.astype(np.float32) * 1e10, y, epochs=3)
    assert tr.stop_reason == "diverged" and tr.flags[-1] == STOP_NOW
    assert tr.history.epoch == []  # the epoch in progress is not recorded

    class CtrlC(Callback):
        def on_batch_begin(self, batch, logs=None):
            if self.trainer.epoch == 2 and batch == 1:
                raise KeyboardInterrupt

    tr = _Recorder(nn.mlp([4, 8, 3], rng=0), "cross_entropy", verbose=0, callbacks=[CtrlC()])
    tr.fit(X.astype(np.float32), y, epochs=3)
    assert tr.stop_reason == "interrupted" and tr.flags[-1] == STOP_NOW
    assert tr.history.epoch == [1]


def test_a_stop_agreed_elsewhere_stops_this_trainer():
    # what another rank's early stopping looks like to this one: agree_stop says stop
    X, y = _data()

    class Told(Trainer):
        def agree_stop(self, flag):
            return STOP_AFTER_EPOCH if self.epoch == 2 else flag

    tr = Told(nn.mlp([4, 8, 3], rng=0), "cross_entropy", verbose=0)
    tr.fit(X.astype(np.float32), y, epochs=5, batch_size=40)
    assert tr.history.epoch == [1, 2]
    assert tr.iterations == 4  # the first step of epoch 2 was agreed to end it


def test_divergence_raise_policy_raises_from_decide_stop():
    X, y = _data()
    tr = Trainer(nn.mlp([4, 8, 3], rng=0), "cross_entropy", "sgd", lr=1e30, verbose=0,
                 on_nonfinite="raise")  # fmt: skip
    with pytest.raises(cr.training.DivergenceError, match="training diverged at epoch 1"):
        tr.fit(X.astype(np.float32) * 1e10, y, epochs=3)


# ----- steps(): one step at a time -----
def test_steps_consumed_to_the_end_equal_fit_bitwise():
    X, y = _data()
    kw = dict(epochs=3, batch_size=16, validation_split=0.2)
    model_a = nn.Sequential(
        nn.Linear(4, 8, rng=0), nn.Tanh(), nn.Dropout(0.3), nn.Linear(8, 3, rng=1)
    )
    model_b = copy.deepcopy(model_a)
    ha = cr.fit(model_a, X.astype(np.float32), y, loss="cross_entropy", seed=4, verbose=0, **kw)
    tr = Trainer(model_b, "cross_entropy", seed=4, verbose=0)
    logs = list(tr.steps(X.astype(np.float32), y, **kw))
    assert [p.data.tobytes() for p in model_a.parameters()] == [
        p.data.tobytes() for p in model_b.parameters()
    ]
    assert ha.history["val_loss"] == tr.history.history["val_loss"]
    per_epoch = tr.steps_per_epoch  # 97 training rows after the stratified split: 7 batches
    assert per_epoch == 7
    assert len(logs) == 3 * per_epoch and [d["step"] for d in logs] == list(range(3 * per_epoch))
    assert [d["epoch_end"] for d in logs] == ([False] * (per_epoch - 1) + [True]) * 3
    assert [d["batch"] for d in logs[:per_epoch]] == list(range(per_epoch))
    assert tr.stop_reason == "epochs"


def test_steps_lets_the_caller_change_the_learning_rate_between_steps():
    X, y = _data()
    a = nn.mlp([4, 8, 3], rng=0).to(np.float64)
    b = copy.deepcopy(a)
    tr = Trainer(a, "cross_entropy", "sgd", lr=0.5, seed=2, verbose=0)
    for logs in tr.steps(X, y, epochs=2, batch_size=30):
        tr.optimizer.param_groups[0]["lr"] = 0.5 / (logs["step"] + 2)

    def decay(batch, logs):
        ref.optimizer.param_groups[0]["lr"] = 0.5 / (ref.iterations + 1)

    ref = Trainer(b, "cross_entropy", "sgd", lr=0.5, seed=2, verbose=0,
                  callbacks=[LambdaCallback(on_batch_end=decay)])  # fmt: skip
    ref.fit(X, y, epochs=2, batch_size=30)
    assert [p.data.tobytes() for p in a.parameters()] == [p.data.tobytes() for p in b.parameters()]


def test_leaving_steps_early_ends_the_run_cleanly():
    X, y = _data()
    ended = []
    cb = LambdaCallback(on_train_end=lambda logs: ended.append(True))
    tr = Trainer(nn.mlp([4, 8, 3], rng=0), "cross_entropy", seed=0, verbose=0, callbacks=[cb])
    for logs in tr.steps(X.astype(np.float32), y, epochs=5, batch_size=40):
        if logs["step"] == 4:  # epoch 2, batch 1
            break
    assert ended == [True]
    assert tr.stop_reason == "caller" and tr.history.epoch == [1]
    assert "Stopped by the caller" in tr.history.summary


def test_steps_leaves_the_default_generator_to_the_caller():
    # dropout masks come from the run's generator only while a step runs; drawing from
    # chainrule's default generator between steps (an unseeded layer, a dropout mask of the
    # caller's own) changes nothing in the run
    X, y = _data()

    def run(draw):
        cr.manual_seed(0)
        model = nn.Sequential(
            nn.Linear(4, 8, rng=0), nn.ReLU(), nn.Dropout(0.5), nn.Linear(8, 3, rng=1)
        )
        tr = Trainer(model, "cross_entropy", seed=3, verbose=0)
        other = nn.Dropout(0.5)  # the caller's own dropout layer, no generator of its own
        for _ in tr.steps(X.astype(np.float32), y, epochs=2, batch_size=16):
            if draw:
                nn.Linear(3, 3)  # draws its initial weights from the default generator
                other(cr.tensor(np.ones((4, 4), np.float32)))  # draws a mask: not the run's
        return [p.data.tobytes() for p in model.parameters()]

    assert run(False) == run(True)


# ----- all state in __init__ -----
def test_fit_creates_no_attribute_that_init_did_not():
    X, y = _data()
    es = cr.callbacks.EarlyStopping(monitor="val_loss", patience=1)
    tr = Trainer(
        nn.mlp([4, 8, 3], rng=0), "cross_entropy", metrics=["accuracy"], callbacks=[es], verbose=0
    )
    before = set(vars(tr))
    assert tr.fit_inputs is None and tr.fit_targets is None
    tr.fit(X.astype(np.float32), y, epochs=3, validation_split=0.2)
    assert set(vars(tr)) == before
    assert len(tr.fit_inputs) == len(tr.fit_targets) == 97  # the rows left after the split


def test_custom_plan_instance_is_used():
    X, y = _data()
    calls = []

    class Counting(StepPlan):
        def run(self, xb, yb, wb):
            calls.append(len(xb))
            return EagerPlan(self.model, self.loss_fn, self.optimizer).run(xb, yb, wb)

    model = nn.mlp([4, 8, 3], rng=0)
    loss, opt = nn.CrossEntropyLoss(), optim.Adam(model.parameters())
    tr = Trainer(model, loss, opt, verbose=0, plan=Counting(model, loss, opt))
    tr.fit(X.astype(np.float32), y, epochs=2, batch_size=50)
    tr.fit(X.astype(np.float32), y, epochs=1, batch_size=50)
    assert calls == [50, 50, 20] * 3


@pytest.mark.parametrize("loss", ["bce_with_logits", "mse"])
def test_plans_agree_on_flat_targets_for_one_output(loss):
    """y of shape (n,) for a model with one output: every plan trains on it as the column
    (n, 1), validation and evaluate too (once the fused plan took it and the eager plan and
    the validation refused it, so a run failed after its first epoch, or not, by architecture)."""
    rng = np.random.default_rng(4)
    X = rng.normal(size=(60, 4))
    y = (X[:, 0] > 0).astype(np.float64)
    runs = {}
    for plan in (EagerPlan, FusedMLPPlan):
        for flat in (True, False):
            model = nn.mlp([4, 6, 1], rng=0, dtype=np.float64)
            tr = Trainer(model, loss, seed=1, verbose=0, plan=plan)
            hist = tr.fit(
                X, y if flat else y.reshape(-1, 1), epochs=3, batch_size=16, validation_split=0.25
            )
            runs[plan.__name__, flat] = (hist.history["loss"], hist.history["val_loss"])
            # evaluate takes the flat targets too, with the same value as the column
            a = cr.evaluate(model, X, y, loss=loss)["loss"]
            b = cr.evaluate(model, X, y.reshape(-1, 1), loss=loss)["loss"]
            assert a == b
    reference = runs["EagerPlan", False]
    for key, (losses, val) in runs.items():
        np.testing.assert_allclose(losses, reference[0], rtol=1e-12, err_msg=str(key))
        np.testing.assert_allclose(val, reference[1], rtol=1e-12, err_msg=str(key))


def test_flat_targets_still_refused_for_several_outputs():
    model = nn.mlp([4, 6, 2], rng=0)
    X = np.zeros((10, 4), np.float32)
    with pytest.raises(ValueError, match=r"shape \(10, 2\)|differ"):
        Trainer(model, "bce_with_logits", verbose=0, plan=EagerPlan).fit(X, np.zeros(10), epochs=1)
    with pytest.raises(ValueError, match=r"shape \(10, 2\)"):
        cr.fit(model, X, np.zeros(10), loss="bce_with_logits", epochs=1, verbose=0)
