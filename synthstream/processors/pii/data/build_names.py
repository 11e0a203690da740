"""Rebuild ``person_names.txt``, the person-name lexicon of :mod:`synthstream.processors.pii.names`.

Sources (both MIT-licensed; see README.md beside this file):

- Faker's person providers (first and last names) for pt_BR, pt_PT, es_ES, es_MX, it_IT,
  de_DE, fr_FR and en_US: Brazil's names come from all of these origins;
- spaCy's Portuguese stop words (MIT), stored as ``X`` lines so that no spaCy import is
  needed at run time;
- the PESSOA entities of the LeNER-Br **train and dev** splits (never the test split):
  the first token of an entity is a first name, later tokens are surnames.

A token is dropped when it is a Portuguese stop word (spaCy's list) or when LeNER-Br train/dev
use it more often outside a PESSOA entity than inside one (``Estado``, ``Justiça``...), which
keeps common capitalised words out of the lexicon.

Run: ``python -m synthstream.processors.pii.data.build_names LENER_DIR`` (LENER_DIR holds
``lener_br_train.conll`` and ``lener_br_dev.conll``).
"""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

from faker import Faker
from spacy.lang.pt.stop_words import STOP_WORDS

from synthstream.log import get_logger
from synthstream.processors.pii.names import PARTICLES, normalize

LOCALES = ("pt_BR", "pt_PT", "es_ES", "es_MX", "it_IT", "de_DE", "fr_FR", "en_US")
OUT = Path(__file__).resolve().parent / "person_names.txt"


def _conll(path: Path) -> list[list[tuple[str, str]]]:
    sentences: list[list[tuple[str, str]]] = [[]]
    for line in path.read_text(encoding="utf-8").splitlines():
        parts = line.split()
        if len(parts) < 2:
            if sentences[-1]:
                sentences.append([])
            continue
        sentences[-1].append((parts[0], parts[-1]))
    return [s for s in sentences if s]


def build(lener_dir: Path) -> tuple[set[str], set[str]]:
    """First names and surnames (normalised) from Faker and LeNER-Br train/dev."""
    first: set[str] = set()
    last: set[str] = set()
    for locale in LOCALES:
        provider = Faker(locale).provider("faker.providers.person")
        first |= {normalize(n) for name in getattr(provider, "first_names", ()) for n in str(name).split()}
        last |= {normalize(n) for name in getattr(provider, "last_names", ()) for n in str(name).split()}
    inside: Counter[str] = Counter()
    outside: Counter[str] = Counter()
    for split in ("lener_br_train.conll", "lener_br_dev.conll"):
        for sentence in _conll(lener_dir / split):
            for token, tag in sentence:
                key = normalize(token)
                if tag.endswith("PESSOA"):
                    inside[key] += 1
                    if token.isalpha() and key not in PARTICLES:
                        (first if tag.startswith("B-") else last).add(key)
                elif token[:1].isupper():
                    outside[key] += 1
    stop = {normalize(w) for w in STOP_WORDS} | PARTICLES
    noisy = {k for k in inside if outside[k] > inside[k]}

    def keep(name: str) -> bool:
        return len(name) >= 2 and name.isalpha() and name not in stop and name not in noisy

    return {n for n in first if keep(n)}, {n for n in last if keep(n)}


def main() -> None:
    """Write the lexicon file."""
    first, last = build(Path(sys.argv[1]))
    stop = sorted({normalize(w) for w in STOP_WORDS} - PARTICLES)
    lines = [f"F {n}" for n in sorted(first)] + [f"S {n}" for n in sorted(last)] + [f"X {w}" for w in stop]
    OUT.write_text("# person-name lexicon; built by build_names.py (see README.md)\n" + "\n".join(lines) + "\n")
    get_logger("pii.build_names").info("names.built", path=str(OUT), first_names=len(first), surnames=len(last))


if __name__ == "__main__":
    main()
