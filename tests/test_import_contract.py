"""The floors of DESIGN.md and the private-name rule, checked over the source (issue 17)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from tests.import_contract import FLOOR_OF, FLOORS, SRC, check

ROOT = Path(__file__).resolve().parents[1]


def test_chainrule_keeps_its_floors_and_keeps_private_names_home():
    violations = check()
    assert violations == [], "\n".join(map(str, violations))


def test_every_module_of_the_package_has_a_floor():
    tops = {p.relative_to(SRC).parts[0].removesuffix(".py") for p in SRC.rglob("*.py")}
    assert tops <= set(FLOOR_OF), sorted(tops - set(FLOOR_OF))
    assert set(FLOOR_OF.values()) <= set(FLOORS)
    # the order of DESIGN.md, bottom to top
    assert FLOORS == ("engine", "models", "training", "inspection", "applications")
    assert FLOOR_OF["io"] == "training" and FLOOR_OF["sklearn"] == "applications"


def _package(root: Path, files: dict[str, str]) -> Path:
    """A fake ``chainrule`` package under ``root/src``; returns the package directory."""
    pkg = root / "src" / "chainrule"
    for name, text in files.items():
        path = pkg / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    return pkg


BAD = {
    "__init__.py": "from . import nn\n",
    "tensor.py": "def _helper():\n    return 1\n\n\ndef public():\n    return _helper()\n",
    "ops.py": "from .tensor import _helper\n",  # inside the engine: fine
    "nn/__init__.py": "",
    "nn/layers.py": """\
        from .. import io
        from ..tensor import _helper, public
        from ..training.fit import fit


        def build():
            return io._write()
        """,
    "nn/module.py": "from .layers import build\n",  # inside one subpackage: fine
    "training/__init__.py": "",
    "training/_threads.py": "X = 1\n",
    "training/fit.py": "from ._threads import X\n\n\ndef fit():\n    return X\n",
    "io.py": """\
        def _write():
            return 0


        def load():
            from .sklearn import from_model_file

            return from_model_file
        """,
    "sklearn.py": "def from_model_file():\n    return None\n",
    "diagnostics/__init__.py": "",
    "diagnostics/flow.py": "from ..training._threads import X\nfrom ..training.fit import fit\n",
    "mystery.py": "",
}


def test_the_checker_reports_each_kind_of_violation_with_file_and_line(tmp_path):
    pkg = _package(tmp_path, BAD)
    found = {
        (v.path.relative_to(pkg).as_posix(), v.line, v.message) for v in check(pkg, frozenset())
    }
    where = {(path, line) for path, line, _ in found}
    assert where == {
        ("nn/layers.py", 1),  # models imports io (training): upward
        ("nn/layers.py", 2),  # the engine's private _helper
        ("nn/layers.py", 3),  # models imports training.fit: upward
        ("nn/layers.py", 7),  # io._write: a private attribute of another part
        ("io.py", 6),  # a lazy import is a dependency too: training imports applications
        ("diagnostics/flow.py", 1),  # a private module of another subpackage
        ("mystery.py", 1),  # a module without a floor
    }
    text = {(p, line): m for p, line, m in found}
    assert "chainrule.io.load" not in text[("io.py", 6)]
    assert (
        "(training) imports chainrule.sklearn.from_model_file (applications)" in text[("io.py", 6)]
    )
    assert "private '_helper'" in text[("nn/layers.py", 2)]
    assert "io._write" in text[("nn/layers.py", 7)]
    assert "'_threads'" in text[("diagnostics/flow.py", 1)]
    assert "belongs to no floor" in text[("mystery.py", 1)]


def test_a_pending_entry_is_skipped_while_it_occurs_and_reported_once_it_is_gone(tmp_path):
    pkg = _package(tmp_path, BAD)
    pending = frozenset({("chainrule.nn.layers", "chainrule.tensor._helper")})
    lines = {(v.path.name, v.line) for v in check(pkg, pending)}
    assert ("layers.py", 2) not in lines
    stale = frozenset({("chainrule.nn.module", "chainrule.tensor._gone")})
    messages = [v.message for v in check(pkg, stale)]
    assert any("no longer happens" in m and "_gone" in m for m in messages)


def test_the_command_prints_one_line_per_violation_and_fails(tmp_path):
    pkg = _package(tmp_path, BAD)
    run = subprocess.run(
        [sys.executable, "-m", "tests.import_contract", str(pkg)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert run.returncode == 1
    assert "nn/layers.py:3: chainrule.nn.layers (models) imports chainrule.training.fit.fit" in (
        run.stdout
    )
    clean = subprocess.run(
        [sys.executable, "-m", "tests.import_contract"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert clean.returncode == 0, clean.stdout
