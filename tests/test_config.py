"""The pipeline file is validated up front, with every problem reported at once."""

from __future__ import annotations

from pathlib import Path

import pytest

from synthstream.config import load_pipeline_config, parse_pipeline_config
from synthstream.errors import ConfigError
from synthstream.settings import KafkaSettings


def test_every_problem_is_reported_at_once():
    with pytest.raises(ConfigError) as info:
        parse_pipeline_config(
            {
                "stream": "bad name!",
                "source": {"topic": "t", "format": "xml"},
                "publisher": {"rate": -1},
                "training": {"every_records": None, "every_seconds": None},
                "surprise": True,
            }
        )
    text = str(info.value)
    assert len(info.value.problems) >= 5
    for where in ("stream", "source.format", "publisher.rate", "training", "surprise"):
        assert where in text


def test_source_needs_a_schema_or_a_sample():
    with pytest.raises(ConfigError, match="schema_file"):
        parse_pipeline_config({"stream": "s", "source": {"topic": "t"}})


def test_yaml_file_paths_resolve_against_the_file(tmp_path: Path):
    path = tmp_path / "pipeline.yaml"
    path.write_text("stream: payments\nsource:\n  topic: payments\n  sample_file: data/sample.csv\n")
    config = load_pipeline_config(path)
    assert config.source.sample_file == tmp_path / "data" / "sample.csv"
    assert config.synthetic_topic == "payments.synthetic"
    assert config.group_id == "synthstream-payments"


def test_unreadable_yaml_is_a_config_error(tmp_path: Path):
    path = tmp_path / "p.yaml"
    path.write_text("stream: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_pipeline_config(path)
    with pytest.raises(ConfigError, match="does not exist"):
        load_pipeline_config(tmp_path / "missing.yaml")


def test_example_pipeline_file_is_valid():
    config = load_pipeline_config(Path(__file__).resolve().parents[1] / "examples" / "pipeline.yaml")
    assert config.stream


def test_kafka_settings_security_and_secrets():
    with pytest.raises(ValueError, match="sasl_mechanism"):
        KafkaSettings(security_protocol="SASL_SSL")
    settings = KafkaSettings(
        security_protocol="SASL_PLAINTEXT", sasl_mechanism="SCRAM-SHA-256", sasl_username="u", sasl_password="s3cret"
    )
    assert "s3cret" not in repr(settings)
    assert settings.producer_kwargs()["sasl_plain_password"] == "s3cret"
    assert settings.producer_kwargs()["enable_idempotence"] is False


def test_kafka_settings_from_environment(monkeypatch):
    monkeypatch.setenv("SYNTHSTREAM_KAFKA_BOOTSTRAP_SERVERS", "kafka:9092")
    assert KafkaSettings().bootstrap_servers == "kafka:9092"
