"""The PII redactor: a per-field plan compiled into functions, plus NER over free text.

Which entity each field holds is detected once per schema version (field-name hints +
value detection on a sample, like presidio-structured), cached on disk by schema
fingerprint, and overridable in configuration. Each field then gets one precompiled
function (keep, mask, keyed pseudonym, seeded fake, generalization), so structured records
never touch NLP; only ``scan`` fields (free text) go through NER and the recognizers, in
micro-batches. Findings are counted per field x entity x operator, never stored.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from synthstream.config import FieldOverride, RedactionConfig
from synthstream.errors import ConfigError
from synthstream.log import get_logger
from synthstream.processors.pii.operators import (
    Locale,
    Pseudonymizer,
    fake_function,
    generalize_function,
    key_from_env,
    mask_function,
    output_type,
)
from synthstream.processors.pii.plan import FieldDetection, default_operator, detect_fields
from synthstream.processors.pii.types import Entity
from synthstream.processors.redactor import PassThroughRedactor, Redactor
from synthstream.schemas.record import FieldRole, FieldSpec, FieldType, RecordSchema

if TYPE_CHECKING:
    from synthstream.processors.pii.ner import TextAnalyzer

Record = dict[str, Any]
Transform = Callable[[Any], Any]
OPERATORS = ("keep", "drop", "mask", "pseudonymize", "fake", "generalize", "scan")
_NEEDS_KEY = {"pseudonymize", "fake"}
_log = get_logger("redactor")

_FIRST_NAME_HINTS = ("first", "given", "forename", "prenome", "primeiro")
_LAST_NAME_HINTS = ("last", "surname", "family", "sobrenome", "ultimo")
_DEFAULT_GENERALIZE = {
    Entity.DATE_OF_BIRTH.value: "year",
    Entity.ZIP_CODE.value: "prefix",
    Entity.BR_CEP.value: "prefix",
}


@dataclass(frozen=True)
class FieldPlan:
    """What happens to one field: the entity it holds, the operator, and why."""

    field: str
    entity: str | None
    operator: str
    source: str
    generalize: str | None = None


@dataclass(frozen=True)
class RedactionPlan:
    """The per-field plan of one schema version (JSON-serialisable; holds no values)."""

    schema_fingerprint: str
    fields: tuple[FieldPlan, ...]

    def to_json(self) -> str:
        """Serialise for the on-disk cache."""
        return json.dumps({"schema_fingerprint": self.schema_fingerprint, "fields": [asdict(f) for f in self.fields]})

    @classmethod
    def from_json(cls, text: str) -> RedactionPlan:
        """Read a cached plan."""
        doc = json.loads(text)
        return cls(doc["schema_fingerprint"], tuple(FieldPlan(**f) for f in doc["fields"]))


def build_plan(
    schema: RecordSchema,
    sample: Sequence[Mapping[str, Any]],
    overrides: Mapping[str, FieldOverride] | None = None,
) -> RedactionPlan:
    """Detect each field's entity on ``sample`` and choose operators; config overrides win."""
    overrides = overrides or {}
    unknown = sorted(set(overrides) - set(schema.field_names))
    if unknown:
        raise ConfigError([f"fields.{name}: no such field; fields are {schema.field_names}" for name in unknown])
    detections = detect_fields(schema, sample)
    plans = []
    for spec in schema.fields:
        detection = detections.get(spec.name) or FieldDetection(spec.name, None, "none", 0.0)
        override = overrides.get(spec.name)
        entity = override.entity if override and override.entity else detection.entity
        source = "config" if override and (override.entity or override.redact != "auto") else detection.source
        operator: str
        if override and override.redact != "auto":
            operator = override.redact
        elif spec.role == FieldRole.FREE_TEXT:
            operator = "scan"
        else:
            operator = default_operator(FieldDetection(spec.name, entity, detection.source, detection.share), spec)
        kind = (override.generalize if override else None) or (
            _DEFAULT_GENERALIZE.get(entity or "", "year") if operator == "generalize" else None
        )
        plans.append(FieldPlan(spec.name, entity, operator, source, kind))
    return RedactionPlan(schema.fingerprint(), tuple(plans))


def cached_plan(
    cache_dir: Path | None,
    schema: RecordSchema,
    sample: Sequence[Mapping[str, Any]],
    overrides: Mapping[str, FieldOverride] | None = None,
) -> RedactionPlan:
    """The plan for this schema version: from the cache when present, else built and cached.

    The cache key is the schema fingerprint plus the overrides, so a config change re-plans.
    """
    plan_overrides = {k: v.model_dump() for k, v in sorted((overrides or {}).items())}
    digest = hashlib.sha256(json.dumps(plan_overrides, sort_keys=True).encode()).hexdigest()[:8]
    key = f"{schema.fingerprint()[:16]}-{digest}"
    path = cache_dir / f"plan-{key}.json" if cache_dir is not None else None
    if path is not None and path.is_file():
        return RedactionPlan.from_json(path.read_text())
    plan = build_plan(schema, sample, overrides)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(plan.to_json())
        os.replace(tmp, path)
    return plan


class PiiRedactor:
    """Applies a :class:`RedactionPlan` to micro-batches and counts findings.

    ``output_schema`` is the schema of what comes out (dropped fields removed, pseudonymized
    and masked fields become string identifiers): the redacted topic, the buffer and the
    generators use it.
    """

    redacts = True

    def __init__(
        self,
        schema: RecordSchema,
        plan: RedactionPlan,
        *,
        pseudonymizer: Pseudonymizer | None = None,
        locale: Locale = "en_US",
        text_analyzer: TextAnalyzer | None = None,
    ) -> None:
        by_name = {f.field: f for f in plan.fields}
        problems = [
            f"{f.field}: unknown operator {f.operator!r}; use one of {OPERATORS}"
            for f in plan.fields
            if f.operator not in OPERATORS
        ]
        needs_key = [f.field for f in plan.fields if f.operator in _NEEDS_KEY]
        if needs_key and pseudonymizer is None:
            problems.append(f"fields {needs_key} need a pseudonym key (set the key environment variable)")
        scan_fields = [f.field for f in plan.fields if f.operator == "scan"]
        if scan_fields and text_analyzer is None:
            problems.append(f"fields {scan_fields} are free text and need a text analyzer (NER)")
        if problems:
            raise ConfigError(problems, "redaction plan")
        self.schema = schema
        self.plan = plan
        self.locale = locale
        self.text_analyzer = text_analyzer
        self._pseudonymizer = pseudonymizer
        self._steps: list[tuple[str, Transform | None]] = []
        self._counted: list[tuple[str, str, str]] = []
        self._scan: list[str] = scan_fields
        out_fields: list[FieldSpec] = []
        for spec in schema.fields:
            fp = by_name[spec.name]
            if fp.operator == "drop":
                continue
            self._steps.append((spec.name, self._compile(spec, fp)))
            if fp.entity and fp.operator not in ("keep", "scan"):
                self._counted.append((spec.name, fp.entity, fp.operator))
            out_fields.append(_output_spec(spec, fp))
        self.output_schema = schema.model_copy(update={"fields": tuple(out_fields)})
        self.findings: Counter[tuple[str, str, str]] = Counter()

    def __repr__(self) -> str:
        ops = Counter(f.operator for f in self.plan.fields)
        fields = len(self.plan.fields)
        return f"PiiRedactor(fields={fields}, operators={dict(sorted(ops.items()))}, locale={self.locale!r})"

    def _compile(self, spec: FieldSpec, fp: FieldPlan) -> Transform | None:
        if fp.operator in ("keep", "scan"):
            return None
        if fp.operator == "mask":
            return mask_function()
        if fp.operator == "generalize":
            return generalize_function(fp.generalize or "year", field_type=spec.type)  # type: ignore[arg-type]  # checked by config
        assert self._pseudonymizer is not None
        if fp.operator == "pseudonymize":
            pseudonymize = self._pseudonymizer
            return lambda value: None if value is None else pseudonymize(str(value))
        return fake_function(
            fp.entity or "", self.locale, self._pseudonymizer, spec.type, variant=_name_variant(spec.name)
        )

    def process(self, records: Sequence[Record]) -> list[Record]:
        """Return redacted copies of ``records`` (inputs are not modified)."""
        steps = self._steps
        out: list[Record] = []
        for rec in records:
            new: Record = {}
            for name, fn in steps:
                value = rec[name]
                new[name] = value if fn is None else fn(value)
            out.append(new)
        for name, entity, operator in self._counted:
            self.findings[(name, entity, operator)] += sum(1 for rec in records if rec[name] is not None)
        if self._scan:
            self._scan_text(out)
        return out

    def _scan_text(self, out: list[Record]) -> None:
        from synthstream.processors.pii.ner import redact_text

        assert self.text_analyzer is not None  # checked in __init__ for plans with scan fields
        cells = [
            (i, name) for i, rec in enumerate(out) for name in self._scan if isinstance(rec[name], str) and rec[name]
        ]
        texts = [out[i][name] for i, name in cells]
        for (i, name), text, findings in zip(cells, texts, self.text_analyzer.analyze_batch(texts), strict=True):
            if findings:
                out[i][name] = redact_text(text, findings)
                for f in findings:
                    self.findings[(name, f.entity_type, "replace")] += 1

    def drain_findings(self) -> list[tuple[str, str, str, int]]:
        """Counts since the last drain, as (field, entity, operator, count); resets them."""
        drained = [(f, e, o, n) for (f, e, o), n in sorted(self.findings.items()) if n]
        self.findings.clear()
        return drained


def _name_variant(field: str) -> str:
    lowered = field.lower()
    if any(h in lowered for h in _FIRST_NAME_HINTS):
        return "first_name"
    if any(h in lowered for h in _LAST_NAME_HINTS):
        return "last_name"
    return "name"


def _output_spec(spec: FieldSpec, fp: FieldPlan) -> FieldSpec:
    new_type = output_type(fp.operator, spec.type) if fp.operator not in ("keep", "scan") else spec.type
    role = spec.role
    if fp.operator in ("pseudonymize", "mask") and new_type == FieldType.STRING:
        role = FieldRole.IDENTIFIER
    return spec.model_copy(update={"type": new_type, "role": role})


def pseudonymizer_from_env(config: RedactionConfig) -> Pseudonymizer | None:
    """The keyed pseudonymizer from the configured variable; a random key only if allowed.

    Read once, at the entry point. Returns None when the variable is unset and ephemeral keys
    are off: plans that need a key then fail with a clear error.
    """
    if os.environ.get(config.key_env):
        key, key_id = key_from_env(config.key_env)
        return Pseudonymizer(key, key_id)
    if config.ephemeral_key:
        _log.warning("redaction.ephemeral_key", detail="pseudonyms and fakes will differ after a restart")
        key = secrets.token_bytes(32)
        return Pseudonymizer(key, "eph" + secrets.token_hex(3))
    return None


def make_redactor(
    config: RedactionConfig,
    overrides: Mapping[str, FieldOverride],
    schema: RecordSchema,
    sample: Sequence[Mapping[str, Any]],
    *,
    pseudonymizer: Pseudonymizer | None,
    cache_dir: Path | None = None,
) -> Redactor:
    """Build the pipeline's redaction stage from configuration (pass-through when disabled)."""
    if not config.enabled:
        return PassThroughRedactor()
    plan = cached_plan(cache_dir, schema, sample, overrides)
    analyzer = None
    if any(f.operator == "scan" for f in plan.fields):
        from synthstream.processors.pii.ner import TextAnalyzer, load_nlp
        from synthstream.processors.pii.patterns import TextScanner

        analyzer = TextAnalyzer(load_nlp(config.language), scanner=TextScanner().scan)
    redactor = PiiRedactor(schema, plan, pseudonymizer=pseudonymizer, locale=config.locale, text_analyzer=analyzer)
    _log.info("redaction.plan", plan={f.field: f"{f.operator}:{f.entity or '-'}" for f in plan.fields})
    return redactor
