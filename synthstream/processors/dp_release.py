"""Turns one closed window's exact aggregates into a differentially private release.

The window's budget (from the w-event allocation) is split over its queries by weight: the
total count, every kept marginal and every clipped sum. Each query gets noise calibrated to
its sensitivity under the privacy unit (add/remove one unit that contributes at most ``k``
records to the window):

=================  ===================  ===================
query              L1 sensitivity        L2 sensitivity
=================  ===================  ===================
count              k                     k
marginal           k                     k
clipped sum        k * max(|lo|, |hi|)   k * max(|lo|, |hi|)
=================  ===================  ===================

Means are post-processing (noisy sum / noisy non-null count) and cost nothing extra. So are the
*consistent* marginals published beside the raw noisy ones: each marginal projected (least
squares) onto non-negative cells that sum to one estimate of the window's size, the
inverse-variance weighted mean of the noisy count and the marginal's own noisy sum. Raw answers
stay unbiased (what a model fitted to the measurements, like ``aim_stream``, wants); consistent
ones are closer to the truth cell by cell (Adult at ε = 1: median L1 error 0.108 → 0.073 of the
window's size, ``benchmarks/dp_stats.py``) and never show a negative count. The release lists
what each query spent, as OpenDP accounts it, for the ledger.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np

from synthstream.privacy.accounting import Spend
from synthstream.privacy.ledger import Release
from synthstream.privacy.mechanisms import make_mechanism
from synthstream.processors.windows import NULL, ClosedWindow, Discretizer

__all__ = ["QueryAnswer", "WindowRelease", "consistent_counts", "release_window"]


@dataclass(frozen=True)
class QueryAnswer:
    """One released statistic: a query over attributes, its noisy values and the noise's std."""

    query: tuple[str, ...]
    kind: str
    values: tuple[float, ...]
    noise_std: float
    release: Release
    #: Marginals only: ``values`` projected onto non-negative cells summing to the window's estimated size.
    consistent: tuple[float, ...] | None = None


@dataclass(frozen=True)
class WindowRelease:
    """The DP release of one window (noisy answers; derived means are post-processing)."""

    index: int
    start_ms: int
    end_ms: int
    answers: tuple[QueryAnswer, ...]
    means: Mapping[str, float | None]
    spend: Spend


def _query_name(kind: str, query: tuple[str, ...]) -> str:
    return kind if not query else f"{kind}:{','.join(query)}"


def release_window(
    window: ClosedWindow,
    discretizer: Discretizer,
    *,
    budget: Spend,
    mechanism: str,
    max_per_entity: int = 1,
    sum_bounds: Mapping[str, tuple[float, float]] | None = None,
    weights: Mapping[str, float] | None = None,
) -> WindowRelease:
    """Noise every query of ``window`` within ``budget`` (ρ for gaussian, ε for laplace).

    ``weights`` maps query names (``count``, ``marginal:a``, ``marginal:a,b``, ``sum:x``) to
    their share of the budget (default 1 each).
    """
    if mechanism not in ("gaussian", "laplace"):
        raise ValueError(f"unknown mechanism {mechanism!r}; choose gaussian or laplace")
    total = budget.rho if mechanism == "gaussian" else budget.epsilon
    if not total > 0:
        raise ValueError("the window's budget must be positive")
    k = float(max_per_entity)
    sum_bounds = dict(sum_bounds or {})
    plan: list[tuple[str, tuple[str, ...], float]] = [("count", (), k)]
    plan += [("marginal", q, k) for q in window.marginals]
    plan += [("sum", (name,), k * max(abs(lo), abs(hi))) for name, (lo, hi) in sum_bounds.items()]
    weights = dict(weights or {})
    shares = np.array([float(weights.get(_query_name(kind, q), 1.0)) for kind, q, _ in plan])
    if (shares <= 0).any():
        raise ValueError("query weights must be positive")
    shares = shares / shares.sum()
    answers: list[QueryAnswer] = []
    spent = Spend()
    for (kind, query, sensitivity), share in zip(plan, shares, strict=True):
        part = Spend(rho=total * share) if mechanism == "gaussian" else Spend(epsilon=total * share)
        noise = make_mechanism(mechanism, part, sensitivity, integer=kind != "sum")
        if kind == "count":
            values = noise.release_counts(np.array([window.count], dtype=np.int64)).astype(float)
        elif kind == "marginal":
            values = noise.release_counts(window.marginals[query]).astype(float)
        else:
            values = noise.release_sums(np.array([window.sums[query[0]]], dtype=np.float64))
        release = Release(_query_name(kind, query), mechanism, noise.spend, sensitivity, noise.noise_std)
        answers.append(QueryAnswer(query, kind, tuple(float(v) for v in values), noise.noise_std, release))
        spent = spent + noise.spend
    return WindowRelease(
        index=window.index,
        start_ms=window.start_ms,
        end_ms=window.end_ms,
        answers=_with_consistent(answers),
        means=_means(answers, discretizer),
        spend=spent,
    )


def _means(answers: Sequence[QueryAnswer], discretizer: Discretizer) -> dict[str, float | None]:
    """Noisy sum / noisy non-null count per summed field (post-processing); None when the count is < 1."""
    count = next(a.values[0] for a in answers if a.kind == "count")
    marginals = {a.query[0]: a for a in answers if a.kind == "marginal" and len(a.query) == 1}
    out: dict[str, float | None] = {}
    for a in answers:
        if a.kind != "sum":
            continue
        name = a.query[0]
        n = count
        marginal = marginals.get(name)
        attr = discretizer.attributes.get(name)
        if marginal is not None and attr is not None and attr.nullable:
            n = count - marginal.values[attr.cells.index(NULL)]
        out[name] = a.values[0] / n if n >= 1 else None
    return out


def consistent_counts(values: Sequence[float], total: float) -> tuple[float, ...]:
    """The closest (least squares) non-negative cells that sum to ``max(total, 0)``.

    Euclidean projection onto the scaled simplex (Duchi et al., 2008): sort, find the shift
    that makes the positive part sum to ``total``, clip. Post-processing of released values.
    """
    v = np.nan_to_num(np.asarray(values, dtype=np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    if v.size == 0:
        return ()
    if not total > 0 or not np.isfinite(total):
        return tuple(0.0 for _ in range(v.size))
    ordered = np.sort(v)[::-1]
    excess = np.cumsum(ordered) - total
    ranks = np.arange(1, v.size + 1)
    kept = ordered - excess / ranks > 0
    # The largest cell is always kept in exact arithmetic; a total below its rounding unit (a window
    # estimated at 1e-11 beside a cell of 1e6) made every test false and crashed the stats stage.
    kept[0] = True
    shift = excess[kept][-1] / ranks[kept][-1]
    return tuple(float(x) for x in np.maximum(v - shift, 0.0))


def _window_size(count: QueryAnswer, marginal: QueryAnswer) -> float:
    """Inverse-variance weighted estimate of the window's size from the noisy count and a marginal's sum."""
    cells = len(marginal.values)
    var_count, var_sum = count.noise_std**2, cells * marginal.noise_std**2
    if var_count <= 0 or var_sum <= 0:  # an exact answer (no noise) wins outright
        return count.values[0] if var_count <= var_sum else float(sum(marginal.values))
    weight = (1 / var_count) / (1 / var_count + 1 / var_sum)
    return weight * count.values[0] + (1 - weight) * float(sum(marginal.values))


def _with_consistent(answers: Sequence[QueryAnswer]) -> tuple[QueryAnswer, ...]:
    count = next(a for a in answers if a.kind == "count")
    return tuple(
        replace(a, consistent=consistent_counts(a.values, _window_size(count, a))) if a.kind == "marginal" else a
        for a in answers
    )
