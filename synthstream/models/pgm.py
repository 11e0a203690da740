"""Private-PGM glue: noisy marginal measurements -> a graphical model (``mbi`` 1.1) -> seeded samples.

:class:`Measurement` is one noisy marginal (counts over a clique's cells, row-major in the
clique's attribute order, with the noise standard deviation). :func:`estimate` fits the
Markov random field that best explains all measurements (mbi's mirror descent on the
L2 loss weighted by 1/σ, warm-started from earlier potentials when given): the estimation
is post-processing of the measurements. :func:`sample_tokens` draws records from the
fitted model with *our* seeded generator (mbi's ``synthetic_data`` uses numpy's global
RNG): a forward pass along the junction tree's elimination order, each column drawn from
its conditional given the already drawn columns of its cliques, vectorised with one
binary search over offset cumulative tables.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias

import numpy as np
from numpy.typing import NDArray

# AIM re-estimates a new model every round and XLA compiles each estimation afresh: with LLVM's
# expensive passes off, a 300-step mirror descent on Adult takes 1.8 s instead of 5.8 s (measured),
# mostly compile time saved. Set before jax initialises its backend (this process's first jax use).
# One intra-op thread: on a small machine shared with ingest, a thread pool fighting for cores is slower.
_FAST_COMPILE = (
    "--xla_backend_optimization_level=0",
    "--xla_llvm_disable_expensive_passes=true",
    "--xla_cpu_multi_thread_eigen=false",
    "intra_op_parallelism_threads=1",
)
_flags = os.environ.get("XLA_FLAGS", "")
os.environ["XLA_FLAGS"] = " ".join([_flags, *(f for f in _FAST_COMPILE if f.split("=")[0] not in _flags)]).strip()
os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")

__all__ = ["Measurement", "estimate", "marginal_counts", "model_marginal", "model_marginals", "sample_tokens"]

Clique: TypeAlias = tuple[str, ...]
FloatArray: TypeAlias = NDArray[np.float64]
IntArray: TypeAlias = NDArray[np.int64]


@dataclass(frozen=True)
class Measurement:
    """A noisy marginal: ``values`` over the cells of ``clique`` (row-major), noise std ``stddev``."""

    clique: Clique
    values: FloatArray
    stddev: float
    #: Per-cell multipliers of the model's marginal (``None`` = identity), e.g. a merged cell scaled to σ.
    weights: FloatArray | None = None

    def canonical(self, order: Sequence[str], sizes: Mapping[str, int]) -> Measurement:
        """The same measurement with the clique in ``order`` (the model's attribute order)."""
        rank = {a: i for i, a in enumerate(order)}
        target = tuple(sorted(self.clique, key=rank.__getitem__))
        if target == self.clique:
            return self
        if self.weights is not None:
            raise ValueError("a weighted measurement must be given in the model's attribute order")
        shape = [sizes[a] for a in self.clique]
        cube = np.asarray(self.values, dtype=np.float64).reshape(shape)
        axes = [self.clique.index(a) for a in target]
        return Measurement(target, np.transpose(cube, axes).ravel(), self.stddev)


def marginal_counts(tokens: IntArray, columns: Sequence[str], sizes: Mapping[str, int], clique: Clique) -> FloatArray:
    """Exact counts of ``clique``'s cells in ``tokens`` (rows x columns), row-major."""
    index = {c: i for i, c in enumerate(columns)}
    flat = np.zeros(tokens.shape[0], dtype=np.int64)
    size = 1
    for attr in clique:
        flat = flat * sizes[attr] + tokens[:, index[attr]]
        size *= sizes[attr]
    return np.bincount(flat, minlength=size).astype(np.float64)


def _domain(order: Sequence[str], sizes: Mapping[str, int]) -> Any:
    from mbi import Domain

    return Domain(list(order), [int(sizes[a]) for a in order])


def estimate(
    order: Sequence[str],
    sizes: Mapping[str, int],
    measurements: Sequence[Measurement],
    *,
    iters: int,
    potentials: Any = None,
    known_total: float | None = None,
) -> Any:
    """The mbi ``MarkovRandomField`` fitted to ``measurements`` (mirror descent, ``iters`` steps)."""
    from mbi import estimation, marginal_loss

    domain = _domain(order, sizes)
    canonical = [m.canonical(order, sizes) for m in measurements]
    linear = [_linear(m) for m in canonical]
    if known_total is None:
        known_total = _total([m for m in canonical if m.weights is None])
    cliques = {m.clique for m in linear}
    if potentials is not None and not all(potentials.supports(c) for c in cliques):
        potentials = potentials.expand(sorted({*potentials.cliques, *cliques}, key=len))
    # The Lipschitz constant of the loss's gradient in closed form (mbi's power iteration costs a jit
    # compile per call): mirror descent starts at step 2 / (L total), the step its analysis prescribes.
    plain = marginal_loss.from_linear_measurements(linear)
    loss = marginal_loss.MarginalLossFn(
        plain.cliques, plain.loss_fn, lipschitz=_lipschitz(canonical, plain.cliques, sizes)
    )
    return estimation.mirror_descent(
        domain, loss, known_total=float(max(known_total, 1.0)), potentials=potentials, iters=iters
    )


def _lipschitz(measurements: Sequence[Measurement], cliques: Sequence[Clique], sizes: Mapping[str, int]) -> float:
    """Largest eigenvalue of the L2 loss's Hessian over the model's maximal cliques.

    The loss is ``sum_m ||Q_m P_m mu_C - y_m||^2 / (2 sigma_m^2)`` with ``P_m`` summing the cells of a
    maximal clique C onto measurement m's cells (|C|/|m| cells each, weights <= 1). The Hessian is
    block-diagonal by clique and every block's top eigenvector is the all-ones vector, with eigenvalue
    ``sum_m (|C| / |m|) / sigma_m^2`` over the measurements inside C; the largest block is L.
    """

    def cells(clique: Clique) -> float:
        return float(np.prod([sizes[a] for a in clique])) if clique else 1.0

    best = 0.0
    for clique in cliques:
        members = set(clique)
        value = sum(cells(clique) / cells(m.clique) / m.stddev**2 for m in measurements if set(m.clique) <= members)
        best = max(best, value)
    return best or 1.0


def _linear(m: Measurement) -> Any:
    import jax.numpy as jnp
    from mbi import Factor, LinearMeasurement

    values = jnp.asarray(m.values, dtype=jnp.float32)
    if m.weights is None:
        return LinearMeasurement(values, m.clique, stddev=float(m.stddev))
    weights = jnp.asarray(m.weights, dtype=jnp.float32)

    def query(factor: Factor) -> Any:
        return factor.datavector() * weights

    return LinearMeasurement(values, m.clique, stddev=float(m.stddev), query=query)


def _total(measurements: Sequence[Measurement]) -> float:
    """Minimum-variance estimate of the record count from the measurements (each sums to it)."""
    estimates, weights = [], []
    for m in measurements:
        values = np.asarray(m.values, dtype=np.float64)
        estimates.append(values.sum())
        weights.append(1.0 / (float(m.stddev) ** 2 * values.size))
    if not estimates:
        return 1.0
    return float(np.dot(estimates, weights) / np.sum(weights))


def model_marginal(model: Any, clique: Clique) -> FloatArray:
    """The model's marginal over ``clique`` (row-major, scaled to the model's total)."""
    return model_marginals(model, [clique])[tuple(clique)]


def model_marginals(model: Any, cliques: Sequence[Clique]) -> dict[Clique, FloatArray]:
    """The model's marginals over many ``cliques`` by variable elimination in numpy.

    Exact variable elimination over the exponentiated potentials (each shifted by its maximum,
    a constant that normalisation removes), restricted to the potentials connected to the
    clique (the others only scale the result). Unlike mbi's jax version it compiles nothing,
    which matters when the model changes every AIM round; unlike one ``np.einsum`` over all
    potentials it has no limit on the number of attributes (``einsum`` has 52 subscripts).
    """
    potentials = model.potentials
    factors: list[_Factor] = []
    for factor in potentials.arrays.values():
        values = np.asarray(factor.values, dtype=np.float64)
        factors.append((tuple(factor.domain.attrs), np.exp(values - values.max())))
    sizes = {a: int(model.domain[a]) for a in model.domain.attrs}
    total = float(model.total)
    out: dict[Clique, FloatArray] = {}
    for clique in cliques:
        clique = tuple(clique)
        if potentials.supports(clique):
            out[clique] = np.asarray(model.project(clique).datavector(), dtype=np.float64)
            continue
        values = _eliminate(factors, clique, sizes).ravel()
        out[clique] = values * (total / values.sum())
    return out


#: A factor of the elimination: its attributes and a table with one axis per attribute, in that order.
_Factor: TypeAlias = tuple[tuple[str, ...], FloatArray]


def _eliminate(factors: Sequence[_Factor], keep: Clique, sizes: Mapping[str, int]) -> FloatArray:
    """Unnormalised marginal over ``keep`` (axes in ``keep``'s order) of the product of ``factors``.

    Only factors connected to ``keep`` through shared attributes are used; variables are summed
    out one at a time, the one whose factors span the fewest cells first (greedy min-size order),
    each intermediate rescaled by its maximum so long products never underflow.
    """
    reach = set(keep)
    relevant: list[_Factor] = []
    pending = list(factors)
    grew = True
    while grew:
        grew = False
        rest = []
        for f in pending:
            if reach.intersection(f[0]):
                relevant.append(f)
                reach.update(f[0])
                grew = True
            else:
                rest.append(f)
        pending = rest
    keep_set = set(keep)
    hidden = {a for attrs, _ in relevant for a in attrs} - keep_set
    while hidden:
        costs = {v: _span(relevant, v, sizes) for v in hidden}
        var = min(sorted(hidden), key=costs.__getitem__)
        touching = [f for f in relevant if var in f[0]]
        relevant = [f for f in relevant if var not in f[0]]
        union = tuple(dict.fromkeys(a for attrs, _ in touching for a in attrs))
        table = _product(touching, union, sizes).sum(axis=union.index(var))
        table = table / max(float(table.max()), 1e-300)
        relevant.append((tuple(a for a in union if a != var), table))
        hidden.discard(var)
    return _product(relevant, tuple(keep), sizes)


def _span(factors: Sequence[_Factor], var: str, sizes: Mapping[str, int]) -> float:
    """Cells of the table that summing out ``var`` builds (the product of the factors holding it)."""
    union = {a for attrs, _ in factors if var in attrs for a in attrs}
    return float(np.prod([sizes[a] for a in union]))


def _product(factors: Sequence[_Factor], attrs: Clique, sizes: Mapping[str, int]) -> FloatArray:
    """The product of ``factors`` as a table over ``attrs`` (broadcast; attributes no factor holds are uniform)."""
    out = np.ones([sizes[a] for a in attrs], dtype=np.float64)
    position = {a: i for i, a in enumerate(attrs)}
    for names, table in factors:
        order = sorted(range(len(names)), key=lambda i: position[names[i]])
        moved = np.transpose(table, order) if order != list(range(len(names))) else table
        shape = [1] * len(attrs)
        for i in order:
            shape[position[names[i]]] = sizes[names[i]]
        out = out * moved.reshape(shape)
    return out


class _Plan:
    """Per-column conditional CDF tables, in sampling order, precomputed once per model."""

    def __init__(self, model: Any) -> None:
        from mbi import junction_tree, marginal_oracles

        domain = model.domain
        cliques = [set(cl) for cl in model.cliques]
        jtree, elimination = junction_tree.make_junction_tree(domain, [tuple(c) for c in cliques])
        potentials = model.potentials.expand(list(jtree.nodes))
        marginals = marginal_oracles.message_passing_stable(potentials)
        self.order: list[str] = list(elimination[::-1])
        self.parents: dict[str, tuple[str, ...]] = {}
        self.tables: dict[str, FloatArray] = {}
        self.sizes = {a: int(domain[a]) for a in domain.attrs}
        used: set[str] = set()
        for col in self.order:
            relevant = used.intersection(set().union(*[c for c in cliques if col in c]))
            parents = tuple(a for a in self.order if a in relevant)
            joint = np.asarray(marginals.project((*parents, col)).datavector(flatten=False), dtype=np.float64)
            joint = np.maximum(joint, 0.0).reshape(-1, self.sizes[col])
            totals = joint.sum(axis=1, keepdims=True)
            uniform = np.full_like(joint, 1.0 / self.sizes[col])
            cond = np.where(totals > 0, joint / np.where(totals > 0, totals, 1.0), uniform)
            cdf = np.cumsum(cond, axis=1)
            cdf[:, -1] = 1.0
            # Row r's CDF is offset by r, so one searchsorted over the flat table serves every parent value.
            self.tables[col] = (cdf + np.arange(cdf.shape[0])[:, None]).ravel()
            self.parents[col] = parents
            used.add(col)

    def sample(self, n: int, rng: np.random.Generator, columns: Sequence[str]) -> IntArray:
        out: dict[str, IntArray] = {}
        for col in self.order:
            parents = self.parents[col]
            row = np.zeros(n, dtype=np.int64)
            for p in parents:
                row = row * self.sizes[p] + out[p]
            u = rng.random(n)
            flat = np.searchsorted(self.tables[col], row + u, side="right")
            out[col] = np.minimum(flat - row * self.sizes[col], self.sizes[col] - 1).astype(np.int64)
        return np.stack([out[c] for c in columns], axis=1) if columns else np.zeros((n, 0), dtype=np.int64)


def sampling_plan(model: Any) -> _Plan:
    """Precompute the conditional tables :func:`sample_tokens` draws from."""
    return _Plan(model)


def sample_tokens(plan: _Plan, n: int, rng: np.random.Generator, columns: Sequence[str]) -> IntArray:
    """``n`` rows of tokens drawn from the model behind ``plan`` (columns in ``columns`` order)."""
    return plan.sample(n, rng, columns)
