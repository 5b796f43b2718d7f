"""``chainrule convert``: a CSV file of any size into memory-mapped ``.npy`` files, in chunks.

The directory it writes (``X.npy``, ``y.npy``, ``preprocessing.json``: what
:func:`chainrule.data.csv_to_npy` writes) is what ``chainrule train --data DIR`` trains on
without any process holding the data: each reads only the rows of its batches
(``--workers N`` too). Memory stays proportional to ``--chunk-rows``.
"""

from __future__ import annotations

import argparse
import os
from typing import Any

from ._cli_train import _split_list
from ._run import CLIError, data_path

__all__ = ["add_parser"]


def cmd_convert(args: argparse.Namespace) -> int:
    from .data.csv_chunks import csv_to_npy

    if os.path.exists(args.out) and (not os.path.isdir(args.out) or os.listdir(args.out)):
        raise CLIError(f"--out {args.out!r} already exists and is not an empty directory")
    if not 1 <= args.chunk_rows <= 10_000_000:
        raise CLIError(f"--chunk-rows must be an integer in [1, 10000000], got {args.chunk_rows}")
    prep, X, _ = csv_to_npy(
        data_path(args.data),
        args.target,
        args.out,
        task=args.task,
        categorical=_split_list(args.categorical),
        drop=_split_list(args.drop),
        chunk_rows=args.chunk_rows,
    )
    print(
        f"{len(X)} rows, {X.shape[1]} inputs, {prep.task} of {args.target!r}: wrote "
        f"{args.out}/X.npy, y.npy, preprocessing.json\n"
        f"train on it with: chainrule train --data {args.out} --out RUN [--workers N]"
    )
    return 0


def add_parser(sub: Any) -> None:
    """Add ``convert`` to the ``chainrule`` command's sub-commands."""
    c = sub.add_parser(
        "convert",
        help="convert a large CSV into memory-mapped .npy files (chainrule train --data DIR)",
    )
    c.add_argument("--data", required=True, help="the CSV file (a header row, then rows)")
    c.add_argument("--target", required=True, help="the column to predict")
    c.add_argument("--out", required=True, help="the directory to write (new or empty)")
    c.add_argument(
        "--task", choices=("auto", "classification", "regression"), default="auto",
        help="default: auto (classes if the target is text or a few integers)",
    )  # fmt: skip
    c.add_argument("--categorical", help="comma-separated columns to one-hot encode")
    c.add_argument("--drop", help="comma-separated columns to leave out")
    c.add_argument(
        "--chunk-rows", dest="chunk_rows", type=int, default=65536,
        help="rows held in memory at a time (default 65536)",
    )  # fmt: skip
    c.set_defaults(func=cmd_convert)
