"""Module and Parameter: models that find their own parameters."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

import numpy as np

from ..tensor import Tensor, as_array

__all__ = ["Module", "ModuleDict", "ModuleList", "Parameter", "Sequential"]

# device names a PyTorch user may pass to .to(); only "cpu" is accepted
_DEVICES = {"cpu", "cuda", "mps", "xpu", "xla", "meta", "hip", "ipu", "vulkan", "mkldnn"}


class _InitArgs:
    """The constructor arguments captured by ``register_module`` (not entered by discovery,
    so a module passed as an argument is found only where the class stores it)."""

    __slots__ = ("config",)

    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config


class Parameter(Tensor):
    """A leaf tensor that a :class:`Module` owns and an optimizer updates.

    Parameters
    ----------
    data : array_like
        Initial value; float arrays keep their dtype, Python lists become float32.
    requires_grad : bool, default True
    """

    # _grad_buf: where backward() writes this parameter's gradient, a view into a parameter
    # arena's flat gradient buffer, or None (set by chainrule.arena; read by its grad_home hook)
    __slots__ = ("_grad_buf",)

    def __init__(self, data: Any, requires_grad: bool = True) -> None:
        arr = as_array(data)
        if arr.dtype.kind != "f":
            raise TypeError(f"a Parameter must be floating point, got dtype {arr.dtype}")
        super().__init__(np.array(arr, copy=True), requires_grad=requires_grad)
        self._grad_buf: np.ndarray | None = None

    def __getstate__(self) -> Any:
        # a copy (copy.deepcopy(model)) is in no arena: it gets its own gradient arrays
        state = super().__getstate__()  # type: ignore[misc]
        if isinstance(state, tuple) and len(state) == 2 and isinstance(state[1], dict):
            state[1].pop("_grad_buf", None)
        return state

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
        """Attributes of type ``kind``, also inside lists, tuples and dicts nested to any depth,
        with dotted names (``self.h = [[a, b], [c]]`` gives ``h.0.1`` for ``b``)."""
        stack: list[tuple[str, Any]] = list(reversed(vars(self).items()))
        seen: set[int] = set()  # containers already entered (a list that holds itself)
        while stack:
            name, value = stack.pop()
            if isinstance(value, kind):
                yield name, value
            elif isinstance(value, (list, tuple, dict)):
                if id(value) in seen:
                    continue
                seen.add(id(value))
                items = value.items() if isinstance(value, dict) else enumerate(value)
                stack.extend(reversed([(f"{name}.{k}", v) for k, v in items]))

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

    def apply(self, fn: Callable[[Module], Any]) -> Module:
        """Call ``fn(m)`` on every sub-module and then on this module (PyTorch's order: children
        first); returns ``self``. E.g. ``model.apply(init_weights)``."""
        for m in reversed(list(self.modules())):
            fn(m)
        return self

    def requires_grad_(self, requires_grad: bool = True) -> Module:
        """Freeze (``False``) or unfreeze every parameter in place; returns ``self``.

        A frozen parameter gets no gradient, so no optimizer moves it (also in ``cr.fit``).
        """
        for p in self.parameters():
            p.requires_grad_(requires_grad)
        return self

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
        for key, value in state.items():
            if type(value).__module__.split(".")[0] == "torch":
                raise TypeError(
                    f"state dict entry '{key}' is a PyTorch tensor: load a PyTorch state dict "
                    "with cr.nn.from_torch_state_dict(model, state_dict), which converts every "
                    "entry and transposes what is stored differently (PyTorch's Linear keeps "
                    "its weight as (out_features, in_features), chainrule's as (in_features, "
                    "out_features); convolution and batch-norm entries are alike); converting "
                    "the tensors to arrays yourself would load a square Linear weight transposed"
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
            raw = state[name].data if isinstance(state[name], Tensor) else state[name]
            current = (
                params[name].data
                if name in params
                else np.asarray(getattr(buffers[name][0], buffers[name][1]))
            )
            if isinstance(raw, np.ndarray):
                value = raw
            else:  # Python numbers and (nested) lists take the entry's dtype
                try:
                    value = np.asarray(raw, dtype=current.dtype)
                except (TypeError, ValueError) as exc:
                    raise ValueError(
                        f"state dict entry '{name}' cannot be read as an array of "
                        f"{current.dtype}: {exc}"
                    ) from None
            if value.shape != current.shape:
                hint = ""
                if value.ndim == 2 and value.shape == current.shape[::-1]:
                    hint = (
                        f"; it is the transpose: chainrule's Linear stores weight as "
                        f"(in_features, out_features) = {current.shape}, PyTorch's as "
                        "(out_features, in_features); use cr.nn.from_torch_state_dict(model, sd) "
                        "for PyTorch weights, or pass the array's .T"
                    )
                raise ValueError(
                    f"state dict entry '{name}' has shape {value.shape}, the model's has shape "
                    f"{current.shape}{hint}"
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

    def to(self, dtype: Any = None, device: Any = None) -> Module:
        """Convert every parameter and floating buffer to ``dtype`` in place (e.g. np.float64).

        ``model.to("cpu")`` (or ``device="cpu"``) does nothing: chainrule runs on the CPU
        only; any other device raises ``ValueError``.
        """
        for arg in (dtype, device):
            kind = getattr(arg, "type", arg)  # a torch.device has .type
            if isinstance(kind, str) and kind.split(":")[0] in _DEVICES:
                if kind.split(":")[0] != "cpu":
                    raise ValueError(
                        f"chainrule runs on the CPU only (NumPy); cannot move the model to "
                        f"{str(arg)!r}. Drop the .to(...) call, or use .to('cpu')"
                    )
                if arg is dtype:
                    dtype = None
        if dtype is None:
            return self
        if type(dtype).__module__.split(".")[0] == "torch":  # torch.float64 -> "float64"
            dtype = str(dtype).rsplit(".", 1)[-1]
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

    def cpu(self) -> Module:
        """Does nothing (chainrule runs on the CPU); returns ``self``."""
        return self

    def cuda(self, device: Any = None) -> Module:
        """Raises: chainrule runs on the CPU only."""
        return self.to("cuda")

    def double(self) -> Module:
        return self.to(np.float64)

    def float(self) -> Module:
        return self.to(np.float32)

    # ----- description (model files) -----
    def get_config(self) -> dict[str, Any]:
        """Constructor arguments that rebuild this module (used by ``cr.save``).

        Built-in layers define it; a custom Module decorated with
        :func:`register_module` returns the arguments it was built with (or overrides this).
        """
        captured = self.__dict__.get("_init_args")
        if isinstance(captured, _InitArgs):
            return dict(captured.config)
        raise NotImplementedError(
            f"{type(self).__name__} is not one of chainrule's layers: it cannot be described in "
            f"a model file; decorate the class with @cr.nn.register_module, or save only its "
            "weights with cr.save_state_dict(model, path)"
        )

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Module:
        """Build the module :meth:`get_config` described: ``cls(**config)`` (positional
        arguments of a ``*args`` constructor are under ``"__args__"``). Loading a model file
        calls it, then copies the saved weights in; override it when the constructor's
        arguments are not the configuration itself."""
        kwargs = dict(config)
        args = kwargs.pop("__args__", [])
        return cls(*args, **kwargs)

    @classmethod
    def config_elements(cls, config: dict[str, Any]) -> int:
        """How many elements the parameters and buffers of ``cls.from_config(config)`` will
        hold, computed from the configuration alone (0 if unknown, the default).

        Loading a model file compares the total with the number of elements the file stores
        before it builds anything, so a crafted architecture (``Linear(10**6, 10**6)``) cannot
        make the loader allocate more memory than the file's own size. A layer that allocates
        in proportion to its arguments should report it. Values in ``config`` come from the
        file: treat anything that is not a non-negative int as unknown (count 0), the
        constructor judges it.
        """
        return 0

    # ----- cost and shape (BLAS-thread policy, diagnostics) -----
    def flops(self, input_shape: tuple[int | None, ...]) -> int:
        """Multiply-adds of this module's own forward (its submodules count for themselves) on
        an input of shape ``input_shape``; 0 by default (no matrix product of its own).

        Unknown sizes are None: inside a module whose forward chainrule cannot follow, a
        layer's input is ``(batch, None)``. A layer whose cost depends on sizes it is not
        given returns 0. :func:`chainrule.nn.cost.layer_flops` adds up a model.
        """
        return 0

    def output_shape(self, input_shape: tuple[int | None, ...]) -> tuple[int | None, ...] | None:
        """The shape of this module's output for an input of shape ``input_shape``, or None if
        it cannot tell (the default; layers registered as elementwise keep the input's)."""
        return None

    def fans(self) -> tuple[int, int] | None:
        """``(fan_in, fan_out)`` of this layer's weight — the inputs feeding one output unit
        and the outputs fed by one input — or None if it has no weight matrix or kernel (the
        default). Diagnostics compare initial weights with He's and Glorot's scales by them."""
        return None

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

    def output_shape(self, input_shape: tuple[int | None, ...]) -> tuple[int | None, ...] | None:
        shape: tuple[int | None, ...] | None = input_shape
        for layer in self._layers:
            if shape is None:
                return None
            shape = layer.output_shape(shape)
        return shape

    def forward(self, x: Any) -> Any:
        for layer in self._layers:
            x = layer(x)
        return x


class ModuleList(Module):
    """A list of modules, registered as sub-modules (PyTorch's ``nn.ModuleList``).

    Supports ``append``, ``extend``, ``insert``, ``len``, iteration, indexing (an int or a
    slice) and item assignment; parameter names use the position (``"blocks.0.weight"``).
    Unlike :class:`Sequential` it has no ``forward``: the owner decides how to call its items.
    (A plain Python list of modules is found too; ModuleList is for code written for PyTorch.)
    """

    def __init__(self, modules: Iterable[Module] | None = None) -> None:
        super().__init__()
        self._items: list[Module] = []
        if modules is not None:
            self.extend(modules)

    @staticmethod
    def _check(module: Any) -> Module:
        if not isinstance(module, Module):
            raise TypeError(f"ModuleList takes Modules, got {type(module).__name__}")
        return module

    def _named_children(self) -> Iterator[tuple[str, Module]]:
        for i, m in enumerate(self._items):
            yield str(i), m

    def append(self, module: Module) -> ModuleList:
        self._items.append(self._check(module))
        return self

    def extend(self, modules: Iterable[Module]) -> ModuleList:
        for m in modules:
            self.append(m)
        return self

    def insert(self, index: int, module: Module) -> None:
        self._items.insert(index, self._check(module))

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self) -> Iterator[Module]:
        return iter(self._items)

    def __getitem__(self, index: int | slice) -> Any:
        if isinstance(index, slice):
            return ModuleList(self._items[index])
        return self._items[index]

    def __setitem__(self, index: int, module: Module) -> None:
        self._items[index] = self._check(module)

    def __delitem__(self, index: int | slice) -> None:
        del self._items[index]

    def get_config(self) -> dict[str, Any]:
        return {"modules": list(self._items)}  # the model file describes each module

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError(
            "ModuleList has no forward(): iterate over it (for layer in self.layers: x = "
            "layer(x)), or use Sequential"
        )


class ModuleDict(Module):
    """A dict of modules by name, registered as sub-modules (PyTorch's ``nn.ModuleDict``).

    Keeps insertion order; supports ``[key]``, assignment, ``del``, ``in``, ``len``, iteration
    over keys, ``keys()``, ``items()``, ``values()``, ``update()`` and ``pop()``. Parameter
    names use the key (``"heads.left.weight"``). ``clear()`` empties it.
    """

    def __init__(self, modules: Mapping[str, Module] | Iterable[tuple[str, Module]] | None = None):
        super().__init__()
        self._items: dict[str, Module] = {}
        if modules is not None:
            self.update(modules)

    def _named_children(self) -> Iterator[tuple[str, Module]]:
        yield from self._items.items()

    def __setitem__(self, key: str, module: Module) -> None:
        if not isinstance(key, str):
            raise TypeError(f"ModuleDict keys must be strings, got {type(key).__name__}")
        if "." in key or not key:
            raise ValueError(f"ModuleDict key must be a non-empty name without '.', got {key!r}")
        if not isinstance(module, Module):
            raise TypeError(f"ModuleDict takes Modules, got {type(module).__name__}")
        self._items[key] = module

    def __getitem__(self, key: str) -> Module:
        return self._items[key]

    def __delitem__(self, key: str) -> None:
        del self._items[key]

    def __contains__(self, key: object) -> bool:
        return key in self._items

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def keys(self) -> Any:
        return self._items.keys()

    def items(self) -> Any:
        return self._items.items()

    def values(self) -> Any:
        return self._items.values()

    def pop(self, key: str) -> Module:
        return self._items.pop(key)

    def clear(self) -> None:
        self._items.clear()

    def update(self, modules: Mapping[str, Module] | Iterable[tuple[str, Module]]) -> None:
        pairs = modules.items() if isinstance(modules, Mapping) else modules
        for key, module in pairs:
            self[key] = module

    def get_config(self) -> dict[str, Any]:
        return {"modules": dict(self._items)}  # the model file describes each module

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError(
            "ModuleDict has no forward(): call its items by key (self.heads['left'](x))"
        )
