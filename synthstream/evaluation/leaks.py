"""Verbatim leaks: training values a generator repeats in its synthetic sample.

The attacks of :mod:`synthstream.evaluation.privacy_risk` measure what the *audited*
fields (numbers, categories, dates) reveal; they never look at identifiers or free text,
and a real CPF copied into a synthetic row is invisible to them. This check looks at the
values themselves, per model version, on the audit's synthetic sample:

* **rare values** (every string field, plus categorical-role numbers): the share of
  synthetic rows whose value is one that fewer than ``k`` training records hold. A
  generator that learned the distribution emits a rare training value only as often as a
  real unseen record carries one by chance (short identifiers collide, lot codes repeat),
  so the share is judged against the same share among the *control* records: a field fails
  when ``share - control_share`` exceeds the ceiling *significantly* (the lower end of its
  normal-approximation confidence interval is above the ceiling), so a field of short codes
  that real records share by chance does not flap on sampling noise while a copied unique
  value (control share 0) fails from a handful of rows. Without a control set the baseline
  is 0 (strict). Values the configuration declares public (``public_values``: the code book
  given as ``training.marginal.labels``) are not rare training values: a DP model that spreads
  noise over every declared label emits a rare one more often than real records carry it, and
  that reveals nothing about any record.
* **recognised values** (string and long fields): every value, and every span a recogniser
  finds inside a longer text, is classified with the structured recognisers
  (:func:`~synthstream.processors.pii.patterns.classify_value` and
  :class:`~synthstream.processors.pii.patterns.TextScanner`: CPF, CNPJ, e-mail, phone,
  card, CEP, ...). A recognised synthetic value whose canonical form (digits only for
  numbers, case-folded e-mail) is also found in the training data is a leak, however
  common it is there: any such value fails the version. Person names: multi-word values
  of a name-like training field (named like one, or whose values are mostly person names
  by :func:`person_name`: the lexicon and shape rules of
  :class:`~synthstream.processors.pii.names.NameMatcher`) are the real names; a synthetic
  string that equals one or contains its word sequence is a leak. Recognised values that are *not* in training (fakes,
  pseudonyms) are counted as ``fresh_rows`` and pass. Next to each finding, the share of
  real *control* records carrying a recognised training value (``control_share``) shows how
  often real unseen people share such a value (common names do): context for the reader,
  not a discount; the version fails on the synthetic rows alone.

Findings carry field names, entity types and counts, never values; nothing here logs. The
training values are held in memory for the check only.
"""

from __future__ import annotations

import functools
import math
import re
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from statistics import NormalDist
from typing import Any

import pandas as pd

from synthstream.config import DEFAULT_LEAK_ENTITIES
from synthstream.processors.pii.patterns import SUPPORTED, TextScanner, classify_value
from synthstream.processors.pii.plan import name_hint
from synthstream.processors.pii.types import Entity
from synthstream.schemas.events import LeakFinding
from synthstream.schemas.record import FieldRole, FieldSpec, FieldType, RecordSchema

__all__ = [
    "DEFAULT_LEAK_ENTITIES",
    "LEAK_ENTITIES",
    "LeakResult",
    "VerbatimLeakCheck",
    "looks_like_name",
    "name_tokens",
    "person_name",
]

#: Entities the check can recognise: the structured ones plus PERSON (names from name-like fields).
LEAK_ENTITIES: tuple[str, ...] = tuple(
    dict.fromkeys([str(Entity.PERSON), *SUPPORTED, str(Entity.ZIP_CODE), str(Entity.DATE_TIME)])
)
#: (entity group, canonical text) of a recognised value, or ("PERSON", *name tokens) of a name.
Key = tuple[str, ...]

#: Entities written with digits whose formatting varies (dots, dashes, spaces): compared on digits/letters only.
_PHONES = {str(Entity.PHONE_NUMBER), str(Entity.BR_PHONE)}
_ALNUM_KEYED = {
    str(Entity.BR_CPF),
    str(Entity.BR_CNPJ),
    str(Entity.CREDIT_CARD),
    str(Entity.IBAN_CODE),
    str(Entity.US_SSN),
    str(Entity.BR_CEP),
    str(Entity.ZIP_CODE),
    *_PHONES,
}
_WORD = re.compile(r"[^\W\d_]+(?:['’-][^\W\d_]+)*")
_NAME_TOKEN = re.compile(r"[^\W\d_]+(?:['’.-][^\W\d_]*)*\.?")
_PARTICLES = frozenset(
    "da das de del della der di do dos du e la le van von y bin ibn al dei den ter".split()  # noqa: SIM905
)
#: Name-like field by values: this share of sampled values look like names and this share are distinct.
_NAME_SHARE = 0.6
_NAME_DISTINCT = 0.2
_NAME_MIN_DISTINCT = 20
_NAME_SAMPLE = 2_000
_MAX_NAME_TOKENS = 8


def name_tokens(text: str) -> tuple[str, ...]:
    """The case-folded word tokens of ``text`` (letters, inner apostrophes and hyphens), in order."""
    return tuple(_WORD.findall(text.casefold()))


def looks_like_name(text: str) -> bool:
    """Whether ``text`` is shaped like a person's full name: 2 to 6 capitalised words (particles allowed)."""
    parts = text.split()
    if not 2 <= len(parts) <= 6:
        return False
    capitalised = 0
    for part in parts:
        if part.casefold() in _PARTICLES:
            continue
        if not (_NAME_TOKEN.fullmatch(part) and part[0].isupper()):
            return False
        capitalised += 1
    return capitalised >= 2


def person_name(value: str) -> bool:
    """Whether a whole value is a person name: the PII name matcher (lexicon + shape), else the shape alone."""
    return _name_detector()(value)


@functools.lru_cache(maxsize=1)
def _name_detector() -> Callable[[str], bool]:
    try:
        from synthstream.processors.pii.names import default_matcher
    except ImportError:  # an older tree without the name lexicon: the shape rule alone
        return looks_like_name
    return default_matcher().is_name


def _text(value: Any) -> str | None:
    """A value as the text it is compared by (None for nulls and blanks); ``3.0`` reads as ``3``."""
    if value is None:
        return None
    if isinstance(value, float):
        if math.isnan(value):
            return None
        if value.is_integer():
            return str(int(value))
    text = str(value)
    return text if text.strip() else None


def _texts(frame: pd.DataFrame, name: str) -> list[str | None]:
    if name not in frame.columns:
        return [None] * len(frame)
    return [_text(v) for v in frame[name].astype(object).tolist()]


def _group(entity: str) -> str:
    return "PHONE" if entity in _PHONES else entity


def _key(entity: str, text: str) -> Key:
    """The canonical form a recognised value is compared by, so a reformatted copy still matches."""
    if entity in _ALNUM_KEYED:
        return _group(entity), "".join(c for c in text if c.isalnum()).upper()
    return _group(entity), " ".join(text.split()).casefold()


@dataclass(frozen=True)
class LeakResult:
    """What the check found: per-field findings, the reasons a version fails, and two summary numbers."""

    findings: list[LeakFinding]
    reasons: list[str]
    summary: dict[str, float] = field(default_factory=dict)

    @property
    def leaked(self) -> bool:
        """Whether any finding fails the version."""
        return bool(self.reasons)


class VerbatimLeakCheck:
    """The verbatim-leak check of one schema (see the module docstring).

    ``person_detector`` decides whether a value is a person name (default
    :func:`person_name`, resolved in the process that runs the check so the lexicon never
    travels with a pickled auditor); a field is name-like when its name says so or the
    detector says so for most of its sampled distinct values. ``entities`` outside
    :data:`LEAK_ENTITIES` raise :class:`ValueError` listing the valid ones.
    """

    def __init__(
        self,
        schema: RecordSchema,
        *,
        k: int = 5,
        max_rare_share: float = 0.001,
        entities: Iterable[str] = DEFAULT_LEAK_ENTITIES,
        confidence_level: float = 0.95,
        person_detector: Callable[[str], bool] | None = None,
        replaced_fields: Iterable[str] = (),
        public_values: Mapping[str, Iterable[Any]] | None = None,
    ) -> None:
        if k < 2:
            raise ValueError("k must be at least 2 (a value held by one record is the rarest there is)")
        if not 0.0 <= max_rare_share <= 1.0:
            raise ValueError("max_rare_share must be in [0, 1]")
        if not 0.0 < confidence_level < 1.0:
            raise ValueError("confidence_level must be in (0, 1)")
        wanted = [str(e) for e in entities]
        unknown = sorted(set(wanted) - set(LEAK_ENTITIES))
        if unknown:
            raise ValueError(f"unknown leak entities {unknown}; choose from {list(LEAK_ENTITIES)}")
        self.schema = schema
        self.k = k
        self.max_rare_share = max_rare_share
        self.confidence_level = confidence_level
        self._z = NormalDist().inv_cdf(0.5 + confidence_level / 2)
        self.entities = tuple(dict.fromkeys(wanted))
        self.person_detector = person_detector
        #: Fields whose every recognised training value the redactor already replaced (fakes, pseudonyms):
        #: a synthetic value matching one of them repeats a fake, not a person, so it is judged like names.
        self.replaced_fields = frozenset(replaced_fields)
        #: Declared public values per field (the code book): never counted as rare training values.
        self.public_values = {name: frozenset(str(v) for v in values) for name, values in (public_values or {}).items()}
        self._structured = frozenset(e for e in self.entities if e != Entity.PERSON)
        self._persons = Entity.PERSON in self.entities
        scannable = [e for e in SUPPORTED if e in self._structured]
        self._scanner = TextScanner(scannable) if scannable else None
        self._rare_fields = [f for f in schema.fields if _rare_checked(f)]
        self._scan_fields = [f for f in schema.fields if f.type in (FieldType.STRING, FieldType.LONG)]

    def __repr__(self) -> str:
        return (
            f"VerbatimLeakCheck(schema={self.schema.name!r}, k={self.k}, max_rare_share={self.max_rare_share}, "
            f"entities={list(self.entities)})"
        )

    def __call__(self, training: pd.DataFrame, control: pd.DataFrame, synthetic: pd.DataFrame) -> LeakResult:
        """Check ``synthetic`` against ``training`` (``control``: the baseline of the rare-value share)."""
        findings: list[LeakFinding] = []
        reasons: list[str] = []
        rows = len(synthetic)
        rare_excess = 0.0
        for spec in self._rare_fields:
            finding = self._rare(spec, training, control, synthetic)
            findings.append(finding)
            excess = finding.share - (finding.control_share or 0.0)
            rare_excess = max(rare_excess, excess)
            if finding.leak:
                baseline = "no control set" if finding.control_share is None else f"control {finding.control_share:.2%}"
                reasons.append(
                    f"verbatim leak: field {spec.name!r} carries a value held by fewer than {self.k} training records "
                    f"in {finding.rows:,} of {rows:,} synthetic rows ({finding.share:.2%}; {baseline}; "
                    f"{finding.values:,} distinct values; significantly more than {self.max_rare_share:.2%} above "
                    "the control share)"
                )
        recognised = self._recognised(training, control, synthetic) if self._structured or self._persons else []
        recognised_share = 0.0
        for finding in recognised:
            findings.append(finding)
            if finding.leak:
                # Only what was judged a leak: fakes repeating at the control's rate are reported, not summed.
                recognised_share = max(recognised_share, finding.share)
                context = "" if finding.control_share is None else f"; control records: {finding.control_share:.2%}"
                reasons.append(
                    f"verbatim leak: field {finding.field!r} carries {finding.values:,} distinct real "
                    f"{finding.entity_type} values from the training data in {finding.rows:,} of {rows:,} "
                    f"synthetic rows{context}"
                )
        summary = {"leak_rare_share_excess": max(0.0, rare_excess), "leak_recognised_share": recognised_share}
        return LeakResult(findings=findings, reasons=reasons, summary=summary)

    # -----------------------------------------------------------------------------------------
    # rare values
    # -----------------------------------------------------------------------------------------

    def _rare(
        self, spec: FieldSpec, training: pd.DataFrame, control: pd.DataFrame, synthetic: pd.DataFrame
    ) -> LeakFinding:
        counts = Counter(v for v in _texts(training, spec.name) if v is not None)
        public = self.public_values.get(spec.name, frozenset())
        rare = {v for v, n in counts.items() if n < self.k and v not in public}
        hits = [v for v in _texts(synthetic, spec.name) if v is not None and v in rare]
        share = len(hits) / len(synthetic) if len(synthetic) else 0.0
        control_share: float | None = None
        if len(control):
            control_share = sum(1 for v in _texts(control, spec.name) if v is not None and v in rare) / len(control)
        return LeakFinding(
            field=spec.name,
            check="rare_value",
            rows=len(hits),
            values=len(set(hits)),
            share=share,
            control_share=control_share,
            leak=self._significantly_above(share, len(synthetic), control_share, len(control)),
        )

    def _significantly_above(self, share: float, n: int, control_share: float | None, n_control: int) -> bool:
        """Whether ``share`` exceeds the control's share by more than the ceiling (lower end of the CI)."""
        excess = share - (control_share or 0.0)
        spread = share * (1 - share) / max(n, 1)
        if control_share is not None:
            spread += control_share * (1 - control_share) / max(n_control, 1)
        return excess - self._z * math.sqrt(spread) > self.max_rare_share

    # -----------------------------------------------------------------------------------------
    # recognised values
    # -----------------------------------------------------------------------------------------

    def _keys(self, text: str) -> list[tuple[str, Key]]:
        """(entity, canonical key) of every structured entity in ``text``: the whole value, else spans in it."""
        whole = classify_value(text)
        if whole is not None:
            return [(whole, _key(whole, text))] if whole in self._structured else []
        if self._scanner is None or len(text) < 6 or not any(c.isdigit() or c == "@" for c in text):
            return []
        return [(f.entity_type, _key(f.entity_type, text[f.start : f.end])) for f in self._scanner.scan(text)]

    def _recognised(self, training: pd.DataFrame, control: pd.DataFrame, synthetic: pd.DataFrame) -> list[LeakFinding]:
        real_keys: set[Key] = set()
        names: set[Key] = set()
        person_fields: set[str] = set()
        train_columns = {f.name: _texts(training, f.name) for f in self._scan_fields}
        for spec in self._scan_fields:
            distinct = {v for v in train_columns[spec.name] if v is not None}
            if self._structured:
                for text in distinct:
                    real_keys.update(key for _, key in self._keys(text))
            if self._persons and spec.type is FieldType.STRING and self._name_like(spec, train_columns[spec.name]):
                person_fields.add(spec.name)
                for text in distinct:
                    tokens = name_tokens(text)
                    if 2 <= len(tokens) <= _MAX_NAME_TOKENS:
                        names.add(tokens)
        longest = max((len(n) for n in names), default=0)
        total = len(synthetic)
        out: list[LeakFinding] = []
        for spec in self._scan_fields:
            values = _texts(synthetic, spec.name)
            by_value: dict[str, tuple[list[tuple[str, Key]], list[tuple[str, Key]]]] = {}
            leaked_rows: Counter[str] = Counter()
            fresh_rows: Counter[str] = Counter()
            leaked_keys: defaultdict[str, set[Key]] = defaultdict(set)
            for value in values:
                if value is None:
                    continue
                if value not in by_value:
                    by_value[value] = self._classify(spec, value, real_keys, names, longest, person_fields)
                leaked, fresh = by_value[value]
                for entity in {e for e, _ in leaked}:
                    leaked_rows[entity] += 1
                for entity in {e for e, _ in fresh} - {e for e, _ in leaked}:
                    fresh_rows[entity] += 1
                for entity, key in leaked:
                    leaked_keys[entity].add(key)
            control_rows: Counter[str] = Counter()
            for value in _texts(control, spec.name) if len(control) else ():
                if value is None:
                    continue
                leaked, _ = self._classify(spec, value, real_keys, names, longest, person_fields)
                for entity in {e for e, _ in leaked}:
                    control_rows[entity] += 1
            for entity in sorted(set(leaked_rows) | set(fresh_rows)):
                n = leaked_rows.get(entity, 0)
                control_share = control_rows.get(entity, 0) / len(control) if len(control) else None
                # A structured identifier (CPF, e-mail, card ...) copied from training is a leak however rare.
                # Names are judged against real unseen records: common first/last names (and the redactor's
                # keyed fakes, which repeat by design) are shared by strangers, so only a share significantly
                # above the control's says the model copies people.
                relative = (entity == Entity.PERSON or spec.name in self.replaced_fields) and control_share is not None
                leak = (
                    self._significantly_above(n / total if total else 0.0, total, control_share or 0.0, len(control))
                    if relative
                    else n > 0
                )
                out.append(
                    LeakFinding(
                        field=spec.name,
                        check="recognised",
                        entity_type=entity,
                        rows=n,
                        values=len(leaked_keys.get(entity, ())),
                        share=n / total if total else 0.0,
                        fresh_rows=fresh_rows.get(entity, 0),
                        control_share=control_share,
                        leak=leak,
                    )
                )
        return out

    def _classify(
        self,
        spec: FieldSpec,
        text: str,
        real_keys: set[Key],
        names: set[Key],
        longest: int,
        person_fields: set[str],
    ) -> tuple[list[tuple[str, Key]], list[tuple[str, Key]]]:
        """The leaked and the fresh recognised entities of one synthetic value (keys, never logged)."""
        leaked: list[tuple[str, Key]] = []
        fresh: list[tuple[str, Key]] = []
        if self._structured:
            for entity, key in self._keys(text):
                (leaked if key in real_keys else fresh).append((entity, key))
        if self._persons and spec.type is FieldType.STRING:
            person = str(Entity.PERSON)
            match = _contained_name(name_tokens(text), names, longest) if names else None
            if match is not None:
                leaked.append((person, match))
            elif spec.name in person_fields and (self.person_detector or _name_detector())(text):
                fresh.append((person, name_tokens(text)))
        return leaked, fresh

    def _name_like(self, spec: FieldSpec, column: Sequence[str | None]) -> bool:
        """Whether a training field holds person names: by its name, or by its values' shape and spread."""
        if spec.role is FieldRole.FREE_TEXT:
            return False
        if name_hint(spec.name) == Entity.PERSON:
            return True
        present = [v for v in column if v is not None]
        if not present:
            return False
        distinct = list(dict.fromkeys(present))
        if len(distinct) < _NAME_MIN_DISTINCT:
            return False
        detector = self.person_detector or _name_detector()
        if detector is looks_like_name and len(distinct) / len(present) < _NAME_DISTINCT:
            return False  # shape alone: "Rio de Janeiro" is shaped like a name; names are mostly distinct
        sample = distinct[:_NAME_SAMPLE]
        return sum(1 for v in sample if detector(v)) / len(sample) >= _NAME_SHARE


def _contained_name(tokens: Key, names: set[Key], longest: int) -> Key | None:
    """A real name (token sequence) that ``tokens`` equals or contains, or None."""
    if len(tokens) < 2:
        return None
    if tokens in names:
        return tokens
    for size in range(min(longest, len(tokens)), 1, -1):
        for start in range(len(tokens) - size + 1):
            window = tokens[start : start + size]
            if window in names:
                return window
    return None


def _rare_checked(spec: FieldSpec) -> bool:
    """Strings of every role, plus numbers and flags modelled as categories (codes): their values are tokens."""
    if spec.type is FieldType.STRING:
        return True
    return spec.role in (FieldRole.CATEGORICAL, FieldRole.IDENTIFIER) and spec.type is not FieldType.BOOLEAN
