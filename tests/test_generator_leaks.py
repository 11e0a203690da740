"""Defence in depth in every generator: no rare training value is sampled or kept in the model file.

Each generator (the copula, the neural model, MST, the sequence model) and the drift profile is
fitted on seeded data with planted rare values: unique strings in a categorical field, values
held by fewer than k records, a field mixing unique CPFs into lot codes, free text with unique
names and CPFs, identifiers, and a unique numeric outlier. Then 100,000 sampled rows hold none
of them, and neither do the bytes of ``pickle.dumps(model)`` (or the profile's JSON).
"""

from __future__ import annotations

import pickle
import struct
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch

from synthstream.models.copula import GaussianCopulaGenerator
from synthstream.models.dp_budget import DPContext
from synthstream.models.guards import DEFAULT_MIN_COUNT, supported_quantiles
from synthstream.models.marginal import MSTGenerator
from synthstream.models.neural import NeuralGenerator
from synthstream.models.sequence import SequenceGenerator
from synthstream.processors.drift.profile import TrainingProfile
from synthstream.schemas.record import FieldRole, FieldSpec, FieldType, RecordSchema

K = DEFAULT_MIN_COUNT
ROWS = 2_000
SAMPLES = 100_000
OUTLIER = 1048.0
AGE_OUTLIER = 977
LOTS = [f"LOTE-{n}" for n in (101, 117, 123, 150, 188, 204, 239, 311)]
PLANS = ["basic", "silver", "gold", "platinum"]
WORDS = ["cliente", "solicitou", "reembolso", "pedido", "entrega", "atrasada", "produto", "troca", "cancelamento"]
FIRST = ["Zebulon", "Quirina", "Xanthe", "Yvaine", "Wulfric", "Odalys", "Thaddeus", "Ismerai"]
LAST = ["Vasconcellos", "Quaresmaz", "Ytrebergue", "Zwolinski", "Wanderleyx", "Oquendo", "Thorvaldsen", "Ibarruri"]

SCHEMA = RecordSchema(
    name="Customer",
    fields=(
        FieldSpec(name="customer", type=FieldType.STRING, role=FieldRole.IDENTIFIER),
        FieldSpec(name="plan", type=FieldType.STRING, role=FieldRole.CATEGORICAL),
        FieldSpec(name="ref", type=FieldType.STRING, role=FieldRole.CATEGORICAL),
        FieldSpec(name="amount", type=FieldType.DOUBLE, role=FieldRole.NUMERIC),
        FieldSpec(name="age", type=FieldType.LONG, role=FieldRole.NUMERIC),
        FieldSpec(name="obs", type=FieldType.STRING, role=FieldRole.FREE_TEXT, nullable=True),
    ),
)


def _cpf(rng: np.random.Generator) -> str:
    d = "".join(str(v) for v in rng.integers(0, 10, 11))
    return f"{d[:3]}.{d[3:6]}.{d[6:9]}-{d[9:]}"


def _data(rows: int = ROWS, seed: int = 7) -> tuple[pd.DataFrame, dict[str, list[str]]]:
    """Seeded customers with planted rare values; returns the frame and the rare strings by kind."""
    rng = np.random.default_rng(seed)
    unique_plans = [f"Ultraviolet-{i:03d}-Quasar" for i in range(40)]  # each held by one record
    few_plans = [f"Marzipan-{i}-Tier" for i in range(10)]  # each held by K - 2 records
    plans = list(rng.choice(PLANS, size=rows - len(unique_plans) - (K - 2) * len(few_plans)))
    plans += unique_plans + [p for p in few_plans for _ in range(K - 2)]
    rng.shuffle(plans)
    cpfs = [_cpf(rng) for _ in range(int(rows * 0.3))]  # the mixed field: 30 % unique CPFs among lot codes
    refs = cpfs + list(rng.choice(LOTS, size=rows - len(cpfs)))
    rng.shuffle(refs)
    customers = [f"C{v:09d}" for v in rng.choice(10**9, size=rows, replace=False)]
    amounts = np.round(rng.normal(100.0, 12.0, rows), 2)
    amounts[rng.integers(rows)] = OUTLIER
    ages = rng.integers(25, 60, rows)
    ages[rng.integers(rows)] = AGE_OUTLIER
    names = []
    notes: list[str | None] = []
    for i in range(rows):
        if rng.random() < 0.1:
            notes.append(None)
            continue
        name = f"{rng.choice(FIRST)}{i:04d} {rng.choice(LAST)}{i:04d}"  # unique full names
        names.append(name)
        words = " ".join(rng.choice(WORDS, size=int(rng.integers(2, 6))))
        agent = "atendente Genoveva" if i % 3 == 0 else "atendente"  # a name many records hold, capitalised
        notes.append(f"Cliente {name} {words} CPF {_cpf(rng)} em {int(rng.integers(1, 28)):02d}/03/2024 {agent}")
    frame = pd.DataFrame(
        {"customer": customers, "plan": plans, "ref": refs, "amount": amounts, "age": ages, "obs": notes}
    )
    rare = {
        "plan": unique_plans + few_plans,
        "ref": cpfs,
        "customer": customers,
        "names": [token for name in names for token in name.split()],
        "obs": [n for n in notes if n is not None],
    }
    return frame, rare


@pytest.fixture(scope="module")
def data() -> tuple[pd.DataFrame, dict[str, list[str]]]:
    return _data()


@pytest.fixture(scope="module", autouse=True)
def _one_thread() -> Any:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _float_bytes(value: float) -> list[bytes]:
    """The ways a float can sit in a pickle: numpy arrays (little-endian) and pickle's BINFLOAT (big-endian)."""
    return [struct.pack("<d", value), struct.pack(">d", value)]


def assert_model_file_clean(model: Any, rare: dict[str, list[str]], *, numeric: bool = True) -> None:
    """``pickle.dumps(model)`` holds none of the rare strings (utf-8) and, with ``numeric``, not the outliers."""
    blob = pickle.dumps(model)
    leaked = {kind: sum(1 for v in values if v.encode() in blob) for kind, values in rare.items()}
    assert leaked == dict.fromkeys(rare, 0)
    if numeric:
        assert not any(b in blob for b in _float_bytes(OUTLIER)), "the amount outlier is stored"
        assert not any(b in blob for b in _float_bytes(float(AGE_OUTLIER))), "the age outlier is stored"


def assert_samples_clean(
    synth: pd.DataFrame, rare: dict[str, list[str]], *, text: bool = True, other: bool = True
) -> None:
    """No rare training value comes back, whole or (names) as a token of free text.

    ``other``: rare strings of the mixed field come back as fresh strings of their shape (the
    empirical models); DP models decode values outside their DP domain to domain labels instead.
    """
    assert len(synth) == SAMPLES
    for field in ("plan", "ref", "customer"):
        hits = set(synth[field].dropna()) & set(rare[field])
        assert not hits, f"{len(hits)} rare {field} values sampled verbatim"
    assert set(synth["plan"].dropna()) >= set(PLANS)  # the frequent categories survive
    lots = synth["ref"].isin(LOTS).mean()
    if other:
        assert 0.5 < lots < 0.9  # lot codes keep about their 70 % share (the rest: CPF-shaped fresh strings)
    else:
        assert lots == 1.0
    assert synth["amount"].max() < 300 and synth["age"].max() < 100
    if text:
        texts = synth["obs"].dropna()
        assert not set(texts) & set(rare["obs"])
        tokens = {t for v in texts for t in v.split()}
        assert not tokens & set(rare["names"]), "a unique name token was sampled"
        assert "Genoveva" not in tokens and "atendente" in tokens  # frequent names stay out, frequent words in
        assert not any(any(c.isdigit() for c in t) for t in tokens), "a number, date or CPF token was sampled"


def test_supported_quantiles_hide_a_single_outlier_and_keep_atoms() -> None:
    values = np.concatenate([np.zeros(900), np.arange(99.0), [OUTLIER]])
    grid = supported_quantiles(values, np.linspace(0, 1, 101), K)
    assert grid[0] == 0.0 and grid[50] == 0.0  # the atom holds its exact value
    assert grid[-1] < 99 and OUTLIER not in grid
    assert np.all(np.diff(grid) >= 0)


def test_copula_never_samples_or_stores_rare_training_values(data: tuple[pd.DataFrame, dict[str, list[str]]]) -> None:
    frame, rare = data
    model = GaussianCopulaGenerator(seed=1).fit(frame, SCHEMA)
    synth = pd.DataFrame(model.sample_columns(SAMPLES, seed=2))
    assert_samples_clean(synth, rare)
    assert synth["ref"][~synth["ref"].isin(LOTS)].str.fullmatch(r"\d{3}\.\d{3}\.\d{3}-\d{2}").all()
    assert synth["obs"].notna().mean() > 0.8  # synthesised, not silently null
    assert_model_file_clean(model, rare)


def test_copula_with_a_larger_k_drops_more(data: tuple[pd.DataFrame, dict[str, list[str]]]) -> None:
    frame, _ = data
    counts = frame["plan"].value_counts()
    model = GaussianCopulaGenerator(seed=1, min_count=int(counts.min()) + 1).fit(frame[["plan"]], _only("plan"))
    sampled = set(model.sample_columns(20_000, seed=3)["plan"])
    assert sampled <= set(counts[counts > counts.min()].index)


def _only(name: str) -> RecordSchema:
    return RecordSchema(fields=(SCHEMA.field(name),))


def test_neural_never_samples_or_stores_rare_training_values(data: tuple[pd.DataFrame, dict[str, list[str]]]) -> None:
    frame, rare = data
    model = NeuralGenerator(seed=1, epochs=2, min_steps=0, hidden=16, batch_size=256, device="cpu").fit(frame, SCHEMA)
    synth = pd.DataFrame(model.sample_columns(SAMPLES, seed=2))
    assert_samples_clean(synth, rare)
    assert synth["obs"].notna().mean() > 0.8
    assert_model_file_clean(model, rare)


def test_mst_never_samples_or_stores_rare_training_values(
    data: tuple[pd.DataFrame, dict[str, list[str]]], tmp_path: Path
) -> None:
    frame, rare = data
    dp = DPContext(
        ledger_path=tmp_path / "privacy.duckdb", stream="s", epsilon=5e3, delta=1e-6, epsilon_per_fit=5e3, key="f1"
    )  # a budget so generous that OpenDP's threshold alone lets values of 3 records through
    model = MSTGenerator(seed=1, dp=dp, bins=16, iters=100).fit(frame, SCHEMA)
    synth = pd.DataFrame(model.sample_columns(SAMPLES, seed=2))
    assert_samples_clean(synth, rare, text=False, other=False)
    assert synth["obs"].isna().all()  # a DP model learns no text: dropped (with a warning), never copied
    assert_model_file_clean(model, rare)


def _events(seed: int = 3) -> tuple[list[dict[str, Any]], dict[str, list[str]]]:
    """Entities with a static segment and per-step categorical and numeric fields, with planted rare values."""
    rng = np.random.default_rng(seed)
    start = datetime(2024, 1, 1, tzinfo=UTC)
    rows: list[dict[str, Any]] = []
    rare_steps = [f"Nebulous-{i:03d}-Kiosk" for i in range(30)]
    rare_segments = [f"Obsidian-{i:02d}-Segment" for i in range(6)]
    cpfs: list[str] = []
    outlier_at = 37
    for entity in range(120):
        segment = rare_segments[entity] if entity < len(rare_segments) else str(rng.choice(["retail", "corporate"]))
        t = start + timedelta(hours=float(rng.uniform(0, 72)))
        for step in range(int(rng.integers(8, 16))):
            t += timedelta(minutes=float(rng.exponential(30.0)))
            channel = str(rng.choice(["web", "pos", "app"]))
            ref = str(rng.choice(LOTS))
            if rng.random() < 0.3:
                ref = _cpf(rng)
                cpfs.append(ref)
            amount = round(float(rng.normal(50, 5)), 2)
            if len(rows) == outlier_at:
                amount = OUTLIER
            rows.append(
                {
                    "card": f"card-{entity:05d}-{rng.integers(10**6):06d}",
                    "ts": t,
                    "segment": segment,
                    "channel": rare_steps.pop() if rare_steps and step == 3 else channel,
                    "ref": ref,
                    "amount": amount,
                }
            )
    # every card value is constant per entity: re-key so each entity has one id
    ids: dict[int, str] = {}
    for i, row in enumerate(rows):
        entity_key = row["card"].split("-")[1]
        ids.setdefault(int(entity_key), row["card"])
        rows[i]["card"] = ids[int(entity_key)]
    rare = {
        "card": sorted(set(ids.values())),
        "segment": rare_segments,
        "channel": [f"Nebulous-{i:03d}-Kiosk" for i in range(30)],
        "ref": cpfs,
    }
    return rows, rare


SEQ_SCHEMA = RecordSchema(
    name="Txn",
    fields=(
        FieldSpec(name="card", type=FieldType.STRING, role=FieldRole.IDENTIFIER),
        FieldSpec(name="ts", type=FieldType.TIMESTAMP, role=FieldRole.DATETIME),
        FieldSpec(name="segment", type=FieldType.STRING, role=FieldRole.CATEGORICAL),
        FieldSpec(name="channel", type=FieldType.STRING, role=FieldRole.CATEGORICAL),
        FieldSpec(name="ref", type=FieldType.STRING, role=FieldRole.CATEGORICAL),
        FieldSpec(name="amount", type=FieldType.DOUBLE, role=FieldRole.NUMERIC),
    ),
)


def test_sequence_model_never_samples_or_stores_rare_training_values() -> None:
    records, rare = _events()
    model = SequenceGenerator(
        entity_field="card",
        time_field="ts",
        static_fields=["segment"],
        epochs=2,
        hidden_size=8,
        head_units=4,
        mixture_components=1,
        batch_size=32,
        device="cpu",
        seed=1,
    ).fit(records, SEQ_SCHEMA)
    synth = pd.DataFrame(model.sample(SAMPLES, seed=2))
    assert len(synth) == SAMPLES
    for field in ("card", "segment", "channel", "ref"):
        hits = set(synth[field].dropna()) & set(rare[field])
        assert not hits, f"{len(hits)} rare {field} values sampled verbatim"
    others = synth["segment"][~synth["segment"].isin(["retail", "corporate"])]
    assert others.str.fullmatch(r"[A-Z][a-z]{7}-\d{2}-[A-Z][a-z]{6}").all()  # 5 % rare: fresh strings of their shape
    assert set(synth["channel"]) <= {"web", "pos", "app"}
    assert 0.5 < synth["ref"].isin(LOTS).mean() < 0.9
    assert synth["amount"].max() < 300
    blob = pickle.dumps(model)
    leaked = {kind: sum(1 for v in values if v.encode() in blob) for kind, values in rare.items()}
    assert leaked == dict.fromkeys(rare, 0)
    assert not any(b in blob for b in _float_bytes(OUTLIER))


def test_drift_profile_holds_no_rare_value_and_no_single_records_postcode() -> None:
    rng = np.random.default_rng(11)
    ceps = rng.choice(np.arange(10_000_000, 99_999_999), size=1_001, replace=False)
    records = [
        {
            "cep": int(cep),
            "plan": f"Ultraviolet-{i:04d}-Quasar" if i < 50 else str(rng.choice(PLANS)),
            "wind": OUTLIER if i == 500 else round(float(rng.gamma(2.0, 3.0)), 1),
            "zeros": 0 if i % 2 else int(rng.integers(1, 10_000)),
        }
        for i, cep in enumerate(ceps)
    ]
    schema = RecordSchema(
        fields=(
            FieldSpec(name="cep", type=FieldType.LONG, role=FieldRole.NUMERIC),
            FieldSpec(name="plan", type=FieldType.STRING, role=FieldRole.CATEGORICAL),
            FieldSpec(name="wind", type=FieldType.DOUBLE, role=FieldRole.NUMERIC),
            FieldSpec(name="zeros", type=FieldType.LONG, role=FieldRole.NUMERIC),
        )
    )
    profile = TrainingProfile.build(records, schema, bins=10, min_share=0.0)
    blob = profile.to_json()
    assert not [c for c in ceps.tolist() if str(c).encode() in blob], "a real CEP is stored"
    assert b"Ultraviolet" not in blob
    assert max(profile.fields["wind"].edges) < 100  # the outlier is no edge
    cep_edges = np.asarray(profile.fields["cep"].edges)
    assert np.isin(cep_edges, ceps).sum() == 0 and cep_edges.size >= 5
    assert profile.fields["zeros"].edges[0] == float(np.nextafter(0.0, 1.0))  # an atom of 500 records stays exact
    assert sorted(profile.fields["plan"].categories) == sorted(PLANS)
