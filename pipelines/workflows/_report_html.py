"""HTML pieces of ``cip report``: one self-contained page (inline CSS, charts as data: PNGs).

Nothing here reads the workspace; :mod:`cip.pipelines.workflows.report`
collects the figures and calls these helpers. Every value is escaped; the page
loads nothing from anywhere (no scripts, fonts or images by URL), so it opens
offline and in a mail client.
"""

from __future__ import annotations

import base64
import html
import io
import math
from collections.abc import Iterable, Sequence
from typing import Any

__all__ = ["esc", "fmt", "table", "chart", "empty", "page", "Figure"]

CSS = """
body{font-family:-apple-system,'Segoe UI',Helvetica,Arial,sans-serif;margin:0;color:#1d2430;
background:#f5f6f8;font-size:14px;line-height:1.45}
header{background:#1d2430;color:#fff;padding:18px 32px}
header h1{margin:0;font-size:22px}header p{margin:4px 0 0;color:#c9ced8}
nav{padding:8px 32px;background:#fff;border-bottom:1px solid #e1e4ea}
nav a{margin-right:14px;color:#2457c5;text-decoration:none}
main{padding:8px 32px 32px;max-width:1180px}
section{background:#fff;border:1px solid #e1e4ea;border-radius:6px;margin:16px 0;padding:12px 20px}
h2{font-size:18px;margin:6px 0 10px}h3{font-size:15px;margin:14px 0 6px}
table{border-collapse:collapse;margin:6px 0 10px;font-size:13px}
th,td{border-bottom:1px solid #e9ecf1;padding:4px 10px;text-align:left;vertical-align:top}
th{background:#f0f2f6;font-weight:600}td.n{text-align:right;font-variant-numeric:tabular-nums}
.empty{color:#6b7280;font-style:italic}.warn{color:#9a5b00}.sig{color:#116b2f;font-weight:600}
.cards{display:flex;flex-wrap:wrap;gap:12px}.card{border:1px solid #e1e4ea;border-radius:6px;
padding:8px 14px;min-width:260px;flex:1}
.kpis{display:flex;gap:24px;flex-wrap:wrap}.kpi b{display:block;font-size:20px}
img.chart{max-width:100%;height:auto;display:block;margin:6px 0}
footer{color:#6b7280;padding:0 32px 24px;font-size:12px}
"""


def esc(value: Any) -> str:
    """HTML-escaped text of ``value`` (None as an en dash)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "&ndash;"
    return html.escape(str(value))


def fmt(value: Any, kind: str = "num") -> str:
    """A number for people: ``int`` with thousands separators, ``pct`` as a percentage,
    ``num`` with 2 decimals, ``p4`` with 4."""
    if value is None:
        return "-"
    if isinstance(value, float) and math.isnan(value):
        return "-"
    if kind == "int":
        return f"{int(value):,}"
    if kind == "pct":
        return f"{float(value):.2%}"
    if kind == "p4":
        return f"{float(value):.4f}"
    if isinstance(value, int | float):
        return f"{float(value):,.2f}"
    return str(value)


def table(
    head: Sequence[str],
    rows: Iterable[Sequence[Any]],
    *,
    numeric: Sequence[int] = (),
    attrs: Sequence[str] | None = None,
) -> str:
    """An HTML table; cells are escaped text, ``numeric`` columns right-aligned,
    ``attrs[i]`` extra attributes of row ``i`` (already escaped)."""
    out = ["<table><thead><tr>", *(f"<th>{esc(h)}</th>" for h in head), "</tr></thead><tbody>"]
    for i, row in enumerate(rows):
        extra = f" {attrs[i]}" if attrs is not None and attrs[i] else ""
        out.append(f"<tr{extra}>")
        for j, cell in enumerate(row):
            cls = ' class="n"' if j in numeric else ""
            out.append(f"<td{cls}>{esc(cell)}</td>")
        out.append("</tr>")
    out.append("</tbody></table>")
    return "".join(out)


def Figure(width: float = 6.4, height: float = 3.2) -> Any:  # noqa: N802 (a factory)
    """A matplotlib figure not tied to pyplot (no global state, no display needed)."""
    from matplotlib.figure import Figure as _Figure

    fig = _Figure(figsize=(width, height), dpi=100, layout="constrained")
    return fig


def chart(fig: Any, alt: str) -> str:
    """``<img>`` of the figure as an inline base64 PNG."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    data = base64.b64encode(buf.getvalue()).decode("ascii")
    return f'<img class="chart" alt="{esc(alt)}" src="data:image/png;base64,{data}">'


def empty(text: str) -> str:
    """The one line a section without data shows."""
    return f'<p class="empty">{esc(text)}</p>'


def page(title: str, subtitle: str, sections: Sequence[tuple[str, str, str]], footer: str) -> str:
    """The whole document: ``sections`` are ``(id, heading, body html)``."""
    nav = "".join(f'<a href="#{esc(i)}">{esc(h)}</a>' for i, h, _ in sections)
    body = "".join(f'<section id="{esc(i)}"><h2>{esc(h)}</h2>{b}</section>' for i, h, b in sections)
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{esc(title)}</title><style>{CSS}</style></head><body>"
        f"<header><h1>{esc(title)}</h1><p>{esc(subtitle)}</p></header>"
        f"<nav>{nav}</nav><main>{body}</main><footer>{esc(footer)}</footer></body></html>\n"
    )
