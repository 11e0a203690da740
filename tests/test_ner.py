"""NER over free text: model lookup, device selection, label mapping, batching, redaction, accuracy floor."""

from __future__ import annotations

import json
from typing import Any

import pytest

from synthstream.errors import ConfigError
from synthstream.processors.pii import ner
from synthstream.processors.pii.ner import (
    LABELS,
    TextAnalyzer,
    load_nlp,
    merge_findings,
    redact_text,
    select_device,
    spacy_model_path,
)
from synthstream.processors.pii.patterns import TextScanner
from synthstream.processors.pii.types import Finding
from tests.helpers import fixture


@pytest.fixture(scope="module")
def nlp() -> Any:
    return load_nlp("en", gpu=False)


@pytest.fixture(scope="module")
def analyzer(nlp: Any) -> TextAnalyzer:
    return TextAnalyzer(nlp, scanner=TextScanner().scan)


def _found(analyzer: TextAnalyzer, text: str) -> set[tuple[str, str]]:
    return {(f.entity_type, text[f.start : f.end]) for f in analyzer.analyze(text)}


def test_model_path_and_ner_only_pipeline(nlp: Any) -> None:
    path = spacy_model_path("en")
    assert (path / "config.cfg").is_file()
    assert "site-packages" in str(path) or "dist-packages" in str(path)
    assert nlp.pipe_names == ["ner"]


def test_a_missing_pipeline_is_a_clear_error_naming_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    # The same outcome on every machine: the lookup is pointed at package names that cannot exist.
    missing = ("pt_core_news_missing_for_test", "pt_core_news_also_missing")
    monkeypatch.setitem(ner.MODEL_PACKAGES, "pt", missing)
    with pytest.raises(ConfigError, match="pt_core_news_missing_for_test or pt_core_news_also_missing"):
        spacy_model_path("pt")
    # The first installed package of the list wins: the English pipeline behind a missing name.
    monkeypatch.setitem(ner.MODEL_PACKAGES, "en", ("en_core_web_missing_for_test", *ner.MODEL_PACKAGES["en"]))
    assert (spacy_model_path("en") / "config.cfg").is_file()
    with pytest.raises(ConfigError, match="not supported"):
        spacy_model_path("xx")


def test_gpu_selection_falls_back_to_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    import thinc.api

    monkeypatch.setattr(thinc.api, "prefer_gpu", lambda *a, **k: False)
    assert select_device(None) == "cpu"
    assert select_device(False) == "cpu"

    def no_gpu(*a: Any, **k: Any) -> bool:
        raise ValueError("GPU is not accessible. Was the library installed correctly?")

    monkeypatch.setattr(thinc.api, "require_gpu", no_gpu)
    with pytest.raises(ConfigError, match="GPU"):
        select_device(True)
    assert type(thinc.api.get_current_ops()).__name__ == "NumpyOps"


def test_names_places_orgs_in_english(analyzer: TextAnalyzer) -> None:
    text = "Barack Obama met Angela Merkel in Berlin on Monday to talk about Microsoft and the United Nations."
    found = _found(analyzer, text)
    assert ("PERSON", "Barack Obama") in found
    assert ("PERSON", "Angela Merkel") in found
    assert ("LOCATION", "Berlin") in found
    assert ("ORGANIZATION", "Microsoft") in found
    assert ("DATE_TIME", "Monday") in found


def test_scanner_and_cues_merge(analyzer: TextAnalyzer) -> None:
    text = "My name is John Smith, I am 34 years old, email john.smith@example.com, I live at 975 Bay Street, Apt. 5."
    found = _found(analyzer, text)
    assert ("PERSON", "John Smith") in found
    assert ("EMAIL_ADDRESS", "john.smith@example.com") in found
    assert ("AGE", "34") in found
    assert ("STREET_ADDRESS", "975 Bay Street, Apt. 5") in found
    assert not any(t == "DATE_TIME" for t, _ in found)  # "34 years old" is an age, not a date


def test_label_mapping_matches_presidio_default() -> None:
    en = LABELS["en"]
    assert en["PERSON"] == en["PER"] == "PERSON"
    assert en["GPE"] == en["LOC"] == en["FAC"] == "LOCATION"
    assert en["ORG"] == "ORGANIZATION"
    assert en["NORP"] == "NRP"
    assert en["DATE"] == en["TIME"] == "DATE_TIME"
    assert LABELS["pt"] == {"PER": "PERSON", "LOC": "LOCATION", "ORG": "ORGANIZATION"}
    assert "CARDINAL" not in en and "MONEY" not in en


def test_entities_restrict_output(nlp: Any) -> None:
    only_people = TextAnalyzer(nlp, scanner=lambda _: [], entities=["PERSON"])
    text = "Angela Merkel visited Paris and emailed bob@example.com."
    assert {f.entity_type for f in only_people.analyze(text)} == {"PERSON"}


def test_options_validated(nlp: Any) -> None:
    with pytest.raises(ConfigError) as info:
        TextAnalyzer(nlp, batch_size=0, score_threshold=2.0, entities=["PERSON", "NOPE"], cues=["bogus"])
    assert len(info.value.problems) == 4


def test_batch_equals_per_text(analyzer: TextAnalyzer, nlp: Any) -> None:
    texts = [
        "Maria Silva lives in Lisbon.",
        "Call me at +1-202-555-0143 tomorrow, John.",
        "",
        "The IBAN GB82 WEST 1234 5698 7654 32 belongs to Acme Corp.",
        "Nothing to see here.",
    ] * 3
    small = TextAnalyzer(nlp, scanner=TextScanner().scan, batch_size=4)
    batched = small.analyze_batch(texts)
    assert batched == [analyzer.analyze(t) for t in texts]
    assert batched == analyzer.analyze_batch(texts)


def test_pipe_called_once_per_batch(nlp: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []

    class Counting:
        pipe_names = ("ner",)
        lang = "en"

        def pipe(self, texts: Any, batch_size: int) -> Any:
            calls.append(batch_size)
            return nlp.pipe(texts, batch_size=batch_size)

    analyzer = TextAnalyzer(Counting(), scanner=lambda _: [], batch_size=8)  # type: ignore[arg-type]
    analyzer.analyze_batch(["Angela Merkel"] * 20)
    assert calls == [8]


def test_redact_text_removes_every_span(analyzer: TextAnalyzer) -> None:
    text = "Dear Jane Doe, your card 4111 1111 1111 1111 was used in Boston by Acme Corp on 2021-03-04."
    findings = analyzer.analyze(text)
    redacted = redact_text(text, findings)
    assert findings
    for f in findings:
        assert text[f.start : f.end] not in redacted
    assert "<PERSON>" in redacted and "<CREDIT_CARD>" in redacted
    assert redact_text(text, findings, replace=lambda f: "*" * (f.end - f.start)).count("*") >= 16
    assert redact_text(text, []) == text


def test_merge_keeps_union_of_overlaps() -> None:
    text = "Barbara Yudina Apt. 675"
    person = Finding("PERSON", 0, 18, 0.85, "spacy")
    address = Finding("STREET_ADDRESS", 15, 23, 0.9, "address")
    merged = merge_findings([person, address])
    assert [(f.entity_type, text[f.start : f.end]) for f in merged] == [
        ("PERSON", "Barbara Yudina "),
        ("STREET_ADDRESS", "Apt. 675"),
    ]
    assert "Barbara" not in redact_text(text, [person, address])


def test_merge_joins_same_type_overlaps() -> None:
    merged = merge_findings([Finding("PERSON", 11, 17, 0.9, "cue"), Finding("PERSON", 11, 21, 0.85, "spacy")])
    assert merged == [Finding("PERSON", 11, 21, 0.9, "cue")]


def test_accuracy_floor_on_presidio_dataset(analyzer: TextAnalyzer) -> None:
    from benchmarks.pii_text import GOLD_MAP, _to_spans, score

    # The first 300 samples of presidio-research's synth_dataset_v2 (tests/fixtures/README.md).
    raw = json.loads(fixture("presidio_synth_300.json").read_text(encoding="utf-8"))
    data = [
        (
            sample["full_text"],
            [
                (GOLD_MAP.get(s["entity_type"], s["entity_type"]), s["start_position"], s["end_position"])
                for s in sample["spans"]
            ],
        )
        for sample in raw
    ]
    assert len(data) == 300
    preds = analyzer.analyze_batch([t for t, _ in data])
    result = score([g for _, g in data], [_to_spans(f) for f in preds])
    # measured on these 300 texts: PERSON recall 0.68, overall F2 0.63 (Presidio: 0.60, 0.50)
    assert result["per_entity"]["PERSON"]["recall"] >= 0.62
    assert result["overall"]["f2"] >= 0.58
