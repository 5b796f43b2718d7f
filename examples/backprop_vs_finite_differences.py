"""Why backpropagation: one backward pass against finite differences as models grow.

Finite differences need two forward passes for every parameter; backpropagation computes every
gradient "in a single pass rather than separate calculations for each parameter". For large
models the finite-difference time is measured on 200 parameters and extrapolated.

Run:  python examples/backprop_vs_finite_differences.py [plot.png]
"""

from __future__ import annotations

import sys

from chainrule.diagnostics import bench_grad, bench_grad_figure, format_bench_grad


def main(path: str | None = None) -> list[dict[str, float]]:
    rows = bench_grad()
    print(format_bench_grad(rows))
    if path:
        bench_grad_figure(rows).savefig(path, dpi=100)
        print(f"wrote {path}")
    return rows


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else None)
