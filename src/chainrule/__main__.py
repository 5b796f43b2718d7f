"""``python -m chainrule``: the command line."""

from __future__ import annotations

import sys

from . import distributed
from .cli import main

if __name__ == "__main__":
    status = main()
    if status:  # one process of an MPI job ends them all
        distributed.abort_job(status, None)
    sys.exit(status)
