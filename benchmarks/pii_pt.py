"""Portuguese PII benchmark parts: PESSOA precision/recall and the Brazilian canary.

- PESSOA on the LeNER-Br **test** split (``SYNTHSTREAM_DATA/pii/lener_br_test.conll``) and on
  Portuguese customer-service sentences made with mimesis (:mod:`benchmarks.pii_br`): token
  level (a gold name token is found when a PERSON finding covers it) and entity level (strict:
  a finding spans exactly the gold name; covered: every token of the gold name is covered).
  Systems: ours with the Portuguese cues (``locale: pt_BR``), ours with the English cues only
  (the pipeline before this work), and vanilla Presidio on ``en_core_web_sm`` (PERSON only).
- The canary table (:func:`benchmarks.pii_br.canary_records`): per-entity recall of the
  default ``auto`` plan with ``locale: pt_BR``, in fields and in the ``obs`` sentences, and
  the structured fast path's records/s on one core (all fields but the free-text one).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Sequence
from typing import Any

import pandas as pd

from benchmarks.common import dataset, median
from benchmarks.pii_br import canary_recall, canary_records, portuguese_sentences
from synthstream.config import RedactionConfig
from synthstream.connectors.files import records_from_frame
from synthstream.processors.pii.operators import Pseudonymizer
from synthstream.processors.pii.types import Finding
from synthstream.schemas.inference import infer_schema

Tokens = list[tuple[int, int]]
Spans = Callable[[Sequence[str]], list[list[tuple[int, int]]]]
_WORD = re.compile(r"\w+(?:[-'’]\w+)*")
KEY = Pseudonymizer(b"benchmark-key-0123456789abcdef-pt", "bench")


def lener_test(limit: int | None) -> list[tuple[str, Tokens, list[bool], list[tuple[int, int]]]]:
    """(text, token char spans, token is PESSOA, gold entities as token index ranges) per sentence."""
    sentences: list[list[tuple[str, str]]] = [[]]
    for line in dataset("pii/lener_br_test.conll").read_text(encoding="utf-8").splitlines():
        parts = line.split()
        if len(parts) < 2:
            if sentences[-1]:
                sentences.append([])
            continue
        sentences[-1].append((parts[0], parts[-1]))
    out = []
    for sentence in [s for s in sentences if s][:limit]:
        text, spans, gold, entities = "", [], [], []
        for i, (token, tag) in enumerate(sentence):
            if text:
                text += " "
            spans.append((len(text), len(text) + len(token)))
            text += token
            gold.append(tag.endswith("PESSOA"))
            if tag == "B-PESSOA":
                entities.append((i, i + 1))
            elif tag == "I-PESSOA" and entities and entities[-1][1] == i:
                entities[-1] = (entities[-1][0], i + 1)
        out.append((text, spans, gold, entities))
    return out


def mimesis_sentences(n: int) -> list[tuple[str, Tokens, list[bool], list[tuple[int, int]]]]:
    """The canary's Portuguese sentences in the same form as :func:`lener_test`."""
    out = []
    for text, names, _ in portuguese_sentences(n, seed=101):
        spans = [(m.start(), m.end()) for m in _WORD.finditer(text)]
        first_m = re.search(rf"(?<!\w){re.escape(names[0])}(?!\w)", text)
        assert first_m is not None
        last_m = re.search(rf"(?<!\w){re.escape(names[-1])}(?!\w)", text[first_m.start() :])
        assert last_m is not None
        lo, hi = first_m.start(), first_m.start() + last_m.end()
        gold = [s < hi and lo < e for s, e in spans]
        idx = [i for i, g in enumerate(gold) if g]
        first, last = idx[0], idx[-1]
        out.append((text, spans, gold, [(first, last + 1)]))
    return out


def score(data: Sequence[tuple[str, Tokens, list[bool], list[tuple[int, int]]]], spans: Spans) -> dict[str, Any]:
    """Token- and entity-level PESSOA precision/recall of a system's PERSON spans, plus texts/s."""
    started = time.perf_counter()
    predicted = spans([d[0] for d in data])
    seconds = time.perf_counter() - started
    tp = fp = fn = strict_tp = covered = n_pred = n_gold = 0
    for (_, tokens, gold, entities), found in zip(data, predicted, strict=True):
        hit = [any(s < fe and fs < e for fs, fe in found) for s, e in tokens]
        tp += sum(h and g for h, g in zip(hit, gold, strict=True))
        fp += sum(h and not g for h, g in zip(hit, gold, strict=True))
        fn += sum(g and not h for h, g in zip(hit, gold, strict=True))
        pred_entities = set()
        for fs, fe in found:
            idx = [i for i, (s, e) in enumerate(tokens) if s < fe and fs < e]
            if idx:
                pred_entities.add((idx[0], idx[-1] + 1))
        n_pred += len(pred_entities)
        n_gold += len(entities)
        strict_tp += len(pred_entities & set(entities))
        covered += sum(all(hit[i] for i in range(a, b)) for a, b in entities)
    return {
        "sentences": len(data),
        "gold_entities": n_gold,
        "token_precision": round(tp / max(1, tp + fp), 4),
        "token_recall": round(tp / max(1, tp + fn), 4),
        "entity_precision_strict": round(strict_tp / max(1, n_pred), 4),
        "entity_recall_strict": round(strict_tp / max(1, n_gold), 4),
        "entity_recall_covered": round(covered / max(1, n_gold), 4),
        "texts_per_s": round(len(data) / seconds, 1),
    }


def _ours(portuguese: bool) -> Spans:
    from synthstream.processors.pii.ner import CUES, TextAnalyzer, load_nlp
    from synthstream.processors.pii.redactor import text_analyzer_for

    analyzer = (
        text_analyzer_for(RedactionConfig(locale="pt_BR")) if portuguese else TextAnalyzer(load_nlp("en"), cues=CUES)
    )

    def spans(texts: Sequence[str]) -> list[list[tuple[int, int]]]:
        return [_persons(f) for f in analyzer.analyze_batch(list(texts))]

    return spans


def _persons(findings: Sequence[Finding]) -> list[tuple[int, int]]:
    return [(f.start, f.end) for f in findings if f.entity_type == "PERSON"]


def _presidio() -> Spans:
    from synthstream.processors.pii.presidio_ext import build_presidio_analyzer

    analyzer = build_presidio_analyzer(with_br=False)

    def spans(texts: Sequence[str]) -> list[list[tuple[int, int]]]:
        return [[(r.start, r.end) for r in analyzer.analyze(t, language="en", entities=["PERSON"])] for t in texts]

    return spans


def pessoa(quick: bool) -> dict[str, Any]:
    """PESSOA P/R on LeNER-Br test and on mimesis sentences: ours (pt, en) and Presidio."""
    corpora = {
        "lener_br_test": lener_test(400 if quick else None),
        "mimesis_sentences": mimesis_sentences(300 if quick else 2_000),
    }
    systems = {"ours_pt": _ours(True), "ours_en_before": _ours(False), "presidio_vanilla_en": _presidio()}
    return {corpus: {name: score(data, fn) for name, fn in systems.items()} for corpus, data in corpora.items()}


def canary(quick: bool, repeats: int) -> dict[str, Any]:
    """Per-entity recall of the auto plan (pt_BR) on the canary, and structured records/s on one core."""
    from synthstream.processors.pii.redactor import make_redactor

    n = 2_000 if quick else 5_000
    frame = pd.DataFrame(canary_records(n, seed=5))
    schema = infer_schema(frame, name="BrCanary")
    records = records_from_frame(frame, schema)
    redactor = make_redactor(RedactionConfig(locale="pt_BR"), {}, schema, records[:1_000], pseudonymizer=KEY)
    started = time.perf_counter()
    out = redactor.process(records)
    with_text = len(records) / (time.perf_counter() - started)
    recall = canary_recall(records, out, seed=5)
    # The structured fast path: every field but the free-text one (which goes through NER).
    structured = [f for f in schema.fields if f.name != "obs"]
    s_schema = schema.model_copy(update={"fields": tuple(structured)})
    s_records = [{k: v for k, v in r.items() if k != "obs"} for r in records]
    fast = make_redactor(RedactionConfig(locale="pt_BR"), {}, s_schema, s_records[:1_000], pseudonymizer=KEY)
    fast.process(s_records[:500])  # warm the fake caches as a running stream would be
    rates, cpu_rates = [], []
    for _ in range(repeats):
        started, cpu = time.perf_counter(), time.process_time()
        for i in range(0, len(s_records), 500):
            fast.process(s_records[i : i + 500])
        rates.append(len(s_records) / (time.perf_counter() - started))
        cpu_rates.append(len(s_records) / (time.process_time() - cpu))
    plan = {f.field: {"entity": f.entity, "operator": f.operator, "reason": f.reason} for f in redactor.plan.fields}  # type: ignore[attr-defined]
    return {
        "records": n,
        "recall": recall,
        "structured_records_per_s": median(rates),
        # Records per CPU-second of this process: the one-core rate even when other jobs share the core.
        "structured_records_per_cpu_s": median(cpu_rates),
        "records_per_s_with_free_text": round(with_text, 1),
        "plan": plan,
    }
