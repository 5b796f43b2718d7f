#!/usr/bin/env bash
# Set up .venv with everything the tests need, then run the whole suite:
# ruff (lint and format), mypy, and pytest (unit tests, doctests, examples, benchmark smoke runs).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON_BIN="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
    "$PYTHON_BIN" -m venv .venv
fi
# torch is the oracle for the gradient tests (2.13.0: a CPU build). ".[dev]" includes the
# playground extra and playwright (the playground's server and browser tests; chromium: see
# .ci/run) and the "distributed" extra (mpi4py + the mpich wheel: the MPI tests run under its
# mpiexec)
.venv/bin/python -m pip install -q -e ".[dev,playground]" "torch==2.13.0"
.venv/bin/ruff check src tests benchmarks examples
.venv/bin/ruff format --check src tests benchmarks examples
.venv/bin/mypy
# the floors of DESIGN.md and the private-name rule (also a test; this prints file:line first)
.venv/bin/python -m tests.import_contract
.venv/bin/python -m pytest
