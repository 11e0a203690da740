"""One-pass check of a pipeline config against its source schema: every problem of every section at once.

:func:`~synthstream.config.load_pipeline_config` validates the file's shape; what it cannot see
is whether the fields it names exist in the data. Without this check those problems surfaced one
stage at a time as the pipeline started (field overrides in schema inference, stats in the stats
stage, drift in the drift profile, audit fields in the auditor), one run per problem.
:func:`config_problems` collects them all (field overrides, stats, drift, sequence and audit
fields, declared marginal bounds/labels) so ``synthstream run`` reports them in one
:class:`~synthstream.errors.ConfigError` before anything starts.

Messages name fields, sections and types only, never a record value.
"""

from __future__ import annotations

from typing import Any

from synthstream.config import PipelineConfig
from synthstream.errors import ConfigError
from synthstream.evaluation.privacy_risk import audited_fields
from synthstream.log import get_logger
from synthstream.processors.drift.profile import drift_fields
from synthstream.schemas.record import FieldRole, FieldType, RecordSchema

__all__ = ["check_config", "config_problems"]

_NUMERIC_TYPES = (FieldType.LONG, FieldType.DOUBLE)
_log = get_logger("config_check")


def config_problems(config: PipelineConfig, schema: RecordSchema) -> list[str]:
    """Every problem of ``config`` against the source ``schema`` (roles not yet overridden), in section order.

    ``schema`` is the schema as inferred from the sample (or read from the .avsc) *before* the
    config's role overrides are applied: an override naming an unknown field is one of the
    problems reported here, not an exception. Disabled sections are not checked.
    """
    problems = list(config.schema_problems(schema))  # fields.<x>: unknown names, operator/type mismatches
    names = set(schema.field_names)
    roles = {n: r for n, r in config.role_overrides().items() if n in names}
    effective = schema.with_roles(roles) if roles else schema
    dropped = {n for n, o in config.fields.items() if o.redact == "drop" and config.redaction.enabled}
    kept = names - dropped
    problems += _stats_problems(config, effective, kept)
    problems += _drift_problems(config, effective, dropped)
    problems += _sequence_problems(config, kept)
    problems += sequence_time_problems(config, effective, kept)
    problems += _audit_problems(config, effective, dropped)
    problems += _marginal_problems(config, names)
    return problems


def check_config(config: PipelineConfig, schema: RecordSchema, source: str = "pipeline config") -> None:
    """Raise one :class:`ConfigError` listing every :func:`config_problems` (nothing when there are none)."""
    problems = config_problems(config, schema)
    if problems:
        raise ConfigError(problems, source)


def _stats_problems(config: PipelineConfig, schema: RecordSchema, kept: set[str]) -> list[str]:
    """The checks of the stats stage (streams/stats.py), made before it is built."""
    cfg = config.stats
    if not cfg.enabled:
        return []
    problems: list[str] = []
    released = list(cfg.numeric) + list(cfg.categorical)
    if not released:
        released = [
            f.name
            for f in schema.fields
            if f.role == FieldRole.CATEGORICAL and f.name != cfg.entity_field and f.name in kept
        ]
        if not released:
            problems.append("stats: no categorical field to release: list fields under stats.numeric/categorical")
    missing = [n for n in released if n not in kept]
    if missing:
        problems.append(f"stats: fields {missing} are not in the (redacted) schema; fields are {sorted(kept)}")
    for name in cfg.numeric:
        if name in kept and schema.field(name).type not in _NUMERIC_TYPES:
            problems.append(f"stats.numeric.{name}: the field is {schema.field(name).type.value}, not numeric")
    unreleased = sorted({p for pair in cfg.pairs for p in pair if p not in released})
    if unreleased:
        problems.append(f"stats.pairs: fields {unreleased} are not released")
    if cfg.entity_field is not None and cfg.entity_field not in kept:
        problems.append(f"stats.entity_field {cfg.entity_field!r} is not in the (redacted) schema")
    if cfg.time_field is not None:
        if cfg.time_field not in kept:
            problems.append(f"stats.time_field {cfg.time_field!r} is not in the (redacted) schema")
        elif schema.field(cfg.time_field).type != FieldType.TIMESTAMP:
            problems.append(f"stats.time_field {cfg.time_field!r} is not a timestamp field")
    return problems


def _drift_problems(config: PipelineConfig, schema: RecordSchema, dropped: set[str]) -> list[str]:
    cfg = config.drift
    if not cfg.enabled or cfg.fields is None:
        return []
    eligible = sorted(f.name for f in drift_fields(schema) if f.name not in dropped)
    unknown = [n for n in cfg.fields if n not in eligible]
    if unknown:
        return [
            f"drift.fields: cannot monitor {unknown} (absent, identifiers, free text or times); choose from {eligible}"
        ]
    return []


def _sequence_problems(config: PipelineConfig, kept: set[str]) -> list[str]:
    cfg = config.sequence
    if not cfg.enabled:
        return []
    named = {"sequence.entity_field": cfg.entity_field, "sequence.time_field": cfg.time_field}
    problems = [
        f"{where} {name!r} is not in the (redacted) schema"
        for where, name in named.items()
        if name and name not in kept
    ]
    unknown = [n for n in cfg.static_fields if n not in kept]
    if unknown:
        problems.append(f"sequence.static_fields {unknown} are not in the (redacted) schema")
    id_field = cfg.publisher.id_field
    if id_field is not None and id_field in kept:
        problems.append(
            f"sequence.publisher.id_field {id_field!r} is already a field of the stream; choose another name (or null)"
        )
    return problems


def sequence_time_problems(config: PipelineConfig, schema: RecordSchema, kept: set[str]) -> list[str]:
    """The sequence time field against its type and the sample (see :func:`sequence_time_found`).

    The kind/grid found in ``source.sample_file`` is logged (``config.sequence_time``, names only).
    """
    found, problems = sequence_time_found(config, schema, kept)
    if found is not None:
        _log.info("config.sequence_time", found=found.describe(), kind=found.kind, grid=found.grid, step=found.step)
    return problems


def sequence_time_found(config: PipelineConfig, schema: RecordSchema, kept: set[str]) -> tuple[Any, list[str]]:
    """The :class:`~synthstream.models.sequence_time.TimeCodec` the sample gives, and the problems.

    Problems, each naming the field: a boolean time field, a forced ``time_kind`` the field's
    type cannot hold, sample values that do not read as times of the kind, derived columns
    that are absent, not numbers, or static. The codec is ``None`` when there is no sample
    (or no sequence section, or a problem).
    """
    cfg = config.sequence
    if not cfg.enabled or not cfg.time_field or cfg.time_field not in kept:
        return None, []
    from synthstream.models.sequence_time import detect_time

    problems: list[str] = []
    ftype = schema.field(cfg.time_field).type
    numeric_kinds = ("epoch_s", "epoch_ms", "epoch_us", "year", "yearmonth", "yyyymmdd", "day_index")
    if ftype is FieldType.BOOLEAN:
        problems.append(f"sequence.time_field {cfg.time_field!r} is boolean: it cannot hold times")
    elif cfg.time_kind in numeric_kinds and ftype is FieldType.TIMESTAMP:
        problems.append(f"sequence.time_kind {cfg.time_kind!r} needs a number field; {cfg.time_field!r} is a timestamp")
    elif cfg.time_kind in ("datetime", "iso") and ftype in _NUMERIC_TYPES:
        problems.append(
            f"sequence.time_kind {cfg.time_kind!r} needs a timestamp or string; {cfg.time_field!r} is a number"
        )
    for name in cfg.derived:  # the rules' shape is checked when the config loads
        if name not in kept:
            problems.append(f"sequence.derived.{name}: no such field in the (redacted) schema")
        elif schema.field(name).type not in (*_NUMERIC_TYPES, FieldType.STRING):
            problems.append(f"sequence.derived.{name}: the field is {schema.field(name).type.value}, not a number")
        elif name in cfg.static_fields:
            problems.append(f"sequence.derived.{name}: a static field cannot be derived from the time")
    sample = config.source.sample_file
    if problems or sample is None:
        return None, problems
    from synthstream.connectors.files import read_table
    from synthstream.errors import ModelError, SynthstreamError

    try:
        frame = read_table(sample, nrows=50_000)
    except (SynthstreamError, OSError, ValueError):
        return None, problems  # schema inference reports an unreadable sample
    if cfg.time_field not in frame.columns:
        return None, problems
    entity = cfg.entity_field if cfg.mode == "entities" and cfg.entity_field in frame.columns else None
    groups = frame[entity].factorize()[0] if entity else None
    try:
        found = detect_time(frame[cfg.time_field], ftype, name=cfg.time_field, kind=cfg.time_kind, groups=groups)
    except ModelError as exc:
        return None, [*problems, f"sequence.time_field: {exc}"]
    if len(frame) < 50_000:  # the whole sample was read: its sequence count is exact
        _warn_few_sequences(config, frame, entity)
    return found, problems


def _warn_few_sequences(config: PipelineConfig, frame: Any, entity: str | None) -> None:
    """Warn when the sample holds fewer sequences than ``sequence.min_sequences`` (nothing would train).

    A warning, not a problem: the live stream may bring more entities than its sample. Five stock
    symbols with the default ``min_sequences: 20`` once waited forever with no word said.
    """
    cfg = config.sequence
    if cfg.mode == "entities":
        if entity is None or cfg.period != "none":
            return
        held, unit = int(frame[entity].nunique()), f"entities (distinct {entity!r})"
    else:
        rows = int(frame[cfg.time_field].notna().sum())
        held = max(0, (rows - cfg.window_length) // cfg.window_stride + 1) if rows >= cfg.window_length else 0
        unit = f"windows of {cfg.window_length} events every {cfg.window_stride}"
    if held >= cfg.min_sequences:
        return
    hint = "lower sequence.min_sequences"
    if cfg.mode == "entities":
        hint += " (or, for a few long series, use mode: windows)"
    else:
        hint += " or sequence.window_length / window_stride"
    _log.warning(
        "config.sequence_sample_short",
        sequences=held,
        min_sequences=cfg.min_sequences,
        message=f"the sample holds {held} {unit}, fewer than sequence.min_sequences {cfg.min_sequences}: "
        f"no sequence model trains until {cfg.min_sequences} are held; {hint}",
    )


def _audit_problems(config: PipelineConfig, schema: RecordSchema, dropped: set[str]) -> list[str]:
    cfg = config.audit
    audited = [f.name for f in audited_fields(schema) if f.name not in dropped]
    if not cfg.enabled:
        # The target field also steers the trainer's validation (models/selection.py), audit or not.
        if cfg.target_field and cfg.target_field not in audited:
            return [f"audit.target_field {cfg.target_field!r} is not a scored field; choose from {audited}"]
        return []
    if not audited:
        return ["audit: the schema has no field the audit can measure (all identifiers or free text)"]
    wanted = list(cfg.secret_fields) + ([cfg.target_field] if cfg.target_field else [])
    if cfg.linkability_aux is not None:
        wanted += [*cfg.linkability_aux[0], *cfg.linkability_aux[1]]
    unknown = sorted({n for n in wanted if n not in audited})
    if unknown:
        return [f"audit: fields {unknown} are not audited fields of the schema; choose from {audited}"]
    return []


def _marginal_problems(config: PipelineConfig, names: set[str]) -> list[str]:
    marginal = config.training.marginal
    unknown = sorted((set(marginal.bounds) | set(marginal.labels)) - names)
    if unknown:
        return [f"training.marginal: bounds/labels name unknown fields {unknown}"]
    return []
