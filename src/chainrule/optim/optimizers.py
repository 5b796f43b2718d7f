"""Optimizers: gradient descent and its variants, updating parameters in place.

The base class keeps the bookkeeping (parameter groups, per-parameter state, state dicts); each
optimizer writes its mathematics in one method, ``_update(p, g, s, t, group, tmp, tmp2)``, with
the same update rule as the algorithm documented for ``torch.optim`` (so trajectories match
PyTorch's). State arrays have the parameter's dtype: a float32 model keeps float32 moments, and
after ``model.to(np.float64)`` the moments become float64 too (values kept).

Speed: each optimizer owns a :class:`~chainrule.arena.ParameterArena` (``optimizer.arena``)
that lays its parameters and their gradients out in one flat buffer per dtype (each
Parameter's ``.data`` and ``.grad`` are views into them); the optimizer keeps its state (moments)
in flat buffers aligned with the arena's. One update is then a dozen in-place ufunc calls
(``out=``) per parameter group instead of a dozen per parameter. The arithmetic is the same
elementwise sequence as the per-parameter path, so results are bitwise identical. A parameter
without gradient (frozen, or not reached) is skipped; one whose ``.grad`` was replaced by the
user, or whose step count differs from its neighbours', is updated on its own. When the
parameters change dtype (``model.to``) or the parameter list changes, the arena is rebuilt at
the next step and the state follows it.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

from .._validation import check_number
from ..arena import ParameterArena
from ..kernels import add_scaled
from ..tensor import Tensor, enable_grad, mark_modified
from ._kernels import adam_kernel
from ._layout import _Layout

__all__ = ["GD", "SGD", "Adagrad", "Adam", "AdamW", "Optimizer", "RMSprop"]


class Optimizer:
    """Base class: ``zero_grad()``, ``step()``, ``state_dict()``, ``load_state_dict()``.

    Parameters
    ----------
    params : iterable of Tensor, or iterable of dict
        The parameters to update, or parameter groups: dicts with a ``"params"`` list and any
        hyperparameter that overrides the optimizer's default for that group (e.g. ``"lr"``).
    defaults : dict
        The optimizer's hyperparameters.
    """

    def __init__(self, params: Iterable[Any], defaults: dict[str, Any]) -> None:
        if isinstance(params, Tensor):
            raise TypeError("params must be an iterable of tensors or of dicts, got one Tensor")
        if callable(getattr(params, "parameters", None)):
            raise TypeError(
                f"params must be an iterable of tensors, got the model itself "
                f"({type(params).__name__}); pass model.parameters()"
            )
        if callable(params) and not hasattr(params, "__iter__"):
            raise TypeError(
                f"params must be an iterable of tensors, got {type(params).__name__} "
                f"{getattr(params, '__name__', '')!r}; call it: model.parameters()"
            )
        params = list(params)
        if not params:
            raise ValueError("optimizer got an empty parameter list")
        self.defaults = dict(defaults)
        self.param_groups: list[dict[str, Any]] = []
        self.state: dict[int, dict[str, Any]] = {}
        self.arena = ParameterArena()  # flat buffers for the parameters and their gradients
        self._layout: _Layout | None = None  # the state laid out along the arena (or None)
        groups = params if isinstance(params[0], dict) else [{"params": params}]
        for group in groups:
            self.add_param_group(group)

    # ----- groups -----
    def add_param_group(self, group: dict[str, Any]) -> None:
        """Add a group of parameters with its own hyperparameters."""
        if not isinstance(group, dict) or "params" not in group:
            raise TypeError("a parameter group must be a dict with a 'params' entry")
        ps = group["params"]
        ps = [ps] if isinstance(ps, Tensor) else list(ps)
        seen = {id(p) for g in self.param_groups for p in g["params"]}
        for i, p in enumerate(ps):
            if not isinstance(p, Tensor):
                hint = (
                    "; pass model.parameters()" if callable(getattr(p, "parameters", None)) else ""
                )
                raise TypeError(f"params[{i}] must be a Tensor, got {type(p).__name__}{hint}")
            # a frozen parameter (requires_grad=False) is accepted, as in PyTorch: it has no
            # gradient, so step() leaves it alone until it is unfrozen
            if id(p) in seen:
                raise ValueError(f"params[{i}] appears in more than one parameter group")
            seen.add(id(p))
        unknown = (
            set(group)
            - set(self.defaults)
            - {"params", "initial_lr", "max_lr", "min_lr", "max_momentum", "base_momentum"}
        )
        if unknown:
            raise ValueError(
                f"unknown hyperparameter(s) {sorted(unknown)} for {type(self).__name__}; "
                f"valid: {sorted(self.defaults)}"
            )
        full = {**self.defaults, **group, "params": ps}
        self._validate(full)
        self.param_groups.append(full)
        self.arena.set_params(self._params())  # laid out again at the next step
        self._layout = None

    def _validate(self, group: dict[str, Any]) -> None:
        check_number("lr", group["lr"], low=0, low_inclusive=False)
        if "weight_decay" in group:
            check_number("weight_decay", group["weight_decay"], low=0)
        if "eps" in group:
            check_number("eps", group["eps"], low=0)

    # ----- stepping -----
    def zero_grad(self, set_to_none: bool = True) -> None:
        """Forget the gradients, as PyTorch's ``Optimizer.zero_grad``.

        ``set_to_none=True`` (the default): every ``p.grad`` becomes None, and the next
        ``backward()`` gives each parameter a *new* gradient array: an array kept from
        ``p.grad`` before is never changed again (the arena swaps in fresh flat buffers rather
        than overwrite it, see :mod:`chainrule.arena`). ``set_to_none=False``: each ``p.grad``
        that is not None is zeroed in place and stays the same array, which the next
        ``backward()`` adds into (so a kept reference sees the new values, as in PyTorch).
        """
        for group in self.param_groups:
            for p in group["params"]:
                if set_to_none or p.grad is None:
                    p.grad = None
                else:
                    p.grad[...] = 0

    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """Update every parameter that has a gradient, once.

        A parameter whose gradient is None (frozen with ``requires_grad=False``, or not reached
        by the backward pass) is skipped entirely: no step, no weight decay, no momentum.

        ``closure`` (optional) re-evaluates the model and returns the loss, as in PyTorch.
        """
        loss = None
        if closure is not None:
            with enable_grad():
                loss = closure()
        layout = self._sync()
        for seg in layout.segments:
            seg.step(self)
        for group, p in layout.loose:
            g = p.grad
            if g is None:
                continue
            state = self.state.get(id(p))
            if state is None:
                state = self.state[id(p)] = {"step": 0}
                self._init_state(p.data, state, group)
            state["step"] += 1
            arrays = {}
            for k, v in state.items():
                if isinstance(v, np.ndarray):
                    if v.dtype != p.data.dtype:  # the parameter changed dtype: follow it
                        v = state[k] = v.astype(p.data.dtype)
                    arrays[k] = v
            tmp, tmp2 = np.empty_like(p.data), np.empty_like(p.data)
            self._update(p.data, g, arrays, state["step"], group, tmp, tmp2)
        # an optimizer step is an in-place change (PyTorch's version counter): a backward()
        # through a graph built before it raises instead of using the new weights
        mark_modified(p for grp in self.param_groups for p in grp["params"] if p.grad is not None)
        return loss

    def prepare(self) -> None:
        """Lay the parameters out in the arena's flat buffers now (otherwise at the next step).

        Also after ``model.to(...)`` or a changed parameter list: the arena is rebuilt and the
        optimizer state follows it (converted to the parameters' dtype, values kept).
        """
        self._sync()

    def _sync(self) -> _Layout:
        """Make the arena current for this optimizer's parameters; lay the state out along it."""
        arena = self.arena
        rebuilt = arena.ensure(self._params())
        layout = self._layout
        if layout is None or rebuilt or layout.version != arena.version:
            layout = self._layout = _Layout.build(self)
        elif layout.grad_version != arena.grad_version:  # fresh gradient buffers this step
            layout.follow_grads(arena)
        return layout

    def _state_fill(self, group: dict[str, Any]) -> dict[str, float]:
        """Names of the per-parameter state arrays and their initial values."""
        return {}

    def _init_state(self, p: np.ndarray, state: dict[str, Any], group: dict[str, Any]) -> None:
        """Create the per-parameter state (moments) before the first update."""
        for name, fill in self._state_fill(group).items():
            state[name] = np.full_like(p, fill)

    def _update(
        self,
        p: np.ndarray,
        g: np.ndarray,
        s: dict[str, np.ndarray],
        t: int,
        group: dict[str, Any],
        tmp: np.ndarray,
        tmp2: np.ndarray,
    ) -> None:
        """Apply one step to ``p`` in place: ``g`` its gradient, ``s`` its state arrays, ``t``
        the step number (from 1), ``tmp``/``tmp2`` scratch arrays of ``p``'s shape."""
        raise NotImplementedError

    # ----- state -----
    def _params(self) -> list[Tensor]:
        return [p for group in self.param_groups for p in group["params"]]

    def state_dict(self) -> dict[str, Any]:
        """Hyperparameters and per-parameter state (copied), keyed by parameter position.

        The state is first brought in line with the parameters (:meth:`prepare`): after
        ``model.to(np.float64)`` the saved moments are float64 too, as the next step's are.
        """
        self._sync()
        index = {id(p): i for i, p in enumerate(self._params())}
        state = {
            index[k]: {n: (v.copy() if isinstance(v, np.ndarray) else v) for n, v in s.items()}
            for k, s in self.state.items()
            if k in index
        }
        groups = []
        for group in self.param_groups:
            g = {k: copy.deepcopy(v) for k, v in group.items() if k != "params"}
            g["params"] = [index[id(p)] for p in group["params"]]
            groups.append(g)
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore hyperparameters and state saved by :meth:`state_dict` (checked first)."""
        groups = state_dict.get("param_groups") if isinstance(state_dict, dict) else None
        if groups is None or "state" not in state_dict:
            raise ValueError("optimizer state dict must have 'state' and 'param_groups'")
        if len(groups) != len(self.param_groups):
            raise ValueError(
                f"optimizer state dict has {len(groups)} parameter groups, this optimizer has "
                f"{len(self.param_groups)}"
            )
        params = self._params()
        for saved, mine in zip(groups, self.param_groups):
            if len(saved["params"]) != len(mine["params"]):
                raise ValueError(
                    f"a parameter group in the state dict has {len(saved['params'])} parameters, "
                    f"this optimizer's has {len(mine['params'])}"
                )
        new_state: dict[int, dict[str, Any]] = {}
        for key, s in state_dict["state"].items():
            i = int(key)
            if not 0 <= i < len(params):
                raise ValueError(
                    f"optimizer state refers to parameter {i}, there are {len(params)}"
                )
            p = params[i]
            entry: dict[str, Any] = {}
            for n, v in s.items():
                if isinstance(v, np.ndarray):
                    if v.shape != p.shape:
                        raise ValueError(
                            f"optimizer state '{n}' of parameter {i} has shape {v.shape}, the "
                            f"parameter has shape {p.shape}"
                        )
                    v = v.astype(p.dtype, copy=True)
                entry[n] = v
            new_state[id(p)] = entry
        for saved, mine in zip(groups, self.param_groups):
            for k, v in saved.items():
                if k != "params":
                    mine[k] = tuple(v) if k == "betas" else copy.deepcopy(v)
        self.state = new_state
        self._layout = None  # laid out again (with these values) at the next step

    def __repr__(self) -> str:
        lines = [f"{type(self).__name__} ("]
        for i, group in enumerate(self.param_groups):
            lines.append(f"Parameter Group {i}")
            for k in sorted(group):
                if k != "params":
                    lines.append(f"    {k}: {group[k]}")
        return "\n".join(lines) + "\n)"


def _with_l2(p: np.ndarray, g: np.ndarray, wd: float, out: np.ndarray) -> np.ndarray:
    """``g + λ·w`` (the L2 penalty's gradient) written into ``out``."""
    return add_scaled(g, p, wd, out)


class SGD(Optimizer):
    """Stochastic gradient descent, optionally with momentum (Polyak) or Nesterov momentum.

    ``g ← ∇ + λw``; with momentum ``b ← μb + (1 - τ)g`` (``b = g`` on the first step) and
    ``g ← g + μb`` (Nesterov) or ``g ← b``; then ``w ← w - η g`` — PyTorch's formulation
    (the learning rate multiplies the velocity, not the gradient inside it). Full-batch
    gradient descent is SGD on the whole training set.

    Examples
    --------
    >>> import chainrule as cr
    >>> w = cr.nn.Parameter([1.0])
    >>> opt = cr.optim.SGD([w], lr=0.1)
    >>> (w * w).sum().backward(); opt.step()
    >>> w.data
    array([0.8], dtype=float32)
    """

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-3,
        momentum: float = 0.0,
        dampening: float = 0.0,
        nesterov: bool = False,
        weight_decay: float = 0.0,
    ) -> None:
        super().__init__(
            params,
            {
                "lr": lr,
                "momentum": momentum,
                "dampening": dampening,
                "nesterov": nesterov,
                "weight_decay": weight_decay,
            },
        )

    def _validate(self, group: dict[str, Any]) -> None:
        super()._validate(group)
        check_number("momentum", group["momentum"], low=0)
        check_number("dampening", group["dampening"], low=0, high=1)
        if group["nesterov"] and (group["momentum"] <= 0 or group["dampening"] != 0):
            raise ValueError("nesterov momentum needs momentum > 0 and dampening = 0")

    def _state_fill(self, group: dict[str, Any]) -> dict[str, float]:
        return {"momentum_buffer": 0.0} if group["momentum"] else {}

    def _update(self, p, g, s, t, group, tmp, tmp2):  # type: ignore[no-untyped-def]
        lr, mu, wd = group["lr"], group["momentum"], group["weight_decay"]
        if wd:
            g = _with_l2(p, g, wd, tmp2)
        if mu:
            buf = s["momentum_buffer"]
            if t == 1:
                np.copyto(buf, g)  # the velocity starts as the first gradient
            else:
                buf *= mu  # velocity: b ← μ b + (1 - τ) g
                np.multiply(g, 1 - group["dampening"], out=tmp)
                buf += tmp
            if group["nesterov"]:
                np.multiply(buf, mu, out=tmp)
                g = np.add(g, tmp, out=tmp)  # g + μ b
            else:
                g = buf
        np.multiply(g, lr, out=tmp)
        p -= tmp  # w ← w - η g


GD = SGD


class Adam(Optimizer):
    """Adam (Kingma & Ba, 2015, https://arxiv.org/abs/1412.6980), with optional AMSGrad.

    Bias-corrected moments; ``eps`` is added after the square root of the corrected second
    moment, as in the paper and PyTorch. ``weight_decay`` adds ``λw`` to the gradient (L2, as
    ``torch.optim.Adam``); for decoupled decay use :class:`AdamW`.
    """

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        amsgrad: bool = False,
    ) -> None:
        super().__init__(
            params,
            {
                "lr": lr,
                "betas": tuple(betas),
                "eps": eps,
                "weight_decay": weight_decay,
                "amsgrad": amsgrad,
            },
        )

    def _validate(self, group: dict[str, Any]) -> None:
        super()._validate(group)
        betas = group["betas"]
        if not isinstance(betas, (tuple, list)) or len(betas) != 2:
            raise ValueError(f"betas must be a pair (beta1, beta2), got {betas!r}")
        check_number("betas[0]", betas[0], low=0, high=1, high_inclusive=False)
        check_number("betas[1]", betas[1], low=0, high=1, high_inclusive=False)

    def _state_fill(self, group: dict[str, Any]) -> dict[str, float]:
        fills = {"exp_avg": 0.0, "exp_avg_sq": 0.0}
        if group["amsgrad"]:
            fills["max_exp_avg_sq"] = 0.0
        return fills

    def _decay(self, p: np.ndarray, g: np.ndarray, group: dict[str, Any], tmp2: np.ndarray) -> Any:
        wd = group["weight_decay"]
        if not wd:
            return g
        return _with_l2(p, g, wd, tmp2)  # L2: the penalty's gradient joins the moments

    def _update(self, p, g, s, t, group, tmp, tmp2):  # type: ignore[no-untyped-def]
        beta1, beta2 = group["betas"]
        g = self._decay(p, g, group, tmp2)
        m, v = s["exp_avg"], s["exp_avg_sq"]
        c = math.sqrt(1 - beta2**t)
        if (
            p.ndim == 1
            and not group["amsgrad"]
            and g.dtype == p.dtype == m.dtype == v.dtype
            and p.flags.c_contiguous
            and g.flags.c_contiguous
        ):
            kernel = adam_kernel(p.size, p.dtype)  # the same arithmetic, one compiled loop
            if kernel is not None:
                f = p.dtype.type
                kernel(
                    p,
                    g,
                    m,
                    v,
                    f(beta1),
                    f(1 - beta1),
                    f(beta2),
                    f(1 - beta2),
                    f(group["eps"] * c),
                    f(group["lr"] * c / (1 - beta1**t)),
                )
                return
        m *= beta1  # first moment estimate
        np.multiply(g, 1 - beta1, out=tmp)
        m += tmp
        v *= beta2  # second moment estimate
        np.multiply(g, g, out=tmp)
        tmp *= 1 - beta2
        v += tmp
        if group["amsgrad"]:
            v = np.maximum(s["max_exp_avg_sq"], v, out=s["max_exp_avg_sq"])
        # η·m̂/(√v̂ + ε) with m̂ = m/(1-β1ᵗ), v̂ = v/(1-β2ᵗ), written as
        # (η·c/(1-β1ᵗ))·m/(√v + ε·c) with c = √(1-β2ᵗ): one pass fewer over the buffers
        np.sqrt(v, out=tmp)
        tmp += group["eps"] * c
        np.divide(m, tmp, out=tmp)
        tmp *= group["lr"] * c / (1 - beta1**t)
        p -= tmp


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter, https://arxiv.org/abs/1711.05101).

    Each step first shrinks the weights, ``w ← w(1 - ηλ)``, then applies Adam without the
    penalty in the gradient. Default ``weight_decay=0.01``, as PyTorch.
    """

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 1e-2,
        amsgrad: bool = False,
    ) -> None:
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad)

    def _decay(self, p: np.ndarray, g: np.ndarray, group: dict[str, Any], tmp2: np.ndarray) -> Any:
        wd = group["weight_decay"]
        if wd:
            p *= 1 - group["lr"] * wd  # decoupled decay, before the Adam step
        return g


class RMSprop(Optimizer):
    """RMSprop (Hinton, lecture 6e): divide the gradient by a running RMS of its history.

    ``v ← αv + (1-α)g²``; centered: ``ḡ ← αḡ + (1-α)g`` and ``v̂ = v - ḡ²``; then
    ``w ← w - η g / (√v̂ + eps)``, or with momentum ``b ← μb + g/(√v̂ + eps)``, ``w ← w - ηb``
    (PyTorch's formulation).
    """

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-2,
        alpha: float = 0.99,
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        momentum: float = 0.0,
        centered: bool = False,
    ) -> None:
        super().__init__(
            params,
            {
                "lr": lr,
                "alpha": alpha,
                "eps": eps,
                "weight_decay": weight_decay,
                "momentum": momentum,
                "centered": centered,
            },
        )

    def _validate(self, group: dict[str, Any]) -> None:
        super()._validate(group)
        check_number("alpha", group["alpha"], low=0, high=1)
        check_number("momentum", group["momentum"], low=0)

    def _state_fill(self, group: dict[str, Any]) -> dict[str, float]:
        fills = {"square_avg": 0.0}
        if group["momentum"] > 0:
            fills["momentum_buffer"] = 0.0
        if group["centered"]:
            fills["grad_avg"] = 0.0
        return fills

    def _update(self, p, g, s, t, group, tmp, tmp2):  # type: ignore[no-untyped-def]
        alpha, wd = group["alpha"], group["weight_decay"]
        if wd:
            g = _with_l2(p, g, wd, tmp2)
        sq = s["square_avg"]
        sq *= alpha  # running mean of g²
        np.multiply(g, g, out=tmp)
        tmp *= 1 - alpha
        sq += tmp
        if group["centered"]:
            ga = s["grad_avg"]
            np.subtract(g, ga, out=tmp)  # running mean of g
            tmp *= 1 - alpha
            ga += tmp
            np.multiply(ga, ga, out=tmp)
            np.subtract(sq, tmp, out=tmp)
            np.sqrt(tmp, out=tmp)
        else:
            np.sqrt(sq, out=tmp)
        tmp += group["eps"]  # √v̂ + eps
        np.divide(g, tmp, out=tmp)
        if group["momentum"] > 0:
            buf = s["momentum_buffer"]
            buf *= group["momentum"]
            buf += tmp
            np.multiply(buf, group["lr"], out=tmp)
        else:
            tmp *= group["lr"]
        p -= tmp


class Adagrad(Optimizer):
    """Adagrad (Duchi et al., 2011): per-coordinate steps shrinking with the summed squares.

    ``s ← s + g²``; ``w ← w - η_t g / (√s + eps)`` with ``η_t = η / (1 + (t-1)·lr_decay)``.
    """

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-2,
        lr_decay: float = 0.0,
        weight_decay: float = 0.0,
        initial_accumulator_value: float = 0.0,
        eps: float = 1e-10,
    ) -> None:
        super().__init__(
            params,
            {
                "lr": lr,
                "lr_decay": lr_decay,
                "weight_decay": weight_decay,
                "initial_accumulator_value": initial_accumulator_value,
                "eps": eps,
            },
        )

    def _validate(self, group: dict[str, Any]) -> None:
        super()._validate(group)
        check_number("lr_decay", group["lr_decay"], low=0)
        check_number("initial_accumulator_value", group["initial_accumulator_value"], low=0)

    def _state_fill(self, group: dict[str, Any]) -> dict[str, float]:
        return {"sum": float(group["initial_accumulator_value"])}

    def _update(self, p, g, s, t, group, tmp, tmp2):  # type: ignore[no-untyped-def]
        wd = group["weight_decay"]
        if wd:
            g = _with_l2(p, g, wd, tmp2)
        clr = group["lr"] / (1 + (t - 1) * group["lr_decay"])
        acc = s["sum"]
        np.multiply(g, g, out=tmp)
        acc += tmp  # accumulated squares
        np.sqrt(acc, out=tmp)
        tmp += group["eps"]
        np.divide(g, tmp, out=tmp)
        tmp *= clr
        p -= tmp
