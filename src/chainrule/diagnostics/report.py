"""One self-contained HTML page about a training run: curves, gradient flow, warnings."""

from __future__ import annotations

import base64
import html
import io
import os
from typing import Any

from ..io import atomic_write_text

__all__ = ["write_report"]


def _png(fig: Any) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def write_report(
    path: str | os.PathLike[str],
    history: Any,
    flow: Any = None,
    metrics: dict[str, Any] | None = None,
    title: str = "chainrule training report",
    extra_figures: dict[str, Any] | None = None,
) -> str:
    """Write an HTML report (plots embedded as PNG data, no external files) and return its path.

    Sections: how training ended (the summary), test metrics, loss and metric curves, the
    gradient flow per layer with its warnings and suggestions, and any extra figures.
    """
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>{html.escape(title)}</title>",
        "<style>body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}"
        "pre{background:#f6f8fa;padding:1em;white-space:pre-wrap}img{max-width:100%}"
        "li.warn{color:#9a3412}table{border-collapse:collapse}td,th{border:1px solid #ddd;padding:4px 8px}"
        "</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        "<h2>How training ended</h2>",
        f"<pre>{html.escape(history.summary or '')}</pre>",
    ]
    if metrics:
        parts.append("<h2>Test metrics</h2><table>")
        for k, v in metrics.items():
            if isinstance(v, (int, float)):
                parts.append(f"<tr><th>{html.escape(k)}</th><td>{v:.6g}</td></tr>")
        parts.append("</table>")
    try:
        parts.append("<h2>Curves</h2>")
        parts.append(f"<img alt='curves' src='data:image/png;base64,{_png(history.plot())}'>")
        if flow is not None and flow.layers:
            parts.append("<h2>Gradient flow</h2>")
            parts.append(
                f"<img alt='gradient flow' src='data:image/png;base64,{_png(flow.plot())}'>"
            )
        for name, fig in (extra_figures or {}).items():
            parts.append(f"<h2>{html.escape(name)}</h2>")
            parts.append(f"<img alt='{html.escape(name)}' src='data:image/png;base64,{_png(fig)}'>")
    except ImportError as exc:
        parts.append(f"<p>(no plots: {html.escape(str(exc))})</p>")
    if flow is not None:
        parts.append("<h2>Warnings and suggestions</h2>")
        if flow.warnings:
            parts.append(
                "<ul>"
                + "".join(f"<li class='warn'>{html.escape(w)}</li>" for w in flow.warnings)
                + "</ul>"
            )
        else:
            parts.append("<p>No problems found in the gradient flow.</p>")
        rows = "".join(
            f"<tr><td>{html.escape(n)}</td><td>{r['grad_rms'][-1]:.3g}</td><td>{r['weight_rms'][-1]:.3g}</td>"
            f"<td>{r['update_ratio'][-1]:.3g}</td><td>{r['dead_fraction'][-1]:.2f}</td>"
            f"<td>{r['saturated_fraction'][-1]:.2f}</td></tr>"
            for n, r in flow.records.items()
            if r["grad_rms"]
        )
        parts.append(
            "<table><tr><th>layer</th><th>gradient RMS</th><th>weight RMS</th><th>update/weight</th>"
            f"<th>dead</th><th>saturated</th></tr>{rows}</table>"
        )
    parts.append("</body></html>")
    atomic_write_text(path, "\n".join(parts))
    return os.fspath(path)
