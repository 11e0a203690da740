"""DP marginal models have no field-count limit: marginals and sampling over 60 attributes (issue 17).

``np.einsum`` has 52 subscripts; a model marginal computed by one ``einsum`` over all
potentials failed with 54 modelled fields (``IndexError: string index out of range``, then
``ValueError: subscript is not within the valid range [0, 52)`` with integer subscripts).
The marginals now come from variable elimination over the connected potentials. Checked
against exact answers on a 60-attribute chain (a product of 2 x 2 matrices), and a seeded
fit of the whole pipeline on 60 fields.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from synthstream.models.dp_budget import DPContext
from synthstream.models.marginal import MSTGenerator
from synthstream.models.pgm import model_marginals, sample_tokens, sampling_plan
from synthstream.schemas.record import FieldRole, FieldSpec, FieldType, RecordSchema

WIDTH = 60


def chain_model(seed: int) -> tuple[object, list[np.ndarray], list[str]]:
    """An mbi model over 60 binary attributes: potentials on (a_i, a_{i+1}), log-tables drawn from ``seed``."""
    import jax.numpy as jnp
    from mbi import CliqueVector, Domain, Factor, MarkovRandomField, marginal_oracles

    names = [f"a{i:02d}" for i in range(WIDTH)]
    domain = Domain(names, [2] * WIDTH)
    rng = np.random.default_rng(seed)
    logs = [rng.normal(0.0, 1.0, size=(2, 2)) for _ in range(WIDTH - 1)]
    cliques = [(names[i], names[i + 1]) for i in range(WIDTH - 1)]
    arrays = {cl: Factor(domain.project(cl), jnp.asarray(t)) for cl, t in zip(cliques, logs, strict=True)}
    potentials = CliqueVector(domain=domain, cliques=cliques, arrays=arrays)
    marginals = marginal_oracles.message_passing_stable(potentials, total=1000.0)
    return MarkovRandomField(potentials=potentials, marginals=marginals, total=1000.0), logs, names


def exact_end_to_end(logs: list[np.ndarray], first: int, last: int) -> np.ndarray:
    """P(a_first, a_last) of the chain by transfer matrices (exact), scaled to 1,000."""
    mats = [np.exp(t) for t in logs]
    left = np.ones(2)
    for m in mats[:first]:
        left = left @ m
    middle = np.eye(2)
    for m in mats[first:last]:
        middle = middle @ m
    right = np.ones(2)
    for m in reversed(mats[last:]):
        right = m @ right
    joint = left[:, None] * middle * right[None, :]
    return joint.ravel() * (1000.0 / joint.sum())


def test_model_marginals_are_exact_over_sixty_attributes() -> None:
    model, logs, names = chain_model(seed=4)
    asked = [(names[0], names[WIDTH - 1]), (names[10], names[45]), (names[3], names[5])]
    got = model_marginals(model, asked)
    for (a, b), values in got.items():
        expected = exact_end_to_end(logs, names.index(a), names.index(b))
        assert np.allclose(values, expected, rtol=1e-6), (a, b)
    # A clique the model holds comes from mbi's own projection; it agrees with the chain too.
    held = model_marginals(model, [(names[20], names[21])])[(names[20], names[21])]
    assert np.allclose(held, exact_end_to_end(logs, 20, 21), rtol=1e-4)


def test_sampling_a_sixty_attribute_model_follows_its_marginals() -> None:
    model, logs, names = chain_model(seed=7)
    tokens = sample_tokens(sampling_plan(model), 20_000, np.random.default_rng(0), names)
    assert tokens.shape == (20_000, WIDTH)
    first, last = tokens[:, 0], tokens[:, WIDTH - 1]
    observed = np.bincount(first * 2 + last, minlength=4) / 20_000
    expected = exact_end_to_end(logs, 0, WIDTH - 1) / 1000.0
    assert np.abs(observed - expected).max() < 0.02


def test_an_mst_fit_on_sixty_fields_runs_and_keeps_their_main_dependence(tmp_path: Path) -> None:
    """The whole DP pipeline (domains, measurements, selection, estimation, sampling) on 60 fields."""
    rng = np.random.default_rng(0)
    n = 400
    base = rng.integers(0, 2, n)
    frame = pd.DataFrame({f"f{i:02d}": np.where(rng.random(n) < 0.9, base, 1 - base).astype(str) for i in range(WIDTH)})
    schema = RecordSchema(
        name="Wide",
        fields=tuple(
            FieldSpec(name=c, type=FieldType.STRING, role=FieldRole.CATEGORICAL, nullable=False) for c in frame
        ),
    )
    context = DPContext(
        ledger_path=tmp_path / "privacy.duckdb", stream="wide", epsilon=5.0, delta=1e-9, epsilon_per_fit=5.0, key="k"
    )
    labels = {c: ["0", "1"] for c in frame}
    model = MSTGenerator(seed=1, dp=context, labels=labels, iters=50).fit(frame, schema)
    assert len([c for c in model.cliques_ if len(c) == 2]) == WIDTH - 1  # a spanning tree over 60 fields
    synthetic = pd.DataFrame(model.sample_columns(2_000, seed=2))
    assert list(synthetic.columns) == list(frame.columns)
    assert set(np.unique(synthetic.to_numpy())) <= {"0", "1"}
    # Neighbours in the tree agree far more often than independent fields would (0.5).
    pairs = [c for c in model.cliques_ if len(c) == 2]
    agree = [float((synthetic[c[0]] == synthetic[c[1]]).mean()) for c in pairs]
    assert np.median(agree) > 0.65
