"""Every Python example in the README and docs/ runs, and every printed output shown in them is
what the code prints today.

The blocks of one page run in order in one namespace (a page can build on its earlier
blocks), in a temporary directory. A ```` ```text ```` block that directly follows a
```` ```python ```` block (nothing but blank lines between) is that block's printed output: the
test compares it with what the block prints, line by line. After changing what the code
prints, regenerate the outputs with::

    python tests/test_docs.py          # rewrites the output blocks in README.md and docs/*.md
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FILES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
# a python block, optionally followed (only blank lines between) by its printed output
BLOCK = re.compile(r"```python\n(.*?)```(\n\s*\n?```text\n(.*?)```)?", re.S)


def _clean(text: str) -> str:
    return "\n".join(line.rstrip() for line in text.strip("\n").splitlines())


def run_page(text: str, workdir: Path) -> list[tuple[re.Match[str], str]]:
    """Run the page's python blocks in order; return each block's match and printed text."""
    namespace: dict[str, object] = {"__name__": "__doc__"}
    results = []
    old = Path.cwd()
    os.chdir(workdir)
    try:
        for m in BLOCK.finditer(text):
            buf = io.StringIO()
            with contextlib.redirect_stdout(buf):
                exec(compile(m.group(1), "<doc>", "exec"), namespace)
            results.append((m, buf.getvalue()))
    finally:
        os.chdir(old)
    return results


@pytest.mark.parametrize("path", FILES, ids=[p.name for p in FILES])
def test_python_blocks_run_and_print_what_the_page_shows(path, tmp_path):
    checked = 0
    for m, printed in run_page(path.read_text(), tmp_path):
        if m.group(3) is None:
            continue
        checked += 1
        assert _clean(printed) == _clean(m.group(3)), (
            f"{path.name}: the output shown after the block\n{m.group(1)}\nis not what it "
            "prints today; run `python tests/test_docs.py` to regenerate it"
        )
    if path.name in ("inside.md", "backprop_by_hand.md"):
        assert checked >= 1  # these pages show printed outputs: they are checked


def test_an_output_block_that_drifted_is_caught(tmp_path):
    page = "```python\nprint(1 + 1)\n```\n\n```text\n3\n```\n"
    ((m, printed),) = run_page(page, tmp_path)
    assert m.group(3) == "3\n" and _clean(printed) == "2"  # the test above would fail here
    assert update_page(page, tmp_path) == page.replace("3\n```", "2\n```")


def update_page(text: str, workdir: Path) -> str:
    """The page with every output block replaced by what its python block prints."""
    pieces, last = [], 0
    for m, printed in run_page(text, workdir):
        if m.group(3) is None:
            continue
        pieces += [text[last : m.start(3)], _clean(printed) + "\n"]
        last = m.end(3)
    return "".join(pieces) + text[last:]


if __name__ == "__main__":  # regenerate the printed outputs shown in the docs
    sys.path.insert(0, str(ROOT / "src"))
    for path in FILES:
        with tempfile.TemporaryDirectory() as tmp:
            new = update_page(path.read_text(), Path(tmp))
        if new != path.read_text():
            path.write_text(new)
            print(f"updated {path.relative_to(ROOT)}")
