"""The auditor on real data (UCI Adult): attacks, distances, quality, verdict, reproducibility."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest

from synthstream.config import AuditConfig
from synthstream.errors import AttackError
from synthstream.evaluation.privacy_risk import (
    attack_frame,
    audited_fields,
    distance_metrics,
    linkability_risk,
    singling_out_risk,
)
from synthstream.models.copula import GaussianCopulaGenerator
from synthstream.processors.auditor import Auditor
from synthstream.schemas.record import RecordSchema
from tests.helpers import ADULT_CSV, adult_schema

#: Small but real: 2,000 training and 2,000 control records, 2,000 synthetic rows, 200 attacks.
SMALL = {
    "synthetic_rows": 2_000,
    "n_attacks": 200,
    "singling_out_max_attempts": 5_000,
    "target_field": "income",
    "secret_fields": ["income"],
}


def load_adult(n: int = 2_000) -> tuple[RecordSchema, pd.DataFrame, pd.DataFrame]:
    """Disjoint random training and control splits of Adult's training file (``?`` = null)."""
    frame = pd.read_csv(ADULT_CSV, skipinitialspace=True).replace("?", np.nan)
    schema = adult_schema(frame)
    order = np.random.default_rng(0).permutation(len(frame))
    training = frame.iloc[order[:n]].reset_index(drop=True)
    control = frame.iloc[order[n : 2 * n]].reset_index(drop=True)
    return schema, training, control


@pytest.fixture(scope="module")
def adult() -> tuple[RecordSchema, pd.DataFrame, pd.DataFrame]:
    return load_adult()


def _replay(training: pd.DataFrame, n: int, seed: int) -> pd.DataFrame:
    """What a leaky generator emits: training rows, replayed."""
    return training.sample(n, replace=True, random_state=seed).reset_index(drop=True)


def _comparable(report: Any) -> dict[str, Any]:
    data = report.model_dump()
    data.pop("seconds")
    return data


def test_a_replaying_generator_is_flagged_and_the_copula_is_not(adult) -> None:
    schema, training, control = adult
    auditor = Auditor(schema, AuditConfig(**SMALL))
    leaky = auditor.audit(training, control, _replay(training, 2_000, 1), seed=3)
    model = GaussianCopulaGenerator(seed=1).fit(training, schema)
    honest = auditor(model, training.to_dict("records"), control.to_dict("records"), seed=3)

    assert leaky.verdict == "fail"
    assert leaky.risks["singling_out_univariate"] > 0.3
    assert leaky.risks["inference:income"] > 0.3
    assert leaky.risks["dcr_share"] > 0.8 and leaky.risks["identical_match_excess"] > 0.5
    assert leaky.risks["nndr_median"] < 0.05 < leaky.risks["nndr_median_control"]
    failed = " ".join(leaky.reasons)
    for name in ("singling_out_univariate", "inference:income", "dcr_share", "identical_match_excess"):
        assert name in failed

    assert honest.verdict == "pass", honest.reasons
    assert honest.synthetic_rows == 2_000 and honest.attack_rows == 2_000
    assert honest.risks["singling_out_univariate"] < 0.1
    assert 0.4 < honest.risks["dcr_share"] < 0.6
    assert honest.risks["identical_match_share"] == 0.0
    assert honest.quality["column_shapes"] > 0.85 and honest.quality["pair_trends"] > 0.8
    # TSTR: a replay is as useful as the real data; the copula is useful but worse.
    assert leaky.quality["tstr_ratio"] > 0.9 > honest.quality["tstr_ratio"] > 0.5
    # Every requested attack reports its CI and how much of it was built.
    assert [a.name for a in honest.attacks] == [
        "singling_out_univariate",
        "singling_out_multivariate",
        "linkability",
        "inference:income",
    ]
    for attack in honest.attacks:
        assert attack.attacks_requested == 200 and 0 < attack.attacks_built <= 200
        assert attack.ci_low is not None and attack.ci_high is not None
        assert attack.ci_low <= attack.risk <= attack.ci_high
    assert honest.attacks_requested == 800 and honest.attacks_built == sum(a.attacks_built for a in honest.attacks)
    # The report data the HTML draws.
    assert {d.field for d in honest.distributions} == {f.name for f in audited_fields(schema)}
    assert honest.associations is not None and len(honest.associations.real) == len(schema.fields)


def test_the_same_seed_gives_the_same_audit(adult) -> None:
    schema, training, control = adult
    auditor = Auditor(schema, AuditConfig(**SMALL))
    model = GaussianCopulaGenerator(seed=2).fit(training, schema)
    first = auditor(model, training.to_dict("records"), control.to_dict("records"), seed=9)
    again = auditor(model, training.to_dict("records"), control.to_dict("records"), seed=9)
    assert _comparable(first) == _comparable(again)
    other = auditor(model, training.to_dict("records"), control.to_dict("records"), seed=10)
    assert _comparable(other) != _comparable(first)


def test_distance_metrics_tell_copies_of_training_from_copies_of_control(adult) -> None:
    schema, training, control = adult
    fields = audited_fields(schema)
    ori, ctrl = attack_frame(training, fields), attack_frame(control, fields)
    copied = distance_metrics(ori, ctrl, ori.sample(1_000, random_state=0))
    assert copied.dcr_share > 0.99 and copied.identical_match_share == 1.0  # Adult has a few duplicate rows
    assert copied.nndr_median == 0.0 and copied.identical_match_excess > 0.99
    unseen = distance_metrics(ori, ctrl, ctrl.sample(1_000, random_state=0))
    assert unseen.dcr_share < 0.01 and unseen.identical_match_share_control == 1.0
    # Real unseen rows equal a training row as often as the control does: no significant excess.
    assert unseen.identical_match_excess < 0.01 and unseen.identical_match_excess_ci_low() == 0.0


def test_attacks_report_what_could_be_built(adult) -> None:
    schema, training, control = adult
    fields = audited_fields(schema)
    ori, ctrl = attack_frame(training, fields), attack_frame(control, fields)
    syn = attack_frame(_replay(training, 2_000, 2), fields)
    starved = singling_out_risk(ori, syn, ctrl, mode="multivariate", n_attacks=300, max_attempts=200, seed=0)
    assert starved.attacks_requested == 300 and 0 < starved.attacks_built < 300
    assert starved.risk is not None and starved.risk > 0.1
    # A crash inside an attack is not "not built": it fails closed, naming the attack and the type only.
    with pytest.raises(AttackError, match=r"^attack linkability crashed \(KeyError\)$"):
        linkability_risk(ori, syn, ctrl, aux_cols=(["age"], ["no-such-field"]), n_attacks=100)


def test_a_too_small_control_set_fails_closed(adult) -> None:
    schema, training, control = adult
    auditor = Auditor(schema, AuditConfig(**SMALL))
    report = auditor.audit(training, control.head(50), _replay(training, 500, 0), seed=0)
    assert report.verdict == "fail"
    assert any("control set has 50 records" in r for r in report.reasons)
    assert report.attacks_built == 0 and all(a.risk is None for a in report.attacks)
    assert "dcr_share" not in report.risks and "column_shapes" in report.quality


def test_configured_fields_must_be_audited_fields(adult) -> None:
    schema, _, _ = adult
    with pytest.raises(ValueError, match=r"\['nope'\].*choose from"):
        Auditor(schema, AuditConfig(secret_fields=["nope"]))
    with pytest.raises(ValueError, match="choose from"):
        Auditor(schema, AuditConfig(linkability_aux=(["age"], ["missing"])))
    assert "secrets=['income']" in repr(Auditor(schema, AuditConfig(target_field="income")))
