"""The audit report: `synthstream report` writes HTML + JSON; headless Chromium renders its sections and plots."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml

from synthstream.config import AuditConfig
from synthstream.evaluation.report import budget_from_audits, render_report
from synthstream.models.copula import GaussianCopulaGenerator
from synthstream.models.registry import Lineage, ModelRegistry
from synthstream.processors.auditor import Auditor, AuditRecord, AuditReport
from synthstream.schemas.events import PrivacyGuarantee
from synthstream.streams.audit import AUDIT_ARTIFACT, EMPIRICAL_ONLY
from tests.test_audit_risk import load_adult

SECTIONS = ("summary", "risks", "distances", "quality", "distributions", "associations", "budget", "lineage")
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
)


def chromium_dom(page: Path, profile: Path) -> str:
    """The DOM of ``page`` after its scripts ran, as headless Chromium (Debian's ``chromium``) sees it."""
    binary = shutil.which("chromium")
    if binary is None:
        pytest.fail("Debian's chromium is not installed: run `make system-deps` (apt-get install chromium)")
    result = subprocess.run(
        [binary, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--dump-dom", page.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def _plots(dom: str, div_id: str) -> int:
    """SVG roots plotly drew inside the figure ``div_id`` (0 when its script did not run)."""
    start = dom.find(f'id="{div_id}"')
    assert start >= 0, f"figure {div_id} is missing"
    following = dom.find("<div id=", start + 1)
    chunk = dom[start : following if following > 0 else len(dom)]
    return len(re.findall(r'<svg class="main-svg"', chunk))


@pytest.fixture(scope="module")
def audit_report() -> tuple[AuditReport, Lineage]:
    schema, training, control = load_adult(1_000)
    model = GaussianCopulaGenerator(seed=1).fit(training, schema)
    config = AuditConfig(synthetic_rows=1_000, n_attacks=100, singling_out_max_attempts=2_000, target_field="income")
    report = Auditor(schema, config)(model, training.to_dict("records"), control.to_dict("records"), seed=1)
    lineage = Lineage(rows=1_000, schema_fingerprint=schema.fingerprint(), seed=1, fit_seconds=0.1)
    return report, lineage


def _record(
    report: AuditReport, lineage: Lineage, version: int, guarantee: PrivacyGuarantee, at: datetime
) -> AuditRecord:
    return AuditRecord(
        stream="adult",
        model_version=version,
        generator="gaussian_copula",
        audited_at=at,
        audit_seconds=2.5,
        event_id=f"e{version}",
        guarantee=guarantee,
        lineage=lineage,
        report=report,
    )


def test_report_command_writes_html_and_json_that_chromium_renders(audit_report, tmp_path: Path) -> None:
    report, lineage = audit_report
    state = tmp_path / "state"
    registry = ModelRegistry(state / "models", "adult")
    schema, training, _ = load_adult(500)
    model = GaussianCopulaGenerator(seed=0).fit(training, schema)
    start = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
    for number, epsilon in ((1, 0.5), (2, 1.25)):
        version = registry.register(model, lineage=lineage)
        assert version.version == number
        guarantee = PrivacyGuarantee(
            kind="formal", epsilon=epsilon, delta=1e-6, unit="record", mechanisms=["gaussian marginals", "aim"]
        )
        record = _record(report, lineage, number, guarantee, start + timedelta(hours=number))
        registry.save_extra(number, AUDIT_ARTIFACT, record.model_dump_json().encode())
    registry.promote(1)
    registry.reject(2, "singling_out_univariate risk 0.400 > ceiling 0.100")
    config = tmp_path / "pipeline.yaml"
    config.write_text(
        yaml.safe_dump({"stream": "adult", "source": {"topic": "adult", "sample_file": "x.csv"}, "state_dir": "state"})
    )
    out = tmp_path / "out"
    result = subprocess.run(
        [sys.executable, "-m", "synthstream", "report", "--config", str(config), "--output", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    html_path, json_path = out / "adult-v2.html", out / "adult-v2.json"  # the latest audited version
    assert str(html_path) in result.stdout.replace("\n", "")
    data = json.loads(json_path.read_text())
    assert data["audit"]["model_version"] == 2 and [p["epsilon"] for p in data["budget"]] == [0.5, 1.25]
    assert [v["status"] for v in data["versions"]] == ["promoted", "rejected"]

    source = html_path.read_text()
    assert "<script src=" not in source and "https://" not in source.split("<body>")[1]  # self-contained
    dom = chromium_dom(html_path, tmp_path / "profile")
    for section in SECTIONS:
        assert f'<section id="{section}">' in dom
    assert _plots(dom, "risk-bars") >= 1 and _plots(dom, "distance-bars") >= 1 and _plots(dom, "quality-bars") >= 1
    assert _plots(dom, "budget-line") >= 1 and "budget-empty" not in dom
    for heatmap in ("heatmap-real", "heatmap-synthetic", "heatmap-difference"):
        assert _plots(dom, heatmap) >= 1
    assert sum(_plots(dom, f"dist-{i}") >= 1 for i in range(len(report.distributions))) == len(report.distributions)
    # Lineage: both versions with their status and audit verdict; the risk table lists every attack.
    assert "singling_out_univariate risk 0.400 &gt; ceiling 0.100" in dom
    for attack in report.attacks:
        assert f"<td>{attack.name}</td>" in dom
    assert "Formal differential privacy: ε = 1.25" in dom

    missing = subprocess.run(
        [sys.executable, "-m", "synthstream", "report", "--config", str(config), "--version", "7"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert missing.returncode == 2 and "version 7 has no audit" in missing.stderr


def test_without_a_formal_guarantee_the_budget_section_is_an_empty_state(audit_report, tmp_path: Path) -> None:
    report, lineage = audit_report
    now = datetime.now(UTC)
    record = _record(report, lineage, 3, EMPIRICAL_ONLY, now)
    assert budget_from_audits([record]) == []
    page = tmp_path / "report.html"
    page.write_text(render_report(record, history=[_record(report, lineage, 2, EMPIRICAL_ONLY, now)]))
    dom = chromium_dom(page, tmp_path / "profile")
    assert 'id="budget-empty"' in dom and 'id="budget-line"' not in dom
    assert "Empirical protection only" in dom
    assert _plots(dom, "risk-bars") >= 1
    # Text from data is escaped, never markup.
    hostile = report.model_copy(update={"reasons": ["<script>alert(1)</script>"]})
    escaped = render_report(_record(hostile, lineage, 4, EMPIRICAL_ONLY, now))
    assert "<script>alert(1)</script>" not in escaped and "&lt;script&gt;alert(1)&lt;/script&gt;" in escaped
