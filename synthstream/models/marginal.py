"""DP marginal generators: AIM and MST (McKenna et al.) on Private-PGM, and the from-the-stream model.

All three fit a graphical model (:mod:`synthstream.models.pgm`, ``mbi`` 1.1) to noisy
marginals over a DP domain (:mod:`synthstream.models.dp_domain`) and sample records from it;
numeric fields come back from their bins (:class:`~synthstream.models.encoding.BinCodec`).

* :class:`AIMGenerator` — AIM (McKenna, Mullins, Sheldon & Miklau, VLDB 2022): measure every
  1-way marginal, then for each round pick the workload marginal the current model gets most
  wrong (exponential mechanism over L1 error minus the expected noise, weighted by workload
  overlap), measure it, refit; the noise is halved when a measurement no longer moves the
  model. Candidates are limited by the model size the spent budget allows.
* :class:`MSTGenerator` — MST (McKenna, Miklau & Sheldon, JPC 2021): 1-way marginals, the
  domain compressed to cells whose noisy count clears 3σ, a maximum spanning tree of pairs
  picked with the exponential mechanism on their L1 error (against the independent model of the
  1-way measurements, fitted in closed form), the tree's 2-way marginals.
* :class:`StreamMarginalGenerator` — the from-the-stream mode: the noisy 1- and 2-way
  marginals the windowed statistics already released for the last ``last_windows`` windows
  (:meth:`~synthstream.privacy.ledger.PrivacyLedger.marginals`), summed over the windows
  (their noise variances add), over the stream's released domains. Reading released
  statistics is post-processing: no extra privacy cost, and ``fit`` never reads a record.

Privacy (AIM/MST): every measurement is a :class:`~synthstream.privacy.mechanisms.GaussianMechanism`
release (OpenDP's discrete Gaussian, ρ-zCDP, L2 sensitivity 1 per record); every selection is
OpenDP's noisy max (ε²/8-zCDP). Domains are declared or learned with DP: ``domain_share``
(35 % by default, when no domain is declared) of the fit's ρ and 1 % of its δ, split and thresholded as
:mod:`synthstream.models.dp_domain` states (the threshold τ, σ and the count a value needs are
in the fit's ``domain_report_``). The learned labels' noisy counts are already a release of
each categorical field's 1-way marginal: the model uses them as extra 1-way measurements
(``domain_measurements_``, post-processing, free), so the domain share is not lost to the
model. Learned labels must also clear ``min_count`` on their *noisy* count (post-processing, so
free: a rare value is suppressed even when a generous budget lowers OpenDP's threshold);
declared labels are public by declaration. Free text is never learned by a DP model (it is
generated null or empty, with a warning). Before measuring, the fit checks the composed model
budget (:mod:`synthstream.models.dp_budget`) and is refused (recorded) when it cannot afford
its ρ; afterwards every measurement, selection and domain release is charged to the ledger in
one ``charge`` with the fit's stable key, before the model leaves the process.

Reproducibility: DP noise comes from the OS (OpenDP) and is not reproducible by design; the
estimation and sampling after it are: :meth:`AIMGenerator.fit_measurements` refits from the
recorded :attr:`measurements_` (with :attr:`domain_measurements_` before them, as the fit
used both) and, with the same seed, gives the same model and samples.
The from-the-stream model is fully reproducible from the ledger.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar, Self, TypeAlias

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from synthstream.errors import ModelError, NotFittedError
from synthstream.log import get_logger
from synthstream.models.dp_budget import DPContext, ModelAccountant, noisy_argmax
from synthstream.models.dp_domain import DomainPlan, check_domains, learn_domains, ledger_attributes
from synthstream.models.encoding import (
    BinCodec,
    LabelCodec,
    SideFields,
    codec_from_attribute,
    column_frame,
    encode_frame,
    modelled_fields,
)
from synthstream.models.guards import DEFAULT_MIN_COUNT, check_min_count
from synthstream.models.params import check_int
from synthstream.models.pgm import (
    Measurement,
    estimate,
    marginal_counts,
    model_marginal,
    model_marginals,
    sampling_plan,
)
from synthstream.privacy.accounting import Spend, rho_to_epsilon
from synthstream.privacy.ledger import PrivacyLedger, Release
from synthstream.privacy.mechanisms import GaussianMechanism
from synthstream.processors.windows import Attribute
from synthstream.schemas.record import RecordSchema

__all__ = ["AIMGenerator", "MSTGenerator", "StreamMarginalGenerator"]

Progress = Callable[[float, str], None]
IntArray: TypeAlias = NDArray[np.int64]
FloatArray: TypeAlias = NDArray[np.float64]
Codec = LabelCodec | BinCodec
_log = get_logger("models.marginal")


class _MarginalModel:
    """What the three generators share: codecs, the fitted PGM's sampling plan, sampling."""

    name: ClassVar[str] = "marginal"

    def __init__(self, seed: int, iters: int) -> None:
        self.seed = check_int("seed", seed, 0, 2**63 - 1)
        self.iters = check_int("iters", iters, 1, 1_000_000)
        self._schema: RecordSchema | None = None
        self._codecs: list[Codec] = []
        self._plan: Any = None
        self._expand: dict[str, list[IntArray]] = {}
        self._side: SideFields | None = None
        self._absent: list[str] = []
        self._rng = np.random.default_rng(seed)
        self.measurements_: list[Measurement] = []
        self.cliques_: list[tuple[str, ...]] = []
        self.total_: float = 0.0
        self.guarantee_: dict[str, Any] | None = None

    @property
    def fitted(self) -> bool:
        """Whether ``fit`` has completed."""
        return self._schema is not None and self._plan is not None

    @property
    def schema(self) -> RecordSchema | None:
        """The schema the generator was fitted on, ``None`` before fit."""
        return self._schema

    # -- shared fitting ----------------------------------------------------------------------

    def fit_measurements(
        self,
        measurements: Sequence[Measurement],
        schema: RecordSchema,
        codecs: Sequence[Codec],
        *,
        expand: Mapping[str, list[IntArray]] | None = None,
        sizes: Mapping[str, int] | None = None,
        absent: Sequence[str] = (),
        potentials: Any = None,
        known_total: float | None = None,
    ) -> Self:
        """Fit the graphical model to ``measurements`` (post-processing only) and prepare sampling.

        ``sizes`` overrides the codec sizes (MST's compressed domains, mapped back by ``expand``);
        ``absent`` names fields the model does not cover (null in every sample).
        """
        columns = [c.name for c in codecs]
        dims = dict(sizes or {c.name: c.size for c in codecs})
        model = estimate(columns, dims, measurements, iters=self.iters, potentials=potentials, known_total=known_total)
        self._finish(model, measurements, schema, codecs, expand or {}, absent)
        return self

    def _finish(
        self,
        model: Any,
        measurements: Sequence[Measurement],
        schema: RecordSchema,
        codecs: Sequence[Codec],
        expand: Mapping[str, list[IntArray]],
        absent: Sequence[str],
    ) -> None:
        self._plan = sampling_plan(model)
        self._codecs = list(codecs)
        self._expand = dict(expand)
        self._absent = list(absent)
        self.measurements_ = list(measurements)
        self.cliques_ = [tuple(c) for c in model.cliques]
        self.total_ = float(model.total)
        self._side = SideFields(schema)
        self._schema = schema
        columns = [c.name for c in codecs]
        tokens = self._plan.sample(4_096, np.random.default_rng(self.seed), columns) if columns else None
        for j, codec in enumerate(codecs):
            if isinstance(codec, LabelCodec) and tokens is not None:
                # Weights for decoding __other__ of non-nullable fields: the model's label shares.
                counts = np.bincount(
                    self._expanded(codec.name, tokens[:, j], np.random.default_rng(0)), minlength=codec.size
                )
                codec.other_weights = counts[: len(codec.labels)].astype(np.float64)
        self._rng = np.random.default_rng(np.random.SeedSequence(self.seed).spawn(1)[0])

    def _expanded(self, name: str, tokens: IntArray, rng: np.random.Generator) -> IntArray:
        """Tokens of a compressed domain mapped back to the codec's cells (a merged cell -> one of its cells)."""
        groups = self._expand.get(name)
        if groups is None:
            return tokens
        out = np.empty_like(tokens)
        for new, old in enumerate(groups):
            hits = np.flatnonzero(tokens == new)
            if hits.size:
                out[hits] = old[rng.integers(0, len(old), size=hits.size)] if len(old) > 1 else old[0]
        return out

    # -- sampling ----------------------------------------------------------------------------

    def sample_columns(self, n: int, *, seed: int | None = None) -> dict[str, list[Any]]:
        """``n`` synthetic rows as ``{field: values}`` (canonical values; the fast path)."""
        if self._schema is None or self._plan is None or self._side is None:
            raise NotFittedError(f"{type(self).__name__} must be fitted before sampling")
        check_int("n", n, 0, 2**40)
        if seed is not None:
            check_int("seed", seed, 0, 2**63 - 1)
            self._rng = np.random.default_rng(seed)
        rng = self._rng
        columns = [c.name for c in self._codecs]
        tokens = self._plan.sample(n, rng, columns)
        out: dict[str, list[Any]] = {}
        for j, codec in enumerate(self._codecs):
            out[codec.name] = codec.decode(self._expanded(codec.name, tokens[:, j], rng), rng)
        out.update(self._side.sample(n, rng))
        for name in self._absent:
            out[name] = [None] * n
        return {name: out[name] for name in self._schema.field_names}

    def sample(self, n: int, *, seed: int | None = None) -> list[dict[str, Any]]:
        """``n`` synthetic records (dicts keyed by field name)."""
        columns = self.sample_columns(n, seed=seed)
        names = list(columns)
        return [dict(zip(names, row, strict=True)) for row in zip(*columns.values(), strict=True)]


# ---------------------------------------------------------------------------------------------
# measuring with a budget: AIM and MST
# ---------------------------------------------------------------------------------------------


class _Measurer:
    """Measures marginals of the encoded data with OpenDP noise and keeps every release for the ledger."""

    def __init__(self, tokens: IntArray, columns: Sequence[str], sizes: Mapping[str, int]) -> None:
        self.tokens = tokens
        self.columns = list(columns)
        self.sizes = dict(sizes)
        self.releases: list[Release] = []
        self.rho = 0.0
        #: Measurements already paid for elsewhere (the DP domain's noisy label counts): used, not charged.
        self.free: list[Measurement] = []

    def exact(self, clique: tuple[str, ...]) -> FloatArray:
        return marginal_counts(self.tokens, self.columns, self.sizes, clique)

    def measure(self, clique: tuple[str, ...], rho: float, label: str) -> Measurement:
        mechanism = GaussianMechanism(rho, 1.0, integer=True)
        noisy = mechanism.release_counts(self.exact(clique).astype(np.int64)).astype(np.float64)
        self.releases.append(
            Release(f"{label}:{','.join(clique)}", "gaussian", mechanism.spend, 1.0, mechanism.noise_std)
        )
        self.rho += mechanism.spend.rho
        return Measurement(clique, noisy, mechanism.noise_std)

    def select(self, scores: Sequence[float], rho: float, sensitivity: float, label: str) -> int:
        index, spent = noisy_argmax(scores, rho, sensitivity)
        self.releases.append(Release(label, "noisy_max", Spend(rho=spent), sensitivity))
        self.rho += spent
        return index


class _BudgetedModel(_MarginalModel):
    """AIM/MST: encode with a DP domain, measure under the fit's ρ, charge the ledger."""

    def __init__(
        self,
        seed: int,
        iters: int,
        *,
        dp: DPContext | None,
        bins: int,
        max_categories: int,
        domain_share: float,
        bounds: Mapping[str, tuple[float, float]] | None,
        labels: Mapping[str, Sequence[str]] | None,
        min_count: int = DEFAULT_MIN_COUNT,
        adaptive_bins: bool = False,
    ) -> None:
        super().__init__(seed, iters)
        if dp is None:
            raise ValueError(f"{self.name} is a DP generator: give dp=DPContext(...) (its ledger and budget)")
        self.dp = dp
        self.bins = check_int("bins", bins, 1, 10_000)
        self.max_categories = check_int("max_categories", max_categories, 1, 1_000_000)
        if not 0 <= domain_share < 1:
            raise ValueError(f"domain_share must be in [0, 1); got {domain_share!r}")
        self.domain_share = float(domain_share)
        #: Share of the fit's δ the learned labels' thresholds may spend (the rest converts ρ to ε).
        self.domain_delta_share = 0.01
        #: Size numeric bins to the budget and a DP record count (dp_domain.quantile_levels); off by default.
        self.adaptive_bins = bool(adaptive_bins)
        self.domain_report_: dict[str, Any] = {}
        self.domain_measurements_: list[Measurement] = []
        self.bounds = dict(bounds or {})
        self.labels = {k: list(v) for k, v in (labels or {}).items()}
        self.min_count = check_min_count(min_count)

    def fit(
        self,
        records: Sequence[Mapping[str, Any]] | pd.DataFrame,
        schema: RecordSchema,
        *,
        progress: Progress | None = None,
        warm_start: Any = None,
    ) -> Self:
        """Measure ``records`` with DP within the fit's budget, fit the model, charge the ledger."""
        del warm_start  # each fit measures its own data; the accountant is what carries over
        report = progress or (lambda fraction, detail: None)
        frame = column_frame(records, schema)
        if len(frame) == 0:
            raise ModelError("cannot fit a generator on zero records")
        fields = modelled_fields(schema)
        if not fields:
            raise ModelError("the schema has no field a marginal model can cover")
        context = self.dp
        accountant = context.accountant()
        ledger = PrivacyLedger(context.ledger_path)
        plan = DomainPlan(
            fields,
            bins=self.bins,
            bounds=self.bounds,
            labels=self.labels,
            max_categories=self.max_categories,
            min_count=self.min_count,
            adaptive_bins=self.adaptive_bins,
        )
        domain_delta = context.delta * self.domain_delta_share if plan.learned else 0.0
        prior = ledger.key_spend(context.stream, context.scope, context.unit, context.key)
        if prior is not None:
            # A retry of a fit whose spend is recorded (its model was never published): redo it within that spend.
            rho = prior.rho
            domain_delta = prior.delta
        else:
            before = accountant.epsilon(context.delta)
            target = min(before + context.epsilon_per_fit, context.epsilon)
            rho = _rho_for(accountant, context, target, domain_delta)
            accountant.check(context, rho=rho, delta=domain_delta)
        domain_rho = rho * self.domain_share * plan.paid_fraction()
        learned = learn_domains(frame, plan, rho=domain_rho, delta=domain_delta)
        attributes, points, domain_releases = learned.attributes, learned.points, learned.releases
        self.domain_report_ = {
            "rho_share": self.domain_share * plan.paid_fraction(),
            "delta_share": self.domain_delta_share if plan.learned else 0.0,
            "rho": domain_rho,
            "delta": domain_delta,
            "fields": learned.report,
        }
        check_domains(fields, attributes, learned.report)
        codecs = [codec_from_attribute(f, a, points.get(f.name, ())) for f, a in zip(fields, attributes, strict=True)]
        tokens = encode_frame(codecs, frame)
        measurer = _Measurer(tokens, [c.name for c in codecs], {c.name: c.size for c in codecs})
        measurer.free = _label_measurements(codecs, learned.label_counts, learned.report)
        self.domain_measurements_ = list(measurer.free)
        report(0.05, "domains learned")
        spent_domain = sum(r.spend.rho for r in domain_releases)
        self._measure_and_fit(measurer, schema, codecs, rho - spent_domain, report)
        releases = [*domain_releases, *measurer.releases]
        total_rho = sum(r.spend.rho for r in releases)
        if prior is None:
            ledger.charge(
                stream=context.stream,
                scope=context.scope,
                unit=context.unit,
                releases=releases,
                budget=None,
                key=context.key,
            )
        after = accountant.refresh().epsilon(context.delta)
        self.guarantee_ = {
            "kind": "formal",
            "mechanism": self.name,
            "epsilon": after,
            "delta": context.delta,
            "rho_fit": total_rho,
            "epsilon_fit": rho_to_epsilon(total_rho, context.delta - domain_delta) if total_rho > 0 else 0.0,
            "unit": context.unit,
            "releases": float(len(releases)),
        }
        report(1.0, "fitted")
        return self

    def _measure_and_fit(
        self, measurer: _Measurer, schema: RecordSchema, codecs: Sequence[Codec], rho: float, report: Progress
    ) -> None:
        raise NotImplementedError


def _label_measurements(
    codecs: Sequence[Codec], counts: Mapping[str, Mapping[str, int]], report: Mapping[str, Mapping[str, Any]]
) -> list[Measurement]:
    """The DP domain's noisy label counts as 1-way measurements (free: the release is already charged).

    The stability histogram released each kept label's count plus discrete-Gaussian noise of std
    ``sigma``: a measurement of those cells of the field's 1-way marginal. The other cells
    (``__other__``, ``__null__``) were not released: weight 0, so they add nothing to the loss.
    """
    out = []
    for codec in codecs:
        released = counts.get(codec.name)
        if not released or not isinstance(codec, LabelCodec):
            continue
        values = np.zeros(codec.size, dtype=np.float64)
        weights = np.zeros(codec.size, dtype=np.float64)
        for i, label in enumerate(codec.attribute.labels):
            if label in released:
                values[i] = float(released[label])
                weights[i] = 1.0
        out.append(Measurement((codec.name,), values, float(report[codec.name]["sigma"]), weights))
    return out


def _rho_for(accountant: ModelAccountant, context: DPContext, target: float, extra_delta: float) -> float:
    """The largest ρ whose fit keeps the composed model ε at most ``target`` (0 when nothing is left)."""
    if accountant.epsilon(context.delta, extra_delta=extra_delta) >= target:
        return 0.0
    lo, hi = 0.0, 1e-3
    while accountant.epsilon(context.delta, extra_rho=hi, extra_delta=extra_delta) < target:
        lo, hi = hi, hi * 2
    for _ in range(60):
        mid = (lo + hi) / 2
        if accountant.epsilon(context.delta, extra_rho=mid, extra_delta=extra_delta) <= target:
            lo = mid
        else:
            hi = mid
    return lo


class AIMGenerator(_BudgetedModel):
    """AIM on Private-PGM (see the module docstring).

    Args:
        seed: seeds estimation-independent randomness (sampling).
        dp: ledger, stream and budget of the fit (required).
        bins: DP quantile bins per numeric field.
        degree: workload = every ``degree``-way marginal (with at most ``max_cells`` cells).
        max_cells: largest workload marginal.
        rounds: planned rounds (``4 * fields`` by default; the paper uses 16; at least ``2 * fields``).
        max_model_size: largest junction tree, in MB, once the whole budget is spent.
        round_iters: mirror-descent steps per round (warm-started from the previous round).
        iters: mirror-descent steps of the final estimate.
        domain_share: share of the fit's ρ spent learning domains that are not declared.
        bounds / labels: declared numeric bounds and categorical domains (cheaper, exact).
        max_categories: most learned labels per categorical field.
        min_count: k; a learned label whose *noisy* count is below it is dropped (post-processing).
        adaptive_bins: fewer numeric bins when the budget cannot place outer quantiles (opt-in;
            see :func:`~synthstream.models.dp_domain.quantile_levels`).
    """

    name: ClassVar[str] = "aim"

    def __init__(
        self,
        seed: int = 0,
        *,
        dp: DPContext | None = None,
        bins: int = 32,
        degree: int = 2,
        max_cells: int = 10_000,
        rounds: int | None = None,
        max_model_size: float = 8.0,
        round_iters: int = 200,
        iters: int = 1_000,
        domain_share: float = 0.35,
        bounds: Mapping[str, tuple[float, float]] | None = None,
        labels: Mapping[str, Sequence[str]] | None = None,
        max_categories: int = 100,
        min_count: int = DEFAULT_MIN_COUNT,
        adaptive_bins: bool = False,
    ) -> None:
        super().__init__(
            seed,
            iters,
            dp=dp,
            bins=bins,
            max_categories=max_categories,
            domain_share=domain_share,
            bounds=bounds,
            labels=labels,
            min_count=min_count,
            adaptive_bins=adaptive_bins,
        )
        self.degree = check_int("degree", degree, 1, 5)
        self.max_cells = check_int("max_cells", max_cells, 1, 10**9)
        self.rounds = None if rounds is None else check_int("rounds", rounds, 1, 100_000)
        if not max_model_size > 0:
            raise ValueError("max_model_size must be positive")
        self.max_model_size = float(max_model_size)
        self.round_iters = check_int("round_iters", round_iters, 1, 1_000_000)
        self.rounds_: int = 0

    def __repr__(self) -> str:
        return (
            f"AIMGenerator(seed={self.seed}, bins={self.bins}, degree={self.degree}, rounds={self.rounds}, "
            f"max_model_size={self.max_model_size}, round_iters={self.round_iters}, iters={self.iters})"
        )

    def _measure_and_fit(
        self, measurer: _Measurer, schema: RecordSchema, codecs: Sequence[Codec], rho: float, report: Progress
    ) -> None:
        from mbi.junction_tree import hypothetical_model_size

        from synthstream.models.pgm import _domain

        columns = measurer.columns
        sizes = measurer.sizes
        domain = _domain(columns, sizes)
        workload = [
            cl
            for cl in itertools.combinations(columns, min(self.degree, len(columns)))
            if domain.size(cl) <= self.max_cells
        ]
        candidates = _compile_workload(workload or [(c,) for c in columns])
        # The paper plans 16d rounds. Measured on Adult (15 fields, 32,561 rows, ε = 1, one core): 2d
        # planned -> 8 rounds run, 35 s; 4d -> 16 rounds, 100 s; 8d -> over 20 minutes (later rounds
        # estimate ever larger junction trees). The 1-way marginals take d rounds' budget: at least 2d.
        rounds = max(self.rounds or 4 * len(columns), 2 * len(columns))
        sigma = math.sqrt(rounds / (2 * 0.9 * rho))
        epsilon = math.sqrt(8 * 0.1 * rho / rounds)
        measurements = [measurer.measure((c,), 0.5 / sigma**2, "aim:1way") for c in columns]
        prior = measurer.free
        model = estimate(columns, sizes, [*prior, *measurements], iters=self.round_iters)
        answers = {cl: measurer.exact(cl) for cl in candidates}
        terminate = False
        t = 0
        while not terminate:
            remaining = rho - measurer.rho
            if remaining <= rho * 1e-6:
                break
            t += 1
            if remaining < 2 * (0.5 / sigma**2 + epsilon**2 / 8):
                # Spend whatever is left on one last round.
                sigma = math.sqrt(1 / (2 * 0.9 * remaining))
                epsilon = math.sqrt(8 * 0.1 * remaining)
                terminate = True
            size_limit = self.max_model_size * min(1.0, (measurer.rho + 0.5 / sigma**2 + epsilon**2 / 8) / rho)
            free = set(_downward_closure(model.cliques))
            small = {
                cl: w
                for cl, w in candidates.items()
                if cl in free or hypothetical_model_size(domain, [*model.cliques, cl]) <= size_limit
            }
            names = list(small)
            current = model_marginals(model, names)
            scores = []
            for cl in names:
                bias = math.sqrt(2 / math.pi) * sigma * domain.size(cl)
                scores.append(small[cl] * (float(np.abs(answers[cl] - current[cl]).sum()) - bias))
            pick = names[measurer.select(scores, epsilon**2 / 8, max(small.values()), f"aim:select:{t}")]
            before = current[pick]
            measurements.append(measurer.measure(pick, 0.5 / sigma**2, f"aim:round{t}"))
            model = estimate(
                columns, sizes, [*prior, *measurements], iters=self.round_iters, potentials=model.potentials
            )
            after = model_marginal(model, pick)
            if np.abs(after - before).sum() <= sigma * math.sqrt(2 / math.pi) * domain.size(pick):
                sigma /= 2  # the measurement no longer moved the model: measure more precisely
                epsilon *= 2
            report(min(0.95, 0.05 + 0.9 * measurer.rho / rho), f"round {t}")
        self.rounds_ = t
        model = estimate(columns, sizes, [*prior, *measurements], iters=self.iters, potentials=model.potentials)
        self._finish(model, measurements, schema, codecs, {}, [])


def _powerset(clique: Sequence[str]) -> list[tuple[str, ...]]:
    return [tuple(c) for r in range(1, len(clique) + 1) for c in itertools.combinations(clique, r)]


def _downward_closure(cliques: Sequence[Sequence[str]]) -> list[tuple[str, ...]]:
    out: set[tuple[str, ...]] = set()
    for cl in cliques:
        out.update(_powerset(tuple(cl)))
    return sorted(out, key=len)


def _compile_workload(workload: Sequence[tuple[str, ...]]) -> dict[tuple[str, ...], float]:
    """AIM's candidate weights: every subset of a workload clique, weighted by its overlap with the workload."""
    return {cl: float(sum(len(set(cl) & set(w)) for w in workload)) for cl in _downward_closure(workload)}


class MSTGenerator(_BudgetedModel):
    """MST on Private-PGM (see the module docstring); the budget splits in thirds as in the paper."""

    name: ClassVar[str] = "mst"

    def __init__(
        self,
        seed: int = 0,
        *,
        dp: DPContext | None = None,
        bins: int = 32,
        iters: int = 1_000,
        domain_share: float = 0.35,
        bounds: Mapping[str, tuple[float, float]] | None = None,
        labels: Mapping[str, Sequence[str]] | None = None,
        max_categories: int = 100,
        compress: bool = True,
        min_count: int = DEFAULT_MIN_COUNT,
        adaptive_bins: bool = False,
    ) -> None:
        super().__init__(
            seed,
            iters,
            dp=dp,
            bins=bins,
            max_categories=max_categories,
            domain_share=domain_share,
            bounds=bounds,
            labels=labels,
            min_count=min_count,
            adaptive_bins=adaptive_bins,
        )
        self.compress = bool(compress)

    def __repr__(self) -> str:
        return f"MSTGenerator(seed={self.seed}, bins={self.bins}, iters={self.iters}, compress={self.compress})"

    def _measure_and_fit(
        self, measurer: _Measurer, schema: RecordSchema, codecs: Sequence[Codec], rho: float, report: Progress
    ) -> None:
        columns = measurer.columns
        d = len(columns)
        third = rho / 3
        ones = [measurer.measure((c,), third / d, "mst:1way") for c in columns]
        sizes = dict(measurer.sizes)
        expand: dict[str, list[IntArray]] = {}
        free = measurer.free
        if self.compress:
            measurer, ones, expand = _compress(measurer, ones)
            sizes = dict(measurer.sizes)
            free = [_remap(m, expand[m.clique[0]]) for m in free]
        report(0.3, "1-way measured")
        edges = self._select(measurer, [*free, *ones], third) if d > 1 else []
        report(0.6, "tree selected")
        twos = [measurer.measure(e, third / len(edges), "mst:2way") for e in edges] if edges else []
        model = estimate([c.name for c in codecs], sizes, [*free, *ones, *twos], iters=self.iters)
        self._finish(model, [*ones, *twos], schema, codecs, expand, [])

    def _select(self, measurer: _Measurer, ones: Sequence[Measurement], rho: float) -> list[tuple[str, str]]:
        import networkx as nx

        columns = measurer.columns
        singles, total = _independent_marginals(ones, measurer.sizes)
        pairs = list(itertools.combinations(columns, 2))
        current = {(a, b): np.outer(singles[a], singles[b]).ravel() / total for a, b in pairs}
        weights = {(a, b): float(np.abs(measurer.exact((a, b)) - current[a, b]).sum()) for a, b in pairs}
        graph = nx.Graph()
        graph.add_nodes_from(columns)
        components = {c: c for c in columns}

        def root(x: str) -> str:
            while components[x] != x:
                components[x] = components[components[x]]
                x = components[x]
            return x

        r = len(columns)
        edges: list[tuple[str, str]] = []
        per = rho / (r - 1)
        for i in range(r - 1):
            options = [e for e in weights if root(e[0]) != root(e[1])]
            pick = options[measurer.select([weights[e] for e in options], per, 1.0, f"mst:select:{i}")]
            components[root(pick[0])] = root(pick[1])
            edges.append(pick)
            graph.add_edge(*pick)
        return edges


def _independent_marginals(
    measurements: Sequence[Measurement], sizes: Mapping[str, int]
) -> tuple[dict[str, FloatArray], float]:
    """The L2 fit of a model of independent fields to 1-way measurements, in closed form, and its total.

    What mirror descent on those measurements converges to, without compiling a model (which, with
    60 fields, took most of MST's time): each cell's measurements combine by inverse variance
    (a cell of weight w measured y with std σ estimates y / w with std σ / w); the record count is
    the inverse-variance mean of the fully measured fields' sums; each field's cells are then the
    weighted projection onto {x >= 0, sum x = total}. Unmeasured cells share what is left.
    """
    num = {a: np.zeros(sizes[a]) for a in sizes}
    prec = {a: np.zeros(sizes[a]) for a in sizes}
    for m in measurements:
        (attr,) = m.clique
        w = np.ones(len(m.values)) if m.weights is None else np.asarray(m.weights, dtype=np.float64)
        num[attr] += w * np.asarray(m.values, dtype=np.float64) / m.stddev**2
        prec[attr] += w**2 / m.stddev**2
    estimates, weights = [], []
    for attr in sizes:
        if len(prec[attr]) and (prec[attr] > 0).all():
            estimates.append(float((num[attr] / prec[attr]).sum()))
            weights.append(1.0 / float((1.0 / prec[attr]).sum()))
    total = max(float(np.dot(estimates, weights) / np.sum(weights)) if estimates else 1.0, 1.0)
    out = {}
    for attr in sizes:
        seen = prec[attr] > 0
        y = np.where(seen, num[attr] / np.where(seen, prec[attr], 1.0), 0.0)
        x = np.zeros(sizes[attr])
        kept = np.maximum(y, 0.0)
        if (~seen).any() and kept[seen].sum() <= total:
            x[seen] = kept[seen]
            x[~seen] = (total - kept[seen].sum()) / (~seen).sum()
        else:
            lo, hi = -total * 1e6, total * 1e6  # sum(max(0, y - λ / p)) decreases in λ
            for _ in range(100):
                lam = (lo + hi) / 2
                mass = np.maximum(0.0, y[seen] - lam / prec[attr][seen]).sum()
                lo, hi = (lam, hi) if mass > total else (lo, lam)
            x[seen] = np.maximum(0.0, y[seen] - hi / prec[attr][seen])
        out[attr] = x * (total / max(x.sum(), 1e-12))
    return out, total


def _remap(m: Measurement, groups: Sequence[IntArray]) -> Measurement:
    """A weighted 1-way measurement moved onto a compressed domain: merged cells are left unmeasured."""
    weights = m.weights if m.weights is not None else np.ones(len(m.values))
    values = np.zeros(len(groups), dtype=np.float64)
    new_weights = np.zeros(len(groups), dtype=np.float64)
    for j, group in enumerate(groups):
        if len(group) == 1:
            values[j], new_weights[j] = m.values[group[0]], weights[group[0]]
    return Measurement(m.clique, values, m.stddev, new_weights)


def _compress(
    measurer: _Measurer, ones: Sequence[Measurement]
) -> tuple[_Measurer, list[Measurement], dict[str, list[IntArray]]]:
    """MST's domain compression: cells whose noisy 1-way count is below 3σ merge into one (post-processing)."""
    maps: dict[str, IntArray] = {}
    expand: dict[str, list[IntArray]] = {}
    new_ones: list[Measurement] = []
    sizes = dict(measurer.sizes)
    for m in ones:
        (col,) = m.clique
        keep = m.values >= 3 * m.stddev
        if keep.all() or keep.sum() == 0:
            new_ones.append(m)
            expand[col] = [np.asarray([i]) for i in range(len(m.values))]
            maps[col] = np.arange(len(m.values))
            continue
        kept = np.flatnonzero(keep)
        merged = np.flatnonzero(~keep)
        mapping = np.full(len(m.values), len(kept), dtype=np.int64)
        mapping[kept] = np.arange(len(kept))
        maps[col] = mapping
        expand[col] = [np.asarray([i]) for i in kept] + [merged]
        # The merged cell's noisy count has variance |merged| σ²; rescale it to σ so one stddev fits all.
        scale = math.sqrt(len(merged))
        values = np.append(m.values[kept], m.values[merged].sum() / scale)
        weights = np.ones(len(values))
        weights[-1] = 1 / scale
        new_ones.append(Measurement((col,), values, m.stddev, weights))
        sizes[col] = len(kept) + 1
    tokens = measurer.tokens.copy()
    for j, col in enumerate(measurer.columns):
        tokens[:, j] = maps[col][tokens[:, j]]
    compressed = _Measurer(tokens, measurer.columns, sizes)
    compressed.releases = measurer.releases
    compressed.rho = measurer.rho
    return compressed, new_ones, expand


# ---------------------------------------------------------------------------------------------
# from the stream
# ---------------------------------------------------------------------------------------------


class StreamMarginalGenerator(_MarginalModel):
    """Fits to the windowed DP marginals already in the ledger: no record is read, nothing is spent.

    Args:
        seed: seeds sampling.
        ledger_path: the pipeline's privacy ledger.
        stream: whose released marginals to use.
        last_windows: how many of the newest windows to combine (H).
        iters: mirror-descent steps.
    """

    name: ClassVar[str] = "aim_stream"

    def __init__(
        self,
        seed: int = 0,
        *,
        ledger_path: Any = None,
        stream: str | None = None,
        last_windows: int = 10,
        iters: int = 1_000,
    ) -> None:
        super().__init__(seed, iters)
        if ledger_path is None or not stream:
            raise ValueError("the from-the-stream model needs ledger_path and stream (where the marginals are)")
        self.ledger_path = ledger_path
        self.stream = stream
        self.last_windows = check_int("last_windows", last_windows, 1, 10**9)
        self.windows_: tuple[int, int] | None = None

    def __repr__(self) -> str:
        return f"StreamMarginalGenerator(seed={self.seed}, stream={self.stream!r}, last_windows={self.last_windows})"

    def fit(
        self,
        records: Sequence[Mapping[str, Any]] | pd.DataFrame,
        schema: RecordSchema,
        *,
        progress: Progress | None = None,
        warm_start: Any = None,
    ) -> Self:
        """Fit to the ledger's noisy marginals; ``records`` is ignored (it may be empty)."""
        del records, warm_start  # by design: the model never reads a record
        report = progress or (lambda fraction, detail: None)
        ledger = PrivacyLedger(self.ledger_path)
        rows = ledger.marginals(self.stream, last_windows=self.last_windows)
        if not rows:
            raise ModelError(f"the ledger holds no released marginals of stream {self.stream!r} yet")
        recorded = ledger.domains(self.stream)
        covered = [f for f in modelled_fields(schema) if f.name in recorded]
        missing = [f.name for f in modelled_fields(schema) if f.name not in recorded and not f.nullable]
        if missing:
            raise ModelError(
                f"the stream's statistics release no marginal of non-nullable fields {missing}: add them to stats"
            )
        absent = [f.name for f in modelled_fields(schema) if f.name not in recorded]
        attributes, _ = ledger_attributes(ledger, self.stream, covered)
        check_domains(covered, attributes)
        codecs = [codec_from_attribute(f, a) for f, a in zip(covered, attributes, strict=True)]
        sizes = {c.name: c.size for c in codecs}
        measurements, total = _sum_windows(rows, sizes)
        if not measurements:
            raise ModelError(f"the stream {self.stream!r} released no marginal over the schema's fields")
        windows = [int(r["window_index"]) for r in rows]
        self.windows_ = (min(windows), max(windows))
        report(0.2, f"{len(measurements)} marginals over windows {self.windows_[0]}-{self.windows_[1]}")
        self.fit_measurements(measurements, schema, codecs, absent=absent, known_total=total)
        spend = ledger.window_spend(self.stream, "stats", "record", self.windows_[0], self.windows_[1])
        self.guarantee_ = {
            "kind": "formal",
            "mechanism": "stats marginals (post-processing)",
            "rho": spend.rho,
            "windows": f"{self.windows_[0]}-{self.windows_[1]}",
            "extra_cost": 0.0,
        }
        report(1.0, "fitted")
        return self


def _sum_windows(rows: Sequence[Mapping[str, Any]], sizes: Mapping[str, int]) -> tuple[list[Measurement], float | None]:
    """One measurement per released query: the windows' noisy answers summed, their variances added."""
    sums: dict[tuple[str, ...], FloatArray] = {}
    variances: dict[tuple[str, ...], float] = {}
    count = 0.0
    count_var = 0.0
    for row in rows:
        query = tuple(row["query"])
        answer = np.asarray(row["answer"], dtype=np.float64)
        var = float(row["noise_std"]) ** 2
        if row["kind"] == "count":
            count += float(answer.sum())
            count_var += var
            continue
        if row["kind"] != "marginal" or not all(a in sizes for a in query):
            continue
        expected = int(np.prod([sizes[a] for a in query]))
        if answer.size != expected:
            raise ModelError(f"released marginal over {list(query)} has {answer.size} cells; the domain has {expected}")
        sums[query] = sums[query] + answer if query in sums else answer
        variances[query] = variances.get(query, 0.0) + var
    measurements = [Measurement(q, sums[q], math.sqrt(max(variances[q], 1e-12))) for q in sums]
    return measurements, (count if count_var > 0 else None)


def attributes_of(codecs: Sequence[Codec]) -> list[Attribute]:
    """The DP domains behind ``codecs`` (for lineage and tests)."""
    return [c.attribute for c in codecs]
