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
  document.getElementById("render-check").textContent = rendered + " of " + images.length + " plots rendered";
});
"""


def _png(fig) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def render_report(summary: dict[str, Any]) -> str:
    """The HTML page of a run's metrics (as written by ``kinsim run --json``)."""
    esc = html.escape
    rows = "".join(f"<tr><th>{esc(label)}</th><td>{esc(value)}</td></tr>" for label, value in summary_rows(summary))
    busy = sum(summary["breakdown_s"].values()) or 1.0
    breakdown = "".join(
        f"<tr><td>{c}</td><td class='num'>{summary['breakdown_s'][c]:,.2f}</td>"
        f"<td class='num'>{summary['breakdown_s'][c] / busy:.1%}</td>"
        f"<td class='num'>{summary['by_class'][c]['flops']:.3g}</td>"
        f"<td class='num'>{summary['by_class'][c]['hbm_bytes']:.3g}</td></tr>" for c in OP_CLASSES)
    plots = "".join(
        f"<h2>{esc(title)}</h2><img class='plot' alt='{esc(title)}' "
        f"src='data:image/png;base64,{_png(PLOTTERS[name](summary))}'>" for name, title in PLOTS.items())
    inputs = summary.get("inputs", {})
    used = "".join(f"<h2>{esc(kind.capitalize())} used</h2><pre>{esc(yaml.safe_dump(spec, sort_keys=False))}</pre>"
                   for kind, spec in inputs.items() if spec is not None)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>kinsim: {esc(summary['workload'])} on {esc(summary['hardware'])}</title>
<style>{STYLE}</style></head>
<body>
<h1>{esc(run_title(summary))}</h1>
<p>kinsim {esc(__version__)}, {esc(summary['mode'])}; <span id="render-check">plots not checked</span></p>
<h2>Summary</h2><table>{rows}</table>
<h2>Breakdown by op class</h2>
<table><tr><th>op class</th><th>replica-seconds</th><th>share</th><th>FLOPs per GPU</th><th>HBM bytes per GPU</th></tr>
{breakdown}</table>
{plots}
{used}
<script>{SCRIPT}</script>
</body></html>
"""
