"""``chainrule playground``: options, refusals in one line, the URL with its token, --host's
warning; and the benchmark harness runs (no thresholds: timing is not a test)."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from chainrule.cli import main

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--target", "y"], "--target needs --data FILE"),
        (["--port", "70000"], "--port must be between 0 and 65535, got 70000"),
        (["--data", "no-such-file.csv", "--no-browser"], "no such file"),
    ],
)
def test_bad_options_are_one_line_errors(argv, message, capsys):
    assert main(["playground", *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_a_bad_csv_is_refused_before_serving(tmp_path, capsys):
    path = tmp_path / "bad.csv"
    path.write_text("a,b\n1,2\n3\n")
    assert main(["playground", "--data", str(path), "--no-browser"]) == 2
    assert "has 1 fields, the header has 2" in capsys.readouterr().err


def _start(*args: str) -> tuple[subprocess.Popen, str]:
    env = dict(
        os.environ, PYTHONPATH=str(ROOT / "src") + os.pathsep + os.environ.get("PYTHONPATH", "")
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "chainrule", "playground", "--no-browser", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert proc.stdout is not None
    return proc, proc.stdout.readline()


def test_prints_a_url_with_a_random_token_on_127_0_0_1():
    proc, line = _start()
    proc2, line2 = _start()
    try:
        m = re.search(r"http://127\.0\.0\.1:(\d+)/\?token=([\w-]{20,})", line)
        m2 = re.search(r"token=([\w-]{20,})", line2)
        assert m and m2 and m.group(2) != m2.group(1)  # a new token every time
    finally:
        for p in (proc, proc2):
            p.terminate()
            p.wait(30)


def test_another_host_prints_a_warning():
    proc, line = _start("--host", "0.0.0.0")
    try:
        assert "http://0.0.0.0:" in line
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=30)
    assert "warning: --host 0.0.0.0" in err and "other machines" in err


def test_starts_on_a_csv_file(tmp_path):
    path = tmp_path / "pts.csv"
    path.write_text(
        "a,b,label\n" + "".join(f"{k % 7},{k % 5},{'x' if k % 2 else 'y'}\n" for k in range(40))
    )
    proc, line = _start("--data", str(path), "--target", "label")
    try:
        base, token = re.search(r"(http://\S+)/\?token=(\S+)", line).groups()
        import json
        import urllib.request

        with urllib.request.urlopen(f"{base}/api/export/code?token={token}") as r:
            assert json.loads(r.read())["command"].startswith(
                "chainrule train --data pts.csv --target label"
            )
    finally:
        proc.terminate()
        proc.wait(30)


def test_frames_benchmark_smoke(capsys):
    spec = importlib.util.spec_from_file_location(
        "bench_playground", ROOT / "benchmarks" / "bench_playground.py"
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    result = module.main(["--quick"])
    assert result["fps"] > 0
    assert result["steps_per_s_client"] > 0 and result["steps_per_s_no_client"] > 0
    assert result["steps_per_cpu_s_client"] > 0 and result["steps_per_cpu_s_no_client"] > 0
    out = capsys.readouterr().out
    assert "frames/s over the WebSocket" in out and "steps per server CPU second" in out


def test_the_cli_does_not_import_the_server_or_its_extra():
    code = (
        "import sys, chainrule, chainrule.cli; "
        "print(sorted(m for m in ('starlette', 'uvicorn', 'websockets', "
        "'chainrule.playground.server', 'chainrule.playground.session') if m in sys.modules))"
    )
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    )
    assert out.stdout.strip() == "[]"


def test_a_missing_extra_says_how_to_install_it(monkeypatch, capsys):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "uvicorn" else real(name, *a)
    )
    assert main(["playground", "--no-browser"]) == 2
    assert "pip install 'chainrule[playground]'" in capsys.readouterr().err


def test_the_page_loads_nothing_from_elsewhere():
    static = ROOT / "src" / "chainrule" / "playground" / "static"
    names = sorted(p.name for p in static.iterdir())
    assert names == ["app.js", "index.html", "style.css"]
    for p in static.iterdir():
        text = p.read_text()
        assert "https://" not in text and "http://" not in text, p.name
        assert "@import" not in text and "cdn" not in text.lower(), p.name
    assert 'getContext("2d")' in (static / "app.js").read_text()


def test_sigterm_removes_the_uploads_and_frames_are_not_compressed(tmp_path):
    """The server's temporary folder (uploaded files) goes away on SIGTERM as on Ctrl-C, and
    the WebSocket declines permessage-deflate (frames are sent as they are: see serve)."""
    import json
    import signal
    import urllib.request

    from websockets.sync.client import connect

    tmp = tmp_path / "tmp"
    tmp.mkdir()
    env = dict(
        os.environ,
        TMPDIR=str(tmp),
        PYTHONPATH=str(ROOT / "src") + os.pathsep + os.environ.get("PYTHONPATH", ""),
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "chainrule", "playground", "--no-browser"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    try:
        base, token = re.search(r"(http://\S+)/\?token=(\S+)", line).groups()
        body = "a,b,label\n" + "".join(f"{k % 7},{k % 5},{k % 2}\n" for k in range(40))
        request = urllib.request.Request(
            f"{base}/api/upload?token={token}&name=mine.csv&target=label",
            data=body.encode(),
            method="POST",
        )
        with urllib.request.urlopen(request) as r:
            assert json.loads(r.read())["type"] == "hello"
        uploaded = list(tmp.glob("chainrule-playground-*/*/mine.csv"))
        assert len(uploaded) == 1 and uploaded[0].read_text() == body
        ws_url = base.replace("http://", "ws://") + f"/ws?token={token}"
        with connect(ws_url, origin=base, compression="deflate") as ws:  # offers deflate
            assert ws.response is not None
            assert "Sec-WebSocket-Extensions" not in ws.response.headers
            ws.send(json.dumps({"id": 1, "type": "hello"}))
            replies = []
            while not replies:  # (a binary frame may come first)
                msg = ws.recv(timeout=60)
                if isinstance(msg, str):
                    replies.append(json.loads(msg))
            assert replies[0]["id"] == 1 and replies[0]["reply"]["type"] == "hello"
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGTERM  # still ended by the signal
    assert list(tmp.iterdir()) == []  # the uploads' folder is gone
