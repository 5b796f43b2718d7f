"""Why backpropagation: one backward pass against finite differences as models grow.

Finite differences need two forward passes for every parameter; backpropagation computes every
gradient "in a single pass rather than separate calculations for each parameter". For large
models the finite-difference time is measured on 200 parameters and extrapolated.

Run:  python examples/backprop_vs_finite_differences.py [plot.png]
"""

from __future__ import annotations

import sys

from chainrule.diagnostics import bench_grad, bench_grad_figure


def main(path: str | None = None) -> list[dict[str, float]]:
    rows = bench_grad()
    print(f"{'parameters':>11} {'backprop':>12} {'finite differences':>20} {'ratio':>9}")
    for r in rows:
        mark = " (extrapolated)" if r["extrapolated"] else ""
        print(
            f"{int(r['parameters']):>11} {r['backprop_s'] * 1e3:>10.2f}ms "
            f"{r['finite_diff_s']:>18.3f}s {r['ratio']:>8.0f}x{mark}"
        )
    if path:
        bench_grad_figure(rows).savefig(path, dpi=100)
        print(f"wrote {path}")
    return rows


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else None)
