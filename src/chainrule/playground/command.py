"""``chainrule playground``: its options and what it runs (the server is imported lazily)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

__all__ = ["add_parser", "cmd_playground"]


def add_parser(sub: Any) -> None:
    """Add the ``playground`` subcommand to the CLI's subparsers."""
    p = sub.add_parser(
        "playground",
        help="train a network in the browser and watch backpropagation (extra: playground)",
        description="Serve the playground page on this machine and open it in the browser. "
        "The printed URL carries a random token; requests without it are refused.",
    )
    p.add_argument(
        "--host",
        default=None,
        help="address to listen on (default 127.0.0.1: this machine only; anything else "
        "prints a warning)",
    )
    p.add_argument("--port", type=int, default=0, help="port (default: a free one)")
    p.add_argument(
        "--no-browser", dest="browser", action="store_false", help="print the URL, open nothing"
    )
    p.add_argument("--data", help="start on this CSV file")
    p.add_argument("--target", help="the column to predict (with --data; default: the last)")
    p.set_defaults(func=cmd_playground)


def cmd_playground(args: argparse.Namespace) -> int:
    from .._run import CLIError, data_path

    if args.target and not args.data:
        raise CLIError("--target needs --data FILE")
    if not 0 <= args.port <= 65535:
        raise CLIError(f"--port must be between 0 and 65535, got {args.port}")
    host = args.host or "127.0.0.1"
    if args.host is not None and args.host not in ("127.0.0.1", "localhost", "::1"):
        print(
            f"chainrule: warning: --host {args.host}: the playground will answer other machines "
            "on this network (anyone with the URL and its token can train, upload and export)",
            file=sys.stderr,
        )
    if args.data:
        data_path(args.data)
    from .server import serve

    serve(host, args.port, open_browser=args.browser, data=args.data, target=args.target)
    return 0
