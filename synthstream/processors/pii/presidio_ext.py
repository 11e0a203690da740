"""Presidio, offline and with our Brazilian recognizers: the benchmark peer and a fallback.

Built by path from the installed spaCy pipeline with Presidio's *default* NER configuration
loaded explicitly (a bare model path would skip its label mapping), and with tldextract told
not to download the public suffix list (its email recognizer would fail offline otherwise).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from synthstream.processors.pii.checksums import cnpj_is_valid, cpf_is_valid
from synthstream.processors.pii.ner import spacy_model_path
from synthstream.processors.pii.patterns import BR_PATTERNS


def offline_tldextract() -> None:
    """Make tldextract (used by Presidio's email recognizer) work without network access."""
    import tldextract

    tldextract.tldextract.TLD_EXTRACTOR = tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None)


def br_recognizers() -> list[Any]:
    """BR_CPF, BR_CNPJ (numeric + alphanumeric), BR_PHONE and BR_CEP as Presidio recognizers."""
    from presidio_analyzer import Pattern, PatternRecognizer

    class _Validated(PatternRecognizer):
        def __init__(self, entity: str, patterns: list[Any], check: Any, context: list[str]) -> None:
            super().__init__(supported_entity=entity, patterns=patterns, context=context, supported_language="en")
            self._check = check

        def validate_result(self, pattern_text: str) -> bool | None:
            return bool(self._check(pattern_text)) if self._check is not None else None

    p = BR_PATTERNS
    return [
        _Validated("BR_CPF", [Pattern("cpf", rf"\b{p['BR_CPF']}\b|\b\d{{11}}\b", 0.5)], cpf_is_valid, ["cpf"]),
        _Validated(
            "BR_CNPJ", [Pattern("cnpj", rf"\b{p['BR_CNPJ']}\b|\b[0-9A-Z]{{12}}\d{{2}}\b", 0.5)], cnpj_is_valid, ["cnpj"]
        ),
        _Validated("BR_PHONE", [Pattern("br_phone", p["BR_PHONE"], 0.6)], None, ["telefone", "celular", "phone"]),
        _Validated("BR_CEP", [Pattern("cep", rf"\b{p['BR_CEP']}\b", 0.4)], None, ["cep"]),
    ]


def build_presidio_analyzer(*, with_br: bool = True, language: str = "en") -> Any:
    """An offline Presidio ``AnalyzerEngine`` on the same spaCy pipeline as ours."""
    import presidio_analyzer
    from presidio_analyzer import AnalyzerEngine
    from presidio_analyzer.nlp_engine import NlpEngineProvider

    offline_tldextract()
    conf = yaml.safe_load((Path(presidio_analyzer.__file__).parent / "conf" / "default.yaml").read_text())
    conf["models"] = [{"lang_code": language, "model_name": str(spacy_model_path(language))}]
    engine = NlpEngineProvider(nlp_configuration=conf).create_engine()
    analyzer = AnalyzerEngine(nlp_engine=engine, supported_languages=[language])
    if with_br:
        for recognizer in br_recognizers():
            analyzer.registry.add_recognizer(recognizer)
    return analyzer
