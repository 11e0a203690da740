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
    check_recorded_key,
    fake_function,
    generalize_function,
    key_from_env,
    mask_function,
    operator_problem,
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
OPERATORS = ("keep", "drop", "mask", "pseudonymize", "fake", "generalize", "scan", "scan_values")
_NEEDS_KEY = {"pseudonymize", "fake", "scan_values"}
#: Version of the detection rules; part of the plan cache key so that better detection re-plans.
PLAN_VERSION = 3  # 3: calendar-grid dates are not births; automatic operators fit the type
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
    reason: str = ""


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
        reason = detection.reason
        if override and override.redact != "auto":
            operator = override.redact
            reason = f"config: redact={override.redact} set for this field" + (f" ({reason})" if reason else "")
        else:
            operator = default_operator(FieldDetection(spec.name, entity, detection.source, detection.share), spec)
            if override and override.entity:
                reason = f"config: entity={override.entity} set for this field"
        kind = (override.generalize if override else None) or (
            _DEFAULT_GENERALIZE.get(entity or "", "year") if operator == "generalize" else None
        )
        chosen = not (override and (override.redact != "auto" or override.generalize))
        if chosen and operator_problem(operator, spec.type, kind) is not None:
            # The automatic choice must fit the field's type (a `birth_year` of 19.0 cannot take a
            # year generalisation); an operator set in the config is checked, and refused, as set.
            operator, kind, reason = _type_fallback(spec.type, operator, kind, reason)
        plans.append(FieldPlan(spec.name, entity, operator, source, kind, reason))
    return RedactionPlan(schema.fingerprint(), tuple(plans))


def _type_fallback(ftype: FieldType, operator: str, kind: str | None, reason: str) -> tuple[str, str | None, str]:
    """An operator the field's type takes, instead of the automatic one it does not: bands for numbers, else fake."""
    what = f"generalize: {kind}" if operator == "generalize" else operator
    if operator_problem("generalize", ftype, "band") is None:
        return "generalize", "band", f"{reason}; {what} does not fit a {ftype.value}: bands of 10 instead"
    return "fake", None, f"{reason}; {what} does not fit a {ftype.value}: faked instead"


def cached_plan(
    cache_dir: Path | None,
    schema: RecordSchema,
    sample: Sequence[Mapping[str, Any]],
    overrides: Mapping[str, FieldOverride] | None = None,
) -> RedactionPlan:
    """The plan for this schema version: from the cache when present, else built and cached.

    The cache key is the schema fingerprint plus the overrides and :data:`PLAN_VERSION`, so a
    config change or a new detector re-plans.
    """
    plan_overrides = {k: v.model_dump() for k, v in sorted((overrides or {}).items())}
    keyed = {"detector": PLAN_VERSION, "overrides": plan_overrides}
    digest = hashlib.sha256(json.dumps(keyed, sort_keys=True).encode()).hexdigest()[:8]
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
            problems.append(
                f"fields {needs_key} need a pseudonym key: set the environment variable named by redaction.key_env "
                "(SYNTHSTREAM_PSEUDONYM_KEY by default)"
            )
        scan_fields = [f.field for f in plan.fields if f.operator == "scan"]
        if scan_fields and text_analyzer is None:
            problems.append(f"fields {scan_fields} are free text and need a text analyzer (NER)")
        # Operator/type mismatches (generalize: band on a string...), every field at once, before any record.
        for spec in schema.fields:
            planned = by_name.get(spec.name)
            if planned is not None and planned.operator in OPERATORS:
                mismatch = operator_problem(planned.operator, spec.type, planned.generalize)
                if mismatch is not None:
                    problems.append(f"{spec.name}: {mismatch}")
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
        self.findings: Counter[tuple[str, str, str]] = Counter()
        out_fields: list[FieldSpec] = []
        for spec in schema.fields:
            fp = by_name[spec.name]
            if fp.operator == "drop":
                continue
            self._steps.append((spec.name, self._compile(spec, fp)))
            if fp.entity and fp.operator not in ("keep", "scan", "scan_values"):
                self._counted.append((spec.name, fp.entity, fp.operator))
            out_fields.append(_output_spec(spec, fp))
        self.output_schema = schema.model_copy(update={"fields": tuple(out_fields)})

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
            width = 8 if fp.entity == Entity.BR_CEP.value else None
            return generalize_function(fp.generalize or "year", field_type=spec.type, digits=width)  # type: ignore[arg-type]  # checked by config
        assert self._pseudonymizer is not None
        if fp.operator == "scan_values":
            return self._scan_values(spec)
        if fp.operator == "pseudonymize":
            pseudonymize = self._pseudonymizer
            return lambda value: None if value is None else pseudonymize(str(value))
        return fake_function(
            fp.entity or "", self.locale, self._pseudonymizer, spec.type, variant=_name_variant(spec.name)
        )

    def _scan_values(self, spec: FieldSpec) -> Transform:
        """Per-value redaction of a mixed field: only values recognised as PII are replaced.

        Each value goes through :func:`classify_field_value` (check digits, formats, full
        names, dates); CPF/CNPJ/cards/IBAN/SSN get a keyed pseudonym, names/e-mails/phones a
        seeded fake, CEPs and dates are generalized, IPs masked; other values (``LOTE-123``)
        are kept, as strings when the field was numeric.
        """
        from synthstream.processors.pii.plan import AUTO_OPERATORS, classify_field_value

        assert self._pseudonymizer is not None
        pseudonymizer = self._pseudonymizer
        findings = self.findings
        name = spec.name
        as_text = spec.type != FieldType.STRING
        transforms: dict[str, Transform] = {}

        def transform_for(entity: str) -> Transform:
            operator = AUTO_OPERATORS.get(entity, "pseudonymize")
            if operator == "fake":
                fn = fake_function(entity, self.locale, pseudonymizer, FieldType.STRING)
            elif operator == "generalize":
                kind = _DEFAULT_GENERALIZE.get(entity, "year")
                fn = generalize_function(kind, field_type=FieldType.STRING)  # type: ignore[arg-type]  # known kinds
            elif operator == "mask":
                fn = mask_function()
            else:
                fn = lambda value: pseudonymizer(str(value))  # noqa: E731
            transforms[entity] = fn
            return fn

        def scan_value(value: Any) -> Any:
            if value is None:
                return None
            entity = classify_field_value(value)
            if entity is None:
                return str(value) if as_text else value
            findings[(name, entity, "scan_values")] += 1
            text = value if isinstance(value, str) else str(value)
            return (transforms.get(entity) or transform_for(entity))(text)

        return scan_value

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
    if fp.operator == "scan_values":
        # Replacements are strings (pseudonyms, fakes): a numeric field scanned per value becomes one.
        if spec.type == FieldType.STRING:
            return spec
        return spec.model_copy(update={"type": FieldType.STRING, "role": FieldRole.IDENTIFIER})
    new_type = output_type(fp.operator, spec.type) if fp.operator not in ("keep", "scan") else spec.type
    role = spec.role
    if fp.operator in ("pseudonymize", "mask") and new_type == FieldType.STRING:
        role = FieldRole.IDENTIFIER
    elif fp.operator == "fake" and role == FieldRole.FREE_TEXT:
        # A field whose values were recognised as one entity (names, phones, e-mails) and replaced by
        # fakes is no longer free text: the generators model it as a category (k-thresholded), not as words.
        role = FieldRole.CATEGORICAL
    return spec.model_copy(update={"type": new_type, "role": role})


def pseudonymizer_from_env(config: RedactionConfig, key_dir: Path | None = None) -> Pseudonymizer | None:
    """The keyed pseudonymizer from the configured variable; a random key only if allowed.

    Read once, at the entry point. Returns None when the variable is unset and ephemeral keys
    are off: plans that need a key then fail with a clear error. With ``key_dir`` (the
    state directory's ``redaction`` folder) the key's id is compared with the recorded one: a
    changed key is refused unless ``config.rotate_key`` (see ``check_recorded_key``).
    """
    if os.environ.get(config.key_env):
        key, key_id = key_from_env(config.key_env)
        if key_dir is not None:
            previous = check_recorded_key(key_dir, key_id, rotate=config.rotate_key)
            if previous is not None:
                _log.warning("redaction.key_rotated", previous_key_id=previous, key_id=key_id)
        return Pseudonymizer(key, key_id)
    if config.ephemeral_key:
        _log.warning("redaction.ephemeral_key", detail="pseudonyms and fakes will differ after a restart")
        key = secrets.token_bytes(32)
        return Pseudonymizer(key, "eph" + secrets.token_hex(3))
    return None


def text_analyzer_for(config: RedactionConfig) -> TextAnalyzer:
    """The free-text analyzer for a configuration: spaCy NER + recognizers, plus Portuguese cues.

    With ``language: pt`` or ``locale: pt_BR`` the Portuguese cues (:data:`ner.PT_CUES`: the
    person-name lexicon and rules, names grown over whole capitalised runs) are added. When no
    ``pt_core_news_*`` pipeline is installed (none is on the package index here) the English
    pipeline's NER runs under those cues.
    """
    from synthstream.processors.pii.ner import CUES, PT_CUES, TextAnalyzer, load_nlp
    from synthstream.processors.pii.patterns import TextScanner

    portuguese = config.language == "pt" or config.locale == "pt_BR"
    try:
        nlp = load_nlp(config.language)
    except ConfigError:
        if config.language != "pt":
            raise
        _log.info("redaction.ner_fallback", detail="no Portuguese spaCy pipeline; English NER plus Portuguese cues")
        nlp = load_nlp("en")
    cues = CUES + PT_CUES if portuguese else CUES
    return TextAnalyzer(nlp, scanner=TextScanner().scan, cues=cues)


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
        analyzer = text_analyzer_for(config)
    redactor = PiiRedactor(schema, plan, pseudonymizer=pseudonymizer, locale=config.locale, text_analyzer=analyzer)
    _log.info(
        "redaction.plan",
        plan={f.field: f"{f.operator}:{f.entity or '-'}" for f in plan.fields},
        reasons={f.field: f.reason for f in plan.fields},
    )
    return redactor
