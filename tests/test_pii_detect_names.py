"""Portuguese person names: name fields found by their values, names in sentences fully redacted.

Names come from mimesis (seeded), which synthstream's lexicon was not built from (the lexicon
holds Faker's and LeNER-Br train/dev names), so these are names the project has never seen.
"""

from __future__ import annotations

import random

import pytest

from benchmarks.pii_br import make_cpf, portuguese_sentences, token_survives
from synthstream.config import RedactionConfig
from synthstream.processors.pii.names import NameMatcher
from synthstream.processors.pii.ner import CUES, TextAnalyzer, redact_text
from synthstream.processors.pii.operators import Pseudonymizer
from synthstream.processors.pii.redactor import PiiRedactor, build_plan, text_analyzer_for
from synthstream.schemas.record import FieldRole, FieldSpec, FieldType, RecordSchema

mimesis = pytest.importorskip("mimesis", reason="mimesis is a dev dependency (pip install -e .[dev])")

KEY = Pseudonymizer(b"names-test-key-0123456789abcdef", "t1")
JOBS = ["electrician", "paralegal", "nurse", "data scientist", "Engenheiro civil", "motorista", "Advogada"]


@pytest.fixture(scope="module")
def analyzer() -> TextAnalyzer:
    return text_analyzer_for(RedactionConfig(locale="pt_BR"))


def _people(n: int, seed: int) -> list[dict[str, object]]:
    from mimesis import Person
    from mimesis.locales import Locale

    person = Person(Locale.PT_BR, seed=seed)
    rng = random.Random(seed)
    return [
        {
            "col7": person.full_name(),
            "info": person.first_name(),
            "col2": person.surname(),
            "job": rng.choice(JOBS),
            "qty": rng.randint(1, 9),
        }
        for _ in range(n)
    ]


def test_name_fields_with_uninformative_names_are_found_and_replaced_whole():
    rows = _people(1_200, seed=11)
    schema = RecordSchema(
        fields=(
            FieldSpec(name="col7", type=FieldType.STRING, role=FieldRole.FREE_TEXT),
            FieldSpec(name="info", type=FieldType.STRING, role=FieldRole.CATEGORICAL),
            FieldSpec(name="col2", type=FieldType.STRING, role=FieldRole.CATEGORICAL),
            FieldSpec(name="job", type=FieldType.STRING, role=FieldRole.CATEGORICAL),
            FieldSpec(name="qty", type=FieldType.LONG, role=FieldRole.NUMERIC),
        )
    )
    plan = build_plan(schema, rows[:500])
    ops = {f.field: (f.entity, f.operator) for f in plan.fields}
    for field in ("col7", "info", "col2"):
        assert ops[field] == ("PERSON", "fake"), field
    assert ops["job"] == (None, "keep")
    out = PiiRedactor(schema, plan, pseudonymizer=KEY, locale="pt_BR").process(rows)
    survived = total = 0
    for raw, red in zip(rows, out, strict=True):
        assert red["job"] == raw["job"]
        for field in ("col7", "info", "col2"):
            assert red[field] != raw[field]
            for token in str(raw[field]).split():
                total += 1
                survived += token_survives(token, str(red[field]))  # only by coincidence with the fake
    assert 1 - survived / total >= 0.99


def test_names_in_portuguese_sentences_leave_no_token(analyzer):
    sentences = portuguese_sentences(300, seed=12)
    texts = [t for t, _, _ in sentences]
    redacted = [redact_text(t, f) for t, f in zip(texts, analyzer.analyze_batch(texts), strict=True)]
    tokens = survived = 0
    for (_, names, planted), out in zip(sentences, redacted, strict=True):
        for token in names:
            tokens += 1
            survived += token_survives(token, out)
        for value in planted.values():
            assert value not in out  # CPF (formatted and bare), CNPJ, dd/mm/yyyy date, phone, e-mail
    assert 1 - survived / tokens >= 0.97


def test_the_example_sentence(analyzer):
    cpf = make_cpf(random.Random(1), True)
    text = f"Cliente Fulano de Tal Tavares solicitou reembolso; CPF {cpf} em 03/04/2021."
    out = redact_text(text, analyzer.analyze(text))
    for piece in ("Fulano", "Tal", "Tavares", cpf, "03/04/2021"):
        assert piece not in out, piece
    assert out.startswith("Cliente <PERSON>") and "solicitou reembolso" in out


def test_english_ner_fragments_are_grown_to_the_whole_name(analyzer):
    """Without the Portuguese cues the English model leaves name tokens behind; with them, none."""
    sentences = portuguese_sentences(200, seed=13)
    texts = [t for t, _, _ in sentences]
    english = TextAnalyzer(analyzer.nlp, cues=CUES)

    def survivors(a: TextAnalyzer) -> int:
        outs = [redact_text(t, f) for t, f in zip(texts, a.analyze_batch(texts), strict=True)]
        return sum(token_survives(tok, o) for (_, names, _), o in zip(sentences, outs, strict=True) for tok in names)

    before, after = survivors(english), survivors(analyzer)
    assert before > after
    assert after <= 0.03 * sum(len(names) for _, names, _ in sentences)


@pytest.mark.parametrize("text", JOBS)
def test_job_titles_are_not_redacted(analyzer, text):
    assert analyzer.analyze(text) == []


def test_job_title_free_text_field_is_left_alone(analyzer):
    schema = RecordSchema(fields=(FieldSpec(name="job", type=FieldType.STRING, role=FieldRole.FREE_TEXT),))
    rows = [{"job": j} for j in JOBS * 20]
    plan = build_plan(schema, rows)
    assert plan.fields[0].operator == "scan"
    out = PiiRedactor(schema, plan, pseudonymizer=KEY, text_analyzer=analyzer).process(rows)
    assert out == rows


def test_matcher_rules():
    m = NameMatcher(first_names=["maria", "joao"], surnames=["silva"])
    found = lambda t: [t[f.start : f.end] for f in m.find(t)]  # noqa: E731
    assert found("Ontem Maria da Silva Xavier ligou.") == ["Maria da Silva Xavier"]
    assert found("Sra. Zuleica Quental pediu.") == ["Zuleica Quental"]  # cue, unknown names
    assert found("O Tribunal de Justiça de São Paulo negou.") == []  # blockers
    assert found("Relator Ministro JOAO SILVA") == ["JOAO SILVA"]
    assert m.is_name("Maria Souza") and not m.is_name("São Paulo") and not m.is_name("electrician")
