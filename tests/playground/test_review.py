"""Issue 20, point by point as a reviewer checks it: the exported command and Python code
really set up the same training (run here), a neuron's histogram and gradient by hand, and
the server's refusals that the other files do not cover (a chunked upload over the limit, a
``null`` Origin)."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import numpy as np
import pytest

import chainrule as cr
from chainrule.cli import main
from chainrule.playground.session import Session
from chainrule.playground.state import PlaygroundState


def _trained(state: PlaygroundState, steps: int) -> Session:
    s = Session(state)
    for _ in range(steps):
        s._one_step()
    return s


@pytest.mark.parametrize(
    "hash_",
    [
        "layers=3&reg=l1&regRate=0.001&optimizer=momentum&lr=0.03",
        "dataset=spiral&classes=3&layers=6,4&activation=relu&optimizer=adam&lr=0.01"
        "&reg=l2&regRate=0.01&batchSize=16",
        "dataset=plane&layers=5&activation=sigmoid",
    ],
)
def test_exported_python_code_sets_up_the_same_training(hash_, tmp_path, monkeypatch):
    """The code's data, initial weights, loss (with its penalty), optimizer and batch size are
    the playground's; its fit then runs and saves a model that cr.load reads."""
    s = _trained(PlaygroundState.from_hash(hash_), 30)
    fresh = Session(s.state)  # the playground's network before its first step
    code = s.run_command("export_code")["python"]
    seen: dict = {}
    real_fit = cr.fit

    def fit(model, X, y, **kw):
        seen.update(model=model, X=X, y=y, weights=[p.data.copy() for p in model.parameters()])
        seen.update(kw)
        return real_fit(model, X, y, **kw)

    monkeypatch.setattr(cr, "fit", fit)
    monkeypatch.chdir(tmp_path)
    exec(compile(code, "<export>", "exec"), {"__name__": "__export__"})
    np.testing.assert_array_equal(seen["X"], s.data.X_train)
    np.testing.assert_array_equal(seen["y"], s.y_fit)
    for a, b in zip(seen["weights"], fresh.model.parameters(), strict=True):
        np.testing.assert_array_equal(a, b.data)  # the same initial weights
    assert [type(m).__name__ for m in seen["model"]] == [type(m).__name__ for m in s.model]
    opt = seen["optimizer"]
    assert type(opt) is type(s.optimizer)
    assert opt.param_groups[0]["lr"] == s.state.lr
    assert opt.param_groups[0].get("momentum", 0.0) == s.optimizer.param_groups[0].get(
        "momentum", 0.0
    )
    assert seen["batch_size"] == s.state.batchSize and seen["seed"] == s.state.seed
    # the loss: the same value and the same gradients as the playground's on a batch
    xb, yb = s.data.X_train[:20], s.y_fit[:20]
    got = _loss_and_grads(seen["loss"], seen["model"], xb, yb, like=fresh.model)
    want = _loss_and_grads(fresh._loss, fresh.model, xb, yb)
    np.testing.assert_allclose(got[0], want[0], rtol=1e-6)
    for g, w in zip(got[1], want[1], strict=True):
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-7)
    model = cr.load(str(tmp_path / "model.chainrule"))
    assert [p.shape for p in model.parameters()] == [p.shape for p in s.model.parameters()]


def _loss_and_grads(loss, model, xb, yb, like=None):
    """The loss and its parameter gradients at ``like``'s weights (default: ``model``'s)."""
    if like is not None:
        model.load_state_dict(like.state_dict())
    model.zero_grad()
    with cr.enable_grad():
        c = loss(model(cr.tensor(xb)), yb)
        c.backward()
    return float(c.item()), [p.grad.copy() for p in model.parameters()]


@pytest.mark.parametrize(
    "hash_",
    ["layers=4,2&lr=0.03", "dataset=gauss&classes=3&layers=5&optimizer=adam&reg=l2&regRate=0.001"],
)
def test_exported_command_runs_on_the_exported_data(hash_, tmp_path, monkeypatch, capsys):
    """``chainrule train`` with the exported command and the exported data.csv trains the
    same network: the same layer widths and activation, the same task and classes."""
    s = _trained(PlaygroundState.from_hash(hash_), 40)
    name = f"playground-{s.state.dataset}.csv"
    (tmp_path / name).write_text(s.run_command("export_data"))
    command = s.run_command("export_code")["command"].splitlines()[0]
    argv = shlex.split(command)
    assert argv[:2] == ["chainrule", "train"] and argv[argv.index("--data") + 1] == name
    monkeypatch.chdir(tmp_path)
    assert main([*argv[1:], "--out", "run", "--no-plots", "-q"]) == 0, capsys.readouterr().err
    files = list(Path("run").rglob("*.chainrule"))
    assert files, sorted(str(p) for p in Path("run").rglob("*"))
    model = cr.load(str(files[0]))
    linears = [(m.in_features, m.out_features) for m in model if isinstance(m, cr.nn.Linear)]
    want = [(m.in_features, m.out_features) for m in s.model if isinstance(m, cr.nn.Linear)]
    if s.n_outputs == 1 and s.data.task == "classification":
        # the CLI gives two classes two softmax outputs (the playground one sigmoid output,
        # the same family of models), and the command says so
        assert "two softmax outputs" in s.run_command("export_code")["command"]
        want[-1] = (want[-1][0], 2)
    assert linears == want
    acts = [type(m).__name__ for m in model if not isinstance(m, cr.nn.Linear)]
    assert acts == [type(m).__name__ for m in s.model if not isinstance(m, cr.nn.Linear)]


def test_neuron_histogram_and_gradient_by_hand():
    """Hidden unit j of a 2-4-1 tanh net: its histogram is np.histogram of its outputs over
    the training points; on the batch (B rows) with BCE on logits,
    ∂C/∂a_j(n) = (σ(z_n) − y_n)/B · W₂[j, 0] (chainrule's weights are (in, out)) and
    ∂C/∂b_j = Σ_n ∂C/∂a_j(n) · (1 − a_j(n)²)."""
    s = _trained(PlaygroundState(layers=(4,), activation="tanh", lr=0.1), 12)
    j = 2
    r = s.run_command("neuron", layer=1, j=j)
    X = s.data.X_train.astype(np.float64)
    W1, b1 = (s.model[0].weight.data.astype(np.float64), s.model[0].bias.data.astype(np.float64))
    W2, b2 = (s.model[2].weight.data.astype(np.float64), s.model[2].bias.data.astype(np.float64))
    a_all = np.tanh(X @ W1 + b1)
    counts, edges = np.histogram(a_all[:, j].astype(np.float32), bins=20)
    assert r["counts"] == counts.tolist()
    np.testing.assert_allclose(r["edges"], edges, rtol=1e-6, atol=1e-7)
    idx = np.asarray(s.batch_idx)
    a = a_all[idx]
    z = a @ W2 + b2
    y = s.y_fit[idx].astype(np.float64)
    g = (1 / (1 + np.exp(-z)) - y)[:, 0] / len(idx) * W2[j, 0]
    assert r["gradMean"] == pytest.approx(g.mean(), rel=1e-4, abs=1e-9)
    assert r["gradRms"] == pytest.approx(np.sqrt(np.mean(g * g)), rel=1e-4, abs=1e-9)
    assert r["biasGrad"] == pytest.approx(np.sum(g * (1 - a[:, j] ** 2)), rel=1e-4, abs=1e-9)
    assert r["batch"] == len(idx) == s.state.batchSize


# ----- the server: refusals the other tests do not reach ------------------------------
starlette = pytest.importorskip("starlette", reason="the playground extra is not installed")
from starlette.testclient import TestClient  # noqa: E402

from chainrule.playground.server import create_app  # noqa: E402

TOKEN = "t0ken"
BASE = "http://127.0.0.1:8765"


@pytest.fixture
def client(tmp_path):
    s = Session()
    s.start()
    app = create_app(
        s, TOKEN, host="127.0.0.1", port=8765, max_upload=1000, upload_dir=str(tmp_path)
    )
    with TestClient(app, base_url=BASE) as c:
        c.session = s
        yield c
    s.close()


def test_an_upload_over_the_limit_without_a_length_is_cut_off(client, tmp_path):
    """A chunked body (no Content-Length) is counted as it arrives: refused, nothing written."""

    def body():
        yield b"a,b,label\n"
        for k in range(200):
            yield f"{k},{k % 3},{k % 2}\n".encode()

    r = client.post(f"/api/upload?token={TOKEN}&target=label", content=body())
    assert r.status_code == 413 and "larger than the limit of 1000 bytes" in r.json()["error"]
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []
    assert client.session.data.preprocessor is None


@pytest.mark.parametrize("origin", ["null", "http://127.0.0.1:8766", "https://127.0.0.1:8765"])
def test_other_origins_are_refused_on_every_route(client, origin):
    for r in (
        client.get(f"/?token={TOKEN}", headers={"Origin": origin}),
        client.get(f"/api/export/code?token={TOKEN}", headers={"Origin": origin}),
        client.get("/static/app.js", headers={"Origin": origin}),
    ):
        assert r.status_code == 403, (origin, r.request.url)
    with (
        pytest.raises(starlette.websockets.WebSocketDisconnect),
        client.websocket_connect(
            f"/ws?token={TOKEN}", headers={"Host": "127.0.0.1:8765", "Origin": origin}
        ) as ws,
    ):
        ws.receive_text()


def test_upload_errors_reach_the_page_as_one_line_json(client):
    r = client.post(f"/api/upload?token={TOKEN}", content=b"a,b\n1,2\n3\n")
    assert r.status_code == 400
    message = json.loads(r.text)["error"]
    assert "\n" not in message and "has 1 fields" in message


def test_exploding_gradients_are_reported_live_for_sgd():
    """SGD with a learning rate far too high on the plane: within a few steps a frame warns
    of exploding gradients (a layer's gradient RMS above diagnostics.flow's EXPLODING_RMS),
    naming the layer and the value, before any divergence."""
    from chainrule.diagnostics.flow import EXPLODING_RMS
    from chainrule.playground.session import decode_frame

    s = Session(PlaygroundState.from_hash("dataset=plane&layers=8&activation=relu&lr=1"))
    s.playing = True
    found = []
    for _ in range(20):
        s._one_step()
        found = [w for w in decode_frame(s.frame())[0]["warnings"] if "exploding" in w]
        if found or not s.playing:
            break
    assert found and f"above {EXPLODING_RMS:g}" in found[0]
    rms = max(s._grad_now.values())
    assert rms > EXPLODING_RMS and f"{rms:.3g}" in found[0]


def test_a_model_exported_from_an_uploaded_csv_predicts_the_raw_file_with_the_cli(tmp_path, capsys):
    """The exported file carries the upload's preprocessing: ``chainrule predict`` on the raw
    CSV gives the classes the playground's network gives on the same rows."""
    rng = np.random.default_rng(3)
    lines = ["u,v,colour,kind"]
    for k in range(90):
        c = k % 3
        u, v = rng.normal(size=2) + np.array([2.0 * c, -1.5 * c])
        lines.append(f"{u:.3f},{v:.3f},{['red', 'blue'][k % 2]},{['a', 'b', 'c'][c]}")
    path = tmp_path / "pts.csv"
    path.write_text("\n".join(lines) + "\n")
    s = Session(csv=(str(path), "kind"))
    for _ in range(60):
        s._one_step()
    model_path = tmp_path / "model.chainrule"
    model_path.write_bytes(s.run_command("export_model"))
    raw = tmp_path / "raw.csv"  # the same rows without the target column
    raw.write_text("\n".join(",".join(r.split(",")[:3]) for r in lines) + "\n")
    out = tmp_path / "pred.csv"
    capsys.readouterr()
    assert main(["predict", "--model", str(model_path), "--data", str(raw), "--out", str(out)]) == 0
    rows = out.read_text().splitlines()
    header = rows[0].split(",")
    col = header.index("prediction") if "prediction" in header else 0
    predicted = [r.split(",")[col] for r in rows[1:]]
    # the playground's network on the same rows, preprocessed as the session does
    from chainrule.data.tabular import read_table

    X = s.data.preprocessor.transform(read_table(str(path)))
    with cr.no_grad():
        logits = s.model(X).data
    assert predicted == [s.data.class_names[k] for k in logits.argmax(axis=1)]


def test_frames_take_a_bounded_share_of_the_training_threads_cpu_time(monkeypatch):
    """Frames are due 1/fps seconds apart *and* once the training thread has had
    cost · (1/FRAME_SHARE − 1) CPU seconds since the last one: over a long run, building
    frames takes FRAME_SHARE of the thread's CPU time at most, whatever the frame rate asked
    and however little CPU the machine leaves the thread (its CPU clock is simulated here:
    1 ms per step, 25 ms per frame)."""
    from chainrule.playground import session as session_module
    from chainrule.playground.session import FRAME_SHARE, Listener

    s = Session(fps=1e6)
    sent: list = []
    listener = Listener(sent.append)
    s.listeners.append(listener)
    clock = [0.0]
    monkeypatch.setattr(session_module.time, "thread_time", lambda: clock[0])
    build = s.frame

    def costly_frame() -> bytes:
        clock[0] += 0.025
        return build()

    s.frame = costly_frame  # type: ignore[method-assign]
    s._maybe_frame()  # the first picture (the session is new)
    listener.sent(sent[-1])
    assert not s._frame_due()  # right after a frame: not due
    s.playing = True
    steps = 0
    while clock[0] < 120.0:
        clock[0] += 0.001  # one step
        steps += 1
        if s._frame_due():
            s._maybe_frame()
            listener.sent(sent[-1])
    share = s.frame_cpu / clock[0]
    assert share <= FRAME_SHARE * 1.02, share
    assert share >= 0.8 * FRAME_SHARE  # and frames still come: the cap, not a stop
    assert s.frame_cpu == pytest.approx(0.025 * len(sent))
