"""``synthstream init``: a working, commented pipeline file drafted from a user's own sample.

Starting from the example config took a new user several rounds of hand fixes (field names of
another table, a system state directory, a fixed metrics port). :func:`draft_pipeline` instead
reads the user's sample and writes a file that fits it:

* every field with its inferred type and role, and the redaction operator the PII detector
  chose for it with the detector's reason (``FieldPlan.reason``) as a comment;
* drift monitors only on fields that exist and can be monitored (numeric, and categorical
  fields of small cardinality) in the *redacted* schema;
* DP statistics off, with a commented example on real field names whose numeric bounds are
  robust quantiles (0.5 % and 99.5 %) rounded outward to two significant digits, never the
  raw min/max (a bound set at the extreme record would publish that record's value);
* state under the config file's folder (``.synthstream/<stream>``), metrics on a free port.

Nothing in the file is a data value: field names, types, roles, operators, reasons, counts
and rounded bounds only. The file passes :func:`~synthstream.config.load_pipeline_config` and
:func:`~synthstream.config_check.check_config` as written.
"""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass, replace
from pathlib import Path

import pandas as pd

from synthstream.config import load_pipeline_config
from synthstream.config_check import check_config
from synthstream.connectors.files import read_table, records_from_frame
from synthstream.errors import ConfigError
from synthstream.processors.drift.profile import drift_fields
from synthstream.processors.pii.redactor import FieldPlan, RedactionPlan, _output_spec, build_plan
from synthstream.schemas.inference import infer_schema_from_file
from synthstream.schemas.record import FieldRole, FieldType, RecordSchema

__all__ = ["InitResult", "draft_pipeline", "outward_bounds", "write_pipeline"]

#: Operators a config file may name (``scan_values``, the detector's choice for mixed fields, is ``auto``).
_CONFIG_OPERATORS = {"keep", "drop", "mask", "pseudonymize", "fake", "generalize", "scan"}
#: Operators that need the pseudonym key.
_NEEDS_KEY = {"pseudonymize", "fake", "scan_values"}
#: Categorical fields with more distinct values than this are left out of drift and stats.
MAX_CATEGORIES = 50
#: Most fields put in the commented stats example (each one splits the window budget).
_STATS_FIELDS = 6
#: Robust quantiles the numeric bounds start from.
_LOW_Q, _HIGH_Q = 0.005, 0.995


@dataclass(frozen=True)
class InitResult:
    """What :func:`write_pipeline` wrote: the file, the stream, and counts for the command's summary."""

    path: Path
    stream: str
    fields: int
    redacted: int
    drift_fields: int
    rows: int


def outward_bounds(values: pd.Series, low_q: float = _LOW_Q, high_q: float = _HIGH_Q) -> tuple[float, float] | None:
    """Bounds for a numeric field: robust quantiles rounded outward to two significant digits.

    Not the raw min/max: an extreme record would set (and so publish) a bound. The 0.5 % and
    99.5 % quantiles are rounded down and up on a grid of two significant digits of the
    larger magnitude, so the bound is a round number that reveals no single value; values
    beyond it are clipped by the stats stage. ``None`` when the field has no finite value.

    >>> outward_bounds(pd.Series(range(1, 1001)))
    (0.0, 1000.0)
    >>> outward_bounds(pd.Series([0.013, 0.5, 0.77]), 0.0, 1.0)
    (0.01, 0.77)
    """
    numbers = pd.to_numeric(values, errors="coerce").astype("float64")
    numbers = numbers[numbers.notna() & (numbers.abs() != math.inf)]
    if numbers.empty:
        return None
    low, high = float(numbers.quantile(low_q)), float(numbers.quantile(high_q))
    magnitude = max(abs(low), abs(high))
    step = 10.0 ** (math.floor(math.log10(magnitude)) - 1) if magnitude > 0 else 1.0
    lower, upper = math.floor(low / step) * step, math.ceil(high / step) * step
    if upper <= lower:
        upper = lower + step
    digits = max(0, -math.floor(math.log10(step)))
    return round(lower, digits), round(upper, digits)


def _q(text: str) -> str:
    """A YAML scalar for a name (JSON strings are valid YAML flow scalars)."""
    return json.dumps(text)


def _comment(text: str) -> str:
    return " ".join(text.split())


def _flow_list(names: list[str]) -> str:
    return "[" + ", ".join(_q(n) for n in names) + "]"


#: A categorical field averaging fewer rows per value than this is synthesised as an identifier.
MIN_ROWS_PER_VALUE = 10


def _sparse_as_identifiers(
    schema: RecordSchema, distinct: dict[str, int], rows: int
) -> tuple[RecordSchema, dict[str, str]]:
    """String categoricals with many values held by few rows each, made identifiers (with the reason).

    The generators keep no value fewer than ``training.min_category_count`` (5) records hold,
    so a field averaging under :data:`MIN_ROWS_PER_VALUE` rows per value (street addresses,
    merchants of a small table) is mostly suppressed when modelled as a category, and drags
    the audit's quality scores down; as an identifier it is synthesised with the values'
    shape instead. Decided on counts only (distinct values, rows), never on a value.
    """
    roles = {}
    reasons = {}
    for f in schema.fields:
        n = distinct.get(f.name, 0)
        if f.role == FieldRole.CATEGORICAL and f.type == FieldType.STRING and n > MAX_CATEGORIES:
            per_value = rows / n
            if per_value < MIN_ROWS_PER_VALUE:
                roles[f.name] = FieldRole.IDENTIFIER
                reasons[f.name] = (
                    f"init: identifier, {n} distinct values ({per_value:.1f} rows each) are too sparse to model"
                )
    return (schema.with_roles(roles) if roles else schema), reasons


def _is_row_index(name: str) -> bool:
    """A file's row-number column (pandas' ``Unnamed: 0``, ``index``): it carries nothing about the records."""
    return bool(re.fullmatch(r"(Unnamed: \d+|index|row|row_?id|rownum)", name.strip(), flags=re.IGNORECASE))


def _with_identifier_policy(plan: RedactionPlan, schema: RecordSchema) -> RedactionPlan:
    """The detector's plan, with numeric identifiers it would keep made safe for the audit's leak check.

    A kept numeric identifier is synthesised as numbers drawn in its range, which land on real
    ids held by one record each: the audit's verbatim-leak check then rejects every version. A
    row-number column is dropped (it describes the export, not the records); another numeric id
    is pseudonymised (a string id: synthetic ones cannot collide with real ones).
    """
    fields = []
    for spec, fp in zip(schema.fields, plan.fields, strict=True):
        numeric_id = spec.role == FieldRole.IDENTIFIER and spec.type in (FieldType.LONG, FieldType.DOUBLE)
        if numeric_id and fp.operator == "keep":
            if _is_row_index(spec.name):
                why = "init: a row-number column of the file, nothing about the records"
                fp = replace(fp, operator="drop", source="init", reason=why)
            else:
                why = "init: a numeric id; synthetic ids drawn in its range would repeat real ones"
                fp = replace(fp, operator="pseudonymize", source="init", reason=f"{why} ({fp.reason})")
        fields.append(fp)
    return RedactionPlan(plan.schema_fingerprint, tuple(fields))


def _field_line(plan: FieldPlan, role: FieldRole, ftype: FieldType, nullable: bool) -> str:
    operator = plan.operator if plan.operator in _CONFIG_OPERATORS else "auto"
    parts = [f"role: {role.value}", f"redact: {operator}"]
    if plan.entity and operator != "auto":
        parts.append(f"entity: {plan.entity}")
    if plan.generalize and operator == "generalize":
        parts.append(f"generalize: {plan.generalize}")
    why = plan.reason or "no detection"
    if operator == "auto":
        why = f"{plan.operator} (each value scanned) because {why}"
    kind = ftype.value + (", nullable" if nullable else "")
    return f"  {_q(plan.field)}: {{{', '.join(parts)}}}  # {kind}; {_comment(why)}"


def draft_pipeline(
    sample: Path,
    *,
    topic: str,
    stream: str | None = None,
    output: Path = Path("pipeline.yaml"),
    deadletter_topic: str = "synthstream.deadletter",
    sample_records: int = 1_000,
    target: str | None = None,
) -> tuple[str, InitResult]:
    """The text of a pipeline file for ``sample`` (and what it holds); see the module docstring.

    ``output`` is where the file will live: the sample and the state directory are written
    relative to its folder (which :func:`~synthstream.config.load_pipeline_config` resolves).
    ``target`` becomes ``audit.target_field`` (checked against the inferred fields on write).
    """
    stream = stream or topic
    sample = Path(sample)
    frame = read_table(sample)
    rows = len(frame)
    schema = infer_schema_from_file(sample, name=_record_name(stream))
    records = records_from_frame(frame.head(sample_records), schema)
    # Cardinality from the whole sample, for roles, drift and stats eligibility (counts only, no values).
    distinct = {
        c: int(frame[c].nunique(dropna=True)) for c in frame.columns.astype(str) if c in set(schema.field_names)
    }
    schema, sparse = _sparse_as_identifiers(schema, distinct, rows)
    plan = _with_identifier_policy(build_plan(schema, records), schema)
    by_name = {p.field: p for p in plan.fields}
    for name, why in sparse.items():
        by_name[name] = replace(by_name[name], reason=f"{why}; {by_name[name].reason}")
    out_fields = [
        _output_spec(spec, by_name[spec.name]) for spec in schema.fields if by_name[spec.name].operator != "drop"
    ]
    redacted_schema = schema.model_copy(update={"fields": tuple(out_fields)})
    monitored = [
        f.name
        for f in drift_fields(redacted_schema)
        if f.role == FieldRole.NUMERIC or distinct.get(f.name, MAX_CATEGORIES + 1) <= MAX_CATEGORIES
    ]
    numeric = [
        f.name
        for f in redacted_schema.fields
        if f.role == FieldRole.NUMERIC
        and f.type in (FieldType.LONG, FieldType.DOUBLE)
        and by_name[f.name].operator == "keep"
    ]
    categorical = [
        f.name
        for f in redacted_schema.fields
        if f.role == FieldRole.CATEGORICAL and distinct.get(f.name, MAX_CATEGORIES + 1) <= 20
    ]
    numeric_bounds = {n: b for n in numeric[: _STATS_FIELDS // 2] if (b := outward_bounds(frame[n])) is not None}
    stats_categorical = categorical[: _STATS_FIELDS - len(numeric_bounds)]
    needs_key = sorted(p.field for p in plan.fields if p.operator in _NEEDS_KEY)
    redacted = sum(1 for p in plan.fields if p.operator != "keep")
    folder = Path(output).parent
    # Relative when the sample sits beside (or below) the file, so the folder can move; else absolute.
    resolved = sample.resolve()
    sample_ref = str(resolved)
    if resolved.is_relative_to(folder.resolve()):
        sample_ref = str(resolved.relative_to(folder.resolve()))
    min_records = max(10, int(0.75 * rows))
    window_records = max(50, min(2_000, rows // 5))

    lines: list[str] = [
        f"# synthstream pipeline for {sample.name} ({rows} rows, {len(schema.fields)} fields),",
        "# written by `synthstream init`.",
        "# It holds field names, types, roles, operators and reasons only: no value of the data.",
        f"# Check it with `synthstream run --config {Path(output).name}`: every problem is listed at once.",
        f"stream: {_q(stream)}",
        "source:",
        f"  topic: {_q(topic)}",
        "  format: auto                 # auto | json | avro (Confluent framing)",
        f"  sample_file: {_q(sample_ref)}   # the schema below is inferred from this file (relative to this file)",
        "  extra_fields: drop           # drop | reject fields the schema does not know",
        "fields:                        # inferred role and redaction plan per field, and why (edit freely)",
    ]
    for spec in schema.fields:
        lines.append(_field_line(by_name[spec.name], spec.role, spec.type, spec.nullable))
    lines += [
        "redaction:",
        "  enabled: true                # PII is redacted in flight, before anything is buffered or published",
        f"  sample_records: {sample_records}         # rows of sample_file used to detect what each field holds",
    ]
    if needs_key:
        lines.append(
            f"  # {_flow_list(needs_key)} need a pseudonym key: "
            "export SYNTHSTREAM_PSEUDONYM_KEY (>= 16 bytes) before `run`"
        )
    lines += [
        "buffer:",
        f"  max_records: {max(20_000, rows)}           # most recent records kept for training",
        "training:",
        "  generator: auto              # auto | gaussian_copula | neural | aim | mst | aim_stream",
        "                               # auto: copula and neural both fitted, the better on held-out records kept",
        f"  min_records: {min_records}             # first fit once the buffer holds this many: 75% of the sample's",
        "                               # rows (seen records: the audit holds out audit.holdout_share of them)",
        f"  every_records: {max(1_000, rows)}           # later fits after this many new records ...",
        "  every_seconds: 300           # ... or this much time",
        "  seed: 0",
        "publisher:",
        "  rate: 1000                   # synthetic records per second (0 = as fast as possible)",
        "  format: avro                 # avro | json",
        "  # max_records: 10000         # end the run after this many synthetic records",
        "stats:                         # windowed DP statistics on <stream>.stats (w-event privacy)",
        "  enabled: false               # example below uses this table's fields; bounds are rounded robust quantiles",
    ]
    if numeric_bounds:
        lines.append("  # numeric:")
        for n, (lo, hi) in numeric_bounds.items():
            lines.append(f"  #   {_q(n)}: {{bounds: [{lo:g}, {hi:g}], bins: 10, edges: dp_quantiles, sum: true}}")
    if stats_categorical:
        lines.append("  # categorical:                # {} = domain learned with a DP threshold")
        for n in stats_categorical:
            lines.append(f"  #   {_q(n)}: {{}}")
    lines += [
        "drift:",
        "  enabled: true" if monitored else "  enabled: false               # no numeric or small categorical field",
        f"  fields: {_flow_list(monitored)}",
        f"  window_records: {window_records}          # records per window of each source partition",
        "metrics:                       # Prometheus /metrics and JSON /health",
        "  enabled: true",
        "  host: 127.0.0.1",
        "  port: 0                      # a free port, logged as metrics.listening",
        "audit:                         # privacy and quality gate of every model version",
        "  enabled: true",
        f"  synthetic_rows: {min(10_000, max(1_000, rows))}",
        *_small_sample_holdout(rows),
        f"  target_field: {_q(target)}   # TSTR is measured on it; the model choice favours it"
        if target
        else "  # target_field: <field>      # a label: TSTR measured on it, the model choice favours it",
        "topics:",
        f"  deadletter: {_q(deadletter_topic)}",
        "  models: synthstream.models",
        "  drift: synthstream.drift",
        f"state_dir: {_q('.synthstream/' + stream)}   # relative to this file",
        "",
    ]
    result = InitResult(Path(output), stream, len(schema.fields), redacted, len(monitored), rows)
    return "\n".join(lines), result


#: Control records the audit wants by default (``audit.min_holdout``) and its default held-out share.
_MIN_HOLDOUT, _HOLDOUT_SHARE = 200, 0.2
#: The held-out share a sample too small for the defaults gets.
_SMALL_HOLDOUT_SHARE = 0.3
#: Control records a tiny sample's share aims at (the audit's own floor is ``_LEAST_HOLDOUT``).
_SMALL_CONTROL, _LEAST_HOLDOUT = 15, 10
#: Below this many rows ``init`` says the sample is small (a weak model, a coarse audit).
FEW_ROWS = 100


def _small_sample_holdout(rows: int) -> list[str]:
    """Audit lines for a sample whose 20 % would never reach the 200 control records the audit waits for.

    Without them a 344-row table never trained: the first fit waits for the audit's control set
    (a version the audit cannot judge would only be rejected), and 20 % of 344 is 69.
    """
    if rows * _HOLDOUT_SHARE >= _MIN_HOLDOUT:
        return []
    share = small_holdout_share(rows)
    expected = rows * share
    floor = max(_LEAST_HOLDOUT, int(0.7 * expected))  # the split is a coin flip per record: room below the mean
    return [
        f"  holdout_share: {share}           # a small sample: {round(100 * share)}% of records are the control set",
        f"  min_holdout: {floor}             # audit from this many control records (default 200; fewer"
        " give wider risk intervals)",
    ]


def small_holdout_share(rows: int) -> float:
    """The control share of a sample too small for the defaults: 30 %, more when that is under 15 records.

    The audit's floor is 10 control records (``audit.min_holdout``); 30 % of a 32-row table is 9.6,
    so half the time the first fit would never start. At most half the records are held out.
    """
    return round(min(0.5, max(_SMALL_HOLDOUT_SHARE, _SMALL_CONTROL / max(rows, 1))), 2)


def write_pipeline(
    sample: Path,
    *,
    topic: str,
    stream: str | None = None,
    output: Path = Path("pipeline.yaml"),
    deadletter_topic: str = "synthstream.deadletter",
    overwrite: bool = False,
    target: str | None = None,
) -> InitResult:
    """Draft the pipeline file for ``sample``, check it as ``synthstream run`` would, and write it.

    Refuses to replace an existing file unless ``overwrite``. The draft is validated before it
    is written (a bug here must not hand the user a file ``run`` refuses).
    """
    output = Path(output)
    if output.exists() and not overwrite:
        raise ConfigError([f"{output} exists; pass --force to replace it"], "synthstream init")
    text, result = draft_pipeline(
        sample, topic=topic, stream=stream, output=output, deadletter_topic=deadletter_topic, target=target
    )
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_name(output.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    try:
        config = load_pipeline_config(tmp)
        source_schema = infer_schema_from_file(Path(sample), name=_record_name(config.stream))
        check_config(config, source_schema, str(output))
    except Exception:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, output)
    return result


def _record_name(stream: str) -> str:
    cleaned = "".join(c if c.isalnum() else "_" for c in stream)
    return cleaned if cleaned[:1].isalpha() else f"R_{cleaned}"
