"""The audit report of one model version: a self-contained HTML page (and its JSON) for privacy officers.

:func:`render_report` turns a stored :class:`~synthstream.processors.auditor.AuditRecord`
into one HTML file that needs no network: plotly.js and every figure's data are inlined.
Sections: the verdict and its reasons with the formal guarantee (or "empirical protection
only"); verbatim leaks per field (counts, never values); attack risks as bars with their
confidence intervals and ceilings, and how many attacks were built; the distance measures;
quality; per-field distributions real vs synthetic; association heatmaps (real, synthetic,
difference); the privacy budget over time, from the guarantee history it is given (an
empty state when there is none); lineage and the version history.

Every text that comes from data or configuration is HTML-escaped. The real-data summaries
in the record are aggregates with small cells suppressed (see
:mod:`synthstream.evaluation.quality`); keep the report with the same access rules as the
redacted data.
"""

from __future__ import annotations

import html
import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import plotly.graph_objects as go
import plotly.io as pio
from plotly.offline import get_plotlyjs
from pydantic import BaseModel, ConfigDict, Field

from synthstream.models.registry import ModelVersion
from synthstream.processors.auditor import AuditRecord
from synthstream.schemas.events import UtcDatetime

__all__ = ["BudgetPoint", "budget_from_audits", "render_report", "report_json"]

_REAL = "#1f77b4"
_SYNTH = "#ff7f0e"
_CONFIG = {"displayModeBar": False, "responsive": True}


class BudgetPoint(BaseModel):
    """One point of the privacy budget history: the ε (and δ) spent as of ``at``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    at: UtcDatetime = Field(description="When the guarantee was recorded.")
    epsilon: float = Field(ge=0, description="ε spent as of that time.")
    delta: float | None = Field(default=None, ge=0, le=1, description="δ as of that time.")
    label: str = Field(default="", description="What the point is, e.g. 'v3' or a ledger release id.")


def budget_from_audits(records: Sequence[AuditRecord]) -> list[BudgetPoint]:
    """The ε of every audited version with a formal guarantee, in time order (empty when there is none)."""
    points = [
        BudgetPoint(at=r.audited_at, epsilon=r.guarantee.epsilon, delta=r.guarantee.delta, label=f"v{r.model_version}")
        for r in records
        if r.guarantee.kind == "formal" and r.guarantee.epsilon is not None
    ]
    return sorted(points, key=lambda p: p.at)


def report_json(
    record: AuditRecord,
    *,
    history: Sequence[AuditRecord] = (),
    budget: Sequence[BudgetPoint] | None = None,
    versions: Sequence[ModelVersion] = (),
) -> dict[str, Any]:
    """The report's content as JSON-compatible data: the audit, the budget history and the versions."""
    points = budget_from_audits([*history, record]) if budget is None else list(budget)
    return {
        "audit": record.model_dump(mode="json"),
        "budget": [p.model_dump(mode="json") for p in points],
        "versions": [v.model_dump(mode="json") for v in versions],
    }


def render_report(
    record: AuditRecord,
    *,
    history: Sequence[AuditRecord] = (),
    budget: Sequence[BudgetPoint] | None = None,
    versions: Sequence[ModelVersion] = (),
) -> str:
    """Render the self-contained HTML report of ``record``.

    ``history`` holds the audits of the stream's other versions (for the verdict history and,
    unless ``budget`` is given, the budget over time); ``versions`` the registry's versions
    (for lineage). ``budget``, when given, is the ledger's history and is drawn as it is.
    """
    points = budget_from_audits([*history, record]) if budget is None else list(budget)
    report = record.report
    sections = [
        _summary(record),
        _section("leaks", "Verbatim leaks", "", _leak_table(record)),
        _section("risks", "Privacy risks", _risk_figure(record), _attack_table(record)),
        _section("distances", "Distance to real records", _distance_figure(record), _distance_note(record)),
        _section("quality", "Quality", _quality_figure(record), ""),
        _section("distributions", "Per-field distributions: real vs synthetic", _distribution_figures(record), ""),
        _section("associations", "Associations (Cramér's V)", _association_figures(record), ""),
        _section("budget", "Privacy budget over time", *_budget(points)),
        _section("lineage", "Lineage", "", _lineage(record, history, versions)),
    ]
    title = f"synthstream audit: {record.stream} v{record.model_version}"
    timings = ", ".join(f"{html.escape(k)} {v:.2f} s" for k, v in report.seconds.items())
    return (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title><style>{_CSS}</style>"
        f"<script>{get_plotlyjs()}</script></head><body>"
        f"<h1>{html.escape(title)}</h1>"
        + "".join(sections)
        + f"<footer>Audited {html.escape(record.audited_at.isoformat(timespec='seconds'))} in "
        f"{record.audit_seconds:.1f} s (seed {report.seed}; {timings}).</footer></body></html>\n"
    )


# ---------------------------------------------------------------------------------------------
# sections
# ---------------------------------------------------------------------------------------------


def _section(anchor: str, heading: str, figures: str, body: str) -> str:
    return f"<section id='{anchor}'><h2>{html.escape(heading)}</h2>{figures}{body}</section>"


def _figure(fig: go.Figure, div_id: str, *, height: int = 360) -> str:
    fig.update_layout(height=height, margin={"l": 60, "r": 20, "t": 40, "b": 60}, template="plotly_white")
    return str(pio.to_html(fig, full_html=False, include_plotlyjs=False, div_id=div_id, config=_CONFIG, validate=True))


def _summary(record: AuditRecord) -> str:
    report = record.report
    verdict = report.verdict
    guarantee = record.guarantee
    if guarantee.kind == "formal":
        chain = " → ".join(guarantee.mechanisms) or (guarantee.mechanism or "unnamed mechanism")
        delta = "" if guarantee.delta is None else f", δ = {guarantee.delta:.3g}"
        statement = (
            f"Formal differential privacy: ε = {guarantee.epsilon if guarantee.epsilon is not None else '?'}"
            f"{delta}, unit {guarantee.unit or '?'}, mechanisms {chain}"
        )
        if guarantee.source:
            statement += f" (from {guarantee.source})"
    else:
        statement = "Empirical protection only: no formal guarantee; the measured attack risks below are the evidence."
    reasons = "".join(f"<li>{html.escape(r)}</li>" for r in report.reasons)
    coverage = f"{report.attacks_built} of {report.attacks_requested} attack attempts were built"
    rows = (
        f"trained on {report.training_rows:,} records; control set {report.control_rows:,}; "
        f"attacks on {report.attack_rows:,} + {report.attack_rows:,}; {report.synthetic_rows:,} synthetic rows"
    )
    return (
        "<section id='summary'><h2>Verdict</h2>"
        f"<p class='verdict {verdict}'>{verdict.upper()}</p>"
        f"<p class='guarantee'>{html.escape(statement)}</p><ul class='reasons'>{reasons}</ul>"
        f"<p>Generator {html.escape(record.generator)}; {html.escape(rows)}; {html.escape(coverage)}.</p></section>"
    )


def _risk_figure(record: AuditRecord) -> str:
    report = record.report
    built = [a for a in report.attacks if a.risk is not None]
    if not built:
        return "<p class='empty'>No attack could be built, so no risk was measured.</p>"
    names = [a.name for a in built]
    risks = [float(a.risk or 0.0) for a in built]
    upper = [
        float((a.ci_high if a.ci_high is not None else a.risk) or 0.0) - r for a, r in zip(built, risks, strict=True)
    ]
    lower = [
        r - float((a.ci_low if a.ci_low is not None else a.risk) or 0.0) for a, r in zip(built, risks, strict=True)
    ]
    ceilings = {
        "singling_out": report.thresholds.get("max_singling_out_risk"),
        "linkability": report.thresholds.get("max_linkability_risk"),
        "inference": report.thresholds.get("max_inference_risk"),
    }
    fig = go.Figure()
    fig.add_bar(
        x=names,
        y=risks,
        name="risk",
        marker_color=[_SYNTH if r > (ceilings[a.attack] or 1.0) else _REAL for a, r in zip(built, risks, strict=True)],
        error_y={"type": "data", "symmetric": False, "array": upper, "arrayminus": lower},
    )
    fig.add_scatter(
        x=names,
        y=[ceilings[a.attack] for a in built],
        mode="markers",
        name="ceiling",
        marker={"symbol": "line-ew-open", "size": 40, "color": "#d62728", "line": {"width": 3}},
    )
    fig.update_layout(title="Residual risk with confidence interval", yaxis={"range": [0, 1], "title": "risk"})
    return _figure(fig, "risk-bars")


def _attack_table(record: AuditRecord) -> str:
    rows = []
    for a in record.report.attacks:
        value = "—" if a.risk is None else f"{a.risk:.3f}"
        ci = "—" if a.ci_low is None or a.ci_high is None else f"[{a.ci_low:.3f}, {a.ci_high:.3f}]"
        rows.append(
            f"<tr><td>{html.escape(a.name)}</td><td>{value}</td><td>{ci}</td>"
            f"<td>{a.attacks_built} / {a.attacks_requested}</td><td>{html.escape(a.detail or '')}</td></tr>"
        )
    return (
        "<table class='attacks'><thead><tr><th>attack</th><th>risk</th><th>CI</th><th>built / requested</th>"
        f"<th>note</th></tr></thead><tbody>{''.join(rows)}</tbody></table>"
    )


def _leak_table(record: AuditRecord) -> str:
    """Per field: training values repeated in the synthetic sample, as counts (the values never reach the page)."""
    report = record.report
    if report.leaks is None:
        return "<p class='empty' id='leaks-missing'>The verbatim-leak check did not run for this version.</p>"
    k = report.thresholds.get("rare_value_k")
    ceiling = report.thresholds.get("max_rare_value_share")
    rule = (
        "<p>Rare values: synthetic rows carrying a value that fewer than "
        f"{'k' if k is None else int(k)} training records hold, next to the same share among real control "
        "records; a field fails when it exceeds the control share by more than "
        f"{'the ceiling' if ceiling is None else f'{ceiling:.2%}'}. Recognised values: identifiers and names a "
        "recogniser flags in the synthetic sample that are also in the training data (any one fails the version); "
        "fresh rows hold recognised values not in training (fakes, pseudonyms), which are not leaks. "
        "Counts only: no value is shown.</p>"
    )
    shown = [f for f in report.leaks if f.check == "recognised" or f.rows or f.leak]
    quiet = len(report.leaks) - len(shown)
    rows = []
    for f in shown:
        control = "—" if f.control_share is None else f"{f.control_share:.2%}"
        fresh = "—" if f.fresh_rows is None else f"{f.fresh_rows:,}"
        what = "rare value" if f.check == "rare_value" else f"recognised {f.entity_type or ''}"
        verdict = "<td class='leak'>leak</td>" if f.leak else "<td>ok</td>"
        rows.append(
            f"<tr><td>{html.escape(f.field)}</td><td>{html.escape(what)}</td><td>{f.rows:,}</td>"
            f"<td>{f.values:,}</td><td>{f.share:.2%}</td><td>{control}</td><td>{fresh}</td>{verdict}</tr>"
        )
    note = f"<p>{quiet} more field(s) checked: no rare training value in the synthetic sample.</p>" if quiet else ""
    if not rows:
        return (
            rule
            + "<p class='empty' id='leaks-none'>No training value was found repeated in the synthetic sample.</p>"
            + note
        )
    table = (
        "<table class='leaks'><thead><tr><th>field</th><th>check</th><th>synthetic rows</th><th>distinct values</th>"
        "<th>share</th><th>control share</th><th>fresh rows</th><th>verdict</th></tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table>"
    )
    return rule + table + note


def _distance_figure(record: AuditRecord) -> str:
    risks = record.report.risks
    if "dcr_share" not in risks:
        return "<p class='empty'>Distances were not measured (no control set).</p>"
    pairs = [
        ("DCR share (0.5 ideal)", risks["dcr_share"], 0.5),
        ("identical to a training row", risks.get("identical_match_share", 0.0), None),
        ("identical to a control row", risks.get("identical_match_share_control", 0.0), None),
        ("NNDR median", risks.get("nndr_median", 0.0), risks.get("nndr_median_control")),
    ]
    fig = go.Figure()
    fig.add_bar(x=[p[0] for p in pairs], y=[p[1] for p in pairs], name="synthetic", marker_color=_SYNTH)
    fig.add_bar(
        x=[p[0] for p in pairs],
        y=[p[2] if p[2] is not None else 0.0 for p in pairs],
        name="reference",
        marker_color=_REAL,
    )
    fig.update_layout(barmode="group", title="Synthetic rows vs the real-data reference", yaxis={"range": [0, 1.05]})
    return _figure(fig, "distance-bars")


def _distance_note(record: AuditRecord) -> str:
    risks = record.report.risks
    if "dcr_share" not in risks:
        return ""
    return (
        "<p>DCR share: synthetic rows closer to a training row than to a control row (ties count half); "
        "0.5 means the generator learned nothing specific to the training records. NNDR: distance to the "
        "nearest over the second-nearest training row; the reference is the median for control rows. "
        f"Ceiling of the DCR share: {record.report.thresholds.get('max_dcr_share', float('nan')):.2f}.</p>"
    )


def _quality_figure(record: AuditRecord) -> str:
    quality = record.report.quality
    if not quality:
        return "<p class='empty'>Quality was not measured.</p>"
    names = list(quality)
    floors = {
        "column_shapes": record.report.thresholds.get("min_column_shapes"),
        "pair_trends": record.report.thresholds.get("min_pair_trends"),
        "tstr_ratio": record.report.thresholds.get("min_tstr_ratio"),
    }
    fig = go.Figure()
    fig.add_bar(x=names, y=[quality[n] for n in names], name="score", marker_color=_REAL)
    fig.add_scatter(
        x=[n for n in names if floors.get(n) is not None],
        y=[floors[n] for n in names if floors.get(n) is not None],
        mode="markers",
        name="floor",
        marker={"symbol": "line-ew-open", "size": 40, "color": "#d62728", "line": {"width": 3}},
    )
    fig.update_layout(title="Quality scores and floors", yaxis={"range": [0, 1.05]})
    return _figure(fig, "quality-bars")


def _distribution_figures(record: AuditRecord) -> str:
    distributions = record.report.distributions
    if not distributions:
        return "<p class='empty'>No distributions were recorded.</p>"
    out = []
    for i, dist in enumerate(distributions):
        fig = go.Figure()
        fig.add_bar(x=dist.labels, y=dist.real, name="real", marker_color=_REAL)
        fig.add_bar(x=dist.labels, y=dist.synthetic, name="synthetic", marker_color=_SYNTH)
        title = dist.field + (f" ({dist.suppressed} small cells hidden)" if dist.suppressed else "")
        fig.update_layout(barmode="group", title=title, yaxis={"title": "share"})
        out.append(f"<div class='cell'>{_figure(fig, f'dist-{i}', height=300)}</div>")
    return f"<div class='grid'>{''.join(out)}</div>"


def _association_figures(record: AuditRecord) -> str:
    assoc = record.report.associations
    if assoc is None or len(assoc.fields) < 2:
        return "<p class='empty'>Fewer than two fields: no associations.</p>"
    diff = [
        [abs(a - b) for a, b in zip(ra, rb, strict=True)] for ra, rb in zip(assoc.real, assoc.synthetic, strict=True)
    ]
    out = []
    for div_id, title, matrix in (
        ("heatmap-real", "real", assoc.real),
        ("heatmap-synthetic", "synthetic", assoc.synthetic),
        ("heatmap-difference", "|real − synthetic|", diff),
    ):
        fig = go.Figure(go.Heatmap(z=matrix, x=assoc.fields, y=assoc.fields, zmin=0, zmax=1, colorscale="Blues"))
        fig.update_layout(title=title, yaxis={"autorange": "reversed"})
        out.append(f"<div class='cell'>{_figure(fig, div_id, height=420)}</div>")
    return f"<div class='grid'>{''.join(out)}</div>"


def _budget(points: Sequence[BudgetPoint]) -> tuple[str, str]:
    if not points:
        return (
            "<p class='empty' id='budget-empty'>No formal privacy budget has been recorded for this stream: "
            "its models have empirical protection only.</p>",
            "",
        )
    fig = go.Figure()
    fig.add_scatter(
        x=[p.at.isoformat() for p in points],
        y=[p.epsilon for p in points],
        mode="lines+markers",
        text=[p.label for p in points],
        name="ε",
    )
    fig.update_layout(title="ε spent over time", yaxis={"title": "ε", "rangemode": "tozero"})
    rows = "".join(
        f"<tr><td>{html.escape(p.at.isoformat(timespec='seconds'))}</td><td>{p.epsilon:.4g}</td>"
        f"<td>{'—' if p.delta is None else f'{p.delta:.3g}'}</td><td>{html.escape(p.label)}</td></tr>"
        for p in points
    )
    table = f"<table><thead><tr><th>at</th><th>ε</th><th>δ</th><th>what</th></tr></thead><tbody>{rows}</tbody></table>"
    return _figure(fig, "budget-line"), table


def _lineage(record: AuditRecord, history: Sequence[AuditRecord], versions: Sequence[ModelVersion]) -> str:
    lineage = record.lineage
    facts = [
        ("rows", f"{lineage.rows:,}"),
        ("seed", str(lineage.seed)),
        ("schema fingerprint", lineage.schema_fingerprint),
        ("fit seconds", f"{lineage.fit_seconds:.2f}"),
        ("source offsets", json.dumps(lineage.source_offsets, sort_keys=True)),
        ("configuration", json.dumps(lineage.config, sort_keys=True, default=str)),
    ]
    table = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in facts)
    verdicts = {r.model_version: r.report.verdict for r in [*history, record]}
    rows = "".join(
        f"<tr{' class=current' if v.version == record.model_version else ''}><td>v{v.version}</td>"
        f"<td>{html.escape(v.status)}</td><td>{html.escape(v.generator)}</td>"
        f"<td>{html.escape(_when(v.created_at))}</td><td>{html.escape(verdicts.get(v.version, '—'))}</td>"
        f"<td>{html.escape(v.reason or '')}</td></tr>"
        for v in versions
    )
    history_table = (
        "<table class='versions'><thead><tr><th>version</th><th>status</th><th>generator</th><th>created</th>"
        f"<th>audit</th><th>reason</th></tr></thead><tbody>{rows}</tbody></table>"
        if rows
        else ""
    )
    return f"<table class='lineage'>{table}</table>{history_table}"


def _when(moment: datetime) -> str:
    return moment.isoformat(timespec="seconds")


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;max-width:1200px;color:#222}
h1{font-size:1.6rem}h2{border-bottom:1px solid #ddd;padding-bottom:.3rem;margin-top:2rem}
.verdict{display:inline-block;padding:.3rem 1rem;border-radius:4px;font-weight:bold;color:#fff}
.verdict.pass{background:#2ca02c}.verdict.fail{background:#d62728}
.guarantee{font-weight:600}.empty{color:#777;font-style:italic}
table{border-collapse:collapse;margin:1rem 0;font-size:.9rem}
td,th{border:1px solid #ddd;padding:.25rem .5rem;text-align:left;vertical-align:top}
tr.current{background:#fff6e0}td.leak{color:#d62728;font-weight:bold}.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(360px,1fr));gap:1rem}
footer{margin-top:2rem;color:#777;font-size:.85rem}
"""
