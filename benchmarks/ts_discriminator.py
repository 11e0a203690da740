"""An independent real-vs-synthetic discriminator for sequences, and calendar/trend/null/extreme checks.

Issue 16 asks for a judge that is not the project's own recurrent discriminator: gradient-boosted
trees (scikit-learn's ``HistGradientBoostingClassifier``) on PER-SEQUENCE summary features, scored
by repeated stratified k-fold cross-validated ROC AUC (0.5: indistinguishable, 1.0: every sequence
told apart). Features of one sequence (:func:`sequence_features`):

* per numeric field: mean, std, min, max, 10/50/90 % quantiles, first, last, null rate,
  lag-1 and lag-k autocorrelation (k = ``lag``, default 7), mean absolute step;
* per pair of numeric fields (at most ``max_pairs``): the within-sequence correlation;
* length, start time (absolute, in years since 1970), duration, gap statistics (mean, std,
  min, max, in hours) and the share of gaps equal to the sequence's most common gap;
* per categorical field: the share of each of the real data's ``top`` categories, the share of
  other values, nulls and the number of distinct values.

Both classes are balanced by a seeded subsample of the larger one, so AUC is comparable across
datasets. Missing features (a 1-row sequence has no autocorrelation) stay NaN: the trees route
them natively.

The checks beside it, each reported for the real data as the reference:

* :func:`calendar_consistency`: share of rows whose calendar column equals the timestamp's
  attribute (``year == ts.year``, ``hour == ts.hour`` in the data's time zone);
* :func:`grid_share`: share of timestamps on the grid (yearly: 1 January 00:00; weekly: the real
  weekday at 00:00; daily: 00:00; hourly: whole hours), and inside the real time span;
* :func:`trend_correlation`: Pearson correlation of a sequence's level (mean of a field) with its
  start time;
* :func:`null_rates`: null rate per field, real vs synthetic, in percentage points;
* :func:`extreme_repetition`: how often each of the real data's most extreme values appears,
  real vs synthetic (a real outlier repeated is a leak and a fidelity error);
* :func:`step_relations`: share of within-sequence steps where a quasi-static field is unchanged
  and where a field advances with the year (``age``).
"""

from __future__ import annotations

import itertools
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import RepeatedStratifiedKFold
from threadpoolctl import threadpool_limits

from synthstream.evaluation.timeseries import SeriesSpec

__all__ = [
    "GRIDS",
    "calendar_consistency",
    "discriminator_auc",
    "extreme_repetition",
    "grid_share",
    "null_rates",
    "sequence_features",
    "step_relations",
    "trend_correlation",
]

#: Grids :func:`grid_share` knows.
GRIDS = ("yearly", "monthly", "weekly", "daily", "hourly")
_YEAR_S = 365.25 * 86_400.0


def _utc(values: pd.Series) -> pd.Series:
    """Timestamps as tz-aware UTC (naive values are taken as UTC)."""
    ts = pd.to_datetime(values, utc=False)
    if getattr(ts.dt, "tz", None) is None:
        return ts.dt.tz_localize("UTC")
    return ts.dt.tz_convert("UTC")


def _epoch_s(values: pd.Series) -> NDArray[np.float64]:
    ts = _utc(values)
    seconds: NDArray[np.float64] = (ts - pd.Timestamp(0, tz="UTC")).dt.total_seconds().to_numpy(dtype=np.float64)
    return seconds


def _corr(a: NDArray[np.float64], b: NDArray[np.float64]) -> float:
    ok = np.isfinite(a) & np.isfinite(b)
    if ok.sum() < 3:
        return float("nan")
    a, b = a[ok], b[ok]
    if a.std() == 0 or b.std() == 0:
        return float("nan")
    return float(np.corrcoef(a, b)[0, 1])


def _acf(x: NDArray[np.float64], lag: int) -> float:
    if x.size <= lag + 1:
        return float("nan")
    return _corr(x[:-lag], x[lag:])


def _numeric_features(name: str, x: NDArray[np.float64], lag: int) -> dict[str, float]:
    finite = x[np.isfinite(x)]
    out: dict[str, float] = {f"{name}.null": float(1.0 - finite.size / max(x.size, 1))}
    if finite.size == 0:
        return out
    q10, q50, q90 = np.quantile(finite, [0.1, 0.5, 0.9])
    out.update(
        {
            f"{name}.mean": float(finite.mean()),
            f"{name}.std": float(finite.std()),
            f"{name}.min": float(finite.min()),
            f"{name}.max": float(finite.max()),
            f"{name}.q10": float(q10),
            f"{name}.q50": float(q50),
            f"{name}.q90": float(q90),
            f"{name}.first": float(finite[0]),
            f"{name}.last": float(finite[-1]),
            f"{name}.acf1": _acf(x, 1),
            f"{name}.acf{lag}": _acf(x, lag),
            f"{name}.step": float(np.nanmean(np.abs(np.diff(x)))) if x.size > 1 and finite.size > 1 else float("nan"),
        }
    )
    return out


def sequence_features(
    frame: pd.DataFrame,
    spec: SeriesSpec,
    *,
    lag: int = 7,
    top: int = 8,
    max_pairs: int = 45,
    categories: Mapping[str, Sequence[Any]] | None = None,
) -> pd.DataFrame:
    """One row of summary features per sequence of a long frame (see the module docstring).

    ``categories`` fixes the category columns (pass the real data's, from :func:`top_categories`,
    so real and synthetic frames get the same columns); by default the frame's own ``top``.
    """
    cats = dict(categories) if categories is not None else top_categories(frame, spec, top=top)
    pairs = list(itertools.combinations(spec.numeric, 2))[:max_pairs]
    ordered = frame.assign(_t=_epoch_s(frame[spec.time])).sort_values([spec.key, "_t"], kind="stable")
    rows = []
    for _, seq in ordered.groupby(spec.key, sort=True):
        t = seq["_t"].to_numpy(dtype=np.float64)
        gaps = np.diff(t) / 3600.0
        row: dict[str, float] = {
            "length": float(len(seq)),
            "start_years": float(t[0] / _YEAR_S),
            "duration_h": float((t[-1] - t[0]) / 3600.0),
        }
        if gaps.size:
            values, counts = np.unique(gaps, return_counts=True)
            row.update(
                {
                    "gap_mean_h": float(gaps.mean()),
                    "gap_std_h": float(gaps.std()),
                    "gap_min_h": float(gaps.min()),
                    "gap_max_h": float(gaps.max()),
                    "gap_mode_share": float(counts.max() / gaps.size),
                    "gap_mode_h": float(values[counts.argmax()]),
                }
            )
        numeric = {c: pd.to_numeric(seq[c], errors="coerce").to_numpy(dtype=np.float64) for c in spec.numeric}
        for name, x in numeric.items():
            row.update(_numeric_features(name, x, lag))
        for a, b in pairs:
            row[f"corr.{a}.{b}"] = _corr(numeric[a], numeric[b])
        for name in spec.categorical:
            col = seq[name]
            known = cats.get(name, [])
            shares = col.astype("object").value_counts(normalize=True, dropna=False)
            for value in known:
                row[f"{name}={value}"] = float(shares.get(value, 0.0))
            row[f"{name}.other"] = float(1.0 - sum(float(shares.get(v, 0.0)) for v in known) - col.isna().mean())
            row[f"{name}.null"] = float(col.isna().mean())
            row[f"{name}.distinct"] = float(col.nunique(dropna=True))
        rows.append(row)
    return pd.DataFrame(rows)


def top_categories(frame: pd.DataFrame, spec: SeriesSpec, *, top: int = 8) -> dict[str, list[Any]]:
    """The ``top`` most frequent values of each categorical field (the feature columns)."""
    return {c: frame[c].dropna().astype("object").value_counts().index[:top].tolist() for c in spec.categorical}


def discriminator_auc(
    real: pd.DataFrame,
    synthetic: pd.DataFrame,
    spec: SeriesSpec,
    *,
    folds: int = 5,
    repeats: int = 3,
    seed: int = 0,
    lag: int = 7,
    exclude: Sequence[str] = (),
    threads: int = 1,
) -> dict[str, Any]:
    """Repeated stratified k-fold ROC AUC of gradient-boosted trees separating real from synthetic sequences.

    Returns ``{"auc_mean", "auc_std", "auc_folds", "n_per_class", "features", "top_features"}``;
    ``exclude`` drops feature columns by prefix (e.g. ``("start_years", "gap")`` for values only).
    ``top_features`` are the columns whose single-feature AUC is farthest from 0.5 (what gives
    the synthetic data away), as a diagnosis for the model's authors.
    """
    cats = top_categories(real, spec)
    fr = sequence_features(real, spec, lag=lag, categories=cats)
    fs = sequence_features(synthetic, spec, lag=lag, categories=cats)
    columns = sorted(set(fr.columns) | set(fs.columns))
    columns = [c for c in columns if not any(c.startswith(p) for p in exclude)]
    fr, fs = fr.reindex(columns=columns), fs.reindex(columns=columns)
    rng = np.random.default_rng(seed)
    n = min(len(fr), len(fs))
    if n < folds:
        return {"auc_mean": None, "auc_std": None, "n_per_class": n, "note": f"fewer than {folds} sequences"}
    fr = fr.iloc[np.sort(rng.choice(len(fr), n, replace=False))]
    fs = fs.iloc[np.sort(rng.choice(len(fs), n, replace=False))]
    x = pd.concat([fr, fs], ignore_index=True).to_numpy(dtype=np.float64)
    x[~np.isfinite(x)] = np.nan
    y = np.r_[np.ones(n), np.zeros(n)]
    aucs = []
    splitter = RepeatedStratifiedKFold(n_splits=folds, n_repeats=repeats, random_state=seed)
    # One OpenMP thread: on a small shared machine the trees' default thread pool is ~20x slower.
    with warnings.catch_warnings(), threadpool_limits(limits=threads):
        warnings.simplefilter("ignore")
        for train, test in splitter.split(x, y):
            # A feature with no finite value in the training fold (a field that is always null) is
            # left out: scikit-learn's binning fails on it.
            keep = np.isfinite(x[train]).any(axis=0)
            clf = HistGradientBoostingClassifier(max_iter=200, learning_rate=0.05, random_state=seed)
            clf.fit(x[train][:, keep], y[train])
            aucs.append(float(roc_auc_score(y[test], clf.predict_proba(x[test][:, keep])[:, 1])))
    single = {}
    for k, name in enumerate(columns):
        col = x[:, k]
        ok = np.isfinite(col)
        if ok.sum() > 4 and len(np.unique(y[ok])) == 2:
            single[name] = abs(float(roc_auc_score(y[ok], col[ok])) - 0.5)
    worst = sorted(single, key=lambda c: -single[c])[:5]
    return {
        "auc_mean": float(np.mean(aucs)),
        "auc_std": float(np.std(aucs)),
        "auc_folds": [round(a, 4) for a in aucs],
        "n_per_class": int(n),
        "features": len(columns),
        "top_features": {c: round(0.5 + single[c], 3) for c in worst},
    }


def calendar_consistency(
    frame: pd.DataFrame, time: str, derived: Mapping[str, str], *, tz: str = "UTC"
) -> dict[str, float | None]:
    """Share of rows whose calendar column equals the timestamp's attribute in ``tz`` (None if absent)."""
    if not derived:
        return {}
    local = _utc(frame[time]).dt.tz_convert(tz)
    out: dict[str, float | None] = {}
    for column, attr in derived.items():
        if column not in frame.columns:
            out[f"{column}==ts.{attr}"] = None
            continue
        got = pd.to_numeric(frame[column], errors="coerce")
        expected = getattr(local.dt, attr).astype("float64")
        out[f"{column}==ts.{attr}"] = float((got.to_numpy() == expected.to_numpy()).mean()) if len(frame) else None
    return out


def grid_share(timestamps: pd.Series, grid: str, *, reference: pd.Series | None = None) -> dict[str, float | None]:
    """Share of timestamps on ``grid`` and (with ``reference``, the real ones) inside its span.

    ``weekly`` takes its weekday from the reference's most common weekday (Monday without one).
    """
    if grid not in GRIDS:
        raise ValueError(f"unknown grid {grid!r}; choose from {list(GRIDS)}")
    ts = _utc(timestamps)
    if ts.empty:
        return {"on_grid": None, "in_span": None}
    midnight = (ts.dt.hour == 0) & (ts.dt.minute == 0) & (ts.dt.second == 0) & (ts.dt.microsecond == 0)
    if grid == "yearly":
        on = midnight & (ts.dt.month == 1) & (ts.dt.day == 1)
    elif grid == "monthly":
        on = midnight & (ts.dt.day == 1)
    elif grid == "weekly":
        weekday = int(_utc(reference).dt.weekday.mode().iloc[0]) if reference is not None else 0
        on = midnight & (ts.dt.weekday == weekday)
    elif grid == "daily":
        on = midnight
    else:
        on = (ts.dt.minute == 0) & (ts.dt.second == 0) & (ts.dt.microsecond == 0)
    out: dict[str, float | None] = {"on_grid": float(on.mean()), "in_span": None}
    if reference is not None:
        ref = _utc(reference)
        out["in_span"] = float(((ts >= ref.min()) & (ts <= ref.max())).mean())
        out["start_before_span"] = float((ts < ref.min()).mean())
    return out


def trend_correlation(frame: pd.DataFrame, spec: SeriesSpec, field: str) -> dict[str, float | None]:
    """Correlation of each sequence's level (mean of ``field``) with its start time, and the level's slope.

    ``slope_per_year`` is the least-squares change of the level per year of start time; the
    ``within_slope_sign`` is the share of sequences whose within-sequence slope is positive.
    """
    ordered = frame.assign(_t=_epoch_s(frame[spec.time])).sort_values([spec.key, "_t"], kind="stable")
    starts, levels, positive = [], [], []
    for _, seq in ordered.groupby(spec.key, sort=True):
        x = pd.to_numeric(seq[field], errors="coerce").to_numpy(dtype=np.float64)
        t = seq["_t"].to_numpy(dtype=np.float64) / _YEAR_S
        ok = np.isfinite(x)
        if not ok.any():
            continue
        starts.append(t[0])
        levels.append(float(x[ok].mean()))
        if ok.sum() >= 3 and np.ptp(t[ok]) > 0:
            positive.append(float(np.polyfit(t[ok], x[ok], 1)[0] > 0))
    s, lv = np.asarray(starts), np.asarray(levels)
    slope = float(np.polyfit(s, lv, 1)[0]) if s.size >= 3 and np.ptp(s) > 0 else float("nan")
    return {
        "corr": _corr(s, lv),
        "slope_per_year": slope,
        "within_slope_positive": float(np.mean(positive)) if positive else None,
        "sequences": int(s.size),
    }


def null_rates(real: pd.DataFrame, synthetic: pd.DataFrame, fields: Sequence[str]) -> dict[str, Any]:
    """Null rate of each field (percent) in both frames, the gaps in percentage points and the worst gap."""
    per: dict[str, dict[str, float | None]] = {}
    for name in fields:
        r = float(real[name].isna().mean() * 100)
        s = float(synthetic[name].isna().mean() * 100) if name in synthetic.columns else None
        per[name] = {"real_pct": r, "synthetic_pct": s, "gap_pp": None if s is None else abs(s - r)}
    gaps = [v["gap_pp"] for v in per.values() if v["gap_pp"] is not None]
    return {"fields": per, "max_gap_pp": max(gaps) if gaps else None}


def extreme_repetition(
    real: pd.DataFrame,
    synthetic: pd.DataFrame,
    fields: Sequence[str],
    *,
    k: int = 3,
    max_real_share: float = 0.01,
) -> dict[str, Any]:
    """How often the real data's ``k`` largest and ``k`` smallest distinct values of each field recur.

    Only rare extremes are judged (held by at most ``max_real_share`` of the real rows): a common
    floor such as 0 doctor visits is a mode, not an outlier.

    Issue 16's rule: no real extreme value may appear more often in the synthetic data than in the
    real data. ``excess`` is, per value, the synthetic count minus the real count (0 when fewer),
    unscaled: compare a synthetic sample no longer than the real data (a common minimum such as
    0 mm of rain is then not flagged, a real outlier repeated 12 times is). ``repeated`` lists the
    values over their real count (field, max/min, counts; never the value itself).
    """
    per: dict[str, Any] = {}
    repeated: list[dict[str, Any]] = []
    for name in fields:
        r = pd.to_numeric(real[name], errors="coerce").dropna()
        if name not in synthetic.columns or r.empty:
            continue
        s = pd.to_numeric(synthetic[name], errors="coerce").dropna()
        distinct = np.unique(r.to_numpy())
        extremes = np.unique(np.r_[distinct[:k], distinct[-k:]])
        items: list[dict[str, Any]] = []
        for value in extremes.tolist():
            rc, sc = int((r == value).sum()), int((s == value).sum())
            rank = "max" if value >= distinct[-min(k, distinct.size)] else "min"
            items.append({"value_rank": rank, "real": rc, "synthetic": sc})
            if sc > rc and rc <= max_real_share * len(r):
                repeated.append({"field": name, "value_rank": rank, "real": rc, "synthetic": sc})
        per[name] = {
            "extremes": items,
            "excess": sum(i["synthetic"] - i["real"] for i in repeated if i["field"] == name),
        }
    worst = max((i["synthetic"] - i["real"] for i in repeated), default=0)
    return {"fields": per, "max_excess": float(worst), "repeated": repeated, "synthetic_rows": len(synthetic)}


def step_relations(
    frame: pd.DataFrame,
    spec: SeriesSpec,
    *,
    constant: Sequence[str] = (),
    advances: Mapping[str, float] | None = None,
) -> dict[str, float | None]:
    """Within-sequence step shares: ``constant`` fields unchanged, ``advances`` fields grow with time.

    ``advances`` maps a field to its change per year (``{"age": 1.0}``): a step counts when the
    field's change equals the rate times the years between the events (rounded to whole units).
    """
    ordered = frame.assign(_t=_epoch_s(frame[spec.time])).sort_values([spec.key, "_t"], kind="stable")
    same_seq = ordered[spec.key].to_numpy()[1:] == ordered[spec.key].to_numpy()[:-1]
    out: dict[str, float | None] = {}
    if not same_seq.any():
        return {f"{c}.unchanged": None for c in constant}
    for name in constant:
        x = pd.to_numeric(ordered[name], errors="coerce").to_numpy(dtype=np.float64)
        out[f"{name}.unchanged"] = float((x[1:] == x[:-1])[same_seq].mean())
    years = np.diff(ordered["_t"].to_numpy(dtype=np.float64)) / _YEAR_S
    for name, rate in (advances or {}).items():
        x = pd.to_numeric(ordered[name], errors="coerce").to_numpy(dtype=np.float64)
        ok = np.round(np.diff(x)) == np.round(rate * years)
        out[f"{name}.advances"] = float(ok[same_seq].mean())
    return out
