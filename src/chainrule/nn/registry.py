"""Which modules a model file may name, and what the rest of chainrule may ask of a layer.

Every layer registers itself with :func:`register_module`: chainrule's own layers in their
module (``@register_module(activation="relu")`` above ``class ReLU``), a user's classes where
they are defined. The table serves

- **model files**: the architecture is JSON, ``{"type": name, "config": {...}}``; saving asks the
  module for ``get_config()``, loading looks ``name`` up here and calls
  ``cls.from_config(config)``. Nothing is imported by name and no code is read from the file: a
  file naming a class this process has not registered cannot be loaded;
- **the fused MLP step and the diagnostics**, which ask :func:`activation_kind` what an
  activation layer computes instead of keeping their own list of classes;
- the list of chainrule's layers, :data:`LAYERS` (a read-only view of the table).

What a layer costs and what shape it gives is asked of the layer itself
(:meth:`~chainrule.nn.Module.flops`, :meth:`~chainrule.nn.Module.output_shape`,
:meth:`~chainrule.nn.Module.fans`).
"""

from __future__ import annotations

import functools
import inspect
import re
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, TypeVar

import numpy as np

from .module import Module, ModuleDict, ModuleList, Sequential, _InitArgs

__all__ = [
    "ACTIVATION_KINDS",
    "LAYERS",
    "LayerSpec",
    "activation_kind",
    "build_module",
    "describe_module",
    "lookup",
    "register_module",
    "registered",
    "spec_of",
]

# What an elementwise activation layer may declare it computes (``register_module(activation=)``):
# the fused MLP step then runs the array kernel of that name instead of the layer's forward.
ACTIVATION_KINDS = ("relu", "leaky_relu", "elu", "gelu", "sigmoid", "tanh", "softplus", "identity")


@dataclass(frozen=True)
class LayerSpec:
    """What the registry knows of one class.

    Attributes
    ----------
    name : the name model files use for it.
    cls : the class.
    builtin : True for chainrule's own layers (their names cannot be taken).
    activation : for an elementwise activation, what it computes (one of
        :data:`ACTIVATION_KINDS`; ``"leaky_relu"`` reads the layer's ``negative_slope``), else
        None. Declared for exactly this class: a subclass is not assumed to compute the same.
    """

    name: str
    cls: type[Module]
    builtin: bool
    activation: str | None = None


_BUILTIN: dict[str, type[Module]] = {}
_REGISTERED: dict[str, type[Module]] = {}
_SPECS: dict[type[Module], LayerSpec] = {}

LAYERS = MappingProxyType(_BUILTIN)  # chainrule's layers by name, as model files name them

M = TypeVar("M", bound=type[Module])


def _same_shape(self: Module, input_shape: tuple[int | None, ...]) -> tuple[int | None, ...]:
    return input_shape


def register_module(
    cls: M | None = None,
    *,
    name: str | None = None,
    activation: str | None = None,
    same_shape: bool = False,
    builtin: bool = False,
) -> Any:
    """Class decorator: let ``cr.save``, ``cr.load``, checkpoints and ``resume_from`` handle a
    custom Module (chainrule's own layers register themselves the same way).

    The class joins an in-process registry under ``name`` (default: the class name). Unless it
    defines its own ``get_config()``, the arguments each instance was constructed with are
    recorded and written into the model file's architecture; loading calls the class with
    them and then copies the saved weights in. Arguments must be JSON values (numbers,
    strings, booleans, None, lists, dicts), dtypes, or modules (described in turn; they must
    be built-in or registered too). Random generators are stored as None: the weights are
    saved, the initialisation is not needed.

    Loading never imports by name: the process that loads must have run the decorated class
    definition (import the module that defines it before ``cr.load``).

    ``activation=`` declares that the class is an elementwise activation computing exactly
    that function (one of :data:`ACTIVATION_KINDS`): the fused MLP step of ``fit`` then uses
    its own kernel for it. ``same_shape=True`` (implied by ``activation=``) declares that the
    output has the input's shape, for the cost estimate (:meth:`Module.output_shape`).
    ``builtin=True`` is for chainrule's own layers: their names cannot be taken by another
    class, and they must define ``get_config()``.

    Examples
    --------
    >>> import os, tempfile, numpy as np, chainrule as cr
    >>> @cr.nn.register_module
    ... class TwoHeads(cr.nn.Module):
    ...     def __init__(self, n_in, n_hidden=8):
    ...         super().__init__()
    ...         self.body = cr.nn.Linear(n_in, n_hidden, rng=0)
    ...         self.heads = [cr.nn.Linear(n_hidden, 1, rng=1), cr.nn.Linear(n_hidden, 2, rng=2)]
    ...     def forward(self, x):
    ...         h = cr.relu(self.body(x))
    ...         return cr.concatenate([head(h) for head in self.heads], axis=1)
    >>> path = os.path.join(tempfile.mkdtemp(), "two_heads.chainrule")
    >>> model = TwoHeads(4, n_hidden=16)
    >>> cr.save(model, path)
    >>> again = cr.load(path)
    >>> x = np.ones((2, 4), np.float32)
    >>> bool(np.array_equal(again(x).data, model(x).data))
    True
    """

    if activation is not None and activation not in ACTIVATION_KINDS:
        raise ValueError(
            f"activation must be one of {ACTIVATION_KINDS} or None, got {activation!r}"
        )

    def decorate(klass: M) -> M:
        if not (isinstance(klass, type) and issubclass(klass, Module)):
            raise TypeError(f"register_module decorates Module subclasses, got {klass!r}")
        key = klass.__name__ if name is None else name
        if not isinstance(key, str) or not key:
            raise ValueError(f"name must be a non-empty string, got {key!r}")
        if (activation is not None or same_shape) and "output_shape" not in vars(klass):
            klass.output_shape = _same_shape  # type: ignore[assignment]
        if builtin:
            if klass.get_config is Module.get_config:
                raise TypeError(f"chainrule layer {key} must define get_config()")
            _BUILTIN[key] = klass
            _SPECS[klass] = LayerSpec(key, klass, True, activation)
            klass._registered_name = key  # type: ignore[attr-defined]
            return klass
        if key in _BUILTIN:
            raise ValueError(
                f"{key!r} is the name of a chainrule layer; register the class under another "
                "name: @cr.nn.register_module(name='...')"
            )
        old = _REGISTERED.get(key)
        if old is not None and (old.__module__, old.__qualname__) != (
            klass.__module__,
            klass.__qualname__,
        ):
            raise ValueError(
                f"another class is registered as {key!r} ({old.__module__}.{old.__qualname__}); "
                "choose a different name: @cr.nn.register_module(name='...')"
            )
        if "get_config" not in _own_attrs(klass):
            _capture_init_args(klass)
        if old is not None:
            _SPECS.pop(old, None)
        _REGISTERED[key] = klass  # a redefinition (a re-run notebook cell) replaces the old
        _SPECS[klass] = LayerSpec(key, klass, False, activation)
        klass._registered_name = key  # type: ignore[attr-defined]
        return klass

    return decorate if cls is None else decorate(cls)


def spec_of(module: Module | type[Module]) -> LayerSpec | None:
    """The registry's entry for exactly ``module``'s class (not a base class's), or None."""
    return _SPECS.get(module if isinstance(module, type) else type(module))


def activation_kind(module: Module, inherited: bool = False) -> str | None:
    """What the elementwise activation ``module`` computes (one of :data:`ACTIVATION_KINDS`),
    as its class declared when registering, or None.

    Only exactly the declaring class counts, since a subclass may override ``forward``
    (the fused MLP step relies on it); ``inherited=True`` accepts a registered base class's
    declaration too, for descriptions such as "units after a ReLU-like activation".

    Examples
    --------
    >>> import chainrule as cr
    >>> from chainrule.nn.registry import activation_kind
    >>> activation_kind(cr.nn.Tanh()), activation_kind(cr.nn.Linear(2, 3))
    ('tanh', None)
    """
    if not inherited:  # the fused step asks this for every layer of every step: one lookup
        spec = _SPECS.get(type(module))
        return None if spec is None else spec.activation
    for cls in type(module).__mro__:
        spec = _SPECS.get(cls)
        if spec is not None and spec.activation is not None:
            return spec.activation
    return None


def _own_attrs(klass: type) -> set[str]:
    """Attribute names defined by ``klass`` or its user-defined bases (not by chainrule's
    classes: a registered subclass of Sequential records its own constructor arguments)."""
    names: set[str] = set()
    for base in klass.__mro__:
        if not issubclass(base, Module) or base.__module__.startswith("chainrule."):
            break
        names.update(vars(base))
    return names


def _capture_init_args(klass: type[Module]) -> None:
    init = klass.__init__
    sig = inspect.signature(init)

    @functools.wraps(init)
    def __init__(self: Module, *args: Any, **kwargs: Any) -> None:  # noqa: N807
        init(self, *args, **kwargs)
        if type(self) is klass:  # the outermost class records, not its registered bases
            bound = sig.bind(self, *args, **kwargs)
            config: dict[str, Any] = {}
            for pname, value in list(bound.arguments.items())[1:]:
                kind = sig.parameters[pname].kind
                if kind is inspect.Parameter.VAR_POSITIONAL:
                    config["__args__"] = list(value)
                elif kind is inspect.Parameter.VAR_KEYWORD:
                    config.update(value)
                else:
                    config[pname] = value
            self.__dict__["_init_args"] = _InitArgs(config)

    klass.__init__ = __init__  # type: ignore[method-assign]


for _container in (Sequential, ModuleList, ModuleDict):
    register_module(_container, builtin=True)


def lookup(name: str) -> type[Module] | None:
    """The class a model file may name ``name``, or None."""
    return _BUILTIN.get(name) or _REGISTERED.get(name)


def registered() -> dict[str, type[Module]]:
    """The classes registered with :func:`register_module`, by name (a copy)."""
    return dict(_REGISTERED)


def _type_name(model: Module) -> str | None:
    """The name ``model``'s class has in the table, or None if it has none."""
    cls = type(model)
    name = getattr(cls, "_registered_name", None) if "_registered_name" in vars(cls) else None
    if name is None:
        name = cls.__name__
    return name if lookup(name) is cls else None


def describe_module(model: Module, where: str = "model") -> dict[str, Any]:
    """``{"type": ..., "config": ...}`` rebuilding ``model``; modules in the config (any depth)
    are described in turn. Raises TypeError naming the first class that cannot be."""
    name = _type_name(model)
    cls = type(model)
    if name is None:
        raise TypeError(
            f"cannot save {where}: {cls.__name__} is neither a chainrule layer nor registered. "
            f"Decorate its class with @cr.nn.register_module (class {cls.__name__}"
            "(cr.nn.Module) preceded by the line @cr.nn.register_module), or save only the "
            "weights with cr.save_state_dict(model, path)"
        )
    if isinstance(model, Sequential) and type(model) is Sequential:
        return {
            "type": name,
            "config": {
                "layers": [
                    describe_module(m, f"{where}[{i}]" if where else str(i))
                    for i, m in enumerate(model)
                ]
            },
        }
    captured = model.__dict__.get("_init_args")
    try:
        config = dict(captured.config) if isinstance(captured, _InitArgs) else model.get_config()
    except NotImplementedError as exc:
        raise TypeError(f"cannot save {where}: {exc}") from None
    if not isinstance(config, dict):
        raise TypeError(
            f"cannot save {where}: {cls.__name__}.get_config() must return a dict, got "
            f"{type(config).__name__}"
        )
    return {"type": name, "config": _encode(config, f"{where} ({name})")}


def _encode(value: Any, where: str) -> Any:
    if isinstance(value, Module):
        return {"__module__": describe_module(value, where)}
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise TypeError(
                    f"cannot save {where}: configuration keys must be strings, got {k!r}"
                )
            out[k] = _encode(v, f"{where}, argument {k!r}")
        return out
    if isinstance(value, (list, tuple)):
        return [_encode(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (np.bool_, np.integer, np.floating)):
        return value.item()
    if isinstance(value, np.dtype) or (isinstance(value, type) and issubclass(value, np.generic)):
        return {"__dtype__": np.dtype(value).name}
    if isinstance(value, np.random.Generator):
        return None  # the weights are saved: the initialisation's generator is not needed
    raise TypeError(
        f"cannot save {where}: a {type(value).__name__} cannot be stored in a model file (JSON "
        "values, dtypes and modules can); define get_config() on the class to return "
        "arguments that rebuild it"
    )


def build_module(arch: Any, error: type[Exception], depth: int = 0, max_depth: int = 64) -> Module:
    """Rebuild a module from :func:`describe_module`'s output; ``error`` is raised (with the
    reason) for anything invalid or unknown."""
    if depth > max_depth:
        raise error("architecture is nested too deeply")
    if not isinstance(arch, dict) or not isinstance(arch.get("type"), str):
        raise error(f"architecture entry must be an object with a 'type', got {arch!r:.80}")
    name = arch["type"]
    cls = lookup(name)
    if cls is None:
        known = ", ".join(sorted([*_BUILTIN, *_REGISTERED]))
        raise error(
            f"architecture names an unknown layer {name!r:.60}; known: {known}. A custom module "
            "must be registered (@cr.nn.register_module) in this process before loading: import "
            "the code that defines it first"
        )
    config = arch.get("config", {})
    if not isinstance(config, dict):
        raise error(f"config of layer {name} must be an object")
    try:
        if cls is Sequential:
            layers = config.get("layers")
            if not isinstance(layers, list) or set(config) != {"layers"}:
                raise error("Sequential config must be {'layers': [...]}")
            built = []
            for i, a in enumerate(layers):
                try:
                    built.append(build_module(a, error, depth + 1, max_depth))
                except error as exc:  # which layer of the Sequential (a nested one adds its own)
                    raise error(f"layer {i}: {exc}") from None
            return Sequential(*built)
        return cls.from_config(_decode(config, error, depth + 1, max_depth))
    except error:
        raise
    except (TypeError, ValueError, OverflowError) as exc:
        # Python names the function that refused (``_ConvNd.__init__()``): the user wrote Conv2d
        text = re.sub(r"^[\w.]*__init__\(\)", f"{name}()", str(exc))
        raise error(f"invalid configuration for layer {name}: {text}") from None


def _decode(value: Any, error: type[Exception], depth: int, max_depth: int) -> Any:
    if depth > max_depth:
        raise error("architecture is nested too deeply")
    if isinstance(value, list):
        return [_decode(v, error, depth + 1, max_depth) for v in value]
    if isinstance(value, dict):
        if set(value) == {"__module__"}:
            return build_module(value["__module__"], error, depth + 1, max_depth)
        if set(value) == {"__dtype__"}:
            try:
                dt = np.dtype(str(value["__dtype__"]))
            except Exception:  # NumPy raises several kinds for a malformed name
                raise error(f"unknown dtype {value['__dtype__']!r:.40}") from None
            if dt.kind not in "biuf":
                raise error(f"dtype {dt} is not allowed in an architecture")
            return dt
        return {k: _decode(v, error, depth + 1, max_depth) for k, v in value.items()}
    return value
