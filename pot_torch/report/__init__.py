"""The quantization report: per quantizer group, the accuracy it costs and the time it saves, as HTML and JSON.

``build_report(fp_model, engine, params)`` measures; ``write_report(report, 'report.html')`` writes the page and
``report.json`` beside it. ``pot-torch report``, ``QuantizationResult.report`` and AccuracyAwareQuantization's
``report_path`` call them.
"""
from pot_torch.report.build import build_report
from pot_torch.report.data import CurvePoint, GroupRow, Report
from pot_torch.report.render import render_html, report_paths, write_report

__all__ = ["build_report", "write_report", "report_paths", "render_html", "Report", "GroupRow", "CurvePoint"]
