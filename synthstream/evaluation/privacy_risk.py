"""Privacy risk of a synthetic table: anonymeter's attacks against a control set, and distances.

Attacks (anonymeter 1.1, Giomi et al. 2022), each scored on a sample of the *training*
records and, identically, on the *control* records no model was trained on; the reported
risk is the residual ``(success_train - success_control) / (1 - success_control)`` with
its Wilson confidence interval, so what any real record would reveal is subtracted:

* singling out, univariate and multivariate: predicates built from the synthetic rows
  that match exactly one training record;
* linkability: the attacker holds two column sets of the same people and links them
  through their nearest synthetic neighbours;
* inference: the attacker knows every other audited field and guesses a secret field
  from the nearest synthetic row.

Honest reporting (DESIGN.md, "measuring risk honestly"): the control sample is as large as
the training sample handed to the attacks, and every result carries how many attack
attempts were requested and how many could actually be built. anonymeter divides the
singling-out successes by the *requested* number even when it built fewer queries, which
understates the risk; here the rate is over the queries built.

Distances (a mixed-type encoding: numeric fields scaled by their range, categories
one-hot so a mismatch counts 1, nulls explicit):

* DCR share: share of synthetic rows closer to a training row than to a control row
  (ties count half); 0.5 is ideal, 1.0 means the rows sit on the training data;
* identical-match share: synthetic rows that equal a training row exactly, judged against
  the same statistic for real unseen records: the share of *control* rows that equal a
  training row (``identical_match_share_holdout``). Real data repeats (on a table of a few
  categorical fields a third of fresh rows can equal some training row): a model that
  generalises produces such rows as often as fresh real records do, so only the excess
  over the control's share is a leak, reported with the lower end of its confidence
  interval (two independent proportions, normal approximation). The share of synthetic
  rows equal to a control row is reported too;
* nearest-neighbour distance ratio (NNDR): distance to the nearest training row over the
  distance to the second nearest; near 0 means a synthetic row reproduces one real
  record. Reported as the median, next to the median of control rows.

Fail closed: what makes an attack impossible on the data at hand (too few audited fields,
no records, no singling-out query anonymeter could generate) is decided explicitly and
reported as "not built" (it counts against the attack coverage). Anything an attack
*raises* is a crash, not a measurement: it surfaces as :class:`~synthstream.errors.AttackError`
naming the attack and the exception type (never its message, which can quote a value), and
the auditor fails the version on it.

Identifiers and free text are not attacked here (their synthetic values are fresh strings);
:mod:`synthstream.evaluation.leaks` checks them for verbatim copies.
Everything here is pure and runs in a worker process: numpy's global RNG, which
anonymeter's target sampling draws from, is seeded for the call and restored after.
"""

from __future__ import annotations

import contextlib
import logging
import re
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal, TypeAlias

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from synthstream.errors import AttackError
from synthstream.schemas.events import AttackRisk
from synthstream.schemas.record import FieldRole, FieldSpec, FieldType, RecordSchema

__all__ = [
    "DistanceMetrics",
    "attack_frame",
    "audited_fields",
    "distance_metrics",
    "inference_risk",
    "linkability_risk",
    "singling_out_risk",
    "univariate_query_count",
]

FloatArray: TypeAlias = NDArray[np.float64]
Records: TypeAlias = Sequence[Mapping[str, Any]]

_AUDITED_ROLES = (FieldRole.NUMERIC, FieldRole.CATEGORICAL, FieldRole.DATETIME)
_MAX_ONE_HOT = 100
_BUILT_PATTERN = re.compile(r"could generate only (\d+) singling out queries")
_NULL = "\x00null"


def audited_fields(schema: RecordSchema) -> list[FieldSpec]:
    """Fields the audit attacks and measures: everything but identifiers and free text."""
    return [f for f in schema.fields if f.role in _AUDITED_ROLES]


def attack_frame(records: Records | pd.DataFrame, fields: Sequence[FieldSpec]) -> pd.DataFrame:
    """The audited fields as a frame with one dtype per field, the same for real and synthetic data.

    Continuous fields become float64 (timestamps as epoch seconds, nulls NaN); everything
    else becomes strings (nulls None), so ``1`` and ``1.0`` or ``True`` and ``"True"`` agree.
    """
    frame = records if isinstance(records, pd.DataFrame) else pd.DataFrame.from_records(list(records))
    out: dict[str, Any] = {}
    for field in fields:
        column = frame[field.name] if field.name in frame.columns else pd.Series([None] * len(frame), dtype=object)
        column = column.reset_index(drop=True)
        if field.continuous and field.type is FieldType.TIMESTAMP:
            stamps = pd.to_datetime(column, utc=True, errors="coerce", format="mixed")
            seconds = np.full(len(stamps), np.nan)
            ok = stamps.notna().to_numpy()
            seconds[ok] = stamps[ok].dt.as_unit("us").astype("int64").to_numpy() / 1e6
            out[field.name] = seconds
        elif field.continuous:
            out[field.name] = pd.to_numeric(column, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
        else:
            as_text = column.astype(object)
            mask = as_text.isna().to_numpy()
            values = np.array([_category_text(v) for v in as_text.to_numpy()], dtype=object)
            values[mask] = None
            out[field.name] = values
    return pd.DataFrame(out, columns=[f.name for f in fields])


def _category_text(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


# ---------------------------------------------------------------------------------------------
# anonymeter plumbing: seeded global RNG, captured notes
# ---------------------------------------------------------------------------------------------


@contextlib.contextmanager
def _numpy_global_seed(seed: int) -> Iterator[None]:
    """Anonymeter samples attack targets with pandas' ``sample()``, i.e. numpy's global RNG."""
    state = np.random.get_state()
    np.random.seed(seed % 2**32)
    try:
        yield
    finally:
        np.random.set_state(state)


class _Notes(logging.Handler):
    """Collects anonymeter's log messages and warnings during one attack (never shown to users)."""

    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())

    def queries_built(self, requested: int) -> int:
        for message in self.messages:
            match = _BUILT_PATTERN.search(message)
            if match:
                return int(match.group(1))
        return requested

    def caveat(self) -> str | None:
        if any("as good or worse as baseline" in m for m in self.messages):
            return "the attack did no better than random guessing"
        if any("control attack is 100%" in m for m in self.messages):
            return "every control attack succeeded: residual risk cannot be measured"
        return None


@contextlib.contextmanager
def _captured() -> Iterator[_Notes]:
    notes = _Notes()
    logger = logging.getLogger("anonymeter")
    propagate = logger.propagate
    logger.addHandler(notes)
    logger.propagate = False
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            yield notes
        notes.messages.extend(str(w.message) for w in caught)
    finally:
        logger.removeHandler(notes)
        logger.propagate = propagate


def _stable_univariate_queries(df: Any, n_queries: int, rng: np.random.Generator) -> list[Any]:
    """The univariate query generator of anonymeter 1.1 with polars' group order made stable.

    The original collects rare values with ``group_by`` (arbitrary order, re-hashed on every
    call), so its seeded shuffle picks a different subset each time; here groups keep the
    order of first appearance. Same queries, same logic otherwise.
    """
    import polars as pl
    from anonymeter.evaluators.singling_out_evaluator import UniqueSinglingOutQueries

    queries: list[Any] = []
    schema = df.schema
    for col in df.columns:
        if df.select(pl.col(col).is_null().sum()).item() == 1:
            queries.append(pl.col(col).is_null())
        if schema[col].is_numeric() and df[col].drop_nulls().len() > 0:
            queries.extend([pl.col(col) <= df[col].min(), pl.col(col) >= df[col].max()])
        counts = df.group_by(col, maintain_order=True).len()
        rare = counts.filter(pl.col("len") == 1).select(col).to_series().to_list()
        queries.extend(pl.col(col) == value for value in rare)
    rng.shuffle(queries)  # a seeded in-place shuffle of the list
    unique = UniqueSinglingOutQueries(max_size=n_queries)
    unique.check_and_extend(queries, df)
    return list(unique.queries)


def _stable_random_queries(df: Any, n_queries: int, n_cols: int, rng: np.random.Generator) -> list[Any]:
    """The baseline (random) queries of anonymeter 1.1 with each column's distinct values in a stable order."""
    from anonymeter.evaluators.singling_out_evaluator import _convert_polars_dtype, _random_query

    unique_values = {col: df[col].unique(maintain_order=True).to_list() for col in df.columns}
    column_types = {col: _convert_polars_dtype(df[col].dtype) for col in df.columns}
    return [
        _random_query(
            unique_values=unique_values,
            cols=rng.choice(df.columns, size=n_cols, replace=False).tolist(),
            column_types=column_types,
            rng=rng,
        )
        for _ in range(n_queries)
    ]


@contextlib.contextmanager
def _stable_singling_out() -> Iterator[None]:
    """Swap in the order-stable query generators for one (single-threaded) singling-out evaluation.

    Without this the same seed gives different univariate risks from run to run. The swap
    is process-global while it lasts: audits run one at a time in a worker process.
    """
    from anonymeter.evaluators import singling_out_evaluator as module

    originals = (module.univariate_singling_out_queries, module._random_queries)
    module.univariate_singling_out_queries = _stable_univariate_queries
    module._random_queries = _stable_random_queries
    try:
        yield
    finally:
        module.univariate_singling_out_queries, module._random_queries = originals


@contextlib.contextmanager
def _seeded_linkability_baseline(seed: int) -> Iterator[None]:
    """Seed anonymeter's random-guess linkability baseline (it draws from an unseeded ``default_rng()``).

    The baseline does not enter the risk, but it decides the "no better than random guessing"
    caveat: unseeded, the same audit reported it on one run and not the next.
    """
    from anonymeter.evaluators import linkability_evaluator as module

    original = module._random_links
    rng = np.random.default_rng(seed)

    def seeded(n_synthetic: int, n_attacks: int, n_neighbors: int) -> Any:
        return np.array([rng.choice(n_synthetic, size=n_neighbors, replace=False) for _ in range(n_attacks)])

    module._random_links = seeded
    try:
        yield
    finally:
        module._random_links = original


@contextlib.contextmanager
def _fail_closed(name: str) -> Iterator[None]:
    """Turn any exception inside attack ``name`` into an :class:`AttackError` naming the attack and the type.

    The audit fails on it (fail closed): an attack that crashed measured nothing, and a
    version must not pass on the attacks that happened to run. The original exception is
    not chained into the traceback: its message can quote a data value.
    """
    try:
        yield
    except AttackError:
        raise
    except Exception as exc:
        raise AttackError(name, type(exc).__name__) from None


def _not_built(name: str, attack: str, requested: int, why: str) -> AttackRisk:
    return AttackRisk(
        name=name,
        attack=attack,  # type: ignore[arg-type]  # one of the Literal's values, checked by pydantic
        attacks_requested=requested,
        attacks_built=0,
        detail=f"not built: {why}",
    )


def _risk(
    name: str, attack: str, requested: int, built: int, value: float, ci: tuple[float, float], caveat: str | None
) -> AttackRisk:
    return AttackRisk(
        name=name,
        attack=attack,  # type: ignore[arg-type]  # one of the Literal's values, checked by pydantic
        risk=float(value),
        ci_low=float(ci[0]),
        ci_high=float(ci[1]),
        attacks_requested=requested,
        attacks_built=built,
        detail=caveat,
    )


# ---------------------------------------------------------------------------------------------
# attacks
# ---------------------------------------------------------------------------------------------


def univariate_query_count(syn: pd.DataFrame) -> int:
    """How many univariate singling-out queries the synthetic table allows (an upper bound of what can be built).

    anonymeter's univariate attack builds its queries from the synthetic rows alone: a value
    held by one synthetic row, a lone null, and ``<= min`` / ``>= max`` of a numeric field,
    each kept only if it matches exactly one synthetic row. A table of a few categorical
    fields sampled 10,000 times has no such value: the attack is then not applicable (no
    synthetic value singles anyone out), rather than a failure to build it.
    """
    total = 0
    for name in syn.columns:
        column = syn[name]
        present = column.dropna()
        total += int(column.isna().sum() == 1)
        if len(present) == 0:
            continue
        counts = present.value_counts()
        total += int((counts == 1).sum())
        if column.dtype.kind == "f":
            total += int(counts.loc[present.min()] == 1) + int(counts.loc[present.max()] == 1)
    return total


def singling_out_risk(
    ori: pd.DataFrame,
    syn: pd.DataFrame,
    control: pd.DataFrame,
    *,
    mode: Literal["univariate", "multivariate"],
    n_attacks: int,
    n_cols: int = 3,
    max_attempts: int = 50_000,
    seed: int = 0,
    confidence_level: float = 0.95,
) -> AttackRisk:
    """Singling-out risk, with the success rate taken over the queries anonymeter could build."""
    from anonymeter.evaluators import SinglingOutEvaluator
    from anonymeter.stats.confidence import EvaluationResults

    name = f"singling_out_{mode}"
    if ori.shape[1] < (1 if mode == "univariate" else n_cols):
        return _not_built(name, "singling_out", n_attacks, f"needs at least {n_cols} audited fields")
    if min(len(ori), len(syn), len(control)) == 0:
        return _not_built(name, "singling_out", n_attacks, "no records to attack")
    if mode == "univariate":
        allowed = univariate_query_count(syn)
        if allowed == 0:
            why = "no synthetic value singles out a row: the attack does not apply (0 queries allowed)"
            return _not_built(name, "singling_out", 0, why)
        n_attacks = min(n_attacks, allowed)
    with _fail_closed(name), _stable_singling_out(), _captured() as notes:
        evaluator = SinglingOutEvaluator(
            ori=ori,
            syn=syn,
            n_attacks=n_attacks,
            n_cols=n_cols,
            control=control,
            max_attempts=max_attempts,
            seed=seed,
        )
        evaluator.evaluate(mode=mode)
        built = min(notes.queries_built(n_attacks), n_attacks)
        if built == 0:
            return _not_built(name, "singling_out", n_attacks, "no singling-out query could be generated")
        raw = evaluator.results(confidence_level=confidence_level)
        results = EvaluationResults(
            n_attacks=(built, n_attacks, built),
            n_success=raw.n_success,
            n_baseline=raw.n_baseline,
            n_control=raw.n_control,
            confidence_level=confidence_level,
        )
        risk = results.risk()
    return _risk(name, "singling_out", n_attacks, built, risk.value, risk.ci, notes.caveat())


def linkability_risk(
    ori: pd.DataFrame,
    syn: pd.DataFrame,
    control: pd.DataFrame,
    *,
    aux_cols: tuple[Sequence[str], Sequence[str]],
    n_attacks: int,
    n_neighbors: int = 10,
    seed: int = 0,
    n_jobs: int = 1,
    confidence_level: float = 0.95,
) -> AttackRisk:
    """Linkability risk of two auxiliary column sets; targets are drawn from ``ori`` and ``control``."""
    from anonymeter.evaluators import LinkabilityEvaluator

    name = "linkability"
    built = min(n_attacks, len(ori), len(control))
    if built == 0 or len(syn) == 0:
        return _not_built(name, "linkability", n_attacks, "no records to attack")
    first, second = list(aux_cols[0]), list(aux_cols[1])
    if not first or not second:
        return _not_built(name, "linkability", n_attacks, "needs two non-empty auxiliary column sets")
    with _fail_closed(name), _numpy_global_seed(seed), _seeded_linkability_baseline(seed), _captured() as notes:
        evaluator = LinkabilityEvaluator(
            ori=ori,
            syn=syn,
            aux_cols=(first, second),
            n_attacks=built,
            n_neighbors=min(n_neighbors, len(syn)),
            control=control,
        )
        evaluator.evaluate(n_jobs=n_jobs)
        risk = evaluator.risk(confidence_level=confidence_level)
    return _risk(name, "linkability", n_attacks, built, risk.value, risk.ci, notes.caveat())


def inference_risk(
    ori: pd.DataFrame,
    syn: pd.DataFrame,
    control: pd.DataFrame,
    *,
    secret: str,
    regression: bool,
    n_attacks: int,
    aux_cols: Sequence[str] | None = None,
    seed: int = 0,
    n_jobs: int = 1,
    confidence_level: float = 0.95,
) -> AttackRisk:
    """Inference risk of ``secret`` from every other audited field (or ``aux_cols``).

    A ``regression`` secret counts as guessed within 5 % relative error (anonymeter's rule);
    otherwise the guess must be exact.
    """
    from anonymeter.evaluators import InferenceEvaluator

    name = f"inference:{secret}"
    aux = list(aux_cols) if aux_cols is not None else [c for c in ori.columns if c != secret]
    built = min(n_attacks, len(ori), len(control), len(syn))
    if built == 0 or not aux:
        return _not_built(name, "inference", n_attacks, "no records or no auxiliary fields")
    with _fail_closed(name), _numpy_global_seed(seed), _captured() as notes:
        evaluator = InferenceEvaluator(
            ori=ori,
            syn=syn,
            aux_cols=aux,
            secret=secret,
            regression=regression,
            n_attacks=built,
            control=control,
        )
        evaluator.evaluate(n_jobs=n_jobs)
        risk = evaluator.risk(confidence_level=confidence_level)
    return _risk(name, "inference", n_attacks, built, risk.value, risk.ci, notes.caveat())


# ---------------------------------------------------------------------------------------------
# distances
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DistanceMetrics:
    """Distance-based privacy measures of one synthetic sample (see the module docstring)."""

    dcr_share: float
    identical_match_share: float
    identical_match_share_control: float
    nndr_median: float
    nndr_median_control: float
    dcr_median: float
    dcr_median_control: float
    rows: int
    #: Control (real, unseen) rows equal to a training row: what a model that generalises reproduces anyway.
    identical_match_share_holdout: float = 0.0
    #: Synthetic rows compared (the sample size of ``identical_match_share``).
    synthetic_rows: int = 0
    #: Control rows compared (the sample size of ``identical_match_share_holdout``).
    holdout_rows: int = 0

    @property
    def identical_match_excess(self) -> float:
        """Synthetic copies of training rows beyond the share of real unseen rows equal to a training row."""
        return max(0.0, self.identical_match_share - self.identical_match_share_holdout)

    def identical_match_excess_ci_low(self, confidence_level: float = 0.95) -> float:
        """Lower end of the excess's confidence interval (two independent proportions, normal approximation).

        The control's share is measured on a few hundred rows on a small table: its sampling
        error (±0.05 at 400 rows and a share of 0.3) dwarfs a ceiling of 0.01, so the gate
        fails a version only when the excess is significant.
        """
        from scipy.stats import norm

        p1, n1 = self.identical_match_share, max(1, self.synthetic_rows)
        p2, n2 = self.identical_match_share_holdout, max(1, self.holdout_rows)
        z = float(norm.ppf(0.5 + confidence_level / 2))
        se = float(np.sqrt(p1 * (1 - p1) / n1 + p2 * (1 - p2) / n2))
        return max(0.0, (p1 - p2) - z * se)

    def as_dict(self, confidence_level: float = 0.95) -> dict[str, float]:
        """Every measure by name, plus ``identical_match_excess`` and the lower end of its CI."""
        skip = {"rows", "synthetic_rows", "holdout_rows"}
        out = {k: float(v) for k, v in asdict(self).items() if k not in skip}
        out["identical_match_excess"] = self.identical_match_excess
        out["identical_match_excess_ci_low"] = self.identical_match_excess_ci_low(confidence_level)
        return out


class _MixedEncoder:
    """Numeric columns scaled by their range (nulls: 0 plus an indicator), categories one-hot / sqrt(2).

    In the encoded space the squared Euclidean distance of two rows is the sum over fields
    of (difference / range)^2 for numbers and 1 per differing category.
    """

    def __init__(self, reference: pd.DataFrame) -> None:
        self.numeric: dict[str, tuple[float, float]] = {}
        self.categories: dict[str, pd.Index] = {}
        for name in reference.columns:
            column = reference[name]
            if column.dtype.kind == "f":
                finite = column.dropna()
                low = float(finite.min()) if len(finite) else 0.0
                span = float(finite.max()) - low if len(finite) else 0.0
                self.numeric[name] = (low, span if span > 0 else 1.0)
            else:
                counts = column.fillna(_NULL).value_counts()
                self.categories[name] = pd.Index(counts.index[:_MAX_ONE_HOT])

    def transform(self, frame: pd.DataFrame) -> FloatArray:
        parts: list[FloatArray] = []
        for name, (low, span) in self.numeric.items():
            values = frame[name].to_numpy(dtype=np.float64)
            null = np.isnan(values)
            parts.append(np.where(null, 0.0, (values - low) / span)[:, None])
            parts.append(null.astype(np.float64)[:, None])
        scale = 1.0 / np.sqrt(2.0)
        for name, categories in self.categories.items():
            codes = categories.get_indexer(frame[name].fillna(_NULL))  # -1: a category outside the kept ones
            one_hot = np.zeros((len(frame), len(categories) + 1))
            one_hot[np.arange(len(frame)), np.where(codes < 0, len(categories), codes)] = scale
            parts.append(one_hot)
        if not parts:
            return np.zeros((len(frame), 1))
        return np.hstack(parts)


def _row_hashes(frame: pd.DataFrame) -> NDArray[np.uint64]:
    return np.asarray(pd.util.hash_pandas_object(frame, index=False), dtype=np.uint64)


def _nearest(reference: FloatArray, queries: FloatArray, k: int) -> FloatArray:
    from sklearn.neighbors import NearestNeighbors

    k = min(k, reference.shape[0])
    index = NearestNeighbors(n_neighbors=k, algorithm="brute", metric="euclidean").fit(reference)
    distances, _ = index.kneighbors(queries)
    return np.asarray(distances, dtype=np.float64)


def _nndr(distances: FloatArray) -> FloatArray:
    if distances.shape[1] < 2:
        return np.ones(distances.shape[0])
    d1, d2 = distances[:, 0], distances[:, 1]
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(d2 > 0, d1 / d2, 1.0)  # both zero: a duplicated real record, not a unique one
    return np.asarray(ratio, dtype=np.float64)


def distance_metrics(
    training: pd.DataFrame,
    control: pd.DataFrame,
    synthetic: pd.DataFrame,
    *,
    all_training: pd.DataFrame | None = None,
    all_control: pd.DataFrame | None = None,
) -> DistanceMetrics:
    """DCR share, identical-match shares and NNDR of ``synthetic`` (frames from :func:`attack_frame`).

    ``training`` and ``control`` should be samples of the same size, so a synthetic row
    that learned nothing specific is equally likely to sit closer to either (share 0.5).
    The identical-match shares of synthetic rows and of real control rows are both taken
    against ``all_training`` (every record the model saw; default ``training``), the
    control's over ``all_control`` (default ``control``): a synthetic row drawn from the
    population equals a training row exactly as often as a fresh real row does.
    """
    if len(training) == 0 or len(control) == 0 or len(synthetic) == 0:
        raise ValueError("distance metrics need non-empty training, control and synthetic frames")
    reference = training if all_training is None or len(all_training) == 0 else all_training
    unseen = control if all_control is None or len(all_control) == 0 else all_control
    encoder = _MixedEncoder(pd.concat([training, control], ignore_index=True))
    train_x, control_x, syn_x = encoder.transform(training), encoder.transform(control), encoder.transform(synthetic)
    # Rounding: the same row encodes to the same vector, but BLAS distances carry ~1e-8 noise.
    syn_to_train = np.round(_nearest(train_x, syn_x, 2), 9)
    syn_to_control = np.round(_nearest(control_x, syn_x, 1), 9)
    control_to_train = np.round(_nearest(train_x, control_x, 2), 9)
    d_train, d_control = syn_to_train[:, 0], syn_to_control[:, 0]
    dcr_share = float(np.mean(d_train < d_control) + 0.5 * np.mean(d_train == d_control))
    train_hashes = set(_row_hashes(reference).tolist())
    control_hashes = set(_row_hashes(control).tolist())
    syn_hashes = _row_hashes(synthetic).tolist()
    identical = float(np.mean([h in train_hashes for h in syn_hashes]))
    identical_control = float(np.mean([h in control_hashes for h in syn_hashes]))
    identical_holdout = float(np.mean([h in train_hashes for h in _row_hashes(unseen).tolist()]))
    return DistanceMetrics(
        dcr_share=dcr_share,
        identical_match_share=identical,
        identical_match_share_control=identical_control,
        nndr_median=float(np.median(_nndr(syn_to_train))),
        nndr_median_control=float(np.median(_nndr(control_to_train))),
        dcr_median=float(np.median(d_train)),
        dcr_median_control=float(np.median(control_to_train[:, 0])),
        rows=len(training),
        identical_match_share_holdout=identical_holdout,
        synthetic_rows=len(synthetic),
        holdout_rows=len(unseen),
    )
