"""The pipeline file is validated up front, with every problem reported at once."""

from __future__ import annotations

from collections.abc import Iterator
from enum import Enum
from pathlib import Path
from typing import Any

import pytest
import yaml

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


def _leaves(node: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    """Every scalar or list written in a YAML mapping, with its key path."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _leaves(value, (*path, str(key)))
    else:
        yield path, node


def _plain(value: Any) -> Any:
    """A parsed config value as YAML would write it (enums by value, models as dicts, tuples as lists)."""
    if isinstance(value, Enum):
        return value.value
    if hasattr(value, "model_dump"):
        return value.model_dump()
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    return value


def test_example_pipeline_file_is_valid_and_every_value_in_it_is_used():
    path = Path(__file__).resolve().parents[1] / "examples" / "pipeline.yaml"
    config = load_pipeline_config(path)
    raw = yaml.safe_load(path.read_text())
    assert config.stream == raw["stream"] == "payments"
    checked = 0
    for keys, written in _leaves(raw):
        node: Any = config
        for key in keys:
            node = node[key] if isinstance(node, dict) else getattr(node, key)
        if keys in (("source", "sample_file"), ("state_dir",)):  # relative paths resolve against the file's folder
            assert not Path(written).is_absolute()  # the example writes under the user's checkout, not /var/lib
            assert node == path.parent / written
        else:
            assert _plain(node) == written, ".".join(keys)
        checked += 1
    assert checked > 60  # the walk saw the whole example, not an empty mapping


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
