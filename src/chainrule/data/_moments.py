"""Mean and spread of a column, exact in float64 for any finite values, in one pass or chunks.

Used by both whole-file preprocessing (:class:`~chainrule.data.tabular.TabularPreprocessor`) and
:func:`~chainrule.data.tabular.csv_to_npy`, so the two learn the same statistics.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["Moments", "moments"]


class Moments:
    """Streaming mean and population standard deviation (Chan, Golub & LeVeque, 1979).

    Each chunk gets a corrected two-pass estimate (Björck's correction: ``m2 = Σd² − (Σd)²/k``
    with ``d = x − mean``), merged into the running state with Chan et al.'s rule

    ``mean = mean_a + δ·k_b/n``,  ``m2 = m2_a + m2_b + δ²·k_a·k_b/n``,  ``δ = mean_b − mean_a``.

    Values are first divided by a power of two ``2**e`` at least the largest magnitude seen, an
    exact operation, so squares cannot overflow (features near 1e200, targets near 1e300, values
    near 1e308), and are taken relative to a reference (the first value seen), so that values
    far from zero with a small spread (1e9 ± 0.5) keep their digits when chunk means are merged.
    The result, ``(mean, std)`` with ``std = sqrt(m2 / n)``, is finite for every finite input.
    """

    def __init__(self) -> None:
        self.n = 0
        self.exp = -1074  # values are held as (x - ref) / 2**exp
        self.ref = 0.0
        self.mean = 0.0
        self.m2 = 0.0

    def update(self, x: np.ndarray) -> None:
        x = np.asarray(x, np.float64).reshape(-1)
        k = x.size
        if k == 0:
            return
        big = float(np.max(np.abs(x)))
        if not math.isfinite(big):
            raise ValueError("Moments.update: values must be finite")
        if self.n == 0:
            self.ref = float(x[0])
        e = math.frexp(big)[1]  # big < 2**e
        if e > self.exp:
            shift = self.exp - e  # rescale the state to the new unit 2**e (exact)
            self.mean = math.ldexp(self.mean, shift)
            self.m2 = math.ldexp(self.m2, 2 * shift)
            self.exp = e
        xs = np.ldexp(x, -self.exp) - math.ldexp(self.ref, -self.exp)
        mean_b = float(xs.mean())
        d = xs - mean_b
        s = float(d.sum())
        m2_b = max(float(np.dot(d, d)) - s * s / k, 0.0)
        mean_b += s / k
        tot = self.n + k
        delta = mean_b - self.mean
        self.mean += delta * k / tot
        self.m2 += m2_b + delta * delta * (self.n / tot) * k
        self.n = tot

    def result(self) -> tuple[float, float]:
        """``(mean, std)`` in the values' units (population std, ddof 0); (0, 0) if empty."""
        if self.n == 0:
            return 0.0, 0.0
        std = math.sqrt(self.m2 / self.n)
        mean = self.mean + math.ldexp(self.ref, -self.exp)
        return math.ldexp(mean, self.exp), math.ldexp(std, self.exp)


def moments(x: np.ndarray) -> tuple[float, float]:
    """``(mean, std)`` of ``x`` (population std), stable for any finite float64 values.

    >>> moments(np.array([1e9 - 0.5, 1e9 + 0.5]))
    (1000000000.0, 0.5)
    >>> moments(np.array([1e300, -1e300]))
    (0.0, 1e+300)
    """
    m = Moments()
    m.update(x)
    return m.result()


def standardize(x: np.ndarray, mean: float, std: float) -> np.ndarray:
    """``(x − mean) / std`` in float64; ``x/std − mean/std`` where ``x − mean`` overflows."""
    with np.errstate(over="ignore", invalid="ignore"):
        z = (x - mean) / std
        if not np.all(np.isfinite(z)):
            z = np.where(np.isfinite(z), z, x / std - mean / std)
    return z
