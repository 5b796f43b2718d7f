"""Module and Parameter: models that find their own parameters."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import numpy as np

from ..tensor import Tensor, _as_array

__all__ = ["Module", "Parameter", "Sequential"]


class Parameter(Tensor):
    """A leaf tensor that a :class:`Module` owns and an optimizer updates.

    Parameters
    ----------
    data : array_like
        Initial value; float arrays keep their dtype, Python lists become float32.
    requires_grad : bool, default True
    """

    # _grad_buf: where backward() should write this parameter's gradient (a view into an
    # optimizer's flat gradient buffer), or None
    __slots__ = ("_grad_buf",)

    def __init__(self, data: Any, requires_grad: bool = True) -> None:
        arr = _as_array(data)
        if arr.dtype.kind != "f":
            raise TypeError(f"a Parameter must be floating point, got dtype {arr.dtype}")
        super().__init__(np.array(arr, copy=True), requires_grad=requires_grad)
        self._grad_buf: np.ndarray | None = None

    def __repr__(self) -> str:
        return "Parameter(" + super().__repr__()[len("tensor(") :]


class Module:
    """Base class of layers and models.

    Subclasses set parameters, sub-modules, and lists or dicts of them as attributes in
    ``__init__`` and define ``forward``; :meth:`named_parameters` finds them all, with dotted
    names (``"layers.0.weight"``). Arrays that are state but not parameters (running statistics)
    are registered with :meth:`register_buffer` and saved by :meth:`state_dict` too.
    """

    training: bool = True

    def __init__(self) -> None:
        self.training = True
        self._buffer_names: list[str] = []

    # ----- calling -----
    def forward(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError(f"{type(self).__name__} does not define forward()")

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        out = self.forward(*args, **kwargs)
        hooks = self.__dict__.get("_forward_hooks")
        if hooks:
            for hook in list(hooks.values()):
                result = hook(self, args, out)
                if result is not None:
                    out = result
        return out

    def register_forward_hook(self, hook: Any) -> Any:
        """Call ``hook(module, inputs, output)`` after every forward pass (as PyTorch).

        The hook may return a replacement output. Returns a handle whose ``remove()`` detaches
        it. Diagnostics use hooks to watch activations without changing the model's code.
        """
        hooks = self.__dict__.setdefault("_forward_hooks", {})
        key = max(hooks, default=-1) + 1
        hooks[key] = hook

        class _Handle:
            def remove(self_inner) -> None:  # noqa: N805
                hooks.pop(key, None)

        return _Handle()

    # ----- discovery -----
    def _walk(self, kind: type[Any]) -> Iterator[tuple[str, Any]]:
        """Attributes of type ``kind``, also inside lists, tuples and dicts, with their names."""
        for name, value in vars(self).items():
            if isinstance(value, kind):
                yield name, value
            elif isinstance(value, (list, tuple)):
                for i, v in enumerate(value):
                    if isinstance(v, kind):
                        yield f"{name}.{i}", v
            elif isinstance(value, dict):
                for k, v in value.items():
                    if isinstance(v, kind):
                        yield f"{name}.{k}", v

    def _named_children(self) -> Iterator[tuple[str, Module]]:
        return self._walk(Module)

    def _own_parameters(self) -> Iterator[tuple[str, Parameter]]:
        return self._walk(Parameter)

    def named_children(self) -> Iterator[tuple[str, Module]]:
        """Direct sub-modules with their names."""
        return self._named_children()

    def children(self) -> Iterator[Module]:
        for _, m in self._named_children():
            yield m

    def named_modules(self, prefix: str = "") -> Iterator[tuple[str, Module]]:
        """This module and every sub-module, depth first, with dotted names."""
        seen: set[int] = set()
        stack: list[tuple[str, Module]] = [(prefix, self)]
        while stack:
            name, m = stack.pop()
            if id(m) in seen:
                continue
            seen.add(id(m))
            yield name, m
            kids = [(f"{name}.{n}" if name else n, c) for n, c in m._named_children()]
            stack.extend(reversed(kids))

    def modules(self) -> Iterator[Module]:
        for _, m in self.named_modules():
            yield m

    def named_parameters(self, prefix: str = "") -> Iterator[tuple[str, Parameter]]:
        """Every parameter once (shared ones under their first name), with dotted names."""
        seen: set[int] = set()
        for mname, m in self.named_modules(prefix):
            for pname, p in m._own_parameters():
                if id(p) not in seen:
                    seen.add(id(p))
                    yield (f"{mname}.{pname}" if mname else pname), p

    def parameters(self) -> Iterator[Parameter]:
        for _, p in self.named_parameters():
            yield p

    def register_buffer(self, name: str, value: np.ndarray) -> None:
        """Keep ``value`` as attribute ``name`` and in the state dict (not trained)."""
        setattr(self, name, value)
        if name not in self._buffer_names:
            self._buffer_names.append(name)

    def named_buffers(self) -> Iterator[tuple[str, np.ndarray]]:
        for mname, m in self.named_modules():
            for b in getattr(m, "_buffer_names", ()):
                yield (f"{mname}.{b}" if mname else b), getattr(m, b)

    def num_parameters(self) -> int:
        """The number of trainable scalars."""
        return sum(p.size for p in self.parameters())

    # ----- state -----
    def state_dict(self) -> OrderedDict[str, np.ndarray]:
        """Copies of every parameter and buffer, by dotted name."""
        out: OrderedDict[str, np.ndarray] = OrderedDict()
        for name, p in self.named_parameters():
            out[name] = p.data.copy()
        for name, b in self.named_buffers():
            out[name] = np.array(b, copy=True)
        return out

    def load_state_dict(self, state: Mapping[str, Any], strict: bool = True) -> None:
        """Copy values from ``state`` into the parameters and buffers (in place).

        Every entry is checked before anything is written: a missing or unexpected key (with
        ``strict``), a shape or a dtype mismatch raises ``ValueError`` naming the entry, and the
        model is left unchanged.
        """
        if not isinstance(state, Mapping):
            raise TypeError(
                f"state must be a mapping of names to arrays, got {type(state).__name__}"
            )
        params = dict(self.named_parameters())
        buffers = {n: (m, b) for n, m, b in self._buffer_owners()}
        expected = list(params) + list(buffers)
        missing = [k for k in expected if k not in state]
        unexpected = [k for k in state if k not in params and k not in buffers]
        if strict and (missing or unexpected):
            raise ValueError(
                f"state dict does not match {type(self).__name__}: missing keys {missing}, "
                f"unexpected keys {unexpected}"
            )
        updates: list[tuple[str, np.ndarray]] = []
        for name in expected:
            if name not in state:
                continue
            value = np.asarray(state[name].data if isinstance(state[name], Tensor) else state[name])
            current = (
                params[name].data
                if name in params
                else np.asarray(getattr(buffers[name][0], buffers[name][1]))
            )
            if value.shape != current.shape:
                raise ValueError(
                    f"state dict entry '{name}' has shape {value.shape}, the model's has shape "
                    f"{current.shape}"
                )
            if value.dtype != current.dtype:
                raise ValueError(
                    f"state dict entry '{name}' has dtype {value.dtype}, the model's has dtype "
                    f"{current.dtype}; convert the model first, e.g. model.to(np.{value.dtype})"
                )
            updates.append((name, value))
        for name, value in updates:
            if name in params:
                params[name].data[...] = value
            else:
                owner, attr = buffers[name]
                getattr(owner, attr)[...] = value

    def _buffer_owners(self) -> Iterator[tuple[str, Module, str]]:
        for mname, m in self.named_modules():
            for b in getattr(m, "_buffer_names", ()):
                yield (f"{mname}.{b}" if mname else b), m, b

    # ----- modes and dtype -----
    def train(self, mode: bool = True) -> Module:
        """Set training mode (dropout active, batch statistics) on this module and its children."""
        for m in self.modules():
            m.training = bool(mode)
        return self

    def eval(self) -> Module:
        """Set evaluation mode (dropout off, running statistics)."""
        return self.train(False)

    def zero_grad(self) -> None:
        """Forget the gradients of every parameter (set them to None)."""
        for p in self.parameters():
            p.grad = None

    def to(self, dtype: Any) -> Module:
        """Convert every parameter and floating buffer to ``dtype`` in place (e.g. np.float64)."""
        dt = np.dtype(dtype)
        if dt.kind != "f":
            raise TypeError(f"dtype must be a floating-point type, got {dt}")
        for p in self.parameters():
            p.data = p.data.astype(dt)
            p.grad = None
        for _, m, b in self._buffer_owners():
            value = getattr(m, b)
            if isinstance(value, np.ndarray) and value.dtype.kind == "f":
                setattr(m, b, value.astype(dt))
        for m in self.modules():
            if hasattr(m, "dtype"):
                m.dtype = dt
        return self

    def double(self) -> Module:
        return self.to(np.float64)

    def float(self) -> Module:
        return self.to(np.float32)

    # ----- description (model files) -----
    def get_config(self) -> dict[str, Any]:
        """Constructor arguments that rebuild this module (used by ``cr.save``).

        Built-in layers define it; a custom Module cannot be described and is saved with
        its ``state_dict()`` instead.
        """
        raise NotImplementedError(
            f"{type(self).__name__} is not one of chainrule's layers: it cannot be described in "
            "a model file; save its state_dict() (or build it from chainrule's layers)"
        )

    # ----- display -----
    def extra_repr(self) -> str:
        return ""

    def _repr_tree(self) -> str:
        kids = list(self._named_children())
        head = f"{type(self).__name__}({self.extra_repr()}"
        if not kids:
            return head + ")"
        lines = [head]
        for name, m in kids:
            body = m._repr_tree().replace("\n", "\n  ")
            lines.append(f"  ({name}): {body}")
        return "\n".join(lines) + "\n)"

    def __repr__(self) -> str:
        n = self.num_parameters()
        return self._repr_tree() + (f"  # {n:,} parameters" if n else "")


class Sequential(Module):
    """Layers applied one after another: ``Sequential(Linear(2, 8), ReLU(), Linear(8, 1))``.

    Indexable (``model[0]``, ``model[1:]``), has ``len``, ``append``, ``extend`` and ``insert``;
    parameter names start with the layer's index (``"0.weight"``).
    """

    def __init__(self, *layers: Module | Iterable[Module]) -> None:
        super().__init__()
        if len(layers) == 1 and not isinstance(layers[0], Module):
            layers = tuple(layers[0])
        self._layers: list[Module] = []
        for layer in layers:
            self.append(layer)  # type: ignore[arg-type]

    def _named_children(self) -> Iterator[tuple[str, Module]]:
        for i, m in enumerate(self._layers):
            yield str(i), m

    def append(self, layer: Module) -> Sequential:
        if not isinstance(layer, Module):
            raise TypeError(f"Sequential takes Modules, got {type(layer).__name__}")
        self._layers.append(layer)
        return self

    def extend(self, layers: Iterable[Module]) -> Sequential:
        for layer in layers:
            self.append(layer)
        return self

    def insert(self, index: int, layer: Module) -> Sequential:
        if not isinstance(layer, Module):
            raise TypeError(f"Sequential takes Modules, got {type(layer).__name__}")
        self._layers.insert(index, layer)
        return self

    def __len__(self) -> int:
        return len(self._layers)

    def __iter__(self) -> Iterator[Module]:
        return iter(self._layers)

    def __getitem__(self, index: int | slice) -> Any:
        if isinstance(index, slice):
            return Sequential(*self._layers[index])
        return self._layers[index]

    def get_config(self) -> dict[str, Any]:
        return {"layers": [{"type": type(m).__name__, "config": m.get_config()} for m in self]}

    def forward(self, x: Any) -> Any:
        for layer in self._layers:
            x = layer(x)
        return x
