"""The pipeline file: what one synthstream pipeline reads, learns and publishes.

Loaded from YAML and validated by pydantic; :func:`load_pipeline_config` reports every
problem in one :class:`~synthstream.errors.ConfigError`, not just the first.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from synthstream.connectors.platform_config import SchemaRegistryConfig, TopicLayoutConfig
from synthstream.errors import ConfigError
from synthstream.schemas.record import FieldRole, RecordSchema


class _Strict(BaseModel):
    # hide_input_in_errors: a pydantic error never echoes the input (it could hold a secret).
    model_config = ConfigDict(frozen=True, extra="forbid", hide_input_in_errors=True)


class SourceConfig(_Strict):
    """The source topic and how its records are decoded and validated."""

    topic: str = Field(min_length=1, description="Topic of sensitive source records.")
    format: Literal["auto", "json", "avro"] = Field(
        default="auto", description="Wire format; auto = Confluent Avro when the magic byte is present, else JSON."
    )
    schema_file: Path | None = Field(default=None, description="Avro schema (.avsc) of the source records.")
    sample_file: Path | None = Field(
        default=None, description="CSV/Parquet/JSONL sample to infer the schema from when no schema_file is given."
    )
    group_id: str | None = Field(default=None, description="Consumer group; default synthstream-<stream>.")
    assign_partitions: bool = Field(
        default=False, description="Take all partitions directly instead of joining a consumer group."
    )
    max_record_bytes: int = Field(default=1_048_576, ge=1, description="Larger records are dead-lettered.")
    extra_fields: Literal["drop", "reject"] = Field(
        default="drop", description="What to do with fields the schema does not know."
    )
    batch_size: int = Field(default=2_000, ge=1, description="Most records per micro-batch.")

    @model_validator(mode="after")
    def _schema_source(self) -> SourceConfig:
        if self.schema_file is None and self.sample_file is None:
            raise ValueError("give source.schema_file (.avsc) or source.sample_file to infer the schema from")
        return self


RedactOperator = Literal["auto", "keep", "drop", "mask", "pseudonymize", "fake", "generalize", "scan"]


class FieldOverride(_Strict):
    """Per-field overrides of what schema inference and PII detection decided."""

    role: FieldRole | None = Field(default=None, description="Semantic role to use instead of the inferred one.")
    redact: RedactOperator = Field(
        default="auto",
        description="Redaction operator; auto = chosen from the detected entity; scan = NER + recognizers over text.",
    )
    entity: str | None = Field(default=None, description="Entity the field holds (e.g. PERSON), overriding detection.")
    generalize: Literal["year", "month", "prefix", "band"] | None = Field(
        default=None, description="How to generalize (date -> year/month, zip/CEP -> prefix, age -> band)."
    )

    @model_validator(mode="after")
    def _generalize_goes_with_its_operator(self) -> FieldOverride:
        if self.generalize is not None and self.redact not in ("generalize", "auto"):
            raise ValueError(f"generalize: {self.generalize} is set but redact is {self.redact!r}, not generalize")
        return self


class RedactionConfig(_Strict):
    """In-flight PII redaction: the one stage that sees raw values."""

    enabled: bool = Field(default=True, description="Redact before anything is buffered, counted or published.")
    locale: Literal["en_US", "pt_BR"] = Field(default="en_US", description="Locale of format-preserving fakes.")
    language: Literal["en", "pt"] = Field(default="en", description="NER language for free-text fields.")
    key_env: str = Field(
        default="SYNTHSTREAM_PSEUDONYM_KEY", description="Environment variable holding the pseudonym (HMAC) key."
    )
    ephemeral_key: bool = Field(
        default=False,
        description="Use a random per-process key when the variable is unset (demo only: pseudonyms then change "
        "across restarts).",
    )
    rotate_key: bool = Field(
        default=False,
        description="Accept a pseudonym key whose id differs from the one recorded in state_dir/redaction/key.json "
        "and record the new one (every pseudonym and fake changes). Without it a changed key is refused at start. "
        "Set it for the one start that rotates the key, then remove it.",
    )
    sample_records: int = Field(default=1_000, ge=10, description="Sample rows used to detect what each field holds.")
    findings_window_s: float = Field(default=60.0, gt=0, description="Window of the pii-findings events.")


class BufferConfig(_Strict):
    """The bounded training buffer (most recent records)."""

    max_records: int = Field(default=20_000, ge=10, description="Records kept for training; older ones fall out.")


GeneratorName = Literal["auto", "gaussian_copula", "neural", "aim", "mst", "aim_stream"]


class TrainingConfig(_Strict):
    """When and how generators are retrained, which generator, and the privacy it must give."""

    generator: GeneratorName = Field(
        default="gaussian_copula",
        description="Generator to train. auto = chosen by data shape and privacy.required (DP: aim_stream when "
        "the stream's DP statistics cover the fields, else aim, mst for wide tables, neural DP-SGD for very wide "
        "ones; otherwise neural, or the copula for small buffers). aim_stream fits the stream's released DP "
        "marginals (no record is read, no extra budget).",
    )
    every_records: int | None = Field(
        default=5_000, ge=1, description="After the first fit, retrain after this many new records (seen)."
    )
    every_seconds: float | None = Field(
        default=60.0, gt=0, description="After the first fit, retrain after this much time (with new records)."
    )
    min_records: int = Field(
        default=500,
        ge=10,
        description="No fit before this many records were seen. Counts every consumed record, the audit's "
        "control share included: the model trains on about (1 - audit.holdout_share) of them.",
    )
    first_fit_records: int | None = Field(
        default=None,
        ge=10,
        description="The first fit waits until the consumer has caught up with the topic (a poll came back empty, "
        "no partition lagging: a backlog there at start is trained on whole, a live stream is caught up at its "
        "first pause) or until this "
        "many records were seen, or first_fit_max_wait_s passed; whichever comes first, never below "
        "min_records. For a source still being written faster than it is read (a replay started with the "
        "run), set it to the expected row count. None: no record limit.",
    )
    first_fit_max_wait_s: float | None = Field(
        default=60.0,
        gt=0,
        description="Longest wait for the first fit after the first record arrived (a stream read always behind "
        "is never caught up). None: wait for caught-up or first_fit_records only.",
    )
    retry_records: int | None = Field(
        default=None,
        ge=1,
        description="After a rejected version, the next fit comes after this many new records (default: half of "
        "every_records, at least min_records), or every_seconds, whichever is sooner.",
    )
    retry_runner_up: bool = Field(
        default=True,
        description="With generator auto, a rejected version is retried at once on the same data with the "
        "automatic choice's runner-up (neural <-> gaussian_copula, aim <-> mst; DP fits spend budget).",
    )
    stalled_after_fits: int = Field(
        default=3,
        ge=1,
        description="The stream is reported stalled (status line, /health, a 'stalled' models event) when "
        "this many fits in a row published nothing (rejected or failed)...",
    )
    stalled_after_s: float = Field(
        default=900.0,
        gt=0,
        description="...or when the first of them is this many seconds old.",
    )
    seed: int = Field(default=0, ge=0, description="Seed of the first version; version v uses seed + v.")
    min_category_count: int = Field(default=5, ge=1, description="k: generators keep no value fewer records hold.")
    tabular: bool | None = Field(
        default=None,
        description="Train, audit and publish the tabular model. None = auto: on, except when the sequence "
        "section is enabled and no tabular section (publisher, audit, training.generator) is given.",
    )
    privacy: ModelPrivacyConfig = Field(
        default_factory=lambda: ModelPrivacyConfig(), description="DP requirement and budget of model training."
    )
    neural: NeuralModelConfig = Field(
        default_factory=lambda: NeuralModelConfig(), description="Hyper-parameters of the neural generator."
    )
    marginal: MarginalModelConfig = Field(
        default_factory=lambda: MarginalModelConfig(), description="Settings of AIM, MST and aim_stream."
    )

    @model_validator(mode="after")
    def _some_trigger(self) -> TrainingConfig:
        if self.every_records is None and self.every_seconds is None:
            raise ValueError("set training.every_records, training.every_seconds, or both")
        if self.privacy.required and self.generator == "gaussian_copula":
            raise ValueError(
                "training.privacy.required is set but gaussian_copula is not DP: choose auto, aim, mst, aim_stream "
                "or neural (DP-SGD)"
            )
        return self


class PublisherConfig(_Strict):
    """The synthetic feed."""

    rate: float = Field(default=1_000.0, ge=0, description="Synthetic records per second; 0 = as fast as possible.")
    batch_size: int = Field(default=500, ge=1, description="Records sampled and produced per batch.")
    format: Literal["avro", "json"] = Field(default="avro", description="Wire format of synthetic records.")
    max_records: int | None = Field(
        default=None, ge=1, description="End the run after publishing this many (None = run until stopped)."
    )


#: Default entities of the audit's verbatim-leak check (names as in synthstream.processors.pii.types.Entity):
#: identifiers and names. Dates and bare 5-digit codes are no identifiers alone; URLs are mostly public.
#: The rare-value check covers them.
DEFAULT_LEAK_ENTITIES: tuple[str, ...] = (
    "PERSON",
    "EMAIL_ADDRESS",
    "BR_CPF",
    "BR_CNPJ",
    "CREDIT_CARD",
    "IBAN_CODE",
    "US_SSN",
    "IP_ADDRESS",
    "BR_PHONE",
    "PHONE_NUMBER",
    "BR_CEP",
)


class AuditConfig(_Strict):
    """Privacy and quality audit of every new model version: the promotion gate and its thresholds.

    A share of arriving redacted records is held out as a control set no model trains on;
    each new version is sampled and attacked (anonymeter singling out, linkability,
    inference) against it, scored on distances (DCR) and quality, and promoted only when
    every measured risk is under its ceiling and every quality score over its floor.
    """

    enabled: bool = Field(default=True, description="Audit every new version before it may publish.")
    holdout_share: float = Field(
        default=0.2, ge=0.0, lt=1.0, description="Share of arriving records held out as the control set."
    )
    holdout_max: int = Field(default=10_000, ge=10, description="Most control records kept (a reservoir sample).")
    min_holdout: int = Field(
        default=200, ge=10, description="With fewer control records the risk cannot be measured: the audit fails."
    )
    synthetic_rows: int = Field(default=10_000, ge=100, description="Synthetic records sampled for the audit.")
    max_attack_rows: int = Field(
        default=10_000,
        ge=100,
        description="Most training records given to the attacks (and as many control records, never fewer).",
    )
    n_attacks: int = Field(
        default=1_000,
        ge=10,
        description="Attack attempts per attack; scaled down to the data (at most one per attacked record, "
        "and for univariate singling out as many as the synthetic values that single out a row).",
    )
    singling_out_cols: int = Field(default=3, ge=2, description="Attributes per multivariate singling-out query.")
    singling_out_max_attempts: int = Field(
        default=50_000, ge=100, description="Query-generation budget of a singling-out attack (bounds its time)."
    )
    linkability_aux: tuple[list[str], list[str]] | None = Field(
        default=None,
        description="The attacker's two auxiliary column sets; default: the audited fields split in two halves.",
    )
    linkability_neighbors: int = Field(default=10, ge=1, description="Neighbours that count as a link.")
    secret_fields: list[str] = Field(
        default_factory=list, description="Fields an inference attack tries to guess; default: the target field."
    )
    target_field: str | None = Field(
        default=None, description="Field to predict for TSTR (train synthetic, test real)."
    )
    confidence_level: float = Field(default=0.95, gt=0.0, lt=1.0, description="Confidence level of the risk CIs.")
    gate_on: Literal["value", "ci_low", "ci_high"] = Field(
        default="value",
        description="What is compared with the risk ceilings: the estimate, or the lower (fail only on a "
        "significant excess) or upper (fail unless surely below) end of its CI.",
    )
    max_singling_out_risk: float = Field(default=0.10, ge=0.0, le=1.0, description="Ceiling of singling-out risks.")
    max_linkability_risk: float = Field(default=0.10, ge=0.0, le=1.0, description="Ceiling of the linkability risk.")
    max_inference_risk: float = Field(default=0.20, ge=0.0, le=1.0, description="Ceiling of each inference risk.")
    max_dcr_share: float = Field(
        default=0.60,
        ge=0.5,
        le=1.0,
        description="Ceiling of the share of synthetic rows closer to training (0.5 ideal).",
    )
    max_identical_match_excess: float = Field(
        default=0.01,
        ge=0.0,
        le=1.0,
        description="Ceiling of the share of synthetic rows equal to a training row beyond the share of real "
        "control rows equal to a training row (rows repeat in real data); judged on the lower end of the "
        "excess's confidence interval (confidence_level).",
    )
    min_attack_coverage: float = Field(
        default=0.5,
        ge=0.0,
        le=1.0,
        description="Least share of attack attempts that must be built, out of those the data allows "
        "(n_attacks scaled to the attacked records).",
    )
    min_column_shapes: float = Field(default=0.80, ge=0.0, le=1.0, description="Floor of the column-shapes score.")
    min_pair_trends: float = Field(default=0.70, ge=0.0, le=1.0, description="Floor of the pair-trends score.")
    min_tstr_ratio: float = Field(
        default=0.6, ge=0.0, description="Floor of TSTR score / TRTR score (only with a target field)."
    )
    n_jobs: int = Field(default=1, ge=1, description="Threads the attacks' neighbour searches use.")
    seed: int = Field(default=0, ge=0, description="Seed of the audit of version v is seed + v.")
    rare_value_k: int = Field(
        default=5,
        ge=2,
        description="Verbatim-leak check: a training value held by fewer than k training records is rare "
        "(the same k the generators' vocabularies keep by default).",
    )
    max_rare_value_share: float = Field(
        default=0.001,
        ge=0.0,
        le=1.0,
        description="Ceiling, per field, of the share of synthetic rows carrying a rare training value beyond "
        "the same share among real control records; a field fails when the lower end of that excess's "
        "confidence interval (confidence_level) is above it, so chance collisions of short codes do not flap.",
    )
    leak_entities: list[str] = Field(
        default_factory=lambda: list(DEFAULT_LEAK_ENTITIES),
        description="Entities whose recognised values fail the version when they appear verbatim in training "
        "(PERSON: multi-word names from name-like fields). Dates and bare 5-digit codes are not identifiers "
        "on their own and are left to the rare-value check.",
    )

    @model_validator(mode="after")
    def _aux_sets_not_empty(self) -> AuditConfig:
        if self.linkability_aux is not None:
            first, second = self.linkability_aux
            if not first or not second:
                raise ValueError("audit.linkability_aux needs two non-empty lists of field names")
        return self


class NumericStatsField(_Strict):
    """How a numeric field is discretised for DP marginals (and optionally summed)."""

    bounds: tuple[float, float] = Field(description="Declared [lower, upper]; values are clipped into it.")
    bins: int = Field(default=10, ge=1, le=1_000, description="Number of bins.")
    edges: Literal["uniform", "dp_quantiles"] = Field(
        default="uniform",
        description="uniform = equal-width bins over bounds; dp_quantiles = DP quantiles of the bootstrap window "
        "(budget charged to the ledger) over a grid of candidates within bounds.",
    )
    candidates: int = Field(default=1_000, ge=2, le=100_000, description="Candidate grid size for dp_quantiles.")
    sum: bool = Field(default=False, description="Also release the clipped sum (and the mean, by post-processing).")

    @model_validator(mode="after")
    def _ordered(self) -> NumericStatsField:
        if not self.bounds[0] < self.bounds[1]:
            raise ValueError("bounds must be [lower, upper] with lower < upper")
        return self


class CategoricalStatsField(_Strict):
    """The domain of a categorical field's DP marginal."""

    values: list[str] | None = Field(
        default=None,
        description="Declared domain (others count as __other__); None = learned on the bootstrap window with a DP "
        "threshold, so rare values are suppressed, not leaked.",
    )
    max_values: int = Field(default=100, ge=1, description="Most learned values kept (largest noisy counts).")


class StatsConfig(_Strict):
    """Windowed differentially private statistics of the redacted stream (w-event privacy)."""

    enabled: bool = Field(default=False, description="Publish DP statistics on <stream>.stats.")
    window_s: float = Field(default=60.0, gt=0, description="Tumbling window length (event time), seconds.")
    grace_s: float = Field(default=5.0, ge=0, description="How late (event time) a record may arrive and still count.")
    time_field: str | None = Field(
        default=None, description="Timestamp field holding event time; None = the Kafka record timestamp."
    )
    idle_flush_s: float | None = Field(
        default=30.0,
        gt=0,
        description="With a time_field: once the source has been caught up (every poll empty) this long, release "
        "the open windows (the last window of a finite stream or replay); later records of them are late. None = "
        "windows close on event time only. With the Kafka timestamp, windows close in processing time after grace_s "
        "of idleness instead. Shutdown never releases an open window: its records are re-read after a restart.",
    )
    late: Literal["deadletter", "count"] = Field(
        default="deadletter",
        description="Records later than the grace period: dead-lettered with reason late_record, or only counted "
        "(records_late in the next stats event). Never silently dropped.",
    )
    mechanism: Literal["gaussian", "laplace"] = Field(
        default="gaussian", description="gaussian = discrete Gaussian under zCDP; laplace = pure ε-DP."
    )
    epsilon_w: float = Field(default=1.0, gt=0, description="ε that any w consecutive windows together may spend.")
    delta: float = Field(
        default=1e-6, gt=0, lt=1, description="δ of the (ε, δ) guarantee (zCDP conversion, gaussian only)."
    )
    threshold_delta: float = Field(
        default=1e-8, gt=0, lt=1, description="Extra δ spent learning categorical domains with a DP threshold."
    )
    w: int = Field(default=10, ge=1, description="w of w-event privacy: windows that share the budget.")
    allocation: Literal["uniform", "half_remaining"] = Field(
        default="uniform", description="How the budget of w windows is spread over them."
    )
    entity_field: str | None = Field(
        default=None, description="Privacy unit: None = one record; else the field naming the entity (e.g. cc_num)."
    )
    max_records_per_entity: int = Field(
        default=1,
        ge=1,
        description="Contribution bound k: records of one entity counted per window (the rest are "
        "dropped and counted).",
    )
    numeric: dict[str, NumericStatsField] = Field(default_factory=dict, description="Numeric fields to release.")
    categorical: dict[str, CategoricalStatsField] = Field(
        default_factory=dict,
        description="Categorical fields to release; when both maps are empty, every categorical field is released "
        "with a learned domain.",
    )
    pairs: list[tuple[str, str]] = Field(default_factory=list, description="2-way marginals to release.")
    weights: dict[str, float] = Field(
        default_factory=dict,
        description="Budget weights by query name (count, marginal:a, marginal:a,b, sum:x); default 1 each.",
    )
    bootstrap_share: float = Field(
        default=0.3, gt=0, lt=1, description="Share of the first window's budget spent learning bins and domains."
    )
    bootstrap_max_records: int = Field(
        default=50_000, ge=100, description="Bootstrap as soon as the first window holds this many records."
    )
    max_event_skew_s: float = Field(
        default=86_400.0, gt=0, description="Event times further than this ahead of the wall clock are dead-lettered."
    )

    @model_validator(mode="after")
    def _consistent(self) -> StatsConfig:
        problems = []
        released = set(self.numeric) | set(self.categorical)
        both = sorted(set(self.numeric) & set(self.categorical))
        if both:
            problems.append(f"fields {both} are both numeric and categorical")
        for a, b in self.pairs:
            if a == b:
                problems.append(f"pair ({a}, {b}) repeats a field")
            if released and not {a, b} <= released:
                problems.append(f"pair ({a}, {b}) names fields not listed under numeric/categorical")
        if problems:
            raise ValueError("; ".join(problems))
        return self


DriftDetectorChoice = Literal["adwin", "page_hinkley", "kswin", "none"]
DriftMonitorName = Literal["detector", "distance", "staleness", "divergence"]


def _default_detectors() -> dict[Literal["long", "double"], DriftDetectorChoice]:
    return {"long": "adwin", "double": "page_hinkley"}


def _default_retrain_on() -> list[DriftMonitorName]:
    return ["staleness"]


class DriftThresholds(_Strict):
    """Warning and critical levels of one distance statistic (a value at or above a level is drift)."""

    warning: float = Field(gt=0, description="Level at which a field starts drifting (warning).")
    critical: float = Field(gt=0, description="Level at which the drift is critical.")

    @model_validator(mode="after")
    def _ordered(self) -> DriftThresholds:
        if self.critical < self.warning:
            raise ValueError("critical must be >= warning")
        return self


class DriftConfig(_Strict):
    """Drift monitors on the redacted stream, the output-divergence tap and the drift policy.

    Windows are ``window_records`` consecutive offsets of a source partition. Per window:
    river detectors on numeric fields (per field type), a PSI/JS distance against the trailing
    windows (stream drift), against the promoted model's training profile (staleness) and,
    from the synthetic topic, synthetic against real windows (output divergence). Events go to
    ``topics.drift``; the policy may request retrains, at most one per ``cooldown_s``.
    """

    enabled: bool = Field(default=True, description="Run the drift monitors in the ingest roles.")
    fields: list[str] | None = Field(
        default=None, description="Fields to monitor; None = every numeric and categorical field."
    )
    window_records: int = Field(default=2_000, ge=50, description="Records per window (per source partition).")
    min_fill: float = Field(
        default=0.5, gt=0, le=1, description="Partial windows (e.g. after a restart) below this share are skipped."
    )
    reference_windows: int = Field(default=5, ge=1, description="Trailing windows the stream-drift reference sums.")
    bins: int = Field(default=10, ge=2, le=100, description="Quantile bins of numeric fields.")
    max_categories: int = Field(default=50, ge=1, description="Categories kept per field; the rest count as other.")
    min_category_share: float = Field(
        default=0.005, ge=0, lt=1, description="Rarer categories count as other (also keeps rare values out)."
    )
    detectors: dict[Literal["long", "double"], DriftDetectorChoice] = Field(
        default_factory=_default_detectors,
        description="River detector per numeric field type (measured choice; see processors/drift/detectors.py).",
    )
    detector_chunk: int = Field(default=32, ge=1, description="Values averaged per detector update.")
    detector_warmup: int = Field(default=1_000, ge=10, description="Values that fix each field's mean and scale.")
    adwin_delta: float = Field(default=1e-4, gt=0, lt=1, description="ADWIN confidence (smaller = fewer alarms).")
    page_hinkley_threshold: float = Field(default=50.0, gt=0, description="Page-Hinkley threshold (std units).")
    page_hinkley_delta: float = Field(default=0.1, ge=0, description="Page-Hinkley tolerated drift (std units).")
    kswin_alpha: float = Field(default=1e-4, gt=0, lt=1, description="KSWIN significance level.")
    stream_statistic: Literal["psi", "js"] = Field(default="psi", description="Distance of stream drift.")
    staleness_statistic: Literal["psi", "js"] = Field(default="psi", description="Distance of model staleness.")
    divergence_statistic: Literal["psi", "js"] = Field(default="js", description="Distance of output divergence.")
    psi: DriftThresholds = Field(
        default_factory=lambda: DriftThresholds(warning=0.1, critical=0.25), description="PSI levels."
    )
    js: DriftThresholds = Field(
        default_factory=lambda: DriftThresholds(warning=0.1, critical=0.2), description="Jensen-Shannon levels."
    )
    divergence: bool = Field(default=True, description="Read the synthetic topic and measure output divergence.")
    divergence_interval_s: float = Field(
        default=10.0, ge=0, description="Least time between two evaluated synthetic windows (bounds decoding cost)."
    )
    action: Literal["alert", "retrain"] = Field(
        default="retrain", description="alert = events only; retrain = events and retrain requests (per retrain_on)."
    )
    retrain_on: list[DriftMonitorName] = Field(
        default_factory=_default_retrain_on, description="Monitors whose drift may request a retrain."
    )
    retrain_severity: Literal["warning", "critical"] = Field(
        default="warning", description="Least severity that requests a retrain."
    )
    cooldown_s: float = Field(default=300.0, ge=0, description="Least time between two drift-requested retrains.")
    clear_ratio: float = Field(
        default=0.5, gt=0, le=1, description="Hysteresis: a drift clears below this share of the warning level ..."
    )
    clear_windows: int = Field(default=3, ge=1, description="... held for this many consecutive windows.")
    model_poll_s: float = Field(default=1.0, gt=0, description="How often the promoted version is checked.")


class MetricsConfig(_Strict):
    """The Prometheus (/metrics) and health (/health) endpoint of a pipeline process."""

    enabled: bool = Field(default=False, description="Serve /metrics and /health.")
    host: str = Field(default="127.0.0.1", description="Address to bind (0.0.0.0 to expose it).")
    port: int = Field(default=9464, ge=0, le=65_535, description="Port; 0 picks a free one (logged at start).")


class SequenceModelConfig(_Strict):
    """Hyper-parameters of the sequence generator (models/sequence.py)."""

    backbone: Literal["gru", "tcn"] = Field(default="gru", description="Recurrent (gru) or causal-convolution (tcn).")
    hidden_size: int = Field(default=64, ge=4, le=4096, description="Backbone width.")
    layers: int = Field(default=1, ge=1, le=12, description="GRU layers, or dilated blocks of the TCN.")
    head_units: int = Field(default=32, ge=2, le=1024, description="Units per field in the field-autoregressive head.")
    mixture_components: int = Field(default=4, ge=1, le=64, description="Gaussians per numeric field.")
    epochs: int = Field(default=40, ge=1, description="Epochs of a cold fit.")
    warm_start_epochs: int = Field(default=10, ge=1, description="Epochs of a fit from the previous version.")
    warm_start: bool = Field(default=True, description="Continue from the promoted version's weights when compatible.")
    batch_size: int = Field(default=64, ge=1, description="Sequences (chunks) per optimiser step.")
    learning_rate: float = Field(default=8e-3, gt=0, lt=10, description="Adam learning rate (cosine-decayed).")
    train_length: int = Field(default=168, ge=2, description="Longest chunk of one entity trained on at once.")
    tbptt: int = Field(default=24, ge=1, description="Steps per truncated-backpropagation segment.")
    max_categories: int = Field(default=64, ge=2, description="Categories kept per categorical field.")
    device: Literal["auto", "cpu", "cuda"] = Field(default="auto", description="auto = CUDA when available.")
    threads: int | None = Field(
        default=1, ge=1, description="torch CPU threads (1 is fastest on small shared machines; None = torch's)."
    )


class SequenceDPConfig(_Strict):
    """DP-SGD for the sequence generator (opacus); the spend goes to the privacy ledger."""

    enabled: bool = Field(default=False, description="Train with DP-SGD (privacy unit: the entity).")
    target_epsilon: float | None = Field(default=None, gt=0, description="Epsilon to reach over the fit's epochs.")
    noise_multiplier: float | None = Field(default=None, gt=0, description="Or a fixed noise multiplier.")
    delta: float = Field(default=1e-5, gt=0, lt=1, description="Delta of the (epsilon, delta) guarantee.")
    max_grad_norm: float = Field(default=1.0, gt=0, description="Per-entity gradient clipping norm.")

    @model_validator(mode="after")
    def _one_budget(self) -> SequenceDPConfig:
        if self.enabled and (self.target_epsilon is None) == (self.noise_multiplier is None):
            raise ValueError("with sequence.dp.enabled set exactly one of target_epsilon or noise_multiplier")
        return self


class SequencePublisherConfig(_Strict):
    """The synthetic sequence feed: entities emitting events in event time."""

    speedup: float = Field(
        default=60.0, ge=0, description="Event time runs this many times faster than wall time; 0 = unpaced."
    )
    entities_per_sample: int = Field(default=64, ge=1, le=100_000, description="Entities sampled per model call.")
    batch_size: int = Field(default=500, ge=1, description="Most records produced per batch.")
    max_records: int | None = Field(
        default=None,
        ge=1,
        description="End the feed after this many records (None = run on); counted from the first version, "
        "which waits for the backlog (see sequence.first_fit_sequences).",
    )
    key_by: Literal["sequence", "entity"] = Field(
        default="entity",
        description="Record keys <stream>:v<N>:<entity> (default: tells sequences apart and keeps an entity on one "
        "partition) or <stream>:v<N>:<seq> (as the tabular feed).",
    )
    id_field: str | None = Field(
        default="synthetic_entity",
        min_length=1,
        description="String field added to every record of the sequence feed holding its synthetic entity "
        "(sequence) id, as the key and the synthstream-entity header do; must not be a schema field; null = none.",
    )
    start: datetime | None = Field(
        default=None,
        description="Event time of the first entity, ISO 8601 (naive = UTC). Default: the training data's own "
        "span (starts drawn from the learned start distribution, events cut at the span's end, then a fresh pass).",
    )
    end: datetime | None = Field(
        default=None,
        description="With start: no event after this time; the feed then begins a fresh pass at start "
        "(None = the arrival process runs on).",
    )


_COMPONENTS = ("year", "quarter", "month", "day", "hour", "minute", "weekday", "dayofyear")
_ADVANCE_UNITS = ("year", "month", "day", "hour")


def _derived_problems(
    derived: dict[str, str | dict[str, str]], time_field: str | None, entity: str | None
) -> list[str]:
    """Problems of a ``sequence.derived`` mapping (mirrors models/sequence_time.derived_rules)."""
    problems = []
    for name, rule in derived.items():
        if name in (time_field, entity):
            problems.append(f"sequence.derived.{name}: the time or entity field cannot be derived")
        elif isinstance(rule, str) and rule not in _COMPONENTS:
            problems.append(f"sequence.derived.{name}: {rule!r} is not one of {list(_COMPONENTS)}")
        elif isinstance(rule, dict) and (set(rule) != {"advance_with"} or rule["advance_with"] not in _ADVANCE_UNITS):
            problems.append(f"sequence.derived.{name}: give {{advance_with: one of {list(_ADVANCE_UNITS)}}}")
    return problems


class SequenceConfig(_Strict):
    """Time series: per-entity sequences (or windows of one series) kept from the stream, a sequence model, a feed."""

    enabled: bool = Field(default=False, description="Keep sequences, train the sequence model, publish sequences.")
    mode: Literal["entities", "windows"] = Field(
        default="entities", description="entities = keyed by entity_field; windows = one long series cut in windows."
    )
    entity_field: str | None = Field(default=None, description="Field naming the entity (card, station, customer).")
    time_field: str | None = Field(default=None, description="Event-time field.")
    time_kind: Literal[
        "auto", "datetime", "iso", "epoch_s", "epoch_ms", "epoch_us", "year", "yearmonth", "yyyymmdd", "day_index"
    ] = Field(
        default="auto",
        description="How the time field is written (auto = detected from the data: timestamps, ISO strings, "
        "integer years/year-months/yyyymmdd, epoch s/ms/us by magnitude, else a day index); output keeps it.",
    )
    derived: dict[str, str | dict[str, str]] = Field(
        default_factory=dict,
        description="Calendar columns tied to the time: {year: year, hour: hour, age: {advance_with: year}}; "
        "components year, quarter, month, day, hour, minute, weekday (Monday=0), dayofyear; advance_with "
        "year, month, day or hour. Enforced on output.",
    )
    detect_derived: bool = Field(
        default=True, description="Also detect such relations that hold in >= 99.9 % of training rows."
    )
    timezone: str | None = Field(
        default=None,
        description="IANA zone the derived calendar columns are written in (e.g. America/New_York for local "
        "hour/day beside a UTC timestamp); None = UTC, and a zone is searched for when local columns do not "
        "match UTC.",
    )
    quasi_static_share: float = Field(
        default=0.95,
        ge=0,
        le=1,
        description="A dynamic field constant within at least this share of entities repeats its previous value "
        "unless a change (at the learned rate) fires; 0 = off.",
    )
    period: Literal["none", "day", "week"] = Field(
        default="none", description="Cut each entity by calendar period (entity x day / week)."
    )
    static_fields: list[str] = Field(default_factory=list, description="Fields constant per entity (conditioning).")
    window_length: int = Field(default=168, ge=2, description="Events per window (windows mode).")
    window_stride: int = Field(default=24, ge=1, description="Events between window starts (windows mode).")
    max_windows: int = Field(default=2_000, ge=1, description="Windows kept (windows mode); the oldest are evicted.")
    max_entities: int = Field(default=10_000, ge=1, description="Entities kept; the least recently updated is evicted.")
    max_events_per_entity: int = Field(default=1_000, ge=1, description="Latest events kept per entity.")
    min_sequences: int = Field(default=20, ge=1, description="Do not train on fewer sequences than this.")
    first_fit_sequences: int | None = Field(
        default=None,
        ge=1,
        description="The first fit waits until the source is caught up (backlog read), this many sequences "
        "are held (None = the keyed state is full: max_entities, or max_windows in windows mode) or "
        "training.first_fit_max_wait_s passed since the first sequence.",
    )
    min_events: int = Field(
        default=1, ge=1, description="Shorter sequences are left out of training (1 keeps single-event entities)."
    )
    topic: str | None = Field(default=None, description="Topic of the sequence feed; default <stream>.sequences.")
    model: SequenceModelConfig = Field(default_factory=SequenceModelConfig)
    dp: SequenceDPConfig = Field(default_factory=SequenceDPConfig)
    publisher: SequencePublisherConfig = Field(default_factory=SequencePublisherConfig)

    @model_validator(mode="after")
    def _fields_named(self) -> SequenceConfig:
        if not self.enabled:
            return self
        problems = []
        if not self.time_field:
            problems.append("sequence.time_field is required when sequence.enabled is set")
        if self.mode == "entities" and not self.entity_field:
            problems.append("sequence.entity_field is required in entities mode")
        if self.entity_field is not None and self.entity_field == self.time_field:
            problems.append("sequence.entity_field and sequence.time_field must differ")
        if self.time_field in self.static_fields:
            problems.append("sequence.time_field cannot be a static field")
        problems += _derived_problems(self.derived, self.time_field, self.entity_field)
        if self.timezone is not None:
            from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

            try:
                ZoneInfo(self.timezone)
            except (ZoneInfoNotFoundError, ValueError):
                problems.append(f"sequence.timezone: {self.timezone!r} is not an IANA zone (e.g. America/New_York)")
        if problems:
            raise ValueError("; ".join(problems))
        return self


class ModelPrivacyConfig(_Strict):
    """Differential privacy of model training: whether it is required, and the lifetime budget of the stream."""

    required: bool = Field(
        default=False,
        description="Models must be DP: aim/mst/aim_stream, or neural with DP-SGD; the copula is refused.",
    )
    epsilon: float = Field(
        default=1.0, gt=0, description="Lifetime ε of all DP model fits on this stream, composed (never reset)."
    )
    delta: float = Field(default=1e-9, gt=0, lt=1, description="δ of that lifetime guarantee.")
    epsilon_per_fit: float | None = Field(
        default=None, gt=0, description="ε one fit may add (None = epsilon: one fit spends the whole budget)."
    )

    @property
    def per_fit(self) -> float:
        """ε one fit may add."""
        return self.epsilon_per_fit if self.epsilon_per_fit is not None else self.epsilon


class NeuralModelConfig(_Strict):
    """The neural generator (models/neural.py): a column-autoregressive network, DP-SGD when privacy is required."""

    epochs: int = Field(default=30, ge=1, description="Epochs of a cold fit.")
    min_steps: int = Field(
        default=500,
        ge=0,
        description="Optimizer steps a cold fit runs at least (more epochs on small tables, where 30 epochs are "
        "a few dozen steps). 0 = exactly `epochs`.",
    )
    max_epochs: int = Field(
        default=100,
        ge=1,
        description="Most passes over the data the min_steps raise may reach (more memorise a small table).",
    )
    warm_start: bool = Field(default=True, description="Continue from the promoted neural version when compatible.")
    warm_start_epochs: int = Field(default=10, ge=1, description="Epochs of a warm-start fit.")
    batch_size: int = Field(default=512, ge=1, description="Rows per optimiser step (non-DP).")
    learning_rate: float = Field(default=3e-3, gt=0, lt=10, description="Adam learning rate (one-cycle schedule).")
    hidden: int = Field(default=64, ge=2, le=65_536, description="Width of each column head.")
    layers: int = Field(default=1, ge=1, le=16, description="Hidden layers per column head.")
    embedding_cap: int = Field(default=12, ge=2, le=1024, description="Widest column embedding.")
    dropout: float = Field(default=0.0, ge=0, le=0.9, description="Dropout in the heads.")
    device: Literal["auto", "cpu", "cuda"] = Field(default="auto", description="auto = CUDA when available.")
    threads: int | None = Field(
        default=1, ge=1, description="torch CPU threads (1 is fastest on small shared machines; None = torch's)."
    )
    dp_batch_size: int = Field(default=1_024, ge=1, description="Expected Poisson batch of DP-SGD.")
    dp_max_grad_norm: float = Field(default=1.0, gt=0, description="Per-record gradient clipping norm (DP-SGD).")
    secure_noise: bool = Field(
        default=True, description="DP-SGD noise seeded from the OS (True) or from the seed (reproducible tests)."
    )


class MarginalModelConfig(_Strict):
    """AIM, MST and the from-the-stream model (models/marginal.py)."""

    bins: int = Field(default=32, ge=1, le=10_000, description="DP quantile bins per numeric field.")
    degree: int = Field(default=2, ge=1, le=5, description="AIM workload: every degree-way marginal.")
    max_cells: int = Field(default=10_000, ge=1, description="AIM: largest workload marginal (cells).")
    rounds: int | None = Field(
        default=None, ge=1, description="AIM rounds (None = 4 x fields; the paper uses 16; at least 2 x fields)."
    )
    max_model_size: float = Field(default=8.0, gt=0, description="AIM: largest model (MB) at the end of the budget.")
    round_iters: int = Field(default=200, ge=1, description="AIM: estimation steps per round (warm-started).")
    iters: int = Field(default=1_000, ge=1, description="Estimation steps of the final model.")
    domain_share: float = Field(
        default=0.35,
        ge=0,
        lt=1,
        description="Share of a fit's ρ spent learning undeclared domains with DP (label counts are reused as "
        "1-way measurements; 1 % of the fit's δ goes to the label thresholds).",
    )
    bounds: dict[str, tuple[float, float]] = Field(
        default_factory=dict, description="Declared numeric bounds (the DP quantiles' candidate range)."
    )
    labels: dict[str, list[str]] = Field(default_factory=dict, description="Declared categorical domains (free).")
    max_categories: int = Field(default=100, ge=1, description="Most labels learned per categorical field.")
    last_windows: int = Field(default=10, ge=1, description="aim_stream: newest windows of DP marginals used.")


class TopicsConfig(_Strict):
    """Output topic names; empty ones get the defaults of DESIGN.md."""

    synthetic: str | None = None
    redacted: str | None = None
    stats: str | None = None
    deadletter: str = "synthstream.deadletter"
    models: str = "synthstream.models"
    drift: str = "synthstream.drift"
    privacy_audit: str = "synthstream.privacy-audit"
    pii_findings: str = "synthstream.pii-findings"
    budget: str = Field(default="synthstream.privacy-budget", description="Refused releases and budget warnings.")
    schemas: str = Field(default="synthstream.schemas", description="Where Avro schemas are published by id.")


class PipelineConfig(_Strict):
    """One pipeline: a source stream and everything synthstream derives from it."""

    stream: str = Field(min_length=1, pattern=r"^[A-Za-z0-9._-]+$", description="Name of the stream.")
    source: SourceConfig
    fields: dict[str, FieldOverride] = Field(default_factory=dict, description="Per-field overrides.")
    redaction: RedactionConfig = Field(default_factory=RedactionConfig)
    buffer: BufferConfig = Field(default_factory=BufferConfig)
    training: TrainingConfig = Field(default_factory=TrainingConfig)
    publisher: PublisherConfig = Field(default_factory=PublisherConfig)
    stats: StatsConfig = Field(default_factory=StatsConfig)
    drift: DriftConfig = Field(default_factory=DriftConfig)
    metrics: MetricsConfig = Field(default_factory=MetricsConfig)
    topics: TopicsConfig = Field(default_factory=TopicsConfig)
    # Issue 14: a Confluent-compatible Schema Registry, and how created topics are laid out.
    schema_registry: SchemaRegistryConfig = Field(default_factory=SchemaRegistryConfig)
    topic_layout: TopicLayoutConfig = Field(default_factory=TopicLayoutConfig)
    audit: AuditConfig = Field(default_factory=AuditConfig)
    sequence: SequenceConfig = Field(default_factory=SequenceConfig)
    state_dir: Path = Field(default=Path(".synthstream"), description="Model registry and local stores.")

    @property
    def tabular_enabled(self) -> bool:
        """Whether the tabular model is trained, audited and published (``training.tabular``, resolved).

        Auto (``None``): a config with an enabled ``sequence`` section asks for sequences only unless
        it also gives a tabular section (``publisher``, ``audit`` or ``training.generator``).
        """
        if self.training.tabular is not None:
            return self.training.tabular
        if not self.sequence.enabled:
            return True
        return bool({"publisher", "audit"} & self.model_fields_set) or "generator" in self.training.model_fields_set

    @property
    def drift_enabled(self) -> bool:
        """Whether the drift monitors run: ``drift.enabled``, and asked for when there is no tabular model."""
        return self.drift.enabled and (self.tabular_enabled or "drift" in self.model_fields_set)

    @property
    def group_id(self) -> str:
        """Consumer group of the ingest role."""
        return self.source.group_id or f"synthstream-{self.stream}"

    @property
    def redacted_topic(self) -> str:
        """Topic of redacted source records."""
        return self.topics.redacted or f"{self.stream}.redacted"

    @property
    def stats_topic(self) -> str:
        """Topic of the windowed DP statistics."""
        return self.topics.stats or f"{self.stream}.stats"

    @property
    def synthetic_topic(self) -> str:
        """Topic of the synthetic feed."""
        return self.topics.synthetic or f"{self.stream}.synthetic"

    def role_overrides(self) -> dict[str, FieldRole]:
        """Field roles forced by configuration."""
        return {name: o.role for name, o in self.fields.items() if o.role is not None}

    def schema_problems(self, schema: RecordSchema) -> list[str]:
        """Every problem of the per-field overrides against the source ``schema``, all at once.

        Unknown fields, and operators that cannot run on the field's type (``generalize: band``
        on a string field, ``scan`` on a number, ``fake`` on a boolean): found at start, before
        the first record, instead of failing on every record at run time.
        """
        from synthstream.processors.pii.operators import operator_problem

        problems: list[str] = []
        by_name = {f.name: f for f in schema.fields}
        for name, override in self.fields.items():
            spec = by_name.get(name)
            if spec is None:
                problems.append(f"fields.{name}: no such field; fields are {schema.field_names}")
                continue
            if not self.redaction.enabled or override.redact == "auto":
                continue
            problem = operator_problem(override.redact, spec.type, override.generalize)
            if problem is not None:
                problems.append(f"fields.{name}: {problem}")
        return problems

    def check_schema(self, schema: RecordSchema) -> None:
        """Raise one :class:`ConfigError` listing every :meth:`schema_problems` (nothing when there are none)."""
        problems = self.schema_problems(schema)
        if problems:
            raise ConfigError(problems, "pipeline config")


def _format_errors(exc: ValidationError) -> list[str]:
    problems = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"]) or "(top level)"
        problems.append(f"{where}: {err['msg']}")
    return problems


def parse_pipeline_config(data: Any, *, source: str = "pipeline config") -> PipelineConfig:
    """Validate a mapping as a pipeline config; every problem is reported at once."""
    if not isinstance(data, dict):
        raise ConfigError(["the file must hold a mapping at the top level"], source)
    try:
        return PipelineConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_format_errors(exc), source) from None


def load_pipeline_config(path: Path) -> PipelineConfig:
    """Read and validate a pipeline YAML file; relative paths resolve against its folder."""
    if not path.is_file():
        raise ConfigError([f"{path} does not exist"], str(path))
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError([f"not valid YAML: {exc}"], str(path)) from None
    config = parse_pipeline_config(data, source=str(path))
    return _resolve_paths(config, path.parent)


def _resolve_paths(config: PipelineConfig, base: Path) -> PipelineConfig:
    def fix(p: Path | None) -> Path | None:
        return p if p is None or p.is_absolute() else base / p

    source = config.source.model_copy(
        update={"schema_file": fix(config.source.schema_file), "sample_file": fix(config.source.sample_file)}
    )
    return config.model_copy(update={"source": source, "state_dir": fix(config.state_dir)})
