"""Automatic generator choice by validation, and the neural model keeping strong numeric relations on small tables.

Each test can fail on the old behaviour: the choice used to follow row count only (never the
data), and the neural model trained a fixed 30 epochs (120 optimizer steps on 1,600 rows) on 64 bins,
which turned a 0.89 rank correlation into 0.65-0.75 here and a 0.95 correlation into ~0.80 on
ISLR's Wage table.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from synthstream.evaluation.accuracy import accuracy_report
from synthstream.models.neural import NeuralGenerator
from synthstream.models.selection import Candidate, fit_and_select, validation_score
from synthstream.schemas.inference import infer_schema
from synthstream.schemas.record import RecordSchema

FAST = {"device": "cpu", "batch_size": 256}


def _gaussian(n: int, seed: int) -> pd.DataFrame:
    """Three jointly Gaussian numbers (r = 0.9) and a category: a Gaussian copula's home ground."""
    rng = np.random.default_rng(seed)
    z = rng.multivariate_normal([0, 0, 0], [[1, 0.9, 0.5], [0.9, 1, 0.5], [0.5, 0.5, 1]], size=n)
    return pd.DataFrame(
        {
            "a": 50 + 10 * z[:, 0],
            "b": 3.0 * np.exp(0.3 * z[:, 1]),
            "c": 1000 + 300 * z[:, 2],
            "group": np.where(z[:, 2] > 0.3, "high", np.where(z[:, 2] < -0.3, "low", "mid")),
        }
    )


def _ring(n: int, seed: int) -> pd.DataFrame:
    """A category set by whether a number falls in the middle of its range: no monotone copula can hold it."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(0, 100, n)
    middle = (x > 30) & (x < 70)
    flip = rng.random(n) < 0.05
    label = np.where(middle ^ flip, "inside", "outside")
    colour = np.where(
        middle, rng.choice(["red", "green"], n, p=[0.9, 0.1]), rng.choice(["red", "green"], n, p=[0.1, 0.9])
    )
    return pd.DataFrame({"x": x, "label": label, "colour": colour, "y": rng.normal(0, 1, n)})


def _records(frame: pd.DataFrame) -> list[dict[str, object]]:
    return frame.to_dict("records")


def test_the_choice_follows_the_data_and_keeps_the_best_scoring_candidate() -> None:
    # Copula's ground vs an undertrained network: the copula must win.
    frame = _gaussian(1_500, seed=1)
    control = _gaussian(300, seed=2)
    schema = infer_schema(frame)
    candidates = [
        Candidate("gaussian_copula", {}),
        Candidate("neural", {**FAST, "epochs": 1, "min_steps": 0}),
    ]
    picked = fit_and_select(candidates, _records(frame), _records(control), schema, seed=3)
    assert set(picked.scores) == {"gaussian_copula", "neural"}
    assert picked.name == max(picked.scores, key=lambda k: picked.scores[k]) == "gaussian_copula"
    assert picked.model.name == "gaussian_copula"
    # A non-monotone relation the copula cannot represent: the trained network must win.
    frame = _ring(2_000, seed=4)
    control = _ring(400, seed=5)
    schema = infer_schema(frame)
    picked = fit_and_select(
        [Candidate("gaussian_copula", {}), Candidate("neural", {**FAST, "epochs": 30})],
        _records(frame),
        _records(control),
        schema,
        seed=3,
    )
    assert picked.name == "neural", picked.scores
    assert picked.scores["neural"] > picked.scores["gaussian_copula"] + 0.01, picked.scores


def test_a_candidate_that_fails_is_skipped_and_an_empty_control_set_is_refused() -> None:
    frame = _gaussian(600, seed=1)
    schema = infer_schema(frame)
    broken = Candidate("neural", {"epochs": 0})  # refused by the constructor
    picked = fit_and_select(
        [broken, Candidate("gaussian_copula", {})], _records(frame), _records(frame[:200]), schema, 1
    )
    assert picked.name == "gaussian_copula" and np.isnan(picked.scores["neural"])
    with pytest.raises(ValueError, match="control"):
        fit_and_select([Candidate("gaussian_copula", {})], _records(frame), [], schema, 1)
    with pytest.raises(ValueError, match="epochs"):
        fit_and_select([broken], _records(frame), _records(frame[:200]), schema, 1)


def _corr(frame: pd.DataFrame, a: str, b: str, method: str = "pearson") -> float:
    return float(pd.to_numeric(frame[a]).corr(pd.to_numeric(frame[b]), method=method))


def test_the_neural_model_keeps_strong_numeric_correlations_on_a_small_table() -> None:
    frame = _gaussian(1_600, seed=7)
    schema: RecordSchema = infer_schema(frame)
    model = NeuralGenerator(seed=2, device="cpu").fit(_records(frame), schema)
    synthetic = pd.DataFrame(model.sample(4_000, seed=5))
    for a, b in (("a", "b"), ("a", "c"), ("b", "c")):
        real, syn = _corr(frame, a, b, "spearman"), _corr(synthetic, a, b, "spearman")
        assert abs(real - syn) <= 0.06, (a, b, real, syn)
    # min_steps optimizer steps, up to max_epochs passes (the old fixed 30 epochs were 120 steps here,
    # now 100 passes of 4 steps); fewer bins than the 64 a large table gets (>= 100 rows a bin).
    per_epoch = np.ceil(1_600 / model.batch_size)
    assert len(model.history_) == min(np.ceil(model.min_steps / per_epoch), model.max_epochs) == 100
    assert model.bins_for(1_600) == 16 and model.bins_for(100_000) == 64


def test_accuracy_separates_a_faithful_sample_from_a_shuffled_one() -> None:
    real = _gaussian(2_000, seed=1)
    schema = infer_schema(real)
    same = accuracy_report(real, _gaussian(2_000, seed=2), schema)
    shuffled = _gaussian(2_000, seed=3)
    shuffled["b"] = shuffled["b"].sample(frac=1.0, random_state=0).to_numpy()  # marginals kept, relations broken
    broken = accuracy_report(real, shuffled, schema)
    assert same.univariate > 0.95 and same.bivariate > 0.9  # two samples of 2,000: 100 cells a pair
    assert abs(broken.univariate - same.univariate) < 0.01  # the shuffle keeps every marginal
    assert broken.bivariate < same.bivariate - 0.05
    assert same.pairs == 6 and same.fields == 4


def test_a_declared_target_adds_tstr_and_tells_a_kept_label_from_a_lost_one() -> None:
    control = _ring(600, seed=11)
    schema = infer_schema(control)
    faithful = _ring(3_000, seed=12)
    lost = faithful.copy()
    lost["label"] = lost["label"].sample(frac=1.0, random_state=0).to_numpy()  # same marginal, no relation to x
    plain = validation_score(control, faithful, schema, seed=1)
    assert plain.utility is None and plain.total == plain.accuracy
    kept = validation_score(control, faithful, schema, seed=1, target="label")
    gone = validation_score(control, lost, schema, seed=1, target="label")
    assert kept.accuracy == plain.accuracy
    assert kept.utility is not None and gone.utility is not None
    assert kept.utility > 0.85 and gone.utility < 0.65, (kept, gone)  # macro F1 on the control set
    assert kept.total == pytest.approx(kept.accuracy + kept.utility)
    with pytest.raises(ValueError, match="nope"):
        validation_score(control, faithful, schema, seed=1, target="nope")
    picked = fit_and_select(
        [Candidate("gaussian_copula", {}), Candidate("neural", {**FAST, "epochs": 3, "min_steps": 0})],
        _records(_ring(1_500, seed=13)),
        _records(control),
        schema,
        seed=3,
        target="label",
    )
    assert set(picked.utility) == set(picked.accuracy) == {"gaussian_copula", "neural"}
    for name, total in picked.scores.items():
        assert total == pytest.approx(picked.accuracy[name] + picked.utility[name])
    assert picked.name == max(picked.scores, key=lambda k: picked.scores[k])
