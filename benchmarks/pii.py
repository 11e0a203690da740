"""PII benchmark: our redactor against Presidio, side by side on the same data and machine.

- Structured: the card transactions (all 23 fields). Ours = the per-field plan
  (detected once on a sample) compiled into functions; peer = Presidio's
  ``BatchAnalyzerEngine.analyze_dict`` + ``BatchAnonymizerEngine.anonymize_dict``.
  Records/s on one core, and field-level recall on the PII fields (first, last, street,
  city, cc_num, dob): the share of values that no longer equal the original.
- CPF precision/recall: the Brazilian rows of FakeNameGenerator plus generated valid and
  invalid CPFs, as whole values and inside sentences; peer = vanilla Presidio (no CPF
  recognizer) and Presidio with our BR recognizers.
- Free text: ``benchmarks.pii_text`` (Presidio's synthetic dataset, P/R/F2 and texts/s).
- Portuguese (``benchmarks.pii_pt``): PESSOA precision/recall (token and entity level) on the
  LeNER-Br test split and on mimesis-made Portuguese sentences, ours (English NER + the
  Portuguese name lexicon/rules) beside our English-only pipeline and vanilla Presidio; and the
  Brazilian canary (mimesis + independent CPF/CNPJ code; uninformative field names, a mixed
  30 % CPF field, integers, Portuguese sentences): per-entity recall and records/s on one core.

Run: .venv/bin/python -m benchmarks.pii [--quick]
"""

from __future__ import annotations

import argparse
import os
import random
import time
from typing import Any

import pandas as pd

from benchmarks.common import dataset, machine, median, target, versions, write_result
from synthstream.config import FieldOverride, RedactionConfig
from synthstream.connectors.files import read_table, records_from_frame
from synthstream.processors.pii.checksums import cpf_is_valid, generate_cpf
from synthstream.processors.pii.operators import Pseudonymizer
from synthstream.processors.pii.patterns import TextScanner, classify_value
from synthstream.processors.pii.redactor import make_redactor
from synthstream.schemas.inference import infer_schema

PII_FIELDS = ("first", "last", "street", "city", "cc_num", "dob")


def _one_core() -> None:
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})


def _transactions() -> tuple[Any, list[dict[str, Any]], pd.DataFrame]:
    path = dataset("transactions/fraudTrain_prefix.csv")
    frame = read_table(path)
    schema = infer_schema(frame, name="Transactions")
    return schema, records_from_frame(frame, schema), frame


def _field_recall(
    before: list[dict[str, Any]], after: list[dict[str, Any]], fields: tuple[str, ...]
) -> dict[str, float]:
    out = {}
    for name in fields:
        pairs = [(b[name], a.get(name)) for b, a in zip(before, after, strict=True) if b[name] is not None]
        out[name] = sum(1 for b, a in pairs if str(a) != str(b)) / max(1, len(pairs))
    out["mean"] = sum(out[f] for f in fields) / len(fields)
    return out


def structured_ours(repeats: int) -> dict[str, Any]:
    schema, records, _ = _transactions()
    redactor = make_redactor(
        RedactionConfig(),
        {"city": FieldOverride(redact="fake", entity="LOCATION")},
        schema,
        records[:1_000],
        pseudonymizer=Pseudonymizer(b"benchmark-key-0123456789abcdef", "bench"),
    )
    rates, cpu_rates = [], []
    for _ in range(repeats):
        started, cpu = time.perf_counter(), time.process_time()
        for i in range(0, len(records), 500):
            out = redactor.process(records[i : i + 500])
        rates.append(len(records) / (time.perf_counter() - started))
        cpu_rates.append(len(records) / (time.process_time() - cpu))
    redacted = redactor.process(records)
    plan = {f.field: f"{f.operator}:{f.entity or '-'}" for f in redactor.plan.fields}  # type: ignore[attr-defined]
    assert out is not None
    return {
        "records_per_s": median(rates),
        "records_per_cpu_s": median(cpu_rates),
        "records": len(records),
        "fields": len(schema.fields),
        "field_recall": _field_recall(records, redacted, PII_FIELDS),
        "plan": plan,
    }


def structured_presidio(n: int) -> dict[str, Any]:
    from presidio_analyzer import BatchAnalyzerEngine
    from presidio_anonymizer import BatchAnonymizerEngine

    from synthstream.processors.pii.presidio_ext import build_presidio_analyzer

    _, _, frame = _transactions()
    columns = {c: [None if pd.isna(v) else str(v) for v in frame[c].head(n)] for c in frame.columns}
    analyzer = BatchAnalyzerEngine(build_presidio_analyzer(with_br=False))
    anonymizer = BatchAnonymizerEngine()
    started = time.perf_counter()
    results = list(analyzer.analyze_dict(columns, language="en"))
    anonymized = anonymizer.anonymize_dict(results)
    seconds = time.perf_counter() - started
    after = [{c: anonymized[c][i] for c in columns} for i in range(n)]
    before = [{c: columns[c][i] for c in columns} for i in range(n)]
    return {"records_per_s": n / seconds, "records": n, "field_recall": _field_recall(before, after, PII_FIELDS)}


def cpf_quality(quick: bool) -> dict[str, Any]:
    rng = random.Random(7)
    people = pd.read_csv(dataset("pii/FakeNameGenerator.com_3000.csv"), encoding="utf-8-sig")
    br = [str(v) for v in people.loc[people["Country"] == "BR", "NationalID"].dropna()]
    n = 2_000 if quick else 20_000
    valid = [generate_cpf(rng, formatted=rng.random() < 0.5) for _ in range(n)]
    invalid = []
    for cpf in valid:
        digits = [c for c in cpf]
        pos = max(i for i, c in enumerate(digits) if c.isdigit())
        digits[pos] = str((int(digits[pos]) + 1 + rng.randrange(9)) % 10)
        invalid.append("".join(digits))
    scanner = TextScanner(["BR_CPF"])

    def in_text(cpf: str) -> bool:
        return any(f.entity_type == "BR_CPF" for f in scanner.scan(f"O CPF do titular é {cpf}, conforme cadastro."))

    truth_pos = valid + [c for c in br if cpf_is_valid(c)]
    value_tp = sum(classify_value(c) == "BR_CPF" for c in truth_pos)
    value_fp = sum(classify_value(c) == "BR_CPF" for c in invalid)
    text_tp = sum(in_text(c) for c in truth_pos)
    text_fp = sum(in_text(c) for c in invalid)
    return {
        "fakenamegenerator_br_rows": len(br),
        "fakenamegenerator_br_valid_check_digits": sum(cpf_is_valid(c) for c in br),
        "generated_valid": n,
        "generated_invalid": n,
        "value_precision": value_tp / max(1, value_tp + value_fp),
        "value_recall": value_tp / len(truth_pos),
        "text_precision": text_tp / max(1, text_tp + text_fp),
        "text_recall": text_tp / len(truth_pos),
    }


def cpf_presidio(quick: bool) -> dict[str, Any]:
    from synthstream.processors.pii.presidio_ext import build_presidio_analyzer

    rng = random.Random(7)
    n = 200 if quick else 1_000
    valid = [generate_cpf(rng) for _ in range(n)]
    out = {}
    for label, with_br in (("vanilla", False), ("with_synthstream_br", True)):
        analyzer = build_presidio_analyzer(with_br=with_br)
        found = sum(
            any(r.entity_type == "BR_CPF" for r in analyzer.analyze(f"O CPF do titular é {c}.", language="en"))
            for c in valid
        )
        out[f"{label}_text_recall"] = found / n
    return out


def main(quick: bool) -> dict[str, Any]:
    from benchmarks import pii_pt, pii_text

    _one_core()
    repeats = 1 if quick else 3
    ours = structured_ours(repeats)
    peer = structured_presidio(100 if quick else 300)
    text = pii_text.run(quick)
    ratio = ours["records_per_s"] / peer["records_per_s"]
    names = pii_pt.pessoa(quick)
    br = pii_pt.canary(quick, repeats)
    structured_recall = {e: r for e, r in br["recall"]["fields"].items() if e != "PERSON"}
    for entity, r in br["recall"]["text"].items():
        if entity != "PERSON":
            structured_recall[f"text_{entity}"] = r
    result: dict[str, Any] = {
        "machine": {**machine(), "pinned_to_one_core": hasattr(os, "sched_setaffinity")},
        "versions": versions("synthstream", "presidio-analyzer", "presidio-anonymizer", "spacy", "faker", "mimesis"),
        "mode": "quick" if quick else "full",
        "ours": {
            "structured": ours,
            "cpf": cpf_quality(quick),
            "free_text": text["ours"],
            "pessoa": {corpus: res["ours_pt"] for corpus, res in names.items()},
            "br_canary": br,
        },
        "peers": {
            "presidio_structured": peer,
            "presidio_cpf": cpf_presidio(quick),
            "free_text": text["peers"],
            "pessoa": {corpus: {k: v for k, v in res.items() if k != "ours_pt"} for corpus, res in names.items()},
        },
        "targets": {
            "structured_records_per_s_one_core": target(20_000, ours["records_per_s"]),
            "br_canary_structured_records_per_s_one_core": target(20_000, br["structured_records_per_s"]),
            "br_canary_structured_recall_min": target(0.99, min(structured_recall.values())),
            "br_canary_name_field_token_recall": target(0.97, br["recall"]["fields"]["PERSON"]),
            "br_canary_name_text_token_recall": target(0.97, br["recall"]["text"]["PERSON"]),
            "mimesis_sentences_pessoa_token_recall": target(
                0.97, names["mimesis_sentences"]["ours_pt"]["token_recall"]
            ),
            "structured_speedup_vs_presidio": target(50, ratio),
            "structured_recall_not_below_presidio": target(peer["field_recall"]["mean"], ours["field_recall"]["mean"]),
            **{f"free_text_{k}": v for k, v in text["targets"].items()},
        },
    }
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    res = main(args.quick)
    path = write_result("pii", res)
    import json

    print(json.dumps(res, indent=2, default=str))
    print(f"wrote {path}")
