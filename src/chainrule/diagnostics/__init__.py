"""Looking inside backpropagation: explanations, gradient flow, learning-rate test, graphs."""

from __future__ import annotations

from .explain import Explanation, explain, parse_weight
from .flow import GradientFlow
from .graph import draw_graph
from .lr_find import LRFinderResult, lr_find
from .numerics import (
    ModelGradcheck,
    bench_grad,
    bench_grad_figure,
    format_bench_grad,
    gradcheck_model,
)
from .report import write_report

__all__ = [
    "Explanation",
    "GradientFlow",
    "LRFinderResult",
    "ModelGradcheck",
    "bench_grad",
    "bench_grad_figure",
    "draw_graph",
    "explain",
    "format_bench_grad",
    "gradcheck_model",
    "lr_find",
    "parse_weight",
    "write_report",
]
