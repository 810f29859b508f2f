"""The report as one self-contained HTML page (inline SVG charts, inline CSS, no scripts) and as JSON."""
from __future__ import annotations

import json
import os
from html import escape
from pathlib import Path
from typing import List, Optional, Tuple

from pot_torch.report.data import Report
from pot_torch.report.svg import line, scatter
from pot_torch.utils.atomic import atomic_output_files

_CSS = """body{font-family:system-ui,sans-serif;margin:24px;color:#222;max-width:1200px}
table{border-collapse:collapse;margin:8px 0 18px}td,th{border:1px solid #ccc;padding:3px 7px;font-size:13px;
text-align:right}th{background:#f3f3f3}td.l,th.l{text-align:left}tr.rec td{background:#fdecea}
pre{background:#f6f8fa;padding:10px;border:1px solid #ddd;overflow-x:auto}.plots{display:flex;flex-wrap:wrap;gap:12px}
.note{color:#8a4b00}"""


def _number(value: Optional[float], spec: str = ".4g") -> str:
    return "" if value is None else format(value, spec)


def _summary(report: Report) -> str:
    rows: List[Tuple[str, str]] = [
        ("model", escape(report.model_name)),
        (f"FP {report.metric_name}", _number(report.fp_metric)),
        (f"INT8 {report.metric_name} (DefaultQuantization)", _number(report.int8_metric)),
        ("baseline (drops are measured from it)", _number(report.baseline_metric)),
        ("drop (positive = worse)", _number(report.int8_drop, "+.4g")),
        ("allowed drop (maximal_drop)", _number(report.maximal_drop)),
        ("FP / INT8 latency, ms", f"{_number(report.fp_latency_ms, '.3f')} / {_number(report.int8_latency_ms, '.3f')}"),
        ("precision of metric and latency", escape(report.precision)),
        ("validation / ranking / statistics samples",
         f"{report.samples} / {report.ranking_samples} / {report.statistics_samples}"),
        ("samples through the metric", escape(", ".join(f"{k} {v}" for k, v in report.evaluations.items())
                                              + f"; total {sum(report.evaluations.values())}")),
        ("the report's own (besides FP and INT8 on all) / its budget: one AccuracyAwareQuantization ranking step "
         "(groups x the samples it ranks on)", f"{report.own_evaluations} / {report.aaq_ranking_evaluations}"),
        ("check of the recommendation on all samples", "planned in the budget" if report.check_planned else
         "not planned: it would take more than half of the budget"),
    ]
    return "<table>" + "".join(f'<tr><th class="l">{k}</th><td class="l">{v}</td></tr>' for k, v in rows) + "</table>"


def _recommendation(report: Report) -> str:
    if not report.recommended:
        return ("<p>The INT8 model is within the allowed drop: nothing needs to stay in floating point.</p>"
                if report.int8_drop <= report.maximal_drop else "<p>No group could be reverted usefully.</p>")
    names = ", ".join(f"#{i}" for i in report.recommended)
    snippet = json.dumps({"ignored": report.ignored}, indent=2)
    drop = report.recommended_drop
    basis = {"measured": f"measured on all {report.samples} samples",
             "AccuracyAwareQuantization": f"measured on all {report.samples} samples by AccuracyAwareQuantization"}
    source = basis.get(report.recommended_basis, f"an estimate from the {report.ranking_samples} ranking samples, "
                                                 f"{report.estimate_error_text}: not measured on all samples")
    return (f"<p>Leave {len(report.recommended)} group(s) in floating point ({names}): {escape(report.metric_name)} "
            f"{_number(report.recommended_metric)} (drop {_number(drop, '+.4g')}; {escape(source)}), "
            f"latency {_number(report.recommended_latency_ms, '.3f')} ms. Paste into DefaultQuantization's params:</p>"
            f"<pre>{escape(snippet)}</pre>")


def _plots(report: Report) -> str:
    recommended = {f"#{i}" for i in report.recommended}
    impact = scatter([(g.saved_us, g.impact, f"#{g.index}") for g in report.groups],
                     "Metric impact vs time saved, per group", "time INT8 saves over FP, µs (PERF_COUNT)",
                     f"{report.metric_name} gained by reverting it alone", highlight=sorted(recommended))
    depth = line([(g.index, g.sqnr_db, f"#{g.index}") for g in report.groups], "SQNR along the network depth",
                 "quantizer group (topological order)", "output SQNR vs FP, dB")
    curve = [(report.int8_latency_ms, report.int8_metric, "INT8")]
    curve += [(p.latency_ms, p.metric, f"+#{p.reverted[-1]}") for p in report.curve if p.accepted]
    curve.append((report.fp_latency_ms, report.fp_metric, "FP"))
    accuracy = line(curve, "Accuracy / latency as groups are reverted", "latency, ms", report.metric_name,
                    reference=(report.allowed_metric, "allowed drop"))
    return f'<div class="plots">{impact}{depth}{accuracy}</div>'


def _table(report: Report) -> str:
    head = ("<tr><th>rank</th><th>group</th><th class='l'>layers (types)</th><th>SQNR, dB</th>"
            "<th>output closeness to FP gained reverted alone (est.)</th>"
            f"<th>{escape(report.metric_name)} gained reverted alone (whole set, est.)</th>"
            f"<th>gained on samples INT8 gets wrong</th><th>INT8 time, µs</th>"
            "<th>share of INT8 time</th><th>saved vs FP, µs</th><th>outlier ratio</th><th>channel spread</th>"
            "<th>outlier channel</th></tr>")
    order = sorted(report.groups, key=lambda g: (-(g.closeness if g.closeness is not None else float("-inf")),
                                                 g.index))
    body = []
    for rank, g in enumerate(order, start=1):
        layers = "<br>".join(f"{escape(n)} ({escape(t)})" for n, t in zip(g.layers, g.types))
        share = "" if g.latency_share is None else f"{100 * g.latency_share:.1f}%"
        css = ' class="rec"' if g.index in report.recommended else ""
        body.append(f"<tr{css}><td>{rank}</td><td>#{g.index}</td><td class='l'>{layers}</td>"
                    f"<td>{_number(g.sqnr_db, '.1f')}</td><td>{_number(g.closeness, '+.3g')}</td>"
                    f"<td>{_number(g.impact, '+.4g')}</td>"
                    f"<td>{_number(g.hard_gain, '+.4g')}</td>"
                    f"<td>{_number(g.int8_us, '.1f')}</td><td>{share}</td><td>{_number(g.saved_us, '+.1f')}</td>"
                    f"<td>{_number(g.outlier_ratio, '.3g')}</td><td>{_number(g.channel_spread, '.3g')}</td>"
                    f"<td>{'' if g.outlier_channel is None else g.outlier_channel}</td></tr>")
    return f"<table>{head}{''.join(body)}</table>"


def render_html(report: Report) -> str:
    """The HTML page of ``report``: summary, recommendation, charts, the per-group table and the notes."""
    notes = "".join(f'<p class="note">{escape(n)}</p>' for n in report.notes)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Quantization report: {escape(report.model_name)}</title>
<style>{_CSS}</style></head><body>
<h1>Quantization report: {escape(report.model_name)}</h1>
{_summary(report)}
<h2>Recommendation</h2>{_recommendation(report)}{notes}
<h2>Charts</h2>{_plots(report)}
<h2>Quantizer groups, most harmful first</h2>
<p>A group is the FakeQuantize ops that are reverted together and the layers they feed. Ranked by "output
closeness to FP gained": with only this group in floating point, the change against the INT8 model of the
per-sample cosine similarity of the outputs to the FP model's outputs, estimated for the whole validation set from
{report.ranking_samples} samples (half from those the INT8 model gets most wrong, half from the others, each
stratum weighted by its size). "{escape(report.metric_name)} gained": the same estimate for the metric, and on the
first half alone (the recommendation follows that order, as AccuracyAwareQuantization; its steps are estimated on
the same samples, and its set is checked on all {report.samples} when the evaluation budget allows). SQNR: the group's
output against FP over {report.statistics_samples} samples (f32). Times: OpenVINO performance counters at
{escape(report.precision)}, median of runs. Outlier ratio: largest per-channel |max| of the quantized activation
over the median one. Red rows: the recommendation. docs/report.md explains each column.</p>
{_table(report)}
</body></html>
"""


def report_paths(path: os.PathLike | str, overwrite: bool = False) -> Tuple[Path, Path]:
    """The HTML and JSON paths of a report written to ``path``, checked before any work is done.

    :raises ValueError: ``path`` does not end in ``.html``.
    :raises FileExistsError: either file exists and ``overwrite`` is False.
    """
    html_path = Path(path)
    if html_path.suffix.lower() != ".html":
        raise ValueError(f"the report path must end in .html, got '{path}' (the JSON goes beside it)")
    json_path = html_path.with_suffix(".json")
    existing = [str(p) for p in (html_path, json_path) if p.exists()]
    if existing and not overwrite:
        raise FileExistsError(f"{', '.join(existing)} already exist(s); choose another path, delete them or "
                              "pass overwrite=True to replace them")
    return html_path, json_path


def write_report(report: Report, path: os.PathLike | str, overwrite: bool = False) -> Tuple[Path, Path]:
    """Write ``report`` as ``path`` (HTML) and the same data beside it as JSON (``.json`` suffix).

    :raises FileExistsError: either file exists and ``overwrite`` is False.
    :raises ValueError: ``path`` does not end in ``.html``.
    """
    html_path, json_path = report_paths(path, overwrite)
    html_path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_output_files([html_path, json_path]) as (staged_html, staged_json):
        staged_html.write_text(render_html(report), encoding="utf-8")
        staged_json.write_text(report.to_json(), encoding="utf-8")
    return html_path, json_path
