"""The playground's server with Starlette's test client: token, Host, Origin, uploads, exports."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("starlette", reason="the playground extra (starlette) is not installed")
from starlette.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

import chainrule as cr
from chainrule.playground.server import create_app
from chainrule.playground.session import Session, decode_frame

TOKEN = "s3cret-token"
BASE = "http://127.0.0.1:8765"
HOST = {"Host": "127.0.0.1:8765"}  # the test client's WebSocket does not take it from base_url


@pytest.fixture
def session():
    s = Session()
    s.start()
    yield s
    s.close()


@pytest.fixture
def client(session, tmp_path):
    app = create_app(
        session, TOKEN, host="127.0.0.1", port=8765, max_upload=4096, upload_dir=str(tmp_path)
    )
    with TestClient(app, base_url=BASE) as c:
        c.upload_dir = tmp_path
        yield c


def test_page_needs_the_token(client):
    assert client.get("/").status_code == 403
    assert client.get("/?token=wrong").status_code == 403
    r = client.get(f"/?token={TOKEN}")
    assert r.status_code == 200 and "<canvas" in r.text
    assert "default-src 'self'" in r.headers["content-security-policy"]
    assert "http" not in r.text.replace("http-equiv", "")  # no CDN, nothing fetched elsewhere


def test_static_files_are_the_packages_own(client):
    js = client.get("/static/app.js")
    assert js.status_code == 200 and 'getContext("2d")' in js.text
    assert client.get("/static/style.css").status_code == 200
    assert client.get("/static/../server.py").status_code == 404
    assert client.get("/static/secret.txt").status_code == 404


@pytest.mark.parametrize("host", ["evil.example:8765", "127.0.0.1:9999", "rebind.attacker.test"])
def test_wrong_host_is_refused_dns_rebinding(client, host):
    r = client.get(f"/?token={TOKEN}", headers={"Host": host})
    assert r.status_code == 400 and "not this playground's address" in r.text
    r = client.get(f"/api/export/model?token={TOKEN}", headers={"Host": host})
    assert r.status_code == 400


def test_localhost_name_of_the_same_port_is_accepted(client):
    assert client.get(f"/?token={TOKEN}", headers={"Host": "localhost:8765"}).status_code == 200


def test_foreign_origin_is_refused(client):
    r = client.get(f"/?token={TOKEN}", headers={"Origin": "http://evil.example"})
    assert r.status_code == 403
    r = client.post(
        f"/api/upload?token={TOKEN}",
        content=b"a,b\n1,2\n",
        headers={"Origin": "http://evil.example"},
    )
    assert r.status_code == 403
    ok = client.get(f"/?token={TOKEN}", headers={"Origin": BASE})
    assert ok.status_code == 200


def test_websocket_checks_token_origin_and_host(client):
    with (
        pytest.raises(WebSocketDisconnect),
        client.websocket_connect("/ws?token=wrong", headers=HOST) as ws,
    ):
        ws.receive_text()
    with (
        pytest.raises(WebSocketDisconnect),
        client.websocket_connect(
            f"/ws?token={TOKEN}", headers={**HOST, "Origin": "http://evil.example"}
        ) as ws,
    ):
        ws.receive_text()
    with (
        pytest.raises(WebSocketDisconnect),
        client.websocket_connect(f"/ws?token={TOKEN}", headers={"Host": "evil.example"}) as ws,
    ):
        ws.receive_text()


def _reply(ws, ident):
    """The reply to command ``ident`` (frames and other messages in between are skipped)."""
    while True:
        msg = ws.receive()
        if msg.get("text"):
            data = json.loads(msg["text"])
            if data.get("id") == ident:
                return data
        elif msg.get("bytes"):
            _reply.frames.append(decode_frame(msg["bytes"]))  # type: ignore[attr-defined]


_reply.frames = []  # type: ignore[attr-defined]


def test_websocket_commands_and_frames(client, session):
    with client.websocket_connect(f"/ws?token={TOKEN}", headers={**HOST, "Origin": BASE}) as ws:
        ws.send_text(json.dumps({"id": 1, "type": "set_hash", "hash": "#layers=3&lr=0.1"}))
        r = _reply(ws, 1)["reply"]
        assert r["type"] == "hello" and r["state"]["layers"] == [3] and "lr=0.1" in r["hash"]
        ws.send_text(json.dumps({"id": 2, "type": "step"}))
        assert _reply(ws, 2)["reply"]["step"] == 1
        ws.send_text(json.dumps({"id": 3, "type": "set", "key": "lr", "value": "-1"}))
        assert "lr must be a finite number > 0" in _reply(ws, 3)["error"]
        ws.send_text(
            json.dumps({"id": 4, "type": "use_csv", "path": "/etc/passwd", "target": None})
        )
        assert (
            "unknown command 'use_csv'" in _reply(ws, 4)["error"]
        )  # paths never come from the page
        ws.send_text("not json")
        assert "bad message" in _reply(ws, None)["error"]
        ws.send_text(json.dumps({"id": 5, "type": "explain", "layer": 0, "i": 1, "j": 2}))
        e = _reply(ws, 5)["reply"]
        assert e["weight"] == "0.weight" and e["index"] == [1, 2]
        assert e["total"] == pytest.approx(e["engineGrad"], rel=1e-6, abs=1e-9)
        while not _reply.frames:
            ws.send_text(json.dumps({"id": 6, "type": "hello"}))
            _reply(ws, 6)
        _, arrays = _reply.frames[-1]
        assert arrays["weights"].size == 2 * 3 + 3 * 1


def _csv(rows=60, extra=""):
    rng = np.random.default_rng(0)
    lines = ["u,v,w,kind"]
    for k in range(rows):
        u, v, w = rng.normal(size=3)
        lines.append(f"{u:.4f},{v:.4f},{w:.4f},{['a', 'b', 'c'][k % 3]}")
    return ("\n".join(lines) + "\n" + extra).encode()


def test_upload_switches_to_the_file_and_export_loads_with_cr_load(client, session, tmp_path):
    r = client.post(f"/api/upload?token={TOKEN}&name=my%20data.csv&target=kind", content=_csv())
    assert r.status_code == 200, r.text
    hello = r.json()
    assert hello["data"]["csv"] and hello["data"]["nClasses"] == 3
    assert hello["network"]["outputs"] == 3 and hello["state"]["dataset"] == "csv"
    assert hello["data"]["source"] == "my_data.csv"
    # written under the server's upload folder only
    files = [p for p in client.upload_dir.rglob("*") if p.is_file()]
    assert [p.name for p in files] == ["my_data.csv"]
    m = client.get(f"/api/export/model?token={TOKEN}")
    assert m.status_code == 200 and "model.chainrule" in m.headers["content-disposition"]
    path = tmp_path / "model.chainrule"
    path.write_bytes(m.content)
    model = cr.load(str(path))
    np.testing.assert_array_equal(
        cr.predict(model, session.data.X_test), cr.predict(session.model, session.data.X_test)
    )
    # the model file carries the preprocessing: chainrule predict can use it on the raw CSV
    assert cr.io.load_file(str(path)).extra["preprocessing"]["target"] == "kind"
    code = client.get(f"/api/export/code?token={TOKEN}").json()
    assert code["command"].startswith("chainrule train --data my_data.csv --target kind")
    data = client.get(f"/api/export/data.csv?token={TOKEN}")
    assert data.text.splitlines()[0].endswith(",label,split")


@pytest.mark.parametrize(
    ("body", "query", "status", "match"),
    [
        (b"", "", 400, "the file is empty"),
        (b"x" * 5000, "", 413, "limit"),
        (b"a,b\n1,2\n3\n", "", 400, "has 1 fields, the header has 2"),
        (b"\xff\xfe\x00bad", "", 400, "not a UTF-8 text file"),
        (None, "&target=nope", 400, "nope"),
        (b"a,b\n1,2\n", "", 400, "too few"),
    ],
)
def test_upload_errors_are_reported_and_keep_the_session(
    client, session, body, query, status, match
):
    before = session.state
    r = client.post(f"/api/upload?token={TOKEN}{query}", content=_csv() if body is None else body)
    assert r.status_code == status
    assert match in r.json()["error"]
    assert session.state == before and session.data.preprocessor is None


def test_upload_and_exports_need_the_token(client):
    assert client.post("/api/upload", content=_csv()).status_code == 403
    assert client.get("/api/export/model").status_code == 403
    assert client.get("/api/export/code?token=x").status_code == 403
    assert client.get("/api/export/data.csv").status_code == 403


def test_upload_name_cannot_escape_the_folder(client):
    r = client.post(f"/api/upload?token={TOKEN}&name=../../evil.sh&target=kind", content=_csv())
    assert r.status_code == 200
    files = [p for p in client.upload_dir.rglob("*") if p.is_file()]
    assert [p.name for p in files] == ["evil.sh.csv"]
    assert all(not (p.stat().st_mode & 0o111) for p in files)  # not executable


def test_listening_beyond_this_machine_accepts_ip_addresses_but_not_other_names(session, tmp_path):
    app = create_app(session, TOKEN, host="0.0.0.0", port=8765, upload_dir=str(tmp_path))
    with TestClient(app, base_url="http://192.168.1.5:8765") as c:
        ok = c.get(
            f"/?token={TOKEN}",
            headers={"Host": "192.168.1.5:8765", "Origin": "http://192.168.1.5:8765"},
        )
        assert ok.status_code == 200
        assert "ws://192.168.1.5:8765" in ok.headers["content-security-policy"]
        assert c.get(f"/?token={TOKEN}", headers={"Host": "[fe80::1]:8765"}).status_code == 200
        assert (
            c.get(f"/?token={TOKEN}", headers={"Host": "rebind.attacker.test:8765"}).status_code
            == 400
        )
        assert c.get(f"/?token={TOKEN}", headers={"Host": "192.168.1.5:9999"}).status_code == 400
        cross = c.get(
            f"/?token={TOKEN}",
            headers={"Host": "192.168.1.5:8765", "Origin": "http://10.0.0.9:8765"},
        )
        assert cross.status_code == 403
        assert (
            c.get("/", headers={"Host": "192.168.1.5:8765"}).status_code == 403
        )  # the token still
