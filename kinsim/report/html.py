"""``kinsim report``: one self-contained HTML page for a run.

The page holds the summary, the breakdown by op class, the four plots (PNG, embedded as data URIs) and the
hardware and workload used (as YAML). It fetches nothing from a network. A few lines of script count the
plots that rendered into ``body[data-plots-rendered]``, which the browser test reads.
"""

from __future__ import annotations

import base64
import html
import io
from typing import Any

import yaml

from kinsim import __version__
from kinsim.ops.op import OP_CLASSES
from kinsim.report.plots import PLOTS, PLOTTERS, run_title
from kinsim.report.summary import summary_rows
from kinsim.units import UNITS, format_figure, parse_quantity, quantity_kind, readable_quantity

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 60rem; color: #222; }
h1 { font-size: 1.5rem; } h2 { font-size: 1.15rem; margin-top: 2rem; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; } td, th { padding: 0.2rem 0.8rem; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
tr:nth-child(even) { background: #f6f6f6; }
img { max-width: 100%; display: block; margin: 1rem 0; }
pre { background: #f6f6f6; padding: 0.8rem; overflow-x: auto; font-size: 0.8rem; }
"""

SCRIPT = """
window.addEventListener("load", function () {
  var images = Array.prototype.slice.call(document.querySelectorAll("img.plot"));
  var rendered = images.filter(function (img) { return img.complete && img.naturalWidth > 0; }).length;
  document.body.setAttribute("data-plots-rendered", String(rendered));
});
"""


def _png(fig) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def readable_inputs(value: Any) -> Any:
    """The resolved inputs of a run with each quantity as a person writes it: ``"989000000000000.0 FLOP/s"``
    is ``"989 TFLOP/s"``, ``"4.9999999999999996e-06 s"`` is ``"5 us"`` (12 significant digits kept)."""
    if isinstance(value, dict):
        return {key: readable_inputs(item) for key, item in value.items()}
    if isinstance(value, list):
        return [readable_inputs(item) for item in value]
    kind = quantity_kind(value)
    if kind and value.split(" ", 1)[-1] == UNITS[kind][0]:  # written in its base unit, as run files do
        return readable_quantity(kind, parse_quantity(kind, value))
    return value


def render_report(summary: dict[str, Any]) -> str:
    """The HTML page of a run's metrics (as written by ``kinsim run --json``). The same metrics give the same
    bytes: the page holds no wall time, date or path."""
    esc = html.escape
    rows = "".join(f"<tr><th>{esc(label)}</th><td>{esc(value)}</td></tr>"
                   for label, value in summary_rows(summary, wall_time=False))
    busy = sum(summary["breakdown_s"][c] for c in OP_CLASSES) or 1.0
    breakdown = "".join(
        f"<tr><td>{c}</td><td class='num'>{format_figure('replica-seconds', summary['breakdown_s'][c])}</td>"
        f"<td class='num'>{format_figure('fraction', summary['breakdown_s'][c] / busy)}</td>"
        f"<td class='num'>{format_figure('FLOP', summary['by_class'][c]['flops'])}</td>"
        f"<td class='num'>{format_figure('B', summary['by_class'][c]['hbm_bytes'])}</td></tr>"
        for c in OP_CLASSES if summary["breakdown_s"][c] > 0)
    plots = "".join(
        f"<h2>{esc(title)}</h2><img class='plot' alt='{esc(title)}' "
        f"src='data:image/png;base64,{_png(PLOTTERS[name](summary))}'>" for name, title in PLOTS.items())
    inputs = summary.get("inputs", {})
    used = "".join(f"<h2>{esc(kind.capitalize())} used</h2>"
                   f"<pre>{esc(yaml.safe_dump(readable_inputs(spec), sort_keys=False, allow_unicode=True))}</pre>"
                   for kind, spec in inputs.items() if spec is not None)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>kinsim: {esc(summary['workload'])} on {esc(summary['hardware'])}</title>
<style>{STYLE}</style></head>
<body>
<h1>{esc(run_title(summary))}</h1>
<p>kinsim {esc(__version__)}, {esc(summary['mode'])}</p>
<h2>Summary</h2><table>{rows}</table>
<h2>Breakdown by op class</h2>
<table><tr><th>op class</th><th>replica-seconds</th><th>share</th><th>FLOPs per GPU</th><th>HBM bytes per GPU</th></tr>
{breakdown}</table>
{plots}
{used}
<script>{SCRIPT}</script>
</body></html>
"""
