"""Secrets never leave: key ids reveal nothing, weak keys refused, a changed key caught, SASL passwords hidden."""

from __future__ import annotations

import hashlib
import hmac
import json
from pathlib import Path

import pandas as pd
import pytest
import structlog

from synthstream.config import parse_pipeline_config
from synthstream.errors import ConfigError
from synthstream.processors.pii.operators import (
    KEY_ID_LABEL,
    KEY_RECORD,
    Pseudonymizer,
    check_recorded_key,
    derive_key_id,
    key_from_env,
)
from synthstream.schemas.record import FieldRole, FieldSpec, FieldType, RecordSchema
from synthstream.settings import KafkaSettings
from synthstream.streams.pipeline import Pipeline

VAR = "SYNTHSTREAM_PSEUDONYM_KEY"
KEY_A = "first-Zorblax-key-0123456789abcdef"
KEY_B = "second-Zorblax-key-0123456789abcdef"
PASSWORD = "hunter2-Zorblax-sasl-password"


def test_the_key_id_is_keyed_not_a_hash_of_the_key() -> None:
    key = KEY_A.encode()
    key_id = derive_key_id(key)
    assert key_id == hmac.new(key, KEY_ID_LABEL, hashlib.sha256).hexdigest()[:8]
    assert key_id != hashlib.sha256(key).hexdigest()[:8], "an unsalted hash of the key is a key-guessing oracle"
    assert key_id != derive_key_id(KEY_B.encode())
    assert len(key_id) == 8 and key_id.isalnum()


@pytest.mark.parametrize(
    ("secret", "says"),
    [
        (" " * 16, "whitespace only"),
        ("\t \n" * 8, "whitespace only"),
        ("short-Zorblax", "minimum of 16"),
        ("   padded-Zorb  " + " " * 10, "minimum of 16"),  # 26 bytes, 11 of them key
        ("ab" * 20, "distinct characters"),
    ],
)
def test_weak_keys_are_refused_with_the_rule_and_never_the_key(
    monkeypatch: pytest.MonkeyPatch, secret: str, says: str
) -> None:
    monkeypatch.setenv(VAR, secret)
    with pytest.raises(ConfigError) as info:
        key_from_env(VAR)
    assert says in str(info.value) and VAR in str(info.value)
    if secret.strip():
        assert secret.strip() not in str(info.value)
    with pytest.raises(ConfigError):
        Pseudonymizer(secret.encode(), "k1")


def test_a_changed_key_is_refused_unless_rotation_is_asked_for(tmp_path: Path) -> None:
    id_a, id_b = derive_key_id(KEY_A.encode()), derive_key_id(KEY_B.encode())
    assert check_recorded_key(tmp_path, id_a) is None  # first start records it
    assert check_recorded_key(tmp_path, id_a) is None  # same key: fine
    with pytest.raises(ConfigError) as info:
        check_recorded_key(tmp_path, id_b)
    text = str(info.value)
    assert id_a in text and id_b in text and "rotate_key" in text
    assert json.loads((tmp_path / KEY_RECORD).read_text())["key_id"] == id_a, "a refused key must not be recorded"
    assert check_recorded_key(tmp_path, id_b, rotate=True) == id_a
    assert check_recorded_key(tmp_path, id_b) is None
    stored = (tmp_path / KEY_RECORD).read_text()
    assert "Zorblax" not in stored and KEY_A not in stored and KEY_B not in stored


def test_an_unreadable_key_record_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / KEY_RECORD).write_text("{not json")
    with pytest.raises(ConfigError, match="unreadable"):
        check_recorded_key(tmp_path, "abcd1234")


def _pipeline_config(tmp_path: Path, **redaction: object):  # type: ignore[no-untyped-def]
    sample = tmp_path / "people.csv"
    pd.DataFrame({"email": [f"user{i}@example.com" for i in range(50)], "age": list(range(20, 70))}).to_csv(
        sample, index=False
    )
    return parse_pipeline_config(
        {
            "stream": "keys",
            "source": {"topic": "keys.source", "sample_file": str(sample)},
            "state_dir": str(tmp_path / "state"),
            "redaction": dict(redaction),
            "audit": {"enabled": False},
            "drift": {"enabled": False},
        }
    )


SCHEMA = RecordSchema(
    name="People",
    fields=(
        FieldSpec(name="email", type=FieldType.STRING, role=FieldRole.IDENTIFIER),
        FieldSpec(name="age", type=FieldType.LONG, role=FieldRole.NUMERIC),
    ),
)


def test_a_pipeline_start_detects_a_changed_key(kafka, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(VAR, KEY_A)
    config = _pipeline_config(tmp_path)
    with structlog.testing.capture_logs() as logs:
        Pipeline(config, kafka, SCHEMA)
    record = config.state_dir / "redaction" / KEY_RECORD
    assert json.loads(record.read_text())["key_id"] == derive_key_id(KEY_A.encode())

    monkeypatch.setenv(VAR, KEY_B)
    with pytest.raises(ConfigError, match="the pseudonym key changed") as info:
        Pipeline(config, kafka, SCHEMA)
    assert KEY_A not in str(info.value) and KEY_B not in str(info.value)

    rotating = _pipeline_config(tmp_path, rotate_key=True)
    with structlog.testing.capture_logs() as more:
        Pipeline(rotating, kafka, SCHEMA)
    assert json.loads(record.read_text())["key_id"] == derive_key_id(KEY_B.encode())
    assert any(e["event"] == "redaction.key_rotated" for e in more)
    for entry in logs + more:
        assert "Zorblax" not in repr(entry)


# -- SASL and client secrets ----------------------------------------------------------------------


def test_an_incomplete_sasl_config_does_not_print_the_password() -> None:
    with pytest.raises(ValueError) as info:
        KafkaSettings(security_protocol="SASL_SSL", sasl_password=PASSWORD)
    assert "sasl_mechanism" in str(info.value)
    assert PASSWORD not in str(info.value) and PASSWORD not in repr(info.value)
    with pytest.raises(ValueError) as bad_type:
        KafkaSettings(security_protocol="SASL_SSL", sasl_password=[PASSWORD])  # type: ignore[arg-type]
    assert PASSWORD not in str(bad_type.value)


def test_sasl_password_from_the_environment_stays_hidden(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SYNTHSTREAM_KAFKA_SECURITY_PROTOCOL", "SASL_PLAINTEXT")
    monkeypatch.setenv("SYNTHSTREAM_KAFKA_SASL_PASSWORD", PASSWORD)
    with pytest.raises(ValueError) as info:
        KafkaSettings()
    assert PASSWORD not in str(info.value)
    monkeypatch.setenv("SYNTHSTREAM_KAFKA_SASL_MECHANISM", "PLAIN")
    monkeypatch.setenv("SYNTHSTREAM_KAFKA_SASL_USERNAME", "svc")
    settings = KafkaSettings(extra_config={"sasl_oauth_token_provider": PASSWORD})
    assert PASSWORD not in repr(settings) and PASSWORD not in str(settings)
    assert settings.producer_kwargs()["sasl_plain_password"] == PASSWORD


def test_a_pipeline_config_error_does_not_echo_its_input() -> None:
    with pytest.raises(ConfigError) as info:
        parse_pipeline_config(
            {"stream": "s", "source": {"topic": "t", "sample_file": "x.csv"}, "redaction": {"key_env": [PASSWORD]}}
        )
    assert PASSWORD not in str(info.value)
