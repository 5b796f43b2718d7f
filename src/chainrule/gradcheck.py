"""Gradient checking: the engine's gradients against float64 central differences."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from .tensor import Tensor, _as_array, enable_grad, no_grad

__all__ = ["GradcheckError", "gradcheck"]


class GradcheckError(AssertionError):
    """Raised by :func:`gradcheck` when an analytical gradient disagrees with finite differences."""


def _as_output(out: Any) -> Tensor:
    if not isinstance(out, Tensor):
        raise TypeError(f"gradcheck: the function must return a Tensor, got {type(out).__name__}")
    return out


def gradcheck(
    fn: Callable[..., Any],
    *inputs: Any,
    eps: float = 1e-6,
    atol: float = 1e-5,
    rtol: float = 1e-3,
    raise_exception: bool = True,
) -> bool:
    """Check the gradients of ``fn`` at ``inputs`` against central finite differences.

    Every floating-point input is converted to float64. For each input element ``x_k`` the
    numerical Jacobian column ``(f(x + ε e_k) - f(x - ε e_k)) / 2ε`` is compared with the
    analytical one from ``backward()`` (one backward pass per output element), with PyTorch's
    criterion ``|analytical - numerical| <= atol + rtol·|numerical|``.

    Parameters
    ----------
    fn : callable
        Takes Tensors (and passes any non-float input through unchanged), returns a Tensor.
    *inputs : array_like or Tensor
        The point at which to check. Integer inputs (e.g. indices) are not differentiated.
    eps, atol, rtol : float
        Step and tolerances (PyTorch's defaults).
    raise_exception : bool, default True
        Raise :class:`GradcheckError` on failure (otherwise return False).

    Returns
    -------
    bool
        True if every gradient matches.

    Raises
    ------
    GradcheckError
        Names the input, the position in it, the output element and both values.

    Examples
    --------
    >>> import numpy as np, chainrule as cr
    >>> cr.gradcheck(lambda x: cr.tanh(x).sum(), np.array([0.1, -0.3]))
    True
    """
    if not eps > 0:
        raise ValueError(f"eps must be > 0, got {eps!r}")
    values: list[Any] = []
    diff: list[int] = []
    for i, x in enumerate(inputs):
        arr = _as_array(x)
        if arr.dtype.kind == "f":
            values.append(np.array(arr, dtype=np.float64, copy=True))
            diff.append(i)
        else:
            values.append(x.data if isinstance(x, Tensor) else x)

    def call(vals: list[Any], track: bool) -> tuple[Tensor, list[Any]]:
        args = [Tensor(v, requires_grad=track) if k in diff else v for k, v in enumerate(vals)]
        return _as_output(fn(*args)), args

    def value(vals: list[Any]) -> np.ndarray:
        return np.asarray(call(vals, False)[0].data, dtype=np.float64).reshape(-1)

    with enable_grad():
        out, args = call(values, True)
    out_shape = out.shape
    n_out = out.size
    # analytical Jacobian rows: one backward pass per output element
    analytical = {i: np.zeros((n_out, values[i].size)) for i in diff}
    if out.requires_grad:
        for r in range(n_out):
            for k in diff:
                args[k].grad = None
            seed = np.zeros(n_out, dtype=out.dtype)
            seed[r] = 1.0
            out.backward(seed.reshape(out_shape), retain_graph=True)
            for k in diff:
                g = args[k].grad
                if g is not None:
                    analytical[k][r] = g.reshape(-1)
    # numerical Jacobian columns
    with no_grad():
        for k in diff:
            flat = values[k].reshape(-1)
            for j in range(flat.size):
                orig = flat[j]
                flat[j] = orig + eps
                plus = value(values)
                flat[j] = orig - eps
                minus = value(values)
                flat[j] = orig
                numerical = (plus - minus) / (2 * eps)
                a = analytical[k][:, j]
                bad = np.abs(a - numerical) > atol + rtol * np.abs(numerical)
                bad |= np.isnan(a) != np.isnan(numerical)
                if bad.any():
                    r = int(np.argmax(bad))
                    pos = np.unravel_index(j, values[k].shape) if values[k].ndim else ()
                    opos = np.unravel_index(r, out_shape) if len(out_shape) else ()
                    msg = (
                        f"gradcheck failed for input {k} (shape {values[k].shape}) at position "
                        f"{tuple(int(p) for p in pos)}, output element "
                        f"{tuple(int(p) for p in opos)}: analytical {float(a[r])!r} "
                        f"vs numerical {float(numerical[r])!r} "
                        f"(atol={atol}, rtol={rtol}, eps={eps})"
                    )
                    if raise_exception:
                        raise GradcheckError(msg)
                    return False
    return True
