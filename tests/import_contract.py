"""The house rules of DESIGN.md as a check over chainrule's source (issue 17, point 5).

1. **Floors.** Every module of the package belongs to one floor; a module imports only from its
   own floor or a lower one::

       engine  →  models  →  training  →  inspection  →  applications

   (an arrow reads "is imported by"). Imports inside functions and under ``TYPE_CHECKING``
   count too: a lazy import is still a dependency.
2. **Private names stay home.** No private name (``_x``) is imported from another *part* of the
   package, nor read as an attribute of a module imported from another part
   (``from .. import io; io._write(...)``). A part is the engine (all its modules together),
   one subpackage (``nn``, ``training``, ...), or one top-level module (``io``, ``sklearn``).
   Top-level private modules (``chainrule._random``, ``chainrule._validation``) are the
   package's shared internals: their public names may be used anywhere their floor allows; a
   private module inside a subpackage (``training._threads``) belongs to that subpackage.

Run ``python -m tests.import_contract`` from the repository root to list the violations, one
per line, as ``file:line: message``; ``tests/test_import_contract.py`` runs the same check.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

PACKAGE = "chainrule"
SRC = Path(__file__).resolve().parents[1] / "src" / PACKAGE

FLOORS: tuple[str, ...] = ("engine", "models", "training", "inspection", "applications")

# Top-level module or subpackage of chainrule -> floor. A module missing here fails the check:
# a new module must say where it lives. Some names are modules that other branches of issue 17
# add (_primitive, arena, _numerics, kernels) or later issues (compile, playground, export).
FLOOR_OF: dict[str, str] = {
    # engine: the Tensor, its primitives and their backward rules, numerics, randomness
    "tensor": "engine",
    "_grad_mode": "engine",  # no_grad & co., split out of tensor.py
    "_versions": "engine",  # in-place version counters, split out of tensor.py
    "_backward": "engine",  # the backward pass, split out of tensor.py
    "ops": "engine",
    "_primitive": "engine",
    "arena": "engine",
    "functional": "engine",
    "gradcheck": "engine",
    "_numerics": "engine",
    "kernels": "engine",
    "compile": "engine",
    "_random": "engine",
    "_validation": "engine",
    "_inplace": "engine",
    "_torch_names": "engine",
    "_stateful": "engine",  # state primitives (dropout masks, running statistics): i17b
    "_memory": "engine",  # the allocator's thresholds (page faults of a step's temporaries)
    # models: modules, layers, losses, initialisers; optimizers and schedules
    "nn": "models",
    "optim": "models",
    # training: the fit loop, data, model files
    "training": "training",
    "data": "training",
    "io": "training",
    "_model_limits": "training",
    "plots": "training",  # matplotlib helpers: History.plot and the diagnostics' figures
    # inspection: diagnostics
    "diagnostics": "inspection",
    # applications: the faces users meet
    "cli": "applications",
    "_run": "applications",
    "_run_shared": "applications",  # `chainrule train` on memory-mapped parts: i19
    "_convert": "applications",  # `chainrule convert`: i19
    "_cli_train": "applications",  # the training commands, split out of cli.py
    "_options": "applications",
    "_outputs": "applications",
    "sklearn": "applications",
    "_sklearn": "applications",
    "playground": "applications",
    "distributed": "applications",
    "_launch": "applications",  # `chainrule ... --workers N` under mpiexec: i19
    "export": "applications",
    "testing": "applications",
    "__main__": "applications",
    "__init__": "applications",  # `import chainrule` offers every floor
}


# Imports that break rule 2 today and that another branch of issue 17 removes: helper i17b's
# array-level numerics module (``_numerics``) gives the fused step's relu and sigmoid kernels
# public names. Each entry must still occur — a stale entry is reported — so this only shrinks.
PENDING: frozenset[tuple[str, str]] = frozenset()


@dataclass(frozen=True)
class Violation:
    path: Path
    line: int
    message: str

    def __str__(self) -> str:
        try:
            shown = self.path.relative_to(SRC.parents[1])
        except ValueError:
            shown = self.path
        return f"{shown}:{self.line}: {self.message}"


def module_name(path: Path, src: Path) -> str:
    """``src/chainrule/nn/layers.py`` -> ``chainrule.nn.layers``; a package's ``__init__.py``
    names the package."""
    parts = list(path.relative_to(src.parent).with_suffix("").parts)
    if parts[-1] == "__init__" and len(parts) > 1:
        parts.pop()
    return ".".join(parts)


def top_of(module: str) -> str:
    """The top-level module or subpackage ``module`` lives in (``chainrule.nn.layers`` -> ``nn``);
    the package itself is ``__init__``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


# Top-level modules that are one part with another: the CLI's training run, options and output
# files were split out of cli.py along their seams, and share its private helpers.
# The same for the estimators' shared base, split out of sklearn.py.
SAME_PART: dict[str, str] = {
    "_run": "cli",
    "_run_shared": "cli",
    "_convert": "cli",
    "_cli_train": "cli",
    "_options": "cli",
    "_outputs": "cli",
    "_sklearn": "sklearn",
}


def part_of(module: str) -> str:
    """The part that owns ``module``'s private names: ``engine``, or its top-level name."""
    top = top_of(module)
    return "engine" if FLOOR_OF.get(top) == "engine" else SAME_PART.get(top, top)


def _is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


class _Index:
    """Which dotted names under ``src`` are modules or packages."""

    def __init__(self, src: Path) -> None:
        self.src = src
        self.modules = {module_name(p, src) for p in src.rglob("*.py")}
        self.packages = {
            module_name(p, src) for p in src.rglob("__init__.py") if p.parent != src
        } | {PACKAGE}

    def is_module(self, name: str) -> bool:
        return name in self.modules or name in self.packages


def _resolve_from(node: ast.ImportFrom, current: str, is_package: bool) -> str | None:
    """The absolute module of ``from X import ...`` in ``current``, or None if not ours."""
    if node.level == 0:
        return node.module if node.module and node.module.split(".")[0] == PACKAGE else None
    base = current.split(".")
    if not is_package:
        base = base[:-1]
    if node.level > 1:
        base = base[: len(base) - (node.level - 1)]
    if not base:
        return None
    return ".".join([*base, *([node.module] if node.module else [])])


def _imports(
    tree: ast.Module, current: str, is_package: bool, index: _Index
) -> Iterator[tuple[int, str, str | None, str | None]]:
    """(line, imported module, imported name or None, local alias) for every import of ours."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == PACKAGE:
                    local = alias.asname or alias.name.split(".")[0]
                    yield node.lineno, alias.name, None, local if alias.asname else None
        elif isinstance(node, ast.ImportFrom):
            source = _resolve_from(node, current, is_package)
            if source is None:
                continue
            for alias in node.names:
                sub = f"{source}.{alias.name}"
                local = alias.asname or alias.name
                if index.is_module(sub):  # `from .. import ops`: the submodule itself
                    yield node.lineno, sub, None, local
                else:
                    yield node.lineno, source, alias.name, None


def check(src: Path = SRC, pending: frozenset[tuple[str, str]] = PENDING) -> list[Violation]:
    """Every violation of the two rules under ``src`` (the ``chainrule`` package directory),
    but those listed in ``pending``; a ``pending`` entry that no longer occurs is reported."""
    index = _Index(src)
    found: list[Violation] = []
    seen: set[tuple[str, str]] = set()
    for path in sorted(src.rglob("*.py")):
        current = module_name(path, src)
        here_top = (
            top_of(current) if path.name != "__init__.py" or path.parent != src else "__init__"
        )
        here_floor = FLOOR_OF.get(here_top)
        if here_floor is None:
            found.append(
                Violation(
                    path,
                    1,
                    f"module {current} belongs to no floor: add {here_top!r} to FLOOR_OF in "
                    "tests/import_contract.py",
                )
            )
            continue
        here_part = part_of(current) if here_top != "__init__" else "__init__"
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        module_aliases: dict[str, str] = {}
        for line, target, name, local in _imports(tree, current, path.name == "__init__.py", index):
            if local is not None:
                module_aliases[local] = target
            target_top = top_of(target)
            target_floor = FLOOR_OF.get(target_top)
            if target_floor is None:
                found.append(Violation(path, line, f"imports {target}, which belongs to no floor"))
                continue
            if FLOORS.index(target_floor) > FLOORS.index(here_floor):
                what = f"{target}.{name}" if name else target
                found.append(
                    Violation(
                        path,
                        line,
                        f"{current} ({here_floor}) imports {what} ({target_floor}): a floor "
                        "imports only from itself and the floors below",
                    )
                )
            target_part = part_of(target)
            if target_part == here_part:
                continue
            inner = target.split(".")[2:]  # below the top-level module or subpackage
            private = [p for p in inner if _is_private(p)]
            if name is not None and _is_private(name):
                private.append(name)
            if private:
                what = f"{target}.{name}" if name else target
                if (current, what) in pending:
                    seen.add((current, what))
                    continue
                found.append(
                    Violation(
                        path,
                        line,
                        f"{current} imports the private {private[-1]!r} ({what}) from another "
                        f"part of the package ({target_part})",
                    )
                )
        # private attributes of modules imported from another part: `io._write(...)`
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.value.id in module_aliases
                and _is_private(node.attr)
            ):
                target = module_aliases[node.value.id]
                if part_of(target) != here_part and index.is_module(target):
                    found.append(
                        Violation(
                            path,
                            node.lineno,
                            f"{current} uses the private {node.attr!r} of {target} "
                            f"({node.value.id}.{node.attr}), another part of the package",
                        )
                    )
    for module, what in sorted(pending - seen):
        found.append(
            Violation(
                Path(__file__),
                1,
                f"PENDING lists {module} importing {what}, which no longer happens: remove the "
                "entry",
            )
        )
    return found


def main() -> int:
    violations = check(Path(sys.argv[1]) if len(sys.argv) > 1 else SRC)
    for v in violations:
        print(v)
    print(f"{len(violations)} import-contract violation(s)", file=sys.stderr)
    return 1 if violations else 0


if __name__ == "__main__":
    raise SystemExit(main())
