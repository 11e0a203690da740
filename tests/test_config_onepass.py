"""Config validation against the data reports every problem of every section in one pass (issue 17)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from synthstream.config import parse_pipeline_config
from synthstream.config_check import check_config, config_problems
from synthstream.errors import ConfigError
from synthstream.schemas.inference import infer_schema_from_file
from tests.helpers import TRANSACTIONS_CSV

CLI = [sys.executable, "-m", "synthstream"]


def _four_problem_config(tmp_path: Path) -> dict[str, object]:
    """One problem in each of fields, stats, drift and audit (the rounds a new user went through)."""
    return {
        "stream": "payments",
        "source": {"topic": "payments", "sample_file": str(TRANSACTIONS_CSV)},
        "fields": {"card_number": {"role": "identifier", "redact": "pseudonymize"}},
        "stats": {"enabled": True, "numeric": {"amount": {"bounds": [0, 1000]}}},
        "drift": {"fields": ["category", "price"]},
        "audit": {"target_field": "label"},
        "state_dir": str(tmp_path / "state"),
    }


def test_every_section_is_checked_in_one_pass(tmp_path: Path) -> None:
    config = parse_pipeline_config(_four_problem_config(tmp_path))
    schema = infer_schema_from_file(TRANSACTIONS_CSV)
    problems = config_problems(config, schema)
    assert len(problems) == 4, problems
    for section, name in (
        ("fields.card_number", "card_number"),
        ("stats", "amount"),
        ("drift", "price"),
        ("audit", "label"),
    ):
        assert any(p.startswith(section) and name in p for p in problems), (section, problems)
    with pytest.raises(ConfigError) as caught:
        check_config(config, schema)
    assert caught.value.problems == problems


def test_a_config_that_fits_the_data_has_no_problem(tmp_path: Path) -> None:
    data = {
        "stream": "payments",
        "source": {"topic": "payments", "sample_file": str(TRANSACTIONS_CSV)},
        "fields": {"cc_num": {"role": "identifier", "redact": "pseudonymize"}},
        "stats": {"enabled": True, "numeric": {"amt": {"bounds": [0, 1000]}}, "categorical": {"category": {}}},
        "drift": {"fields": ["category", "amt"]},
        "audit": {"target_field": "is_fraud"},
        "state_dir": str(tmp_path / "state"),
    }
    assert config_problems(parse_pipeline_config(data), infer_schema_from_file(TRANSACTIONS_CSV)) == []


def test_run_reports_all_four_problems_at_once_without_traceback(tmp_path: Path) -> None:
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump(_four_problem_config(tmp_path)))
    # An unreachable broker: the config problems must come first, with exit code 2.
    result = subprocess.run(
        [*CLI, "run", "--config", str(path), "-b", "127.0.0.1:1"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert result.returncode == 2, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    assert "4 problem(s)" in result.stderr
    listed = [line for line in result.stderr.splitlines() if line.strip().startswith("- ")]
    assert len(listed) == 4, result.stderr
    assert result.stderr.count("error:") == 1
