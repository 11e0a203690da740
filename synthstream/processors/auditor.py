"""The auditor: attacks, distances and quality of one model version, judged against thresholds.

:class:`Auditor` is a pure processor (no Kafka, no registry): given a fitted generator,
the records it was trained on and the control records it never saw, it samples the
generator and returns an :class:`AuditReport` with

* every requested anonymeter attack (singling out univariate and multivariate,
  linkability, inference per secret field) with its risk, confidence interval and how many
  attempts could be built (:mod:`synthstream.evaluation.privacy_risk`);
* the distance measures (DCR share, identical-match shares, NNDR), the identical-match
  share judged against the same share among real control records;
* quality: column shapes, pair trends and, with a target field, TSTR
  (:mod:`synthstream.evaluation.quality`), plus the per-field distributions and
  association matrices the HTML report draws;
* the verbatim-leak check (:mod:`synthstream.evaluation.leaks`): per field, the share of
  synthetic rows carrying a training value rare in training (fewer than
  ``rare_value_k`` records) against the same share among control records, and every
  recognised identifier or name of the synthetic sample that is also in the training data;
* the verdict, ``pass`` only when every risk is under its ceiling, every quality score over
  its floor, no verbatim leak was found and the control set was large enough to measure
  anything; ``reasons`` says which threshold each failure crossed.

Fail closed: an attack that raises, or a leak check that raises, fails the verdict with a
reason naming the attack (or the check) and the exception type; only what is explicitly
known to make an attack impossible on the data is reported as "not built". The attacks are
data (:class:`Attack`), built once from the config; a caller may pass its own list.

The attacks see a random sample of at most ``max_attack_rows`` training records and a
control sample of the *same* size (DESIGN.md: a smaller control inflates the measured
risk). Attack counts are scaled to the data: an attack gets at most one attempt per
attacked record (``n_attacks = min(configured, attacked records)``), the univariate
singling-out attack at most as many as the synthetic table has singling-out values, and
the coverage rule (``min_attack_coverage``) is judged against those attempts the data
allows; the report keeps the configured total (``attacks_configured``) and each scaled
attack says so in its detail. Otherwise a table of 2,400 rows (480 control records) could
never reach the coverage of 1,000 attempts per attack, and its versions were all rejected.

The audit is CPU-heavy (seconds to a minute): the promotion gate runs it in a worker process.
It pickles (it crosses into that process) and is reproducible: the same seed, model and data
give the same report.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from synthstream.config import AuditConfig
from synthstream.errors import AttackError
from synthstream.evaluation.leaks import LeakResult, VerbatimLeakCheck
from synthstream.evaluation.privacy_risk import (
    attack_frame,
    audited_fields,
    distance_metrics,
    inference_risk,
    linkability_risk,
    singling_out_risk,
)
from synthstream.evaluation.quality import (
    Associations,
    FieldDistribution,
    association_matrices,
    fidelity_scores,
    field_distributions,
    tstr_scores,
)
from synthstream.models.base import Generator
from synthstream.models.registry import Lineage
from synthstream.schemas.events import AttackRisk, LeakFinding, PrivacyGuarantee, UtcDatetime
from synthstream.schemas.record import RecordSchema

__all__ = ["Attack", "AuditRecord", "AuditReport", "Auditor", "warm_up_audit"]

Record = Mapping[str, Any]


class AuditReport(BaseModel):
    """What one audit measured and decided (stored as the version's ``audit.json``, drawn by the report)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    verdict: Literal["pass", "fail"] = Field(description="Whether the version may be promoted.")
    reasons: list[str] = Field(description="Thresholds crossed (fail), or a one-line summary (pass).")
    attacks: list[AttackRisk] = Field(description="Every requested attack with its risk and CI.")
    attacks_requested: int = Field(
        ge=0, description="Attack attempts requested over all attacks, as the data allows (the coverage's base)."
    )
    attacks_configured: int = Field(
        default=0, ge=0, description="Attack attempts the configuration asked for, before scaling to the data."
    )
    attacks_built: int = Field(ge=0, description="Attack attempts built over all attacks.")
    risks: dict[str, float] = Field(description="Attack point estimates and distance measures by name.")
    quality: dict[str, float] = Field(description="Quality scores by name.")
    distributions: list[FieldDistribution] = Field(default_factory=list, description="Per-field distributions.")
    associations: Associations | None = Field(default=None, description="Association matrices, real and synthetic.")
    training_rows: int = Field(ge=0, description="Records the version was trained on.")
    control_rows: int = Field(ge=0, description="Control records available.")
    attack_rows: int = Field(ge=0, description="Training (and as many control) records given to the attacks.")
    synthetic_rows: int = Field(ge=0, description="Synthetic records sampled.")
    seed: int = Field(description="Seed of the audit.")
    seconds: dict[str, float] = Field(default_factory=dict, description="Wall time per stage.")
    thresholds: dict[str, float] = Field(default_factory=dict, description="The ceilings and floors applied.")
    leaks: list[LeakFinding] | None = Field(
        default=None, description="Verbatim-leak findings per field (None: the check could not run)."
    )

    def metrics(self) -> dict[str, float]:
        """Flat ``risk.<name>`` / ``quality.<name>`` numbers (for the lifecycle event)."""
        out = {f"risk.{k}": v for k, v in self.risks.items()}
        out.update({f"quality.{k}": v for k, v in self.quality.items()})
        return out


class AuditRecord(BaseModel):
    """The stored audit of one model version (``extra/audit.json`` in the registry): what the report renders."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    stream: str = Field(description="Stream the model belongs to.")
    model_version: int = Field(ge=1, description="Audited model version.")
    generator: str = Field(description="Generator kind.")
    audited_at: UtcDatetime = Field(description="When the audit finished (UTC).")
    audit_seconds: float = Field(ge=0, description="Wall time of the audit, sampling included.")
    event_id: str = Field(description="event_id of the PrivacyAuditEvent published for it.")
    guarantee: PrivacyGuarantee = Field(description="The formal guarantee handed to the audit, or empirical only.")
    lineage: Lineage = Field(description="Where the version came from.")
    report: AuditReport = Field(description="What the audit measured and decided.")


_SINGLING_OUT_MODES: tuple[Literal["univariate", "multivariate"], ...] = ("univariate", "multivariate")
#: What an attack function is called with: (training sample, synthetic, control sample), seed and confidence level.
AttackFunction = Callable[..., AttackRisk]


@dataclass(frozen=True)
class Attack:
    """One attack of the audit: its name, family, attempts requested, and the function that measures it.

    ``run`` is called as ``run(ori, syn, control, seed=..., confidence_level=...)`` on the
    attack frames and returns an :class:`AttackRisk`; the default attacks are
    :func:`functools.partial` objects over :mod:`synthstream.evaluation.privacy_risk` (they
    pickle into the audit's worker process). ``seed_offset`` is added to the audit's seed so
    attacks draw different targets.
    """

    name: str
    family: Literal["singling_out", "linkability", "inference"]
    requested: int
    run: AttackFunction
    seed_offset: int = 0
    #: Whether the attempts scale down to the attacked records (``run`` takes ``n_attacks``).
    scales: bool = False

    def sized(self, rows: int) -> Attack:
        """Return this attack with at most one attempt per attacked record (``rows``), when it ``scales``."""
        allowed = min(self.requested, rows)
        if not self.scales or allowed == self.requested or allowed <= 0:
            return self
        return dataclasses.replace(self, requested=allowed, run=functools.partial(self.run, n_attacks=allowed))


def warm_up_audit() -> bool:
    """Import the audit stack and compile anonymeter's numba kernels in a fresh worker (takes seconds)."""
    import anonymeter.evaluators  # noqa: F401  # first: anonymeter's neighbours module imports circularly
    from anonymeter.neighbors.mixed_types_kneighbors import MixedTypeKNeighbors

    tiny = pd.DataFrame({"x": [0.0, 1.0, 2.0], "c": ["a", "b", "a"]})
    MixedTypeKNeighbors(n_neighbors=1, n_jobs=1).fit(tiny).kneighbors(tiny)
    import sklearn.ensemble  # noqa: F401  # imported for its import time only

    return True


class Auditor:
    """Audits generators of one schema with one :class:`~synthstream.config.AuditConfig`.

    Field names in the config (secret fields, target, linkability column sets) must be
    audited fields of ``schema`` (not identifiers or free text), and ``leak_entities`` known
    to the leak check: a :class:`ValueError` lists the valid choices otherwise. ``attacks``
    replaces the attacks built from the config (:meth:`default_attacks`).
    """

    def __init__(
        self,
        schema: RecordSchema,
        config: AuditConfig | None = None,
        *,
        attacks: Sequence[Attack] | None = None,
        replaced_fields: Sequence[str] = (),
        public_values: Mapping[str, Sequence[Any]] | None = None,
    ) -> None:
        self.schema = schema
        self.config = config if config is not None else AuditConfig()
        self._fields = audited_fields(schema)
        names = [f.name for f in self._fields]
        if not names:
            raise ValueError("the schema has no field the audit can measure (all identifiers or free text)")
        cfg = self.config
        problems = []
        wanted = list(cfg.secret_fields) + ([cfg.target_field] if cfg.target_field else [])
        if cfg.linkability_aux is not None:
            wanted += [*cfg.linkability_aux[0], *cfg.linkability_aux[1]]
        unknown = sorted({n for n in wanted if n not in names})
        if unknown:
            problems.append(f"audit fields {unknown} are not audited fields of the schema; choose from {names}")
        if problems:
            raise ValueError("; ".join(problems))
        self._secrets = list(cfg.secret_fields) or ([cfg.target_field] if cfg.target_field else [])
        if cfg.linkability_aux is not None:
            self._aux: tuple[list[str], list[str]] = (list(cfg.linkability_aux[0]), list(cfg.linkability_aux[1]))
        else:
            half = max(1, len(names) // 2)
            self._aux = (names[:half], names[half:])
        self._regression = {f.name: f.continuous for f in self._fields}
        self.attacks: tuple[Attack, ...] = tuple(self.default_attacks() if attacks is None else attacks)
        self.leak_check = VerbatimLeakCheck(
            schema,
            k=cfg.rare_value_k,
            max_rare_share=cfg.max_rare_value_share,
            entities=cfg.leak_entities,
            confidence_level=cfg.confidence_level,
            replaced_fields=replaced_fields,
            public_values=public_values,
        )

    def default_attacks(self) -> list[Attack]:
        """The attacks the config asks for: singling out (both modes), linkability, inference per secret."""
        cfg = self.config
        out = [
            Attack(
                name=f"singling_out_{mode}",
                family="singling_out",
                requested=cfg.n_attacks,
                run=functools.partial(
                    singling_out_risk,
                    mode=mode,
                    n_attacks=cfg.n_attacks,
                    n_cols=cfg.singling_out_cols,
                    max_attempts=cfg.singling_out_max_attempts,
                ),
                seed_offset=offset,
                scales=True,
            )
            for offset, mode in enumerate(_SINGLING_OUT_MODES)
        ]
        out.append(
            Attack(
                name="linkability",
                family="linkability",
                requested=cfg.n_attacks,
                run=functools.partial(
                    linkability_risk,
                    aux_cols=self._aux,
                    n_attacks=cfg.n_attacks,
                    n_neighbors=cfg.linkability_neighbors,
                    n_jobs=cfg.n_jobs,
                ),
                seed_offset=2,
                scales=True,
            )
        )
        out += [
            Attack(
                name=f"inference:{secret}",
                family="inference",
                requested=cfg.n_attacks,
                run=functools.partial(
                    inference_risk,
                    secret=secret,
                    regression=self._regression[secret],
                    n_attacks=cfg.n_attacks,
                    n_jobs=cfg.n_jobs,
                ),
                seed_offset=offset,
                scales=True,
            )
            for offset, secret in enumerate(self._secrets, start=3)
        ]
        return out

    def __repr__(self) -> str:
        return (
            f"Auditor(schema={self.schema.name!r}, secrets={self._secrets}, target={self.config.target_field!r}, "
            f"synthetic_rows={self.config.synthetic_rows})"
        )

    def __call__(
        self, model: Generator, training: Sequence[Record], control: Sequence[Record], *, seed: int
    ) -> AuditReport:
        """Sample ``config.synthetic_rows`` rows from ``model`` (with ``seed``) and audit them."""
        started = time.perf_counter()
        synthetic = pd.DataFrame(model.sample_columns(self.config.synthetic_rows, seed=seed))
        sample_s = time.perf_counter() - started
        report = self.audit(training, control, synthetic, seed=seed)
        return report.model_copy(update={"seconds": {"sample": sample_s, **report.seconds}})

    def audit(
        self,
        training: Sequence[Record] | pd.DataFrame,
        control: Sequence[Record] | pd.DataFrame,
        synthetic: Sequence[Record] | pd.DataFrame,
        *,
        seed: int,
    ) -> AuditReport:
        """Audit a synthetic table against the training records and the control records.

        BLAS and OpenMP pools are limited to ``config.n_jobs`` threads for the call: on a
        small machine shared with the stream, oversubscribed pools made the audit 10-40x slower.
        """
        from threadpoolctl import threadpool_limits

        with threadpool_limits(limits=self.config.n_jobs):
            return self._audit(training, control, synthetic, seed=seed)

    def _audit(
        self,
        training: Sequence[Record] | pd.DataFrame,
        control: Sequence[Record] | pd.DataFrame,
        synthetic: Sequence[Record] | pd.DataFrame,
        *,
        seed: int,
    ) -> AuditReport:
        cfg = self.config
        seconds: dict[str, float] = {}
        clock = time.perf_counter()
        train_df = _frame(training)
        control_df = _frame(control)
        syn_df = _frame(synthetic)
        rng = np.random.default_rng(seed)
        n = min(len(train_df), len(control_df), cfg.max_attack_rows)
        train_sample = train_df.iloc[np.sort(rng.choice(len(train_df), size=n, replace=False))] if n else train_df
        control_sample = control_df.iloc[np.sort(rng.choice(len(control_df), size=n, replace=False))]
        ori = attack_frame(train_sample, self._fields)
        ctrl = attack_frame(control_sample, self._fields)
        syn = attack_frame(syn_df, self._fields)
        seconds["prepare"] = time.perf_counter() - clock

        reasons: list[str] = []
        enough_control = len(control_df) >= cfg.min_holdout and n > 0
        if not enough_control:
            reasons.append(
                f"control set has {len(control_df)} records; at least {cfg.min_holdout} are needed to measure risk"
            )
        sampled = len(syn_df) > 0
        if not sampled:
            reasons.append("the generator returned no synthetic rows: nothing could be measured")
        clock = time.perf_counter()
        leaks = self._leaks(train_df, control_df, syn_df)
        seconds["leaks"] = time.perf_counter() - clock
        if isinstance(leaks, str):
            reasons.append(leaks)
        else:
            reasons += leaks.reasons
        attacks, crashed = self._attacks(ori, syn, ctrl, seed, seconds, run=enough_control, rows=n)
        reasons += crashed
        risks = {a.name: float(a.risk) for a in attacks if a.risk is not None}
        if not isinstance(leaks, str):
            risks.update(leaks.summary)
        if enough_control and sampled:
            clock = time.perf_counter()
            distances = distance_metrics(
                ori,
                ctrl,
                syn,
                all_training=attack_frame(train_df, self._fields) if len(train_df) > n else ori,
                all_control=attack_frame(control_df, self._fields) if len(control_df) > n else ctrl,
            )
            risks.update(distances.as_dict(cfg.confidence_level))
            seconds["distances"] = time.perf_counter() - clock

        clock = time.perf_counter()
        reference = train_sample if n else train_df
        quality = fidelity_scores(reference.reset_index(drop=True), syn_df, self.schema) if sampled else {}
        seconds["fidelity"] = time.perf_counter() - clock
        target = cfg.target_field
        if target is not None and enough_control and sampled:
            clock = time.perf_counter()
            quality.update(tstr_scores(ori, syn, ctrl, target=target, regression=self._regression[target], seed=seed))
            seconds["tstr"] = time.perf_counter() - clock
        clock = time.perf_counter()
        real_summary = ori if n else attack_frame(train_df, self._fields)
        distributions = field_distributions(real_summary, syn) if sampled else []
        associations = association_matrices(real_summary, syn) if sampled else None
        seconds["summaries"] = time.perf_counter() - clock

        requested = sum(a.attacks_requested for a in attacks)
        built = sum(a.attacks_built for a in attacks)
        configured = sum(a.requested for a in self.attacks)
        reasons += self._judge(attacks, risks, quality, requested, built, configured)
        verdict: Literal["pass", "fail"] = "fail" if reasons else "pass"
        if not reasons:
            summary = "every measured risk is under its ceiling and every quality score over its floor"
            if requested < configured:
                summary += (
                    f"; attack attempts scaled to the data: {requested} of {configured} configured "
                    f"({n} records attacked), {built} built"
                )
            reasons = [summary]
        return AuditReport(
            verdict=verdict,
            reasons=reasons,
            attacks=attacks,
            attacks_requested=requested,
            attacks_configured=configured,
            attacks_built=built,
            risks=risks,
            quality=quality,
            distributions=distributions,
            associations=associations,
            training_rows=len(train_df),
            control_rows=len(control_df),
            attack_rows=n,
            synthetic_rows=len(syn_df),
            seed=seed,
            seconds=seconds,
            thresholds=self.thresholds(),
            leaks=None if isinstance(leaks, str) else leaks.findings,
        )

    def thresholds(self) -> dict[str, float]:
        """The ceilings and floors this auditor applies, by name."""
        cfg = self.config
        out = {
            "max_singling_out_risk": cfg.max_singling_out_risk,
            "max_linkability_risk": cfg.max_linkability_risk,
            "max_inference_risk": cfg.max_inference_risk,
            "max_dcr_share": cfg.max_dcr_share,
            "max_identical_match_excess": cfg.max_identical_match_excess,
            "min_attack_coverage": cfg.min_attack_coverage,
            "min_column_shapes": cfg.min_column_shapes,
            "min_pair_trends": cfg.min_pair_trends,
            "rare_value_k": float(cfg.rare_value_k),
            "max_rare_value_share": cfg.max_rare_value_share,
        }
        if cfg.target_field is not None:
            out["min_tstr_ratio"] = cfg.min_tstr_ratio
        return out

    def _leaks(self, training: pd.DataFrame, control: pd.DataFrame, synthetic: pd.DataFrame) -> LeakResult | str:
        """The leak check's result, or the reason it failed closed (the exception type only)."""
        try:
            return self.leak_check(training, control, synthetic)
        except Exception as exc:  # fail closed: a check that did not run found nothing, and proves nothing
            return f"the verbatim-leak check could not run ({type(exc).__name__}): failing closed"

    def _attacks(
        self,
        ori: pd.DataFrame,
        syn: pd.DataFrame,
        ctrl: pd.DataFrame,
        seed: int,
        seconds: dict[str, float],
        *,
        run: bool,
        rows: int = 0,
    ) -> tuple[list[AttackRisk], list[str]]:
        """Every attack's risk, and a reason per attack that crashed (the audit then fails).

        Each attack gets at most one attempt per attacked record (``rows``, see :meth:`Attack.sized`);
        a scaled attack's detail says how many attempts were configured.
        """
        if not run:
            return [
                AttackRisk(
                    name=a.name,
                    attack=a.family,
                    attacks_requested=a.requested,
                    attacks_built=0,
                    detail="not built: the control set is too small",
                )
                for a in self.attacks
            ], []
        out: list[AttackRisk] = []
        crashed: list[str] = []
        for configured in self.attacks:
            attack = configured.sized(rows)
            clock = time.perf_counter()
            try:
                result = attack.run(
                    ori,
                    syn,
                    ctrl,
                    seed=seed + attack.seed_offset,
                    confidence_level=self.config.confidence_level,
                )
                if result.attacks_requested < configured.requested:
                    note = (
                        f"scaled to the data: {result.attacks_requested} of {configured.requested} "
                        f"configured attempts ({rows} records attacked)"
                    )
                    detail = f"{result.detail}; {note}" if result.detail else note
                    result = result.model_copy(update={"detail": detail})
                out.append(result)
            except Exception as exc:  # fail closed: a crashed attack measured nothing
                cause = exc.cause if isinstance(exc, AttackError) else type(exc).__name__
                crashed.append(f"attack {attack.name} crashed ({cause}): failing closed")
                out.append(
                    AttackRisk(
                        name=attack.name,
                        attack=attack.family,
                        attacks_requested=attack.requested,
                        attacks_built=0,
                        detail=f"crashed: {cause}",
                    )
                )
            seconds[attack.name] = time.perf_counter() - clock
        return out, crashed

    def _judge(
        self,
        attacks: Sequence[AttackRisk],
        risks: Mapping[str, float],
        quality: Mapping[str, float],
        requested: int,
        built: int,
        configured: int | None = None,
    ) -> list[str]:
        cfg = self.config
        ceilings = {
            "singling_out": cfg.max_singling_out_risk,
            "linkability": cfg.max_linkability_risk,
            "inference": cfg.max_inference_risk,
        }
        reasons = []
        what = {"value": "risk", "ci_low": "risk CI lower end", "ci_high": "risk CI upper end"}[cfg.gate_on]
        for attack in attacks:
            measured = {"value": attack.risk, "ci_low": attack.ci_low, "ci_high": attack.ci_high}[cfg.gate_on]
            if measured is not None and measured > ceilings[attack.attack]:
                reasons.append(f"{attack.name} {what} {measured:.3f} > ceiling {ceilings[attack.attack]:.3f}")
        if requested and built / requested < cfg.min_attack_coverage:
            scaled = (
                f"; the data allows {requested} of the {configured} configured"
                if configured is not None and requested < configured
                else ""
            )
            reasons.append(
                f"only {built} of {requested} attack attempts could be built "
                f"(< {cfg.min_attack_coverage:.0%}{scaled}): the measured risk is not reliable"
            )
        if "dcr_share" in risks and risks["dcr_share"] > cfg.max_dcr_share:
            reasons.append(f"dcr_share {risks['dcr_share']:.3f} > ceiling {cfg.max_dcr_share:.3f}")
        excess = risks.get("identical_match_excess")
        low = risks.get("identical_match_excess_ci_low", excess)
        if excess is not None and low is not None and low > cfg.max_identical_match_excess:
            reasons.append(
                f"identical_match_excess {excess:.3f} (CI lower end {low:.3f}) > ceiling "
                f"{cfg.max_identical_match_excess:.3f}: {risks.get('identical_match_share', 0.0):.1%} of "
                f"synthetic rows equal a training row, {risks.get('identical_match_share_holdout', 0.0):.1%} "
                "of real unseen rows do"
            )
        floors = {"column_shapes": cfg.min_column_shapes, "pair_trends": cfg.min_pair_trends}
        if cfg.target_field is not None:
            floors["tstr_ratio"] = cfg.min_tstr_ratio
        for name, floor in floors.items():
            value = quality.get(name)
            if value is None:
                if name == "tstr_ratio" and "tstr" not in quality and built == 0:
                    continue  # no control set: already a reason
                reasons.append(f"{name} could not be measured")
            elif value < floor:
                reasons.append(f"{name} {value:.3f} < floor {floor:.3f}")
        return reasons


def _frame(records: Sequence[Record] | pd.DataFrame) -> pd.DataFrame:
    if isinstance(records, pd.DataFrame):
        return records.reset_index(drop=True)
    return pd.DataFrame.from_records(list(records))
