"""The playground's training session: frames, steps, hyperparameter changes, explanations."""

from __future__ import annotations

import copy
import threading
import time

import numpy as np
import pytest

import chainrule as cr
from chainrule.data.tabular import TabularPreprocessor, read_table, train_test_split
from chainrule.playground.data import feature_columns, load_csv, make_data
from chainrule.playground.session import GRID, NEURON_GRID, Listener, Session, decode_frame
from chainrule.playground.state import PlaygroundState


def _frame(session):
    return decode_frame(session.frame())


def test_frame_holds_the_losses_weights_and_heat_maps_of_the_model():
    s = Session(PlaygroundState(layers=(4, 2)))
    for _ in range(20):
        s._one_step()
    header, arrays = _frame(s)
    d = s.data
    with cr.no_grad():
        train = cr.nn.BCEWithLogitsLoss()(s.model(d.X_train), s.y_fit).item()
        test = cr.nn.BCEWithLogitsLoss()(s.model(d.X_test), s.y_fit_test).item()
    assert header["trainLoss"] == pytest.approx(train, rel=1e-6)
    assert header["testLoss"] == pytest.approx(test, rel=1e-6)
    assert header["step"] == 20
    w = np.concatenate([s.model[k].weight.data.ravel() for k in s.linears])
    np.testing.assert_array_equal(arrays["weights"], w)
    assert arrays["neurons"].size == (4 + 2) * NEURON_GRID**2
    # the output heat-map is σ(logit) of the model at the grid's points
    grid = d.grid_inputs(s.state, GRID)
    with cr.no_grad():
        p = 1 / (1 + np.exp(-s.model(grid).data[:, 0]))
    np.testing.assert_allclose(arrays["output"], p, rtol=1e-6)
    # the first hidden unit's heat-map is its tanh output on every second grid point
    with cr.no_grad():
        a1 = s.model[1](s.model[0](grid)).data.reshape(GRID, GRID, 4)
    np.testing.assert_allclose(
        arrays["neurons"][: NEURON_GRID**2], a1[::2, ::2, 0].ravel(), rtol=1e-6
    )


def test_a_step_is_one_sgd_step_on_the_batch_with_the_l2_penalty_on_weights_only():
    s = Session(PlaygroundState(reg="l2", regRate=0.1, lr=0.5, batchSize=7))
    s._one_step()
    before = copy.deepcopy(s.model)
    s._one_step()
    idx = s.batch_idx
    assert len(idx) == 7
    ref = copy.deepcopy(before)
    ref.zero_grad()
    out = ref(s.data.X_train[idx])
    cr.nn.BCEWithLogitsLoss()(out, s.y_fit[idx]).backward()
    for (name, p_new), p_old in zip(s.model.named_parameters(), ref.parameters()):
        penalty = 0.1 * p_old.data if name.endswith("weight") else 0.0
        expected = p_old.data - np.float32(0.5) * (p_old.grad + penalty)
        np.testing.assert_allclose(p_new.data, expected, rtol=1e-5, atol=1e-7, err_msg=name)


def test_l1_penalty_adds_rate_times_sign_of_the_weight():
    s = Session(PlaygroundState(reg="l1", regRate=0.01, lr=0.1, layers=(3,)))
    before = copy.deepcopy(s.model)
    s._one_step()
    idx = s.batch_idx
    ref = copy.deepcopy(before)
    ref.zero_grad()
    cr.nn.BCEWithLogitsLoss()(ref(s.data.X_train[idx]), s.y_fit[idx]).backward()
    w_old, g = ref[0].weight.data, ref[0].weight.grad
    np.testing.assert_allclose(
        s.model[0].weight.data,
        w_old - np.float32(0.1) * (g + 0.01 * np.sign(w_old)),
        rtol=1e-5,
        atol=1e-7,
    )


def test_learning_rate_changes_while_training_without_a_reset():
    s = Session(PlaygroundState(lr=0.03))
    for _ in range(30):
        s._one_step()
    weights = [p.data.copy() for p in s.model.parameters()]
    reply = s.run_command("set", key="lr", value="0.3")
    assert reply["type"] == "state" and s.step == 30  # not a reset
    assert s.optimizer.param_groups[0]["lr"] == 0.3
    for a, p in zip(weights, s.model.parameters()):
        np.testing.assert_array_equal(a, p.data)
    ref = copy.deepcopy(s.model)
    ref.zero_grad()
    s._one_step()
    idx = s.batch_idx
    cr.nn.BCEWithLogitsLoss()(ref(s.data.X_train[idx]), s.y_fit[idx]).backward()
    for p_new, p_old in zip(s.model.parameters(), ref.parameters()):
        np.testing.assert_allclose(
            p_new.data, p_old.data - np.float32(0.3) * p_old.grad, rtol=1e-5, atol=1e-7
        )


def test_activation_optimizer_batch_and_regularisation_change_without_a_reset():
    s = Session()
    for _ in range(10):
        s._one_step()
    w0 = s.model[0].weight
    for key, value in [
        ("activation", "relu"),
        ("optimizer", "adam"),
        ("batchSize", "20"),
        ("reg", "l2"),
        ("regRate", "0.01"),
    ]:
        assert s.run_command("set", key=key, value=value)["type"] == "state"
    assert s.step == 10 and s.model[0].weight is w0
    assert type(s.model[1]).__name__ == "ReLU"
    assert isinstance(s.optimizer, cr.optim.Adam)
    s._one_step()
    assert len(s.batch_idx) == 20 and s.step == 11


def test_network_and_data_changes_reset():
    s = Session()
    s._one_step()
    reply = s.run_command("set", key="layers", value="8,8,8")
    assert reply["type"] == "hello" and s.step == 0
    assert [m.out_features for m in s.model if isinstance(m, cr.nn.Linear)] == [8, 8, 8, 1]


def test_three_classes_use_softmax_outputs_and_cross_entropy():
    s = Session()
    s.run_command("set", key="classes", value="3")
    assert s.n_outputs == 3 and isinstance(s.base_loss, cr.nn.CrossEntropyLoss)
    assert set(np.unique(s.data.y_train)) == {0, 1, 2}
    for _ in range(5):
        s._one_step()
    header, arrays = _frame(s)
    probs = arrays["output"].reshape(3, -1)
    np.testing.assert_allclose(probs.sum(axis=0), 1, rtol=1e-5)
    assert np.array(header["metrics"]["confusion"]).sum() == len(s.data.y_test)


def test_the_link_explanation_is_cr_explain_on_the_current_batch():
    s = Session(PlaygroundState(layers=(4, 3), activation="tanh"))
    for _ in range(25):
        s._one_step()
    reply = s.run_command("explain", layer=1, i=2, j=1)
    idx = np.array(reply["batch"])
    np.testing.assert_array_equal(idx, s.batch_idx)
    e = cr.explain(
        s.model, s.data.X_train[idx], s.y_fit[idx], cr.nn.BCEWithLogitsLoss(), "2.weight[2,1]"
    )
    assert reply["total"] == e.total and reply["engineGrad"] == e.engine_grad
    np.testing.assert_array_equal(reply["perSample"], e.per_sample)
    np.testing.assert_array_equal(reply["dC_da"], e.dC_da)
    assert reply["text"] == str(e)
    # and the engine's gradient of the data loss on that batch
    ref = copy.deepcopy(s.model)
    ref.zero_grad()
    cr.nn.BCEWithLogitsLoss()(ref(s.data.X_train[idx]), s.y_fit[idx]).backward()
    assert reply["total"] == pytest.approx(float(ref[2].weight.grad[2, 1]), rel=1e-4, abs=1e-9)


def test_neuron_reply_has_its_histogram_and_gradient():
    s = Session()
    for _ in range(5):
        s._one_step()
    r = s.run_command("neuron", layer=1, j=2)
    assert sum(r["counts"]) == len(s.data.X_train)
    with cr.no_grad():
        a = s.model[1](s.model[0](s.data.X_train)).data[:, 2]
    assert r["mean"] == pytest.approx(float(a.mean()), rel=1e-6)
    assert r["biasGrad"] is not None
    with pytest.raises(ValueError, match=r"layer must be 1\.\.3"):
        s.run_command("neuron", layer=7, j=0)


def test_a_learning_rate_far_too_high_stops_with_finite_weights_and_says_so():
    s = Session(
        PlaygroundState(lr=100.0, layers=(8, 8), activation="relu", features=("x1sq", "x2sq"))
    )
    s.playing = True
    for _ in range(400):
        s._one_step()
        if not s.playing:
            break
    header, _ = _frame(s)
    assert all(np.all(np.isfinite(p.data)) for p in s.model.parameters())
    assert header["warnings"], "a diverging or saturated run must be reported"


def test_deep_sigmoid_network_reports_vanishing_gradients():
    s = Session(PlaygroundState(layers=(8,) * 6, activation="sigmoid"))
    for _ in range(30):
        for _ in range(20):
            s._one_step()
        header, _ = _frame(s)
    assert any(w.startswith("vanishing gradients") for w in header["warnings"])
    t = Session(PlaygroundState(layers=(8,) * 6, activation="tanh"))
    for _ in range(30):
        for _ in range(20):
            t._one_step()
        header, _ = _frame(t)
    assert not any(w.startswith("vanishing") for w in header["warnings"])


def test_dead_relu_units_are_listed():
    s = Session(PlaygroundState(activation="relu", layers=(4,)))
    s.model[0].bias.data[:] = [-100, 0, 0, -100]  # two units that never fire
    header, _ = _frame(s)
    assert sorted(map(tuple, header["dead"])) == [(0, 0), (0, 3)]


def test_exported_model_loads_with_cr_load_and_predicts_the_same(tmp_path):
    s = Session(PlaygroundState(layers=(5,), features=("x1", "x2", "x1x2")))
    for _ in range(10):
        s._one_step()
    path = tmp_path / "model.chainrule"
    path.write_bytes(s.run_command("export_model"))
    model = cr.load(str(path))
    X = s.data.X_test
    np.testing.assert_array_equal(cr.predict(model, X), cr.predict(s.model, X))
    meta = cr.io.load_file(str(path)).extra
    assert meta["inputs"] == ["x1", "x2", "x1x2"]
    assert PlaygroundState.from_hash(meta["playground"]) == s.state


def test_exported_python_code_runs_and_trains_the_same_network(tmp_path, monkeypatch):
    s = Session(PlaygroundState(layers=(3,), reg="l1", regRate=0.001, optimizer="momentum"))
    for _ in range(50):
        s._one_step()
    code = s.run_command("export_code")
    assert "--layers 3" in code["command"] and "--test-split 0.5" in code["command"]
    assert "L1" in code["command"]  # no CLI option: said, not dropped silently
    monkeypatch.chdir(tmp_path)
    ns: dict = {}
    exec(compile(code["python"], "<export>", "exec"), ns)
    assert [m.out_features for m in ns["model"] if isinstance(m, cr.nn.Linear)] == [3, 1]
    assert (tmp_path / "model.chainrule").exists()


def test_built_in_data_is_reproducible_and_uses_the_seven_features():
    st = PlaygroundState(
        dataset="spiral", features=("x1", "x2", "x1sq", "x2sq", "x1x2", "sinx1", "sinx2")
    )
    a, b = make_data(st), make_data(st)
    np.testing.assert_array_equal(a.X_train, b.X_train)
    p = a.P_train.astype(np.float64)
    expected = np.stack(
        [
            p[:, 0],
            p[:, 1],
            p[:, 0] ** 2,
            p[:, 1] ** 2,
            p[:, 0] * p[:, 1],
            np.sin(p[:, 0]),
            np.sin(p[:, 1]),
        ],
        1,
    )
    np.testing.assert_allclose(a.X_train, expected, rtol=1e-6, atol=1e-6)
    assert len(a.X_train) == 250  # ratio 50 %
    np.testing.assert_array_equal(feature_columns(np.zeros((1, 2)), ("sinx1",)), [[0.0]])


def test_csv_data_is_read_and_scaled_as_chainrule_train_does(tmp_path):
    rng = np.random.default_rng(0)
    rows = ["a,b,c,colour,label"]
    for k in range(120):
        a, b, c = rng.normal(size=3)
        rows.append(f"{a},{b * 10},{c},{'red' if k % 2 else 'blue'},{'yes' if a + b > 0 else 'no'}")
    path = tmp_path / "points.csv"
    path.write_text("\n".join(rows) + "\n")
    s = Session(csv=(str(path), "label"))
    d = s.data
    assert d.task == "classification" and d.class_names == ["no", "yes"]
    assert d.input_names == ["a", "b", "c", "colour=blue", "colour=red"]
    np.testing.assert_allclose(
        d.X_train[:, :3].mean(axis=0), 0, atol=1e-5
    )  # standardised on training rows
    # the CLI's path: the same split, the preprocessing fitted on the training rows only
    table = read_table(str(path))
    labels = np.asarray([str(v) for v in table.column("label")], dtype=object)
    train_idx, _ = train_test_split(labels, 0.5, seed=1, stratify=True)
    prep = TabularPreprocessor("label").fit(table.select(train_idx))
    np.testing.assert_array_equal(d.X_train, prep.transform(table.select(train_idx)))
    # the boundary view: two picked inputs, the others held at their training means
    s.run_command("set", key="fx", value="2")
    assert s.data.view == (2, 1)
    grid = s.data.grid_inputs(s.state, 4)
    np.testing.assert_allclose(grid[:, 0], d.X_train[:, 0].mean(), atol=1e-6)
    assert len(np.unique(grid[:, 2])) == 4


def test_csv_errors_name_the_problem(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("x,y\n1,2\n3\n")
    with pytest.raises(ValueError, match=r"row 2 .* has 1 fields, the header has 2"):
        load_csv(str(path), None, PlaygroundState(dataset="csv"))
    path.write_text("x,y\n1,2\n3,4\n5,6\n7,8\n")
    with pytest.raises(ValueError, match="nope"):
        load_csv(str(path), "nope", PlaygroundState(dataset="csv"))


def _wait(cond, what, timeout=60.0):
    end = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


def test_frames_are_throttled_not_steps():
    """A listener that has not sent its frame gets no new one; training goes on meanwhile."""
    got: list = []
    s = Session(PlaygroundState(layers=(8,) * 6))
    listener = Listener(got.append)
    s.listeners.append(listener)
    s.start()
    try:
        s.call("play").result(timeout=30)
        _wait(lambda: s.step >= 300, "300 steps")
        frames = [m for m in got if isinstance(m, bytes)]
        assert len(frames) == 1 and listener.busy  # the first frame was never acknowledged
        listener.sent(frames[0])
        _wait(lambda: sum(isinstance(m, bytes) for m in got) >= 2, "a second frame")
        step_at_second = decode_frame([m for m in got if isinstance(m, bytes)][1])[0]["step"]
        assert step_at_second >= 300
    finally:
        s.close()
    assert not s._thread.is_alive()  # a listener that never sends does not keep it training


def test_commands_run_between_steps_on_the_training_thread():
    s = Session()
    s.start()
    try:
        s.call("play").result(timeout=30)
        _wait(lambda: s.step >= 20, "20 steps")
        threads = []
        s.call("set", key="lr", value="0.1").add_done_callback(
            lambda f: threads.append(threading.current_thread().name)
        )
        _wait(lambda: threads, "the reply")
        assert threads == ["chainrule-playground"]
        assert s.optimizer.param_groups[0]["lr"] == 0.1
        s.call("pause").result(timeout=30)
        step = s.step
        time.sleep(0.05)
        assert s.step == step
    finally:
        s.close()
