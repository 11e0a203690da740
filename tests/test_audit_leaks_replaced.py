"""Fields the redactor already replaced: a synthetic value repeating a training fake is judged against the control."""

from __future__ import annotations

import random

import pandas as pd

from synthstream.evaluation.leaks import VerbatimLeakCheck
from synthstream.schemas.record import FieldRole, FieldSpec, FieldType, RecordSchema

SCHEMA = RecordSchema(
    name="Calls",
    fields=(
        FieldSpec(name="phone", type=FieldType.STRING, role=FieldRole.CATEGORICAL),
        FieldSpec(name="plan", type=FieldType.STRING, role=FieldRole.CATEGORICAL),
    ),
)


def _phone(rng: random.Random) -> str:
    return f"(11) 9{rng.randint(1000, 9999)}-{rng.randint(1000, 9999)}"


def _frames() -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Training and control share one frequent fake phone (2 % of rows each); the synthetic sample repeats it."""
    rng = random.Random(5)
    common = _phone(rng)

    def frame(n: int, share: float) -> pd.DataFrame:
        phones = [common if rng.random() < share else _phone(rng) for _ in range(n)]
        return pd.DataFrame({"phone": phones, "plan": [rng.choice(["pre", "pos"]) for _ in range(n)]})

    return frame(4_000, 0.02), frame(1_000, 0.02), frame(1_000, 0.02)


def test_a_repeated_fake_in_a_replaced_field_is_not_a_leak_when_the_control_repeats_it_as_often() -> None:
    training, control, synthetic = _frames()
    replaced = VerbatimLeakCheck(SCHEMA, replaced_fields=["phone"])(training, control, synthetic)
    assert not replaced.leaked, replaced.reasons
    finding = next(f for f in replaced.findings if f.field == "phone" and f.check == "recognised")
    assert finding.rows > 0 and finding.control_share is not None and finding.control_share > 0
    assert replaced.summary["leak_recognised_share"] == 0.0


def test_the_same_value_in_a_field_the_redactor_kept_fails_the_version() -> None:
    """A recognised identifier in a field holding real values fails however common it is."""
    training, control, synthetic = _frames()
    kept = VerbatimLeakCheck(SCHEMA)(training, control, synthetic)
    assert kept.leaked
    assert any("'phone'" in reason and "PHONE" in reason for reason in kept.reasons)
    assert kept.summary["leak_recognised_share"] > 0.0


def test_a_replaced_field_copied_far_above_the_control_rate_still_fails() -> None:
    training, control, _ = _frames()
    copied = training.sample(1_000, random_state=1, replace=True).reset_index(drop=True)  # a generator replaying rows
    result = VerbatimLeakCheck(SCHEMA, replaced_fields=["phone"])(training, control, copied)
    assert result.leaked, "rows replayed from training must fail even in a replaced field"
