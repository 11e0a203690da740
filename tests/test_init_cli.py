"""``synthstream init`` on a user's sample writes a file that runs as is (issue 17).

The CLI path a new user takes, as subprocesses against the session broker: ``init`` on the
sample, ``replay`` of the sample into the source topic, ``run`` of the generated file (only
``publisher.max_records`` and ``training.min_records`` edited, to keep the test short), then
the synthetic topic must hold records and the dead-letter topic none.
"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from synthstream.config import load_pipeline_config
from synthstream.config_check import config_problems
from synthstream.config_init import draft_pipeline, outward_bounds
from synthstream.connectors.files import read_table
from synthstream.demo import sample_path
from synthstream.models.registry import ModelRegistry
from synthstream.schemas.inference import infer_schema_from_file
from tests.helpers import TRANSACTIONS_CSV, read_topic

CLI = [sys.executable, "-m", "synthstream"]
ENV = {**os.environ, "COLUMNS": "200", "SYNTHSTREAM_PSEUDONYM_KEY": "init-test-key-0123456789abcdef"}


def run_cli(*args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=timeout, check=False, env=ENV)


@pytest.mark.parametrize("sample", [TRANSACTIONS_CSV, sample_path()], ids=["transactions", "adult"])
def test_init_writes_a_valid_file_without_data_values(sample: Path, tmp_path: Path) -> None:
    output = tmp_path / "pipeline.yaml"
    text, result = draft_pipeline(sample, topic="src", stream="s1", output=output)
    output.write_text(text)
    config = load_pipeline_config(output)
    schema = infer_schema_from_file(sample, name="s1")
    assert config_problems(config, schema) == []
    # Every field is listed with its role, and the state and metrics stay in the user's hands.
    assert set(config.fields) == set(schema.field_names)
    assert config.state_dir == tmp_path / ".synthstream" / "s1"
    assert config.metrics.port == 0
    assert result.rows == len(read_table(sample))
    # Drift only on fields that exist; no data value in the file (string values of the sample).
    assert config.drift.fields and set(config.drift.fields) <= set(schema.field_names)
    frame = read_table(sample)
    words = set(re.findall(r"[^\s\"'{}\[\],:#()]+", text)) | set(re.findall(r'"([^"]+)"', text))
    names = set(schema.field_names) | {"synthstream", "pipeline", "s1", "src"}
    values = {
        str(v)
        for c in frame.columns
        if frame[c].dtype == object
        for v in frame[c].dropna().unique()
        if len(str(v)) > 3 and str(v) not in names
    }
    leaked = sorted(words & values)
    assert not leaked, leaked[:10]


def test_a_small_sample_gets_a_control_set_the_audit_can_reach(tmp_path: Path) -> None:
    sample = tmp_path / "small.csv"
    pd.read_csv(sample_path()).head(344).to_csv(sample, index=False)
    output = tmp_path / "pipeline.yaml"
    text, _ = draft_pipeline(sample, topic="src", stream="s1", output=output)
    output.write_text(text)
    audit = load_pipeline_config(output).audit
    # 20 % of 344 is 69 control records, under the 200 the audit waits for: no fit would ever start.
    assert audit.holdout_share == 0.3 and audit.min_holdout <= 0.75 * 0.3 * 344
    # 30 % of a 32-row table is 9.6, under the audit's floor of 10: half the runs would never train.
    pd.read_csv(sample_path()).head(32).to_csv(sample, index=False)
    tiny, _ = draft_pipeline(sample, topic="src", stream="s1", output=output)
    output.write_text(tiny)
    audit = load_pipeline_config(output).audit
    assert audit.holdout_share == 0.47 and audit.min_holdout == 10 and 32 * 0.47 >= 1.4 * 10
    large, _ = draft_pipeline(sample_path(), topic="src", stream="s1", output=output)
    output.write_text(large)
    audit = load_pipeline_config(output).audit
    assert (audit.holdout_share, audit.min_holdout) == (0.2, 200)  # the defaults fit a 1,000+ row sample


def test_init_refuses_to_overwrite(tmp_path: Path) -> None:
    output = tmp_path / "pipeline.yaml"
    output.write_text("keep me\n")
    result = run_cli("init", str(TRANSACTIONS_CSV), "--topic", "t", "--output", str(output))
    assert result.returncode == 2
    assert "--force" in result.stderr
    assert output.read_text() == "keep me\n"


def test_a_declared_target_is_written_checked_and_steers_the_choice(tmp_path: Path) -> None:
    output = tmp_path / "pipeline.yaml"
    text, _ = draft_pipeline(sample_path(), topic="src", stream="s1", output=output, target="income")
    output.write_text(text)
    config = load_pipeline_config(output)
    assert config.audit.target_field == "income"
    assert config_problems(config, infer_schema_from_file(sample_path(), name="s1")) == []
    bad = run_cli("init", str(sample_path()), "--topic", "t", "--output", str(tmp_path / "b.yaml"), "--target", "nope")
    assert bad.returncode == 2 and "nope" in bad.stderr, bad.stderr[-2000:]
    assert not (tmp_path / "b.yaml").exists()


# (sample, label): the Adult run declares its label, so the validation adds TSTR on it.
@pytest.mark.parametrize(
    ("sample", "target"), [(TRANSACTIONS_CSV, None), (sample_path(), "income")], ids=["transactions", "adult"]
)
def test_init_replay_run_produces_a_feed(
    broker, kafka, names, sample: Path, target: str | None, tmp_path: Path
) -> None:
    bootstrap = broker.bootstrap_servers
    source = names.topic("source")
    deadletter = names.topic("dlq")
    output = tmp_path / "pipeline.yaml"
    init = run_cli(
        "init",
        str(sample),
        "--topic",
        source,
        "--stream",
        names.prefix,
        "--output",
        str(output),
        "--deadletter-topic",
        deadletter,
        *(["--target", target] if target else []),
    )
    assert init.returncode == 0, init.stderr[-2000:]
    assert load_pipeline_config(output).stream == names.prefix  # valid as written

    replay = run_cli("replay", str(sample), "--topic", source, "--limit", "2000", "-b", bootstrap)
    assert replay.returncode == 0, replay.stderr[-2000:]

    # The two edits the brief allows: a short feed, and a first fit on what one batch brings.
    data = yaml.safe_load(output.read_text())
    data["publisher"]["max_records"] = 300
    data["training"]["min_records"] = 500
    output.write_text(yaml.safe_dump(data))

    run = run_cli("run", "--config", str(output), "-b", bootstrap, "--log-level", "WARNING", timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    synthetic = asyncio.run(read_topic(kafka, f"{names.prefix}.synthetic"))
    assert len(synthetic) >= 300
    dead = asyncio.run(read_topic(kafka, deadletter))
    assert dead == []
    # The first fit validated copula vs neural on the control set (2,000 rows replayed), by accuracy
    # plus TSTR on the label when one is declared (a retry after a rejection refits the runner-up alone).
    versions = ModelRegistry(tmp_path / ".synthstream" / names.prefix / "models", names.prefix).versions()
    first = versions[0].lineage.config
    assert set(first["validation"]) == {"gaussian_copula", "neural"}, first["choice_reason"]
    assert ("TSTR on income" in first["choice_reason"]) == (target is not None), first["choice_reason"]


def test_numeric_bounds_are_rounded_robust_quantiles_not_the_extremes() -> None:
    values = pd.Series([*range(100, 1100), 1_000_000])  # one extreme record
    low, high = outward_bounds(values)
    assert (low, high) == (100.0, 1100.0)  # the 0.5 % / 99.5 % quantiles, rounded outward
    assert high != values.max() and low <= values.quantile(0.005) and high >= values.quantile(0.995)
    assert outward_bounds(pd.Series([None, None], dtype="float64")) is None
