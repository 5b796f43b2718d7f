"""The playground's web server: the page, its WebSocket, uploads and exports (Starlette).

Every request must come to the address the server is bound to (the ``Host`` header: a page
from another site that has re-pointed its own name at 127.0.0.1 — DNS rebinding — is refused),
from no foreign page (an ``Origin`` header, when present, must be this server's), and, except
for the page's static files, with the token printed in the URL. Uploads are written only
inside the server's temporary directory under a sanitised name, parsed as CSV text by the
CLI's loader, and never executed.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import ipaddress
import json
import os
import re
import secrets
import shutil
import signal
import socket
import sys
import tempfile
import threading
import webbrowser
from collections.abc import Callable
from importlib import resources
from typing import Any

from .session import Listener, Session
from .state import PlaygroundState

__all__ = ["MAX_UPLOAD", "create_app", "serve"]

MAX_UPLOAD = 5 * 1024 * 1024  # bytes of CSV one upload may hold
STATIC = {
    "app.js": "text/javascript; charset=utf-8",
    "style.css": "text/css; charset=utf-8",
    "index.html": "text/html; charset=utf-8",
}
# what the page may ask over the WebSocket (uploads and exports are HTTP requests)
COMMANDS = frozenset(
    {"hello", "play", "pause", "step", "reset", "set", "set_hash", "explain", "neuron"}
)


def _require_extra() -> None:
    """Fail with the install command if the ``playground`` extra is missing."""
    import importlib.util

    missing = [
        m for m in ("starlette", "uvicorn", "websockets") if importlib.util.find_spec(m) is None
    ]
    if missing:
        raise ImportError(
            f"the playground needs {', '.join(missing)}: pip install 'chainrule[playground]'"
        )


def _static(name: str) -> bytes:
    return resources.files("chainrule.playground").joinpath("static").joinpath(name).read_bytes()


def allowed_hosts(host: str, port: int) -> set[str]:
    """The ``Host`` header values this server answers by name (its own address and port)."""
    names = {host if ":" not in host else f"[{host.strip('[]')}]"}
    if host in ("127.0.0.1", "localhost"):
        names |= {"127.0.0.1", "localhost"}
    if host in ("::1", "[::1]"):
        names |= {"[::1]", "localhost"}
    if host in ("0.0.0.0", "::", "[::]"):  # every interface: also this machine's names
        names |= {"127.0.0.1", "localhost", socket.gethostname(), socket.getfqdn()}
    return {f"{h}:{port}" for h in names}


def _is_ip_literal(host: str, port: int) -> bool:
    """``Host`` is an IP address with this port (no name that DNS could re-point)."""
    name, sep, p = host.rpartition(":")
    if not sep or p != str(port):
        return False
    try:
        ipaddress.ip_address(name.strip("[]"))
    except ValueError:
        return False
    return True


class _Guard:
    """ASGI middleware: refuse a wrong ``Host`` (400) and a foreign ``Origin`` (403).

    ``Host`` must be one of the server's own names with its port, or, when it listens beyond
    this machine (``--host``), any IP address with its port: DNS rebinding needs a name, and
    names other than the machine's own are refused. ``Origin``, when sent, must be the page's
    own (``http://`` + the request's ``Host``): another site's page is refused.
    """

    def __init__(self, app: Any, hosts: set[str], port: int, remote: bool) -> None:
        self.app = app
        self.hosts = hosts
        self.port = port
        self.remote = remote

    def host_ok(self, host: str) -> bool:
        return host in self.hosts or (self.remote and _is_ip_literal(host, self.port))

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] in ("http", "websocket"):
            headers = {
                k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]
            }
            host = headers.get("host", "")
            origin = headers.get("origin")
            problem = None
            if not self.host_ok(host):
                problem = (400, f"Host {host!r} is not this playground's address")
            elif origin is not None and origin != f"http://{host}":
                problem = (403, f"requests from {origin!r} are refused (cross-site)")
            if problem is not None:
                if scope["type"] == "websocket":
                    await receive()  # websocket.connect
                    await send({"type": "websocket.close", "code": 1008, "reason": problem[1]})
                    return
                body = problem[1].encode()
                await send(
                    {
                        "type": "http.response.start",
                        "status": problem[0],
                        "headers": [(b"content-type", b"text/plain; charset=utf-8")],
                    }
                )
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)


def create_app(
    session: Session,
    token: str,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    max_upload: int = MAX_UPLOAD,
    upload_dir: str | None = None,
) -> Any:
    """The playground as an ASGI application (Starlette), guarded by Host, Origin and token."""
    _require_extra()
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, PlainTextResponse, Response
    from starlette.routing import Route, WebSocketRoute
    from starlette.websockets import WebSocket, WebSocketDisconnect

    upload_root = upload_dir or tempfile.mkdtemp(prefix="chainrule-playground-")

    def csp(request: Request) -> str:  # the Host header has been checked by the guard
        return (
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
            f"connect-src 'self' ws://{request.headers.get('host', '')}; object-src 'none'; "
            "base-uri 'none'; frame-ancestors 'none'"
        )

    secure = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}

    def token_ok(value: str | None) -> bool:
        return value is not None and hmac.compare_digest(value.encode(), token.encode())

    def refuse() -> Response:
        return PlainTextResponse(
            "wrong or missing token: open the URL that `chainrule playground` printed", 403
        )

    async def index(request: Request) -> Response:
        if not token_ok(request.query_params.get("token")):
            return refuse()
        return Response(
            _static("index.html"),
            media_type=STATIC["index.html"],
            headers={
                **secure,
                "Content-Security-Policy": csp(request),
                "Referrer-Policy": "no-referrer",
            },
        )

    async def static(request: Request) -> Response:
        name = request.path_params["name"]
        if name not in STATIC or name == "index.html":
            return PlainTextResponse("not found", 404)
        return Response(_static(name), media_type=STATIC[name], headers=secure)

    async def call(kind: str, **args: Any) -> Any:
        return await asyncio.wrap_future(session.call(kind, **args))

    def error(message: str, status: int = 400) -> Response:
        return JSONResponse({"error": message}, status, headers=secure)

    async def upload(request: Request) -> Response:
        if not token_ok(request.query_params.get("token")):
            return error("wrong or missing token", 403)
        name = request.query_params.get("name") or "upload.csv"
        target = request.query_params.get("target") or None
        length = request.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > max_upload:
            return error(f"the file has {int(length)} bytes; the limit is {max_upload}", 413)
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > max_upload:
                return error(f"the file is larger than the limit of {max_upload} bytes", 413)
            chunks.append(chunk)
        if size == 0:
            return error("the file is empty: expected a CSV with a header row and data rows")
        safe = re.sub(r"[^A-Za-z0-9._-]", "_", os.path.basename(name))[:80].lstrip(".") or "upload"
        if not safe.lower().endswith(".csv"):
            safe += ".csv"
        folder = tempfile.mkdtemp(dir=upload_root)  # one fresh folder per upload
        path = os.path.join(folder, safe)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(b"".join(chunks))
        try:
            hello = await call("use_csv", path=path, target=target)
        except (ValueError, TypeError, OSError) as exc:
            shutil.rmtree(folder, ignore_errors=True)
            return error(" ".join(str(exc).split()) or type(exc).__name__)
        return JSONResponse(hello, headers=secure)

    async def export_model(request: Request) -> Response:
        if not token_ok(request.query_params.get("token")):
            return error("wrong or missing token", 403)
        try:
            data = await call("export_model")
        except ValueError as exc:
            return error(str(exc))
        return Response(
            data,
            media_type="application/octet-stream",
            headers={**secure, "Content-Disposition": 'attachment; filename="model.chainrule"'},
        )

    async def export_data(request: Request) -> Response:
        if not token_ok(request.query_params.get("token")):
            return error("wrong or missing token", 403)
        text = await call("export_data")
        name = f"playground-{session.state.dataset}.csv"
        return Response(
            text,
            media_type="text/csv; charset=utf-8",
            headers={**secure, "Content-Disposition": f'attachment; filename="{name}"'},
        )

    async def export_code(request: Request) -> Response:
        if not token_ok(request.query_params.get("token")):
            return error("wrong or missing token", 403)
        return JSONResponse(await call("export_code"), headers=secure)

    async def ws_endpoint(ws: WebSocket) -> None:
        if not token_ok(ws.query_params.get("token")):
            await ws.close(code=1008, reason="wrong or missing token")
            return
        await ws.accept()
        loop = asyncio.get_running_loop()
        outbox: asyncio.Queue[str | bytes] = asyncio.Queue()

        def put(msg: str | bytes) -> None:
            loop.call_soon_threadsafe(outbox.put_nowait, msg)

        listener = Listener(put)

        async def sender() -> None:
            while True:
                msg = await outbox.get()
                try:
                    if isinstance(msg, bytes):
                        await ws.send_bytes(msg)
                    else:
                        await ws.send_text(msg)
                finally:
                    listener.sent(msg)

        async def answer(msg: dict[str, Any]) -> None:
            ident = msg.get("id")
            kind = msg.get("type")
            args = {k: v for k, v in msg.items() if k not in ("id", "type")}
            try:
                if kind not in COMMANDS:
                    raise ValueError(f"unknown command {kind!r}")
                reply = await call(str(kind), **args)
                out = {"id": ident, "reply": reply}
            except (ValueError, TypeError, KeyError, IndexError) as exc:
                out = {"id": ident, "error": " ".join(str(exc).split()) or type(exc).__name__}
            await outbox.put(json.dumps(out))

        task = asyncio.create_task(sender())
        session.listeners.append(listener)
        try:
            while True:
                text = await ws.receive_text()
                try:
                    msg = json.loads(text)
                    if not isinstance(msg, dict):
                        raise ValueError("a command is a JSON object")
                except ValueError as exc:
                    await outbox.put(json.dumps({"id": None, "error": f"bad message: {exc}"}))
                    continue
                await answer(msg)
        except WebSocketDisconnect:
            pass
        finally:
            session.listeners.remove(listener)
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    routes = [
        Route("/", index),
        Route("/static/{name}", static),
        Route("/api/upload", upload, methods=["POST"]),
        Route("/api/export/model", export_model),
        Route("/api/export/data.csv", export_data),
        Route("/api/export/code", export_code),
        WebSocketRoute("/ws", ws_endpoint),
    ]
    app = Starlette(routes=routes)
    app.state.upload_dir = upload_root
    remote = host not in ("127.0.0.1", "localhost", "::1", "[::1]")
    return _Guard(app, allowed_hosts(host, port), port, remote)


def _ws_implementation() -> str:
    """uvicorn's WebSocket protocol on the websockets library (its sans-I/O one if known)."""
    from uvicorn.config import WS_PROTOCOLS

    return "websockets-sansio" if "websockets-sansio" in WS_PROTOCOLS else "websockets"


def serve(
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    open_browser: bool = True,
    data: str | None = None,
    target: str | None = None,
    state: PlaygroundState | None = None,
    ready: Callable[[str], None] | None = None,
    stop: threading.Event | None = None,
) -> None:
    """Serve the playground until interrupted (Ctrl-C) or until ``stop`` is set.

    ``port=0`` picks a free port. The URL (with its token) is printed, passed to ``ready``
    and opened in the browser unless ``open_browser`` is false.
    """
    _require_extra()
    import uvicorn

    session = Session(state, csv=(data, target) if data else None)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise OSError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    sock.listen(64)
    port = sock.getsockname()[1]
    token = secrets.token_urlsafe(24)
    upload_dir = tempfile.mkdtemp(prefix="chainrule-playground-")
    app = create_app(session, token, host=host, port=port, upload_dir=upload_dir)
    config = uvicorn.Config(
        app,
        log_level="warning",
        ws=_ws_implementation(),
        lifespan="off",
        # NOTE: no permessage-deflate. Compressing every ~85 kB frame of float32 heat-maps
        # (which barely compress) cost the server a quarter of its training speed (the
        # benchmark's steps per CPU second with a page open: 0.75 of none with it, 0.9-1.0
        # without); the page is on this machine, where bandwidth costs nothing.
        ws_per_message_deflate=False,
    )
    server = uvicorn.Server(config)
    shown = f"[{host}]" if ":" in host else host
    url = f"http://{shown}:{port}/?token={token}"
    session.start()
    if stop is not None:

        def watch() -> None:
            stop.wait()
            server.should_exit = True

        threading.Thread(target=watch, daemon=True).start()
    # uvicorn shuts down on SIGTERM, then raises the signal again: with the default handler
    # the process would end there, before the uploads' folder is removed. Ours raises an
    # exception instead, so the clean-up below runs; then the signal ends the process.
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, _terminated)
    terminated = False
    try:
        print(f"chainrule playground: {url}", flush=True)
        if ready is not None:
            ready(url)
        if open_browser:
            webbrowser.open(url)
        server.run(sockets=[sock])
    except KeyboardInterrupt:
        pass
    except _TerminatedError:
        terminated = True
    finally:
        session.close()
        sock.close()
        shutil.rmtree(upload_dir, ignore_errors=True)
        sys.stdout.flush()
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    if terminated:
        signal.raise_signal(signal.SIGTERM)


class _TerminatedError(Exception):
    """SIGTERM arrived (raised by :func:`_terminated`, caught by :func:`serve`)."""


def _terminated(signum: int, frame: Any) -> None:
    raise _TerminatedError
