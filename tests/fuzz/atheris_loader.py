"""Coverage-guided fuzzing of the model-file loader with atheris (libFuzzer).

    python tests/fuzz/atheris_loader.py -atheris_runs=100000     # a longer campaign

Any input must either load or raise ModelFileError; anything else is a crash that libFuzzer
reports with the input that caused it.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile

import atheris

with atheris.instrument_imports():
    import chainrule as cr
    from chainrule import io as cr_io

SEED_DIR = tempfile.mkdtemp()
PATH = os.path.join(SEED_DIR, "fuzz.chainrule")


def one_input(data: bytes) -> None:
    with open(PATH, "wb") as fh:
        fh.write(data)
    with contextlib.suppress(cr.ModelFileError):
        cr_io.load_file(PATH)


def main() -> None:
    corpus = os.path.join(SEED_DIR, "corpus")
    os.makedirs(corpus, exist_ok=True)
    cr.save(cr.nn.mlp([3, 4, 2], rng=0), os.path.join(corpus, "seed.chainrule"))
    atheris.Setup([*sys.argv, corpus], one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
