"""Fidelity of synthetic sequences to real ones: marginals, dynamics, usefulness, timing.

Both tables are long frames: one row per event, a sequence key column (entity, entity x
day, or window id), an event-time column and the fields. Metrics, with their direction in
:data:`METRICS`:

* ``marginal``: mean per-field similarity, ``1 - KS`` (numeric) or ``1 - TVD``
  (categorical), nulls dropped; ``missing_rate_error``: mean absolute difference of each
  field's null rate;
* ``autocorrelation_error``: mean over numeric fields and lags 1..k of the absolute
  difference of the pooled within-sequence autocorrelation;
* ``cross_correlation_error``: mean absolute difference of the correlations between
  numeric fields, at lag 0 and lag 1 (within sequences);
* ``discriminative``: held-out accuracy of a gradient-boosted classifier told to separate
  real from synthetic windows by per-window summary features (level, spread, extremes,
  first/last, lag-1 autocorrelation, roughness, null rates, pairwise correlations,
  category shares, start hour/weekday/season, inter-arrival statistics). Balanced
  classes, so 0.5 is ideal and 1.0 means every window is told apart;
* ``predictive_mae``: train on synthetic, test on real (TSTR): a gradient-boosted
  next-step forecaster per numeric field from the previous ``lags`` steps and the time
  features, mean absolute error in units of the real field's standard deviation;
* ``daily_profile_error`` / ``weekly_profile_error``: mean absolute difference of the mean
  of each (standardised) numeric field per hour of day / hour of week;
* ``inter_arrival_ks``: KS distance between within-sequence inter-arrival times.

Pure numpy/pandas/scipy/scikit-learn (no SDMetrics: its dependency chain pulls
BUSL-licensed code).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeAlias

import numpy as np
import pandas as pd
from numpy.typing import NDArray
from scipy.stats import ks_2samp

from synthstream.schemas.record import FieldRole, FieldType, RecordSchema

__all__ = [
    "METRICS",
    "SeriesSpec",
    "autocorrelation_error",
    "cross_correlation_error",
    "discriminative_score",
    "inter_arrival_ks",
    "is_better",
    "marginal_fidelity",
    "missing_rate_error",
    "predictive_mae",
    "profile_error",
    "timeseries_report",
]

FloatArray: TypeAlias = NDArray[np.float64]
Direction = Literal["higher", "lower", "half"]

#: Each metric's direction: higher is better, lower is better, or closest to 0.5 is better.
METRICS: dict[str, Direction] = {
    "marginal": "higher",
    "missing_rate_error": "lower",
    "autocorrelation_error": "lower",
    "cross_correlation_error": "lower",
    "discriminative": "half",
    "discriminative_features": "half",
    "predictive_mae": "lower",
    "daily_profile_error": "lower",
    "weekly_profile_error": "lower",
    "inter_arrival_ks": "lower",
}
_HOUR_S = 3600.0


@dataclass(frozen=True)
class SeriesSpec:
    """Which columns of a long frame are the sequence key, the event time and the fields."""

    key: str
    time: str
    numeric: tuple[str, ...]
    categorical: tuple[str, ...] = ()

    @classmethod
    def from_schema(cls, schema: RecordSchema, *, key: str, time: str, exclude: Sequence[str] = ()) -> SeriesSpec:
        """Numeric and categorical fields of ``schema`` other than ``key``, ``time`` and ``exclude``."""
        skip = {key, time, *exclude}
        numeric, categorical = [], []
        for field in schema.fields:
            if field.name in skip or field.role in (FieldRole.IDENTIFIER, FieldRole.FREE_TEXT):
                continue
            if field.role is FieldRole.NUMERIC and field.type in (FieldType.LONG, FieldType.DOUBLE):
                numeric.append(field.name)
            elif field.role is FieldRole.CATEGORICAL:
                categorical.append(field.name)
        return cls(key=key, time=time, numeric=tuple(numeric), categorical=tuple(categorical))


@dataclass
class _Prepared:
    """A frame sorted by key and time, with numeric values standardised by the *real* data."""

    frame: pd.DataFrame
    values: FloatArray  # (rows, numeric fields), standardised, NaN for null
    seconds: FloatArray  # event time as epoch seconds
    key_codes: NDArray[np.int64]


def _prepare(frame: pd.DataFrame, spec: SeriesSpec, mean: FloatArray, std: FloatArray) -> _Prepared:
    stamps = pd.to_datetime(frame[spec.time], utc=True)
    ordered = frame.assign(_t=stamps).sort_values([spec.key, "_t"], kind="stable").reset_index(drop=True)
    seconds = ordered["_t"].dt.as_unit("us").astype("int64").to_numpy().astype(np.float64) / 1e6
    raw = (
        np.column_stack(
            [
                pd.to_numeric(ordered[c], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
                for c in spec.numeric
            ]
        )
        if spec.numeric
        else np.zeros((len(ordered), 0))
    )
    values = (raw - mean) / std
    codes, _ = pd.factorize(ordered[spec.key])
    return _Prepared(ordered, values, seconds, codes.astype(np.int64))


def _standardiser(real: pd.DataFrame, spec: SeriesSpec) -> tuple[FloatArray, FloatArray]:
    if not spec.numeric:
        return np.zeros(0), np.ones(0)
    raw = np.column_stack(
        [pd.to_numeric(real[c], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan) for c in spec.numeric]
    )
    mean = np.nanmean(raw, axis=0)
    std = np.nanstd(raw, axis=0)
    std = np.where(np.isfinite(std) & (std > 0), std, 1.0)
    return np.nan_to_num(mean), std


def _pair(real: pd.DataFrame, synthetic: pd.DataFrame, spec: SeriesSpec) -> tuple[_Prepared, _Prepared]:
    mean, std = _standardiser(real, spec)
    return _prepare(real, spec, mean, std), _prepare(synthetic, spec, mean, std)


# ---------------------------------------------------------------------------------------------
# marginals
# ---------------------------------------------------------------------------------------------


def marginal_fidelity(real: pd.DataFrame, synthetic: pd.DataFrame, spec: SeriesSpec) -> dict[str, float]:
    """Per-field ``1 - KS`` / ``1 - TVD`` (nulls dropped), plus their ``mean``; 1 is identical."""
    out: dict[str, float] = {}
    for name in spec.numeric:
        r = pd.to_numeric(real[name], errors="coerce").dropna().to_numpy(dtype=np.float64)
        s = pd.to_numeric(synthetic[name], errors="coerce").dropna().to_numpy(dtype=np.float64)
        out[name] = float(1.0 - ks_2samp(r, s, method="asymp").statistic) if r.size and s.size else float("nan")
    for name in spec.categorical:
        r_freq = real[name].dropna().astype(str).value_counts(normalize=True)
        s_freq = synthetic[name].dropna().astype(str).value_counts(normalize=True)
        if r_freq.empty or s_freq.empty:
            out[name] = float("nan")
            continue
        index = r_freq.index.union(s_freq.index)
        diff = r_freq.reindex(index, fill_value=0.0) - s_freq.reindex(index, fill_value=0.0)
        out[name] = float(1.0 - 0.5 * np.abs(diff.to_numpy(dtype=np.float64)).sum())
    out["mean"] = _nanmean(list(out.values()))
    return out


def missing_rate_error(real: pd.DataFrame, synthetic: pd.DataFrame, spec: SeriesSpec) -> float:
    """Mean absolute difference of the per-field null rates."""
    fields = [*spec.numeric, *spec.categorical]
    if not fields:
        return float("nan")
    return float(np.mean([abs(real[f].isna().mean() - synthetic[f].isna().mean()) for f in fields]))


# ---------------------------------------------------------------------------------------------
# dynamics
# ---------------------------------------------------------------------------------------------


def _lagged_corr(a: FloatArray, b: FloatArray) -> float:
    ok = ~(np.isnan(a) | np.isnan(b))
    if ok.sum() < 3:
        return float("nan")
    x, y = a[ok], b[ok]
    if np.ptp(x) == 0 or np.ptp(y) == 0:
        return float("nan")
    return float(np.corrcoef(x, y)[0, 1])


def _shifted(prep: _Prepared, lag: int) -> tuple[FloatArray, FloatArray]:
    """Rows ``t`` and ``t + lag`` of the same sequence."""
    if lag == 0:
        return prep.values, prep.values
    same = prep.key_codes[:-lag] == prep.key_codes[lag:]
    return prep.values[:-lag][same], prep.values[lag:][same]


def _acf(prep: _Prepared, max_lag: int) -> FloatArray:
    out = np.full((max_lag, prep.values.shape[1]), np.nan)
    for lag in range(1, max_lag + 1):
        a, b = _shifted(prep, lag)
        for j in range(prep.values.shape[1]):
            out[lag - 1, j] = _lagged_corr(a[:, j], b[:, j])
    return out


def autocorrelation_error(real: pd.DataFrame, synthetic: pd.DataFrame, spec: SeriesSpec, *, max_lag: int = 24) -> float:
    """Mean |ACF_real - ACF_synth| over numeric fields and lags 1..``max_lag`` (within sequences)."""
    r, s = _pair(real, synthetic, spec)
    return _nanmean_array(np.abs(_acf(r, max_lag) - _acf(s, max_lag)))


def _cross(prep: _Prepared, lag: int) -> FloatArray:
    a, b = _shifted(prep, lag)
    n = prep.values.shape[1]
    out = np.full((n, n), np.nan)
    for i in range(n):
        for j in range(n):
            if i != j and (lag > 0 or i < j):
                out[i, j] = _lagged_corr(a[:, i], b[:, j])
    return out


def cross_correlation_error(
    real: pd.DataFrame, synthetic: pd.DataFrame, spec: SeriesSpec, *, lags: Sequence[int] = (0, 1)
) -> float:
    """Mean |corr_real - corr_synth| between numeric fields at the given lags (within sequences)."""
    r, s = _pair(real, synthetic, spec)
    diffs = [np.abs(_cross(r, lag) - _cross(s, lag)) for lag in lags]
    return _nanmean_array(np.concatenate([d.ravel() for d in diffs])) if diffs else float("nan")


def profile_error(
    real: pd.DataFrame, synthetic: pd.DataFrame, spec: SeriesSpec, *, by: Literal["day", "week"] = "day"
) -> float:
    """Mean |profile_real - profile_synth| of standardised numeric fields per hour of day or of week."""
    if by not in ("day", "week"):
        raise ValueError(f"by must be one of ['day', 'week']; got {by!r}")
    r, s = _pair(real, synthetic, spec)

    def profile(prep: _Prepared) -> pd.DataFrame:
        hours = np.floor(prep.seconds / _HOUR_S).astype(np.int64)
        bins = hours % 24 if by == "day" else (hours - 96) % 168  # epoch hour 96 = Monday 00:00
        return pd.DataFrame(prep.values).groupby(bins).mean()

    pr, ps = profile(r), profile(s)
    index = pr.index.union(ps.index)
    diff = (pr.reindex(index) - ps.reindex(index)).abs().to_numpy(dtype=np.float64)
    return _nanmean_array(diff)


def _deltas(prep: _Prepared) -> FloatArray:
    same = prep.key_codes[1:] == prep.key_codes[:-1]
    out: FloatArray = np.diff(prep.seconds)[same]
    return out


def inter_arrival_ks(real: pd.DataFrame, synthetic: pd.DataFrame, spec: SeriesSpec) -> float:
    """KS distance between within-sequence inter-arrival times (0 = same distribution)."""
    r, s = _pair(real, synthetic, spec)
    dr, ds = _deltas(r), _deltas(s)
    if dr.size == 0 or ds.size == 0:
        return float("nan")
    return float(ks_2samp(dr, ds, method="asymp").statistic)


# ---------------------------------------------------------------------------------------------
# discriminative and predictive scores
# ---------------------------------------------------------------------------------------------


def _windows(prep: _Prepared, length: int) -> list[NDArray[np.int64]]:
    """Row indices of non-overlapping windows of ``length`` events inside each sequence."""
    bounds = np.flatnonzero(np.diff(prep.key_codes)) + 1
    starts = np.concatenate(([0], bounds))
    ends = np.concatenate((bounds, [len(prep.key_codes)]))
    out = []
    for s, e in zip(starts.tolist(), ends.tolist(), strict=True):
        for b in range(s, e - length + 1, length):
            out.append(np.arange(b, b + length))
    return out


def _window_features(
    prep: _Prepared, windows: list[NDArray[np.int64]], spec: SeriesSpec, cats: dict[str, list[str]]
) -> FloatArray:
    if not windows:
        return np.zeros((0, 1))
    idx = np.stack(windows)  # (W, L)
    vals = prep.values[idx]  # (W, L, F)
    feats: list[FloatArray] = []
    with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", category=RuntimeWarning)  # all-null windows give NaN features
        feats += [
            np.nanmean(vals, axis=1),
            np.nanstd(vals, axis=1),
            np.nanmin(vals, axis=1),
            np.nanmax(vals, axis=1),
            vals[:, 0],
            vals[:, -1],
            np.nanmean(np.abs(np.diff(vals, axis=1)), axis=1),
            np.isnan(vals).mean(axis=1),
        ]
        centred = vals - np.nanmean(vals, axis=1, keepdims=True)
        a, b = centred[:, :-1], centred[:, 1:]
        num = np.nansum(a * b, axis=1)
        den = np.sqrt(np.nansum(a * a, axis=1) * np.nansum(b * b, axis=1))
        feats.append(num / den)
        n = vals.shape[2]
        filled = np.where(np.isnan(centred), 0.0, centred)
        norms = np.sqrt((filled * filled).sum(axis=1))
        for i in range(n):
            for j in range(i + 1, n):
                feats.append(((filled[:, :, i] * filled[:, :, j]).sum(axis=1) / (norms[:, i] * norms[:, j]))[:, None])
    for name, kept in cats.items():
        column = prep.frame[name].astype(object).to_numpy()[idx]
        for value in kept:
            feats.append((column == value).mean(axis=1)[:, None])
        changes = (column[:, 1:] != column[:, :-1]).mean(axis=1)
        feats.append(changes[:, None].astype(np.float64))
    seconds = prep.seconds[idx]
    first = seconds[:, 0]
    angle_day = 2 * np.pi * (first % 86_400) / 86_400
    angle_week = 2 * np.pi * ((first - 345_600) % 604_800) / 604_800
    angle_year = 2 * np.pi * (first % 31_556_952) / 31_556_952
    gaps = np.diff(seconds, axis=1)
    feats += [
        np.column_stack([np.sin(angle_day), np.cos(angle_day), np.sin(angle_week), np.cos(angle_week)]),
        np.column_stack([np.sin(angle_year), np.cos(angle_year)]),
        np.column_stack([gaps.mean(axis=1), gaps.std(axis=1)]) if gaps.shape[1] else np.zeros((len(idx), 2)),
    ]
    out = np.column_stack([f if f.ndim == 2 else f[:, None] for f in feats]).astype(np.float64)
    out[~np.isfinite(out)] = np.nan
    return out


def _window_tensor(
    prep: _Prepared, windows: list[NDArray[np.int64]], cats: dict[str, list[str]], gap_scale: float
) -> NDArray[np.float32]:
    """Raw windows for the recurrent classifier: values, null flags, category one-hots, time, gaps."""
    idx = np.stack(windows)
    vals = prep.values[idx]
    parts = [np.nan_to_num(vals, nan=0.0), np.isnan(vals).astype(np.float64)]
    for name, kept in cats.items():
        column = prep.frame[name].to_numpy()[idx]
        parts += [(column == value)[..., None].astype(np.float64) for value in kept]
    seconds = prep.seconds[idx]
    angle_day = 2 * np.pi * (seconds % 86_400) / 86_400
    angle_week = 2 * np.pi * ((seconds - 345_600) % 604_800) / 604_800
    angle_year = 2 * np.pi * (seconds % 31_556_952) / 31_556_952
    gaps = np.diff(seconds, axis=1, prepend=seconds[:, :1]) / gap_scale
    for angle in (angle_day, angle_week, angle_year):
        parts += [np.sin(angle)[..., None], np.cos(angle)[..., None]]
    parts.append(np.log1p(np.maximum(gaps, 0.0))[..., None])
    out: NDArray[np.float32] = np.concatenate(parts, axis=-1).astype(np.float32)
    return out


def _rnn_accuracy(x: NDArray[np.float32], y: NDArray[np.float64], seed: int, steps: int) -> float:
    """Held-out accuracy of a 2-layer GRU classifier (the TimeGAN post-hoc discriminator)."""
    import torch
    from sklearn.model_selection import train_test_split
    from torch import nn

    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=0.3, stratify=y, random_state=seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        gru = nn.GRU(x.shape[-1], 32, num_layers=2, batch_first=True)
        out = nn.Linear(32, 1)
        params = list(gru.parameters()) + list(out.parameters())
        optimizer = torch.optim.Adam(params, lr=2e-3)
        xt, yt = torch.from_numpy(x_tr), torch.from_numpy(y_tr.astype(np.float32))
        generator = torch.Generator().manual_seed(seed)
        for _ in range(steps):
            batch = torch.randint(0, len(xt), (min(128, len(xt)),), generator=generator)
            hidden, _ = gru(xt[batch])
            logits = out(hidden[:, -1]).squeeze(-1)
            loss = nn.functional.binary_cross_entropy_with_logits(logits, yt[batch])
            optimizer.zero_grad()
            torch.autograd.backward(loss)
            optimizer.step()
        with torch.no_grad():
            hidden, _ = gru(torch.from_numpy(x_te))
            predicted = (out(hidden[:, -1]).squeeze(-1) > 0).numpy()
    return float((predicted == (y_te > 0.5)).mean())


def _features_accuracy(x: FloatArray, y: FloatArray, seed: int) -> float:
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.model_selection import train_test_split

    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=0.3, stratify=y, random_state=seed)
    # A summary with no finite value in the training split (e.g. a field null in every short
    # window) carries no signal, and scikit-learn's binning fails on it: leave it out.
    informative = np.isfinite(x_tr).any(axis=0)
    if not informative.any():
        return 0.5
    x_tr, x_te = x_tr[:, informative], x_te[:, informative]
    clf = HistGradientBoostingClassifier(max_iter=200, learning_rate=0.1, random_state=seed)
    clf.fit(x_tr, y_tr)
    return float((clf.predict(x_te) == y_te).mean())


def discriminative_score(
    real: pd.DataFrame,
    synthetic: pd.DataFrame,
    spec: SeriesSpec,
    *,
    window: int = 24,
    classifier: Literal["rnn", "features"] = "rnn",
    seed: int = 0,
    repeats: int = 2,
    steps: int = 600,
    max_windows: int = 3_000,
) -> float:
    """Held-out accuracy of a classifier separating real from synthetic windows (0.5 = indistinguishable).

    ``rnn`` is the literature's discriminative score (TimeGAN): a 2-layer GRU trained for
    ``steps`` Adam steps on batches of 128 raw windows (standardised values, null flags,
    category one-hots, time features, gaps).
    ``features`` is a stricter variant: gradient-boosted trees on per-window summary
    statistics, which also sees roughness, extremes and within-window correlations directly.
    Windows are non-overlapping runs of ``window`` events inside each sequence; the two
    classes are balanced; 30 % of the windows are held out; the mean over ``repeats`` splits.
    """
    if classifier not in ("rnn", "features"):
        raise ValueError(f"classifier must be one of ['rnn', 'features']; got {classifier!r}")
    r, s = _pair(real, synthetic, spec)
    rng = np.random.default_rng(seed)
    wr, ws = _windows(r, window), _windows(s, window)
    n = min(len(wr), len(ws), max_windows)
    if n < 10:
        return float("nan")
    pick_r = [wr[i] for i in rng.choice(len(wr), n, replace=False)]
    pick_s = [ws[i] for i in rng.choice(len(ws), n, replace=False)]
    cats = {c: real[c].dropna().astype(str).value_counts().index[:20].tolist() for c in spec.categorical}
    for prep in (r, s):
        for c in spec.categorical:
            prep.frame[c] = [None if v is None or v != v else str(v) for v in prep.frame[c].tolist()]
    y = np.concatenate([np.zeros(n), np.ones(n)])
    scores = []
    if classifier == "rnn":
        gaps = _deltas(r)
        scale = float(np.median(gaps[gaps > 0])) if (gaps > 0).any() else 1.0
        x_raw = np.concatenate([_window_tensor(r, pick_r, cats, scale), _window_tensor(s, pick_s, cats, scale)])
        scores = [_rnn_accuracy(x_raw, y, seed + k, steps) for k in range(repeats)]
    else:
        x = np.vstack([_window_features(r, pick_r, spec, cats), _window_features(s, pick_s, spec, cats)])
        scores = [_features_accuracy(x, y, seed + k) for k in range(repeats)]
    return float(np.mean(scores))


def _supervised(prep: _Prepared, lags: int) -> tuple[FloatArray, FloatArray]:
    """Next-step design: the previous ``lags`` steps of every numeric field + time features -> the step."""
    n, f = prep.values.shape
    if n <= lags:
        return np.zeros((0, f * lags + 4)), np.zeros((0, f))
    rows = np.arange(lags, n)
    ok = prep.key_codes[rows] == prep.key_codes[rows - lags]
    rows = rows[ok]
    parts = [prep.values[rows - k] for k in range(1, lags + 1)]
    hours = prep.seconds[rows] / _HOUR_S
    angle_day = 2 * np.pi * (hours % 24) / 24
    angle_week = 2 * np.pi * ((hours - 96) % 168) / 168
    parts.append(np.column_stack([np.sin(angle_day), np.cos(angle_day), np.sin(angle_week), np.cos(angle_week)]))
    return np.column_stack(parts), prep.values[rows]


def predictive_mae(
    train: pd.DataFrame,
    test: pd.DataFrame,
    spec: SeriesSpec,
    *,
    reference: pd.DataFrame | None = None,
    lags: int = 3,
    seed: int = 0,
    max_rows: int = 20_000,
) -> float:
    """Next-step forecast error: fit on ``train`` (synthetic for TSTR), score on ``test`` (real).

    MAE per numeric field in units of the ``reference`` (default ``test``) field's standard
    deviation, averaged over fields. Null targets are skipped; null inputs are allowed.
    """
    from sklearn.ensemble import HistGradientBoostingRegressor

    mean, std = _standardiser(reference if reference is not None else test, spec)
    tr, te = _prepare(train, spec, mean, std), _prepare(test, spec, mean, std)
    x_tr, y_tr = _supervised(tr, lags)
    x_te, y_te = _supervised(te, lags)
    rng = np.random.default_rng(seed)
    if len(x_tr) > max_rows:
        keep = rng.choice(len(x_tr), max_rows, replace=False)
        x_tr, y_tr = x_tr[keep], y_tr[keep]
    if len(x_te) > max_rows:
        keep = rng.choice(len(x_te), max_rows, replace=False)
        x_te, y_te = x_te[keep], y_te[keep]
    errors = []
    for j in range(y_tr.shape[1]):
        fit_ok, test_ok = ~np.isnan(y_tr[:, j]), ~np.isnan(y_te[:, j])
        if fit_ok.sum() < 10 or test_ok.sum() < 10:
            continue
        model = HistGradientBoostingRegressor(max_iter=100, random_state=seed)
        model.fit(x_tr[fit_ok], y_tr[fit_ok, j])
        errors.append(float(np.abs(model.predict(x_te[test_ok]) - y_te[test_ok, j]).mean()))
    return float(np.mean(errors)) if errors else float("nan")


# ---------------------------------------------------------------------------------------------
# the report
# ---------------------------------------------------------------------------------------------


def timeseries_report(
    real: pd.DataFrame,
    synthetic: pd.DataFrame,
    spec: SeriesSpec,
    *,
    max_lag: int = 24,
    window: int = 24,
    seed: int = 0,
) -> dict[str, Any]:
    """Every metric of :data:`METRICS` (plus per-field marginals under ``marginal_fields``)."""
    marginals = marginal_fidelity(real, synthetic, spec)
    return {
        "marginal": marginals.pop("mean"),
        "missing_rate_error": missing_rate_error(real, synthetic, spec),
        "autocorrelation_error": autocorrelation_error(real, synthetic, spec, max_lag=max_lag),
        "cross_correlation_error": cross_correlation_error(real, synthetic, spec),
        "discriminative": discriminative_score(real, synthetic, spec, window=window, seed=seed),
        "discriminative_features": discriminative_score(
            real, synthetic, spec, window=window, seed=seed, classifier="features"
        ),
        "predictive_mae": predictive_mae(synthetic, real, spec, seed=seed),
        "daily_profile_error": profile_error(real, synthetic, spec, by="day"),
        "weekly_profile_error": profile_error(real, synthetic, spec, by="week"),
        "inter_arrival_ks": inter_arrival_ks(real, synthetic, spec),
        "marginal_fields": marginals,
    }


def is_better(metric: str, ours: float, peer: float) -> bool:
    """Whether ``ours`` beats ``peer`` on ``metric`` (ties are not wins; NaN never wins)."""
    direction = METRICS[metric]
    if np.isnan(ours) or np.isnan(peer):
        return False
    if direction == "higher":
        return ours > peer
    if direction == "lower":
        return ours < peer
    return abs(ours - 0.5) < abs(peer - 0.5)


def _nanmean(values: Sequence[float]) -> float:
    return _nanmean_array(np.asarray(values, dtype=np.float64))


def _nanmean_array(values: FloatArray) -> float:
    finite = values[np.isfinite(values)]
    return float(finite.mean()) if finite.size else float("nan")
