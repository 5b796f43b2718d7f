"""The playground's whole setup as one value, and its URL-hash form (a link reproduces a setup).

The hash reads like TensorFlow Playground's: ``#dataset=circle&noise=0&ratio=50&features=x1,x2
&layers=4,2&lr=0.03&activation=tanh&...``. :meth:`PlaygroundState.to_hash` and
:meth:`PlaygroundState.from_hash` are exact inverses (``from_hash(s.to_hash()) == s``, floats
written with Python's shortest round-trip ``repr``); keys left out take their default, and an
unknown key or a bad value is refused with a message that names the key.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace
from typing import Any
from urllib.parse import quote, unquote

__all__ = [
    "ACTIVATIONS",
    "CLASSIFICATION_DATASETS",
    "DATASETS",
    "FEATURES",
    "MAX_LAYERS",
    "MAX_NEURONS",
    "OPTIMIZERS",
    "REGRESSION_DATASETS",
    "RESET_KEYS",
    "PlaygroundState",
]

CLASSIFICATION_DATASETS = ("circle", "xor", "gauss", "spiral")
REGRESSION_DATASETS = ("plane", "multigauss")
DATASETS = (*CLASSIFICATION_DATASETS, *REGRESSION_DATASETS, "csv")
# the seven input features of TensorFlow Playground, in its order
FEATURES = ("x1", "x2", "x1sq", "x2sq", "x1x2", "sinx1", "sinx2")
ACTIVATIONS = ("relu", "tanh", "sigmoid", "identity", "leaky_relu", "elu", "gelu", "softplus")
OPTIMIZERS = ("sgd", "momentum", "adam")
REGULARIZATIONS = ("none", "l1", "l2")
PROBLEMS = ("classification", "regression")
MAX_LAYERS = 6
MAX_NEURONS = 8
MAX_CLASSES = 6
MAX_BATCH = 256
# changing one of these rebuilds data or network (as in TensorFlow Playground); every other key
# (learning rate, activation, regularisation, batch size, optimizer, boundary view) applies to
# the running training without a reset
RESET_KEYS = frozenset(
    {"dataset", "classes", "noise", "ratio", "features", "layers", "problem", "seed"}
)


def _int(key: str, text: str, low: int, high: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise ValueError(f"{key} must be a whole number, got {text!r}") from None
    if not low <= value <= high:
        raise ValueError(f"{key} must be between {low} and {high}, got {value}")
    return value


def _float(key: str, text: str, low: float, low_inclusive: bool, high: float = math.inf) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{key} must be a number, got {text!r}") from None
    ok = (value >= low if low_inclusive else value > low) and value <= high
    if not (math.isfinite(value) and ok):
        sign = ">=" if low_inclusive else ">"
        raise ValueError(
            f"{key} must be a finite number {sign} {low:g} and <= {high:g}, got {text!r}"
        )
    return value


def _choice(key: str, text: str, choices: tuple[str, ...]) -> str:
    if text not in choices:
        raise ValueError(f"{key} must be one of {', '.join(choices)}, got {text!r}")
    return text


def _features(text: str) -> tuple[str, ...]:
    names = tuple(t for t in text.split(",") if t)
    for n in names:
        _choice("features", n, FEATURES)
    if not names:
        raise ValueError("features must name at least one input (x1, x2, x1sq, ...), got none")
    if len(set(names)) != len(names):
        raise ValueError(f"features names an input twice: {text!r}")
    return tuple(f for f in FEATURES if f in names)  # the network's input order


def _layers(text: str) -> tuple[int, ...]:
    parts = [t for t in text.split(",") if t != ""]
    if len(parts) > MAX_LAYERS:
        raise ValueError(f"layers must list at most {MAX_LAYERS} hidden layers, got {len(parts)}")
    return tuple(_int("layers", t, 1, MAX_NEURONS) for t in parts)


@dataclass(frozen=True)
class PlaygroundState:
    """Everything that defines a playground run (what the page's controls show).

    Defaults are TensorFlow Playground's first screen: the circle, two inputs, hidden layers of
    4 and 2 tanh units, learning rate 0.03, batch size 10, half the points for training.
    """

    dataset: str = "circle"
    classes: int = 2  # classification data sets: 2 classes, or 3..6 (softmax + cross-entropy)
    noise: int = 0  # percent, 0..50
    ratio: int = 50  # percent of the points used for training, 10..90
    features: tuple[str, ...] = ("x1", "x2")
    layers: tuple[int, ...] = (4, 2)
    lr: float = 0.03
    activation: str = "tanh"
    optimizer: str = "sgd"
    reg: str = "none"
    regRate: float = 0.0  # noqa: N815 (the hash's name, as TensorFlow Playground's)
    batchSize: int = 10  # noqa: N815
    problem: str = "classification"
    seed: int = 1
    fx: int = 0  # uploaded data with more than two inputs: the two shown in the boundary view
    fy: int = 1

    def __post_init__(self) -> None:
        # one check for every way of building a state: from a hash, a message or Python
        for f in fields(self):
            parsed = _PARSE[f.name](_text(getattr(self, f.name)))
            if parsed != getattr(self, f.name):
                object.__setattr__(self, f.name, parsed)
        if self.dataset in CLASSIFICATION_DATASETS and self.problem != "classification":
            raise ValueError(
                f"dataset {self.dataset!r} is a classification data set, but problem is "
                f"{self.problem!r}; choose plane or multigauss for regression"
            )
        if self.dataset in REGRESSION_DATASETS and self.problem != "regression":
            raise ValueError(
                f"dataset {self.dataset!r} is a regression data set, but problem is "
                f"{self.problem!r}; choose circle, xor, gauss or spiral for classification"
            )
        if self.fx == self.fy:
            raise ValueError(f"fx and fy must be two different inputs, got {self.fx} twice")

    def to_hash(self) -> str:
        """The URL hash (without ``#``) that :meth:`from_hash` turns back into this state."""
        return "&".join(
            f"{f.name}={quote(_text(getattr(self, f.name)), safe=',')}" for f in fields(self)
        )

    @classmethod
    def from_hash(cls, text: str) -> PlaygroundState:
        """Parse a URL hash (``#`` optional); keys left out take their default."""
        text = text[1:] if text.startswith("#") else text
        values: dict[str, Any] = {}
        for part in text.split("&"):
            if not part:
                continue
            key, sep, value = part.partition("=")
            if not sep:
                raise ValueError(f"the URL hash part {part!r} is not key=value")
            if key not in _PARSE:
                raise ValueError(f"unknown key {key!r} in the URL hash; known: {', '.join(_PARSE)}")
            if key in values:
                raise ValueError(f"the URL hash gives {key!r} twice")
            values[key] = _PARSE[key](unquote(value))
        if "problem" not in values and "dataset" in values:  # a data set implies its problem
            values["problem"] = (
                "regression" if values["dataset"] in REGRESSION_DATASETS else "classification"
            )
        return cls(**values)

    def with_value(self, key: str, text: str) -> PlaygroundState:
        """A copy with one key set from its text form (as the page sends a control's value).

        Choosing a data set of the other problem type switches the problem, and switching the
        problem picks that problem's first data set (as TensorFlow Playground's menu does).
        """
        if key not in _PARSE:
            raise ValueError(f"unknown setting {key!r}; known: {', '.join(_PARSE)}")
        value = _PARSE[key](text)
        changes: dict[str, Any] = {key: value}
        if key == "dataset" and value in REGRESSION_DATASETS:
            changes["problem"] = "regression"
        elif key == "dataset" and value in CLASSIFICATION_DATASETS:
            changes["problem"] = "classification"
        elif key == "problem" and value != self.problem and self.dataset != "csv":
            changes["dataset"] = "plane" if value == "regression" else "circle"
        if key in ("fx", "fy"):  # picking the other axis's input swaps the two
            other = "fy" if key == "fx" else "fx"
            if getattr(self, other) == value:
                changes[other] = getattr(self, key)
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return {
            f.name: (list(v) if isinstance(v := getattr(self, f.name), tuple) else v)
            for f in fields(self)
        }


def _text(value: Any) -> str:
    """A field's text form: tuples comma-separated, floats as their shortest round-trip repr."""
    if isinstance(value, (tuple, list)):
        return ",".join(str(v) for v in value)
    if isinstance(value, float):
        return repr(value)
    return str(value)


_PARSE: dict[str, Any] = {
    "dataset": lambda t: _choice("dataset", t, DATASETS),
    "classes": lambda t: _int("classes", t, 2, MAX_CLASSES),
    "noise": lambda t: _int("noise", t, 0, 50),
    "ratio": lambda t: _int("ratio", t, 10, 90),
    "features": _features,
    "layers": _layers,
    "lr": lambda t: _float("lr", t, 0.0, False, 100.0),
    "activation": lambda t: _choice("activation", t, ACTIVATIONS),
    "optimizer": lambda t: _choice("optimizer", t, OPTIMIZERS),
    "reg": lambda t: _choice("reg", t, REGULARIZATIONS),
    "regRate": lambda t: _float("regRate", t, 0.0, True, 10.0),
    "batchSize": lambda t: _int("batchSize", t, 1, MAX_BATCH),
    "problem": lambda t: _choice("problem", t, PROBLEMS),
    "seed": lambda t: _int("seed", t, 0, 2**31 - 1),
    "fx": lambda t: _int("fx", t, 0, 10_000),
    "fy": lambda t: _int("fy", t, 0, 10_000),
}
