"""The sequence generator: seeding, missing values, lengths and timestamps, pickling, warm start, DP-SGD."""

from __future__ import annotations

import pickle
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from dp_accounting import GaussianDpEvent, PoissonSampledDpEvent, SelfComposedDpEvent, rdp

from synthstream.config import SequenceConfig, SequenceModelConfig
from synthstream.errors import ModelError, NotFittedError
from synthstream.models.base import Generator
from synthstream.models.registry import Lineage, ModelRegistry
from synthstream.models.sequence import SequenceGenerator, fit_sequence_model, resolve_device
from synthstream.processors.sequences import EntitySequences
from synthstream.schemas.record import FieldRole, FieldSpec, FieldType, RecordSchema

REPO = Path(__file__).resolve().parents[1]
T0 = datetime(2024, 1, 1, tzinfo=UTC)
SCHEMA = RecordSchema(
    name="Txn",
    fields=(
        FieldSpec(name="card", type=FieldType.STRING, role=FieldRole.IDENTIFIER),
        FieldSpec(name="ts", type=FieldType.TIMESTAMP, role=FieldRole.DATETIME),
        FieldSpec(name="tier", type=FieldType.STRING, role=FieldRole.CATEGORICAL),
        FieldSpec(name="amount", type=FieldType.DOUBLE, role=FieldRole.NUMERIC, nullable=True),
        FieldSpec(name="items", type=FieldType.LONG, role=FieldRole.NUMERIC),
        FieldSpec(name="channel", type=FieldType.STRING, role=FieldRole.CATEGORICAL, nullable=True),
    ),
)
SMALL = {
    "hidden_size": 16,
    "head_units": 8,
    "mixture_components": 2,
    "batch_size": 8,
    "tbptt": 10,
    "learning_rate": 1e-2,
    "device": "cpu",
}


def _records(n_entities: int = 40, seed: int = 0, null_amount: float = 0.25) -> list[dict[str, Any]]:
    """Cards with a tier, irregular (exponential) inter-arrival times, an AR(1) amount with blocks of nulls."""
    rng = np.random.default_rng(seed)
    out: list[dict[str, Any]] = []
    for k in range(n_entities):
        tier = "gold" if k % 3 == 0 else "basic"
        t = T0 + timedelta(hours=float(rng.uniform(0, 48)))
        level = 100.0 if tier == "gold" else 20.0
        amount = level
        missing = False
        for _ in range(int(rng.integers(15, 40))):
            t += timedelta(minutes=float(rng.exponential(45.0)))
            amount = level + 0.8 * (amount - level) + rng.normal(0, level / 10)
            missing = rng.random() < (0.7 if missing else null_amount * 0.3 / 0.7)  # nulls come in runs
            channel = rng.choice(["web", "pos", "app", None], p=[0.45, 0.35, 0.1, 0.1])
            out.append(
                {
                    "card": f"c{k:04d}",
                    "ts": t,
                    "tier": tier,
                    "amount": None if missing else round(float(amount), 2),
                    "items": int(rng.integers(1, 5)),
                    "channel": channel,
                }
            )
    return out


def _model(**overrides: Any) -> SequenceGenerator:
    options: dict[str, Any] = {"entity_field": "card", "time_field": "ts", "static_fields": ["tier"], "epochs": 4}
    options.update(SMALL)
    options.update(overrides)
    return SequenceGenerator(**options)


@pytest.fixture(scope="module", autouse=True)
def _one_thread() -> Any:
    """Small models on a shared 2-core machine: one torch thread avoids spinning on a busy sibling."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def records() -> list[dict[str, Any]]:
    return _records()


@pytest.fixture(scope="module")
def fitted(records: list[dict[str, Any]]) -> SequenceGenerator:
    return _model(epochs=30, seed=5).fit(records, SCHEMA)


def _weights(model: SequenceGenerator) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model._network().state_dict().items()}


def test_same_seed_and_data_give_the_same_model_and_sample(records: list[dict[str, Any]]) -> None:
    a, b, c = (
        _model(seed=3).fit(records, SCHEMA),
        _model(seed=3).fit(records, SCHEMA),
        _model(seed=4).fit(records, SCHEMA),
    )
    wa, wb, wc = _weights(a), _weights(b), _weights(c)
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert not all(torch.equal(wa[k], wc[k]) for k in wa)
    sa = [s.events for s in a.sample_sequences(6, seed=11)]
    assert sa == [s.events for s in b.sample_sequences(6, seed=11)]
    assert sa != [s.events for s in b.sample_sequences(6, seed=12)]


def test_unseeded_sampling_continues_one_stream_and_a_seed_restarts_it(fitted: SequenceGenerator) -> None:
    first = fitted.sample(40, seed=1)
    second = fitted.sample(40)
    assert len(first) == len(second) == 40
    assert first != second
    assert fitted.sample(40, seed=1) == first
    assert set(first[0]) == set(SCHEMA.field_names)


def test_missing_values_survive_the_round_trip_at_a_similar_rate(
    fitted: SequenceGenerator, records: list[dict[str, Any]]
) -> None:
    events = [e for s in fitted.sample_sequences(150, seed=2) for e in s.events]
    real_amount = np.mean([r["amount"] is None for r in records])
    real_channel = np.mean([r["channel"] is None for r in records])
    synth_amount = np.mean([e["amount"] is None for e in events])
    synth_channel = np.mean([e["channel"] is None for e in events])
    assert len(events) > 2_000
    assert 0.15 < real_amount < 0.35
    assert abs(synth_amount - real_amount) < 0.08
    assert abs(synth_channel - real_channel) < 0.05
    assert "items" in events[0] and all(e["items"] is not None for e in events)  # not nullable: never null
    assert all(isinstance(e["amount"], float) for e in events if e["amount"] is not None)


def test_sequences_have_variable_lengths_ordered_timestamps_and_constant_static_attributes(
    fitted: SequenceGenerator, records: list[dict[str, Any]]
) -> None:
    seqs = fitted.sample_sequences(60, seed=3)
    lengths = [len(s.events) for s in seqs]
    assert len(set(lengths)) > 5 and min(lengths) >= 15 and max(lengths) <= 40
    assert len({s.entity_id for s in seqs}) == 60
    real_gaps = np.diff([r["ts"].timestamp() for r in records if r["card"] == "c0001"])
    for s in seqs:
        stamps = [e["ts"] for e in s.events]
        assert stamps == sorted(stamps) and stamps[0] == s.start
        assert all(isinstance(t, datetime) and t.tzinfo is not None for t in stamps)
        assert {e["tier"] for e in s.events} == {s.static["tier"]}
        assert {e["card"] for e in s.events} == {s.entity_id}  # fresh ids, never a real card
    gaps = np.concatenate([np.diff([e["ts"].timestamp() for e in s.events]) for s in seqs])
    assert 0.5 < np.median(gaps) / np.median(real_gaps) < 2.0  # realistic inter-arrival times
    assert {s.static["tier"] for s in seqs} == {"gold", "basic"}
    gold = [e["amount"] for s in seqs if s.static["tier"] == "gold" for e in s.events if e["amount"] is not None]
    basic = [e["amount"] for s in seqs if s.static["tier"] == "basic" for e in s.events if e["amount"] is not None]
    assert np.median(gold) > 2 * np.median(basic)  # conditioned on the static attribute


def test_fixed_lengths_and_a_live_arrival_process_from_a_start(fitted: SequenceGenerator) -> None:
    start = datetime(2030, 6, 1, 12, tzinfo=UTC)
    seqs = fitted.sample_sequences(5, seed=1, start=start, lengths=[3, 4, 5, 6, 7])
    assert [len(s.events) for s in seqs] == [3, 4, 5, 6, 7]
    assert seqs[0].start == start
    starts = [s.start for s in seqs]
    assert starts == sorted(starts)
    later = fitted.sample_sequences(3, after=starts[-1], lengths=2)
    assert all(s.start >= starts[-1] for s in later)
    with pytest.raises(ValueError, match="one length per entity"):
        fitted.sample_sequences(2, lengths=[3])


def test_it_pickles_with_weights_on_cpu_and_the_registry_holds_it(fitted: SequenceGenerator, tmp_path: Path) -> None:
    restored = pickle.loads(pickle.dumps(fitted))
    assert all(v.device.type == "cpu" for v in restored._net_state.values())  # type: ignore[union-attr]  # set by pickling
    assert [s.events for s in restored.sample_sequences(4, seed=9)] == [
        s.events for s in fitted.sample_sequences(4, seed=9)
    ]
    assert isinstance(fitted, Generator) and fitted.fitted and fitted.schema == SCHEMA
    registry = ModelRegistry(tmp_path, "txn.sequences")
    lineage = Lineage(rows=1, schema_fingerprint=SCHEMA.fingerprint(), seed=5, fit_seconds=0.1)
    version = registry.register(fitted, lineage=lineage)
    loaded = ModelRegistry(tmp_path, "txn.sequences").load(version.version)
    assert isinstance(loaded, SequenceGenerator)
    assert loaded.sample(30, seed=4) == fitted.sample(30, seed=4)


def test_warm_start_continues_from_the_previous_weights(fitted: SequenceGenerator) -> None:
    newer = _records(seed=1)
    warm = _model(epochs=25, seed=5, warm_start_epochs=1, learning_rate=1e-4).fit(newer, SCHEMA, warm_start=fitted)
    cold = _model(epochs=1, seed=5, learning_rate=1e-4).fit(newer, SCHEMA)
    before, after, fresh = _weights(fitted), _weights(warm), _weights(cold)
    drift_warm = sum(float((after[k] - before[k]).abs().sum()) for k in before)
    drift_cold = sum(float((fresh[k] - before[k]).abs().sum()) for k in before)
    assert drift_warm < 0.1 * drift_cold
    assert warm.fit_report_["warm_start"] is True and warm.fit_report_["epochs"] == 1
    with pytest.raises(ModelError, match="same hidden_size"):
        _model(hidden_size=24).fit(newer, SCHEMA, warm_start=fitted)


def test_fits_from_keyed_state_snapshots(records: list[dict[str, Any]]) -> None:
    state = EntitySequences("card", "ts", max_entities=30, max_events_per_entity=20)
    state.process(records)
    model = _model(epochs=2).fit_sequences(state.snapshot(min_events=2), SCHEMA)
    assert model.fit_report_["sequences"] == 30
    assert model.fit_report_["events"] == state.events


def test_fit_from_the_pipeline_config_warm_starts_when_compatible(records: list[dict[str, Any]]) -> None:
    config = SequenceConfig(
        enabled=True,
        entity_field="card",
        time_field="ts",
        static_fields=["tier"],
        model=SequenceModelConfig(epochs=2, warm_start_epochs=1, hidden_size=16, head_units=8, batch_size=8),
    )
    state = EntitySequences("card", "ts")
    state.process(records)
    sequences = state.snapshot(min_events=config.min_events)
    first, seconds = fit_sequence_model(config, sequences, SCHEMA, seed=1)
    assert seconds > 0 and first.fit_report_["warm_start"] is False and first.threads == 1
    second, _ = fit_sequence_model(config, sequences, SCHEMA, seed=2, previous=first)
    assert second.fit_report_["warm_start"] is True and second.fit_report_["epochs"] == 1
    other = _model(hidden_size=24, epochs=1).fit(records, SCHEMA)
    third, _ = fit_sequence_model(config, sequences, SCHEMA, seed=3, previous=other)
    assert third.fit_report_["warm_start"] is False  # incompatible shape: a cold fit, not an error


def _independent_epsilon(noise_multiplier: float, sample_rate: float, steps: int, delta: float) -> float:
    """ε of ``steps`` Poisson-subsampled Gaussian steps by dp-accounting's RDP accountant."""
    acc = rdp.RdpAccountant()
    acc.compose(SelfComposedDpEvent(PoissonSampledDpEvent(sample_rate, GaussianDpEvent(noise_multiplier)), steps))
    return float(acc.get_epsilon(delta))


def test_dp_sgd_records_its_spend(records: list[dict[str, Any]]) -> None:
    model = _model(epochs=2, dp_noise_multiplier=1.1, dp_max_grad_norm=1.0, dp_delta=1e-4).fit(records, SCHEMA)
    spend = model.dp_spend_
    assert spend is not None
    assert spend.noise_multiplier == pytest.approx(1.1)
    assert model.fit_report_["chunks"] == 40  # one training sequence per entity: the privacy unit
    # Poisson sampling of 8 expected entities out of 40, 2 epochs of 1/q = 5 expected batches each.
    assert spend.sample_rate == pytest.approx(8 / 40) and spend.delta == 1e-4 and spend.unit == "entity"
    assert 8 <= spend.steps <= 10  # an empty Poisson batch (p = 0.8**40 each) takes no step
    # ε recomputed by Google's dp-accounting from the same σ, q and steps, not read from the model.
    assert spend.epsilon == pytest.approx(_independent_epsilon(1.1, 8 / 40, spend.steps, 1e-4), rel=0.03)
    targeted = _model(epochs=2, dp_target_epsilon=3.0).fit(records, SCHEMA)
    t = targeted.dp_spend_
    assert t is not None
    independent = _independent_epsilon(t.noise_multiplier, t.sample_rate, t.steps, t.delta)
    assert independent <= 3.0 * 1.03 and t.epsilon <= 3.0 + 1e-6
    assert independent >= 2.5  # calibrated to the target, not to a needlessly large σ
    assert len(targeted.sample(20, seed=0)) == 20


def test_a_single_long_series_without_entities(records: list[dict[str, Any]]) -> None:
    series = [r for r in records if r["card"] == "c0000"] * 1
    schema = RecordSchema(fields=tuple(f for f in SCHEMA.fields if f.name != "card" and f.name != "tier"))
    model = SequenceGenerator(entity_field=None, time_field="ts", train_length=8, epochs=2, **SMALL)
    model.fit([{k: v for k, v in r.items() if k in schema.field_names} for r in series], schema)
    assert model.fit_report_["chunks"] == -(-len(series) // 8)
    (only,) = model.sample_sequences(1, seed=0)
    assert len(only.events) == len(series) and "card" not in only.events[0]


def test_device_selection_and_invalid_options(monkeypatch: pytest.MonkeyPatch) -> None:
    # Both hardware cases on every machine: torch's CUDA probe is the one input, set each way.
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto").type == "cpu"
    with pytest.raises(ModelError, match="cuda"):
        resolve_device("cuda")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto").type == "cuda" and resolve_device("cuda").type == "cuda"
    assert resolve_device("cpu").type == "cpu"
    monkeypatch.undo()
    with pytest.raises(ValueError, match=r"backbone must be one of \['gru', 'tcn'\]"):
        _model(backbone="lstm")
    with pytest.raises(ValueError, match="period must be one of"):
        _model(period="month")
    with pytest.raises(ValueError, match="not both"):
        _model(dp_noise_multiplier=1.0, dp_target_epsilon=1.0)
    with pytest.raises(NotFittedError):
        _model().sample(3)
    with pytest.raises(ModelError, match="not in the schema"):
        _model(static_fields=["nope"]).fit(_records(n_entities=3), SCHEMA)
    assert "backbone='gru'" in repr(_model())


def test_tcn_backbone_fits_and_samples(records: list[dict[str, Any]]) -> None:
    model = _model(backbone="tcn", layers=3, epochs=2).fit(records, SCHEMA)
    seqs = model.sample_sequences(3, seed=0, lengths=12)
    assert [len(s.events) for s in seqs] == [12, 12, 12]


def test_import_does_not_load_busl_packages() -> None:
    code = (
        "import sys, synthstream.models.sequence, synthstream.evaluation.timeseries, "
        "synthstream.processors.sequences, synthstream.streams.sequence_publisher\n"
        "busl = {'sdv', 'ctgan', 'copulas', 'rdt', 'deepecho', 'sdmetrics'}\n"
        "print(','.join(sorted(m for m in sys.modules if m.split('.')[0] in busl)))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    assert done.stdout.strip() == ""
