"""One self-contained HTML page about a training run: curves, gradient flow, warnings."""

from __future__ import annotations

import base64
import html
import io
import os
import time
from typing import Any

from ..io import atomic_write_text
from .conv_pictures import CSS as CONV_CSS
from .conv_pictures import conv_pictures_html

__all__ = ["write_report"]


def _png(fig: Any) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    return base64.b64encode(buf.getvalue()).decode("ascii")


_SHOWN = (
    ("data", "data"),
    ("task", "task"),
    ("arch", "architecture"),
    ("layers", "hidden layers"),
    ("activation", "activation"),
    ("init", "initialisation"),
    ("optimizer", "optimizer"),
    ("lr", "learning rate"),
    ("epochs", "epochs (limit)"),
    ("batch_size", "batch size"),
    ("dropout", "dropout"),
    ("weight_decay", "weight decay"),
    ("clip_grad_norm", "gradient clipping (max norm)"),
    ("val_split", "validation split"),
    ("test_split", "test split"),
    ("early_stopping", "early stopping"),
    ("seed", "seed"),
)


def describe_auto_init(activation: str) -> str:
    """What ``init_scheme="auto"`` of :func:`chainrule.nn.mlp` gives the hidden layers."""
    if activation in ("relu", "leaky_relu", "elu", "gelu"):
        return "He (Kaiming) uniform, U(±√(6/fan_in)); biases 0"
    if activation in ("sigmoid", "logistic"):
        return "Glorot (Xavier) uniform with gain 4 (the sigmoid's slope is 1/4); biases 0"
    return "Glorot (Xavier) uniform, U(±√(6/(fan_in+fan_out))); biases 0"


def _architecture(arch: str, model: Any) -> str:
    """``net.json: Unflatten(...) → Conv2d(1, 8, kernel_size=3) → ...`` (the model's layers)."""
    name = os.path.basename(str(arch))
    if model is None:
        return name
    layers = list(model) if type(model).__name__ == "Sequential" else [model]
    return f"{name}: " + " → ".join(" ".join(repr(m).split()) for m in layers)


def _settings_table(settings: dict[str, Any] | None, model: Any = None) -> list[str]:
    if not settings:
        return []
    rows = []
    data = settings.get("dataset") or settings.get("data")
    if data and "target" in settings and settings.get("target"):
        data = f"{data} (target {settings['target']})"
    values = {**settings, "data": data}
    if values.get("arch"):  # an architecture file, not the --layers network's options
        for key in ("layers", "activation", "init", "dropout", "batch_norm"):
            values.pop(key, None)
        values["arch"] = _architecture(values["arch"], model)
    if values.get("init") == "auto" and values.get("activation"):
        values["init"] = f"auto: {describe_auto_init(str(values['activation']))}"
    if "layers" in values and isinstance(values["layers"], (list, tuple)):
        values["layers"] = ", ".join(str(w) for w in values["layers"])
    for key, label in _SHOWN:
        v = values.get(key)
        if v is None or v == "" or (key in ("dropout", "weight_decay") and not v):
            continue
        rows.append(f"<tr><th>{html.escape(label)}</th><td>{html.escape(str(v))}</td></tr>")
    return ["<h2>Settings</h2>", "<table class='settings'>", *rows, "</table>"]


def _layer_table(flow: Any) -> list[str]:
    """Per-layer numbers of the last epoch; "—" with a footnote where a number does not apply."""
    reasons: list[str] = []

    def cell(name: str, quantity: str, fmt: str) -> str:
        if hasattr(flow, "cell"):
            value, why = flow.cell(name, quantity)
        else:  # an older recorder: the raw value
            values = flow.records[name][quantity]
            value, why = (values[-1] if values else None), "not recorded"
        if value is None:
            if why not in reasons:
                reasons.append(why)
            k = reasons.index(why) + 1
            return f"<td title='{html.escape(why)}'>—<sup>{k}</sup></td>"
        return f"<td>{value:{fmt}}</td>"

    label = getattr(flow, "labels", {})
    rows = []
    for n, r in flow.records.items():
        if not r["grad_rms"]:
            continue
        rows.append(
            f"<tr><td>{html.escape(label.get(n, n))}</td>"
            + cell(n, "grad_rms", ".3g")
            + cell(n, "weight_rms", ".3g")
            + cell(n, "update_ratio", ".3g")
            + cell(n, "dead_fraction", ".0%")
            + cell(n, "saturated_fraction", ".0%")
            + "</tr>"
        )
    notes = "".join(f"<li>{html.escape(r)}</li>" for r in reasons)
    return [
        "<h3>Per layer, last epoch</h3>",
        "<table><tr><th>layer (position: layer)</th><th>gradient RMS</th><th>weight RMS</th>"
        "<th>update / weight</th><th>dead units</th><th>saturated units</th></tr>",
        *rows,
        "</table>",
        f"<ol class='notes'>{notes}</ol>" if notes else "",
    ]


def write_report(
    path: str | os.PathLike[str],
    history: Any,
    flow: Any = None,
    metrics: dict[str, Any] | None = None,
    title: str = "chainrule training report",
    extra_figures: dict[str, Any] | None = None,
    settings: dict[str, Any] | None = None,
    *,
    model: Any = None,
    sample: Any = None,
) -> str:
    """Write an HTML report (plots embedded as PNG data, no external files) and return its path.

    Sections: the run's settings (data, layers, activation, initialisation, optimizer, rate,
    epochs, seed, ... — so that two reports can be told apart), how training ended (the
    summary), test metrics, loss and metric curves, any extra figures (the decision boundary,
    the confusion matrix), and the gradient flow per layer with its warnings and suggestions.
    In the per-layer table a cell that does not apply shows "—" with the reason.

    For a convolutional network (``model``, by default the one ``flow`` watched) the report
    also shows what its first convolution learned: one tile per filter (output channel) and,
    given ``sample`` (inputs in the model's batch layout, e.g. ``X_test[:1]``; the first one is
    used), that input and the feature maps it produces
    (:mod:`chainrule.diagnostics.conv_pictures`). A network without convolutions gets the
    same report as without ``model``.
    """
    if model is None:
        model = getattr(flow, "model", None)
    conv_parts = conv_pictures_html(model, sample) if model is not None else []
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>{html.escape(title)}</title>",
        "<style>body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}"
        "pre{background:#f6f8fa;padding:1em;white-space:pre-wrap}img{max-width:100%}"
        "li.warn{color:#9a3412}table{border-collapse:collapse}td,th{border:1px solid #ddd;padding:4px 8px}"
        "th{text-align:left}ol.notes{font-size:90%;color:#555}"
        + (CONV_CSS if conv_parts else "")
        + "</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        f"<p>written {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}</p>",
        *_settings_table(settings, model),
        "<h2>How training ended</h2>",
        f"<pre>{html.escape(history.summary or '')}</pre>",
    ]
    if metrics:
        parts.append("<h2>Test metrics</h2><table>")
        for k, v in metrics.items():
            if isinstance(v, (int, float)):
                parts.append(f"<tr><th>{html.escape(k)}</th><td>{v:.6g}</td></tr>")
        parts.append("</table>")
    plots = True
    try:
        parts.append("<h2>Curves</h2>")
        parts.append(f"<img alt='curves' src='data:image/png;base64,{_png(history.plot())}'>")
        for name, fig in (extra_figures or {}).items():
            parts.append(f"<h2>{html.escape(name)}</h2>")
            parts.append(f"<img alt='{html.escape(name)}' src='data:image/png;base64,{_png(fig)}'>")
    except ImportError as exc:
        parts.append(f"<p>(no plots: {html.escape(str(exc))})</p>")
        plots = False
    parts.extend(conv_parts)  # drawn without matplotlib
    try:
        if plots and flow is not None and flow.layers:
            parts.append("<h2>Gradient flow</h2>")
            parts.append(
                f"<img alt='gradient flow' src='data:image/png;base64,{_png(flow.plot())}'>"
            )
    except ImportError as exc:
        parts.append(f"<p>(no plots: {html.escape(str(exc))})</p>")
    if flow is not None:
        parts.append("<h3>Warnings and suggestions</h3>")
        if flow.warnings:
            parts.append(
                "<ul>"
                + "".join(f"<li class='warn'>{html.escape(w)}</li>" for w in flow.warnings)
                + "</ul>"
            )
        else:
            parts.append("<p>No problems found in the gradient flow.</p>")
        parts.extend(_layer_table(flow))
    parts.append("</body></html>")
    atomic_write_text(path, "\n".join(parts))
    return os.fspath(path)
