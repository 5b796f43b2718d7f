"""Type and range checks of the command line's options, the same for flags and TOML configs.

One table (:data:`OPTIONS`) says what each option accepts; :func:`check_option` checks a value
against it and returns the value in the form the program uses (a list of widths for
``layers``, a list of names for ``drop``). A value that does not fit is refused — never coerced
— with one line naming the option (``--batch-size``, or ``batch_size in run.toml``), what it
accepts and what it got::

    --batch-size must be >= 1 (an integer), got 0
    early_stopping in run.toml must be true or false, got the string 'false'
"""

from __future__ import annotations

import itertools
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .nn import ACTIVATIONS
from .training.fit import OPTIMIZERS

__all__ = [
    "INIT_SCHEMES",
    "MAX_WIDTH",
    "OPTIONS",
    "Option",
    "check_count",
    "check_network_size",
    "check_option",
    "option_label",
]

INIT_SCHEMES = ("auto", "he", "glorot", "lecun", "default")  # mlp(init_scheme=...)
MAX_WIDTH = 1 << 20  # a hidden layer wider than this is a typo, not a network this CLI can train


@dataclass(frozen=True)
class Option:
    """What one option accepts: ``kind`` is int, float, bool, str, choice, names or layers."""

    kind: str
    low: float | None = None
    high: float | None = None
    low_inclusive: bool = True
    high_inclusive: bool = True
    choices: tuple[str, ...] = ()
    optional: bool = False


OPTIONS: dict[str, Option] = {
    "dataset": Option("str", optional=True),
    "data": Option("str", optional=True),
    "target": Option("str", optional=True),
    "arch": Option("str", optional=True),
    "out": Option("str", optional=True),
    "task": Option("choice", choices=("auto", "classification", "regression")),
    "layers": Option("layers"),
    "activation": Option("choice", choices=tuple(sorted(ACTIVATIONS))),
    "optimizer": Option("choice", choices=tuple(sorted(OPTIMIZERS))),
    "lr": Option("float", low=0, low_inclusive=False),
    "epochs": Option("int", low=1),
    "batch_size": Option("int", low=1),
    "seed": Option("int", low=0),
    "val_split": Option("float", low=0, high=1, high_inclusive=False),
    "test_split": Option("float", low=0, high=1, low_inclusive=False, high_inclusive=False),
    "early_stopping": Option("bool"),
    "patience": Option("int", low=0),
    "dropout": Option("float", low=0, high=1, high_inclusive=False),
    "batch_norm": Option("bool"),
    "init": Option("choice", choices=INIT_SCHEMES),
    "clip_grad_norm": Option("float", low=0, low_inclusive=False, optional=True),
    "weight_decay": Option("float", low=0),
    "categorical": Option("names"),
    "drop": Option("names"),
    "missing": Option("choice", choices=("impute", "drop", "error")),
    "plots": Option("bool"),
    "gradient_flow": Option("bool"),
    "report": Option("bool"),
    "overwrite": Option("bool"),
}


def option_label(name: str, config: str | None = None) -> str:
    """``--batch-size`` for a flag, ``batch_size in run.toml`` for a config file's key."""
    return f"{name} in {config}" if config else "--" + name.replace("_", "-")


def _received(value: Any) -> str:
    kinds = {bool: "the boolean", str: "the string", list: "the list", dict: "the table"}
    for t, word in kinds.items():
        if isinstance(value, t):
            shown = str(value).lower() if t is bool else repr(value)
            return f"{word} {shown:.80}"
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, int):
        return str(value)
    return f"{type(value).__name__} {value!r:.80}"


def _bounds(opt: Option) -> str:
    parts = []
    if opt.low is not None:
        parts.append(f"{'>=' if opt.low_inclusive else '>'} {opt.low:g}")
    if opt.high is not None:
        parts.append(f"{'<=' if opt.high_inclusive else '<'} {opt.high:g}")
    return " and ".join(parts)


def _in_range(v: float, opt: Option) -> bool:
    if opt.low is not None and (v < opt.low or (v == opt.low and not opt.low_inclusive)):
        return False
    return not (
        opt.high is not None and (v > opt.high or (v == opt.high and not opt.high_inclusive))
    )


def _number(label: str, value: Any, opt: Option) -> int | float:
    integer = opt.kind == "int"
    kind = "an integer" if integer else "a finite number"
    expected = f"{_bounds(opt)} ({kind})" if _bounds(opt) else kind
    ok_type = isinstance(value, int) if integer else isinstance(value, (int, float))
    if isinstance(value, bool) or not ok_type:
        raise TypeError(f"{label} must be {expected}, got {_received(value)}")
    if not integer and not math.isfinite(value):
        raise ValueError(f"{label} must be {expected}, got {value!r}")
    if not _in_range(value, opt):
        raise ValueError(f"{label} must be {expected}, got {_received(value)}")
    return int(value) if integer else float(value)


def _names(label: str, value: Any) -> list[str]:
    expected = "column names: a comma-separated string or a list of strings"
    if isinstance(value, str):
        return [t.strip() for t in value.split(",") if t.strip()]
    if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        return [v.strip() for v in value if v.strip()]
    raise TypeError(f"{label} must be {expected}, got {_received(value)}")


def _layers(label: str, value: Any) -> list[int]:
    expected = f"positive integers (at most {MAX_WIDTH:,}) such as 64,32 or [64, 32]"
    if isinstance(value, int) and not isinstance(value, bool):
        items: Sequence[Any] = [value]
    elif isinstance(value, str):
        items = [t.strip() for t in value.split(",") if t.strip()]
    elif isinstance(value, (list, tuple)):
        items = value
    else:
        raise TypeError(f"{label} must be {expected}, got {_received(value)}")
    widths = []
    for item in items:
        if isinstance(item, str) and item.strip().isdigit():
            item = int(item)
        if isinstance(item, bool) or not isinstance(item, int) or not 1 <= item <= MAX_WIDTH:
            raise ValueError(f"{label} must be {expected}, got {_received(value)}")
        widths.append(item)
    return widths


def check_option(name: str, value: Any, config: str | None = None) -> Any:
    """Check ``value`` of option ``name`` (from a flag, or from the TOML file ``config``).

    Returns the value as the program uses it; raises ValueError/TypeError otherwise.

    >>> check_option("batch_size", 0)
    Traceback (most recent call last):
    ...
    ValueError: --batch-size must be >= 1 (an integer), got 0
    >>> check_option("layers", "64, 32")
    [64, 32]
    """
    opt = OPTIONS[name]
    label = option_label(name, config)
    if value is None and opt.optional:
        return None
    if opt.kind in ("int", "float"):
        return _number(label, value, opt)
    if opt.kind == "bool":
        if not isinstance(value, bool):
            raise TypeError(f"{label} must be true or false, got {_received(value)}")
        return value
    if opt.kind == "str":
        if not isinstance(value, str) or not value:
            raise TypeError(f"{label} must be a non-empty string, got {_received(value)}")
        return value
    if opt.kind == "choice":
        if not isinstance(value, str) or value not in opt.choices:
            raise ValueError(
                f"{label} must be one of {', '.join(opt.choices)}, got {_received(value)}"
            )
        return value
    if opt.kind == "names":
        return _names(label, value)
    return _layers(label, value)


def check_count(label: str, value: Any, *, high: int | None = None) -> int:
    """A count option of a command (``--rows``, ``--max-params``): an integer from 1 to ``high``."""
    return int(_number(label, value, Option("int", low=1, high=high)))


def _physical_memory() -> int | None:
    try:
        return int(os.sysconf("SC_PHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (AttributeError, ValueError, OSError):
        return None


def check_network_size(widths: Sequence[int], itemsize: int = 4) -> None:
    """Refuse (ValueError) an MLP whose training state cannot fit in this machine's memory.

    Training holds four arrays per parameter (weights, gradients and two optimizer moments):
    ``4 · itemsize · Σ (fan_in + 1) · fan_out`` bytes, checked before anything is allocated.
    """
    n = sum((a + 1) * b for a, b in itertools.pairwise(widths))
    need = 4 * itemsize * n
    memory = _physical_memory()
    if memory is not None and need > memory:
        raise ValueError(
            f"--layers {','.join(map(str, widths[1:-1]))} makes a network of {n:,} parameters "
            f"(training needs about {need / 2**30:.3g} GiB), more than this machine's memory "
            f"({memory / 2**30:.3g} GiB); use fewer or narrower layers"
        )
