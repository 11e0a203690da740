"""Person names without a Portuguese NER model: a name lexicon plus shape and context rules.

No ``pt_core_news_*`` pipeline is installable here, and English NER misses or splits
Portuguese names (``<LOCATION> Tavares``). This module finds them with cheap rules:

- **runs**: maximal sequences of capitalised words joined by whitespace, with name particles
  (``da``, ``de``, ``do``, ``das``, ``dos``, ``e``...) allowed between them;
- **lexicon**: first names and surnames from Faker's person providers and the LeNER-Br
  train/dev PESSOA entities (``data/person_names.txt``, built by ``data/build_names.py``);
- **context**: a title or role word before or at the head of a run (``Cliente``, ``Sr.``,
  ``Dra.``, ``titular``, ``Ministro``, ``nome:``) marks what follows as a name;
- **blockers**: organisation, place and legal words (``Tribunal``, ``Rua``, ``São``, ``Lei``)
  keep a run from being called a name by lexicon or shape alone.

A run is a person when it has a context cue, starts with a known first name, has two or
more words with a lexicon hit, or (mixed-case text only) has two or more capitalised words
and no blocker. :meth:`NameMatcher.extend` grows any PERSON finding (from spaCy or a cue) to
the whole run around it, so no token of a name is left behind. :meth:`NameMatcher.is_name`
says whether a whole structured value looks like a person name.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from synthstream.processors.pii.types import Entity, Finding

LEXICON_PATH = Path(__file__).resolve().parent / "data" / "person_names.txt"

#: Lower-case words allowed inside a name (``Maria da Silva``, ``Ana e Souza``).
PARTICLES: frozenset[str] = frozenset({"da", "de", "do", "das", "dos", "e", "di", "del", "della", "van", "von", "dal"})

#: Words that announce a person's name right after them (normalised: lower case, no accents).
CUE_WORDS: frozenset[str] = frozenset(
    {
        "sr", "sra", "srta", "dr", "dra", "sr.", "senhor", "senhora", "dona", "dom", "cliente", "clientes",
        "paciente", "titular", "ministro", "ministra", "relator", "relatora", "desembargador", "desembargadora",
        "juiz", "juiza", "advogado", "advogada", "deputado", "deputada", "senador", "senadora", "prof", "profa",
        "professor", "professora", "autor", "autora", "reu", "requerente", "requerido", "requerida", "apelante",
        "apelado", "apelada", "agravante", "agravado", "agravada", "impetrante", "consumidor", "consumidora",
        "beneficiario", "beneficiaria", "responsavel", "atendente", "funcionario", "funcionaria", "colaborador",
        "colaboradora", "nome", "contato", "favorecido", "favorecida", "mae", "pai", "filho", "filha", "esposa",
        "marido", "conjuge", "socio", "socia", "vendedor", "vendedora", "comprador", "compradora", "locatario",
        "locataria", "locador", "locadora", "segurado", "segurada", "correntista", "usuario", "usuaria",
        "solicitante", "destinatario", "destinataria", "remetente", "mr", "mrs", "ms", "miss", "customer",
        "conselheiro", "conselheira", "procurador", "procuradora", "promotor", "promotora", "presidente",
        "governador", "governadora", "prefeito", "prefeita", "vereador", "vereadora", "testemunha", "perito",
        "perita", "menor", "herdeiro", "herdeira", "inventariante", "curador", "curadora", "tutor", "tutora",
    }
)  # fmt: skip

#: Words that make a run an organisation, place or legal reference rather than a person.
BLOCKERS: frozenset[str] = frozenset(
    {
        "sao", "santa", "santo", "rua", "avenida", "av", "travessa", "alameda", "praca", "rodovia", "estrada",
        "largo", "bairro", "jardim", "vila", "cidade", "estado", "estados", "municipio", "prefeitura", "tribunal",
        "tribunais", "justica", "supremo", "superior", "federal", "nacional", "estadual", "municipal",
        "ministerio", "secretaria", "camara", "senado", "assembleia", "conselho", "turma", "vara", "comarca",
        "uniao", "republica", "banco", "caixa", "companhia", "cia", "ltda", "eireli", "empresa", "instituto",
        "universidade", "faculdade", "escola", "hospital", "clinica", "fundacao", "associacao", "sindicato",
        "igreja", "lei", "leis", "decreto", "codigo", "constituicao", "regimento", "sumula", "artigo", "art",
        "recurso", "apelacao", "agravo", "acordao", "processo", "acao", "mandado", "habeas", "corpus",
        "embargos", "resolucao", "portaria", "emenda", "civil", "penal", "ementa", "brasil", "brasilia", "rio",
        "porto", "belo", "horizonte", "sul", "norte", "leste", "oeste", "centro", "shopping", "condominio",
        "edificio", "loja", "mercado", "supermercado", "farmacia", "posto", "inc", "corp", "grupo", "servicos",
        "comercio", "industria", "transportes", "tecnologia", "consultoria", "distribuidora", "partido",
        "plenario", "corte", "procuradoria", "defensoria", "policia", "receita", "fazenda", "previdencia",
        "governo", "regional", "eleitoral", "trabalhista", "trabalho", "direito", "direitos", "seguro",
        "seguros", "sociedade", "cooperativa", "agencia", "departamento", "setor", "diretoria", "coordenacao",
        "gabinete", "ordem", "advogados", "publico", "publica", "geral", "especial", "extraordinario",
        "ordinario", "orgao", "camaras", "secao", "conta", "contas", "fiscal", "comissao", "projeto",
        "programa", "plano", "sistema", "operacao", "pix", "boleto", "cartao", "visa", "mastercard", "elo",
    }
)  # fmt: skip

#: Blockers that are also surnames (``Natalício de São Thomé``, ``Principiano da Câmara``): they block
#: a run only as its first word, and not after a context cue.
HEAD_BLOCKERS: frozenset[str] = frozenset({"sao", "santa", "santo", "camara", "porto", "vila", "rio", "belo", "ordem"})

_WORD = re.compile(r"[^\W\d_][\w'’-]*")
_SENTENCE_BREAK = re.compile(r"[.!?;:\n]\s*[\"'“(«-]*\s*$")


def normalize(word: str) -> str:
    """Lower case without accents (``Fábio`` -> ``fabio``): the lexicon's key."""
    decomposed = unicodedata.normalize("NFKD", word.casefold())
    return "".join(c for c in decomposed if not unicodedata.combining(c)).replace("’", "'")


@lru_cache(maxsize=1)
def _read(path: Path) -> dict[str, frozenset[str]]:
    sections: dict[str, set[str]] = {"F": set(), "S": set(), "X": set()}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line[:1] in sections and line[1:2] == " ":
            sections[line[0]].add(line[2:])
    return {k: frozenset(v) for k, v in sections.items()}


def load_lexicon(path: Path = LEXICON_PATH) -> tuple[frozenset[str], frozenset[str]]:
    """The shipped (first names, surnames), normalised."""
    sections = _read(path)
    return sections["F"], sections["S"]


def _stop_words() -> frozenset[str]:
    """Portuguese stop words (spaCy's list, shipped in the lexicon file), normalised."""
    return _read(LEXICON_PATH)["X"] - PARTICLES


@dataclass(frozen=True, slots=True)
class _Word:
    start: int
    end: int
    key: str  # normalised
    cap: bool  # starts with an upper-case letter
    caps: bool  # all upper case (two letters or more)


@dataclass(frozen=True, slots=True)
class Run:
    """A candidate name: capitalised words (particles between them) and what the rules found."""

    start: int
    end: int
    words: int
    lexicon_hits: int
    first_name_first: bool
    cue: bool
    blocked: bool
    sentence_start: bool
    all_caps: bool

    @property
    def plausible(self) -> bool:
        """Whether a model's PERSON guess on this run is believable (not a heading, not one capitalised opener)."""
        if self.blocked or (self.all_caps and self.lexicon_hits == 0):
            return False
        return not (self.words == 1 and self.sentence_start and self.lexicon_hits == 0)

    @property
    def is_person(self) -> bool:
        """Whether the rules call this run a person's name."""
        if self.blocked:
            return False
        if self.cue or self.first_name_first:
            return True
        if self.all_caps:
            return self.lexicon_hits >= 2
        if self.words >= 2:
            return True
        return self.lexicon_hits >= 1 and not self.sentence_start


class NameMatcher:
    """Finds person names in text and says whether a value is one (lexicon + rules).

    Args:
        first_names: normalised first names; ``None`` loads the shipped lexicon.
        surnames: normalised surnames; ``None`` loads the shipped lexicon.
        score: score given to findings (above spaCy's 0.85, so a name beats an overlapping
            LOCATION/ORG guess of the English model).
    """

    def __init__(
        self,
        first_names: Iterable[str] | None = None,
        surnames: Iterable[str] | None = None,
        score: float = 0.9,
    ) -> None:
        if not 0.0 <= score <= 1.0:
            raise ValueError(f"score must be in [0, 1], got {score!r}")
        shipped_first, shipped_last = load_lexicon() if first_names is None or surnames is None else ((), ())
        self.first_names = frozenset(normalize(n) for n in first_names) if first_names is not None else shipped_first
        self.surnames = frozenset(normalize(n) for n in surnames) if surnames is not None else shipped_last
        self.score = score
        self._stop = _stop_words()

    def __repr__(self) -> str:
        return f"NameMatcher(first_names={len(self.first_names)}, surnames={len(self.surnames)}, score={self.score})"

    def _words(self, text: str) -> list[_Word]:
        out = []
        for m in _WORD.finditer(text):
            w = m.group()
            letters = [c for c in w if c.isalpha()]
            caps = len(letters) >= 2 and all(c.isupper() for c in letters)
            out.append(_Word(m.start(), m.end(), normalize(w), w[0].isupper(), caps))
        return out

    def runs(self, text: str) -> list[Run]:
        """Every candidate run in ``text``, with the evidence for and against it being a name."""
        words = self._words(text)
        out: list[Run] = []
        i = 0
        n = len(words)
        while i < n:
            if not words[i].cap:
                i += 1
                continue
            j = i + 1
            last_cap = i
            while j < n and text[words[j - 1].end : words[j].start].isspace():
                if words[j].cap:
                    last_cap = j
                elif words[j].key not in PARTICLES:
                    break
                j += 1
            run = self._judge(text, words, i, last_cap)
            if run is not None:
                out.append(run)
            i = last_cap + 1
        return out

    def _judge(self, text: str, words: Sequence[_Word], i: int, last: int) -> Run | None:
        """Strip leading cue/stop words from ``words[i..last]`` and weigh the rest."""
        cue = i > 0 and words[i - 1].key.rstrip(".") in CUE_WORDS and _joined(text, words[i - 1], words[i])
        first = i
        while first <= last and (
            words[first].key in CUE_WORDS
            or (words[first].key in self._stop and words[first].key not in self.first_names)
            or words[first].key in PARTICLES
        ):
            cue = cue or words[first].key in CUE_WORDS
            first += 1
        if first > last:
            return None
        body = [w for w in words[first : last + 1] if w.key not in PARTICLES or w.cap]
        hits = sum(1 for w in body if w.key in self.first_names or w.key in self.surnames)
        blocked = _blocked([w.key for w in body], cue)
        before = text[: words[first].start]
        sentence_start = (first == 0 and not before.strip()) or bool(_SENTENCE_BREAK.search(before))
        return Run(
            start=words[first].start,
            end=words[last].end,
            words=len(body),
            lexicon_hits=hits,
            first_name_first=body[0].key in self.first_names and len(body[0].key) > 2,
            cue=cue,
            blocked=blocked,
            sentence_start=sentence_start,
            all_caps=all(w.caps for w in body),
        )

    def find(self, text: str) -> list[Finding]:
        """PERSON findings for every run the rules call a name."""
        return [
            Finding(Entity.PERSON.value, r.start, r.end, self.score, "names") for r in self.runs(text) if r.is_person
        ]

    __call__ = find

    def extend(self, text: str, findings: Sequence[Finding]) -> list[Finding]:
        """Grow each PERSON finding to the whole capitalised run(s) it touches (not across blockers).

        A model (``spacy``) PERSON that touches no plausible run (:attr:`Run.plausible`) is dropped.

        Model findings (``spacy``) made only of title/role or stop words (``Cliente``) are dropped:
        the English model calls such Portuguese words ORG or PERSON.
        """
        findings = [f for f in findings if not self._only_cue_words(text, f)]
        persons = [f for f in findings if f.entity_type == Entity.PERSON.value]
        if not persons:
            return list(findings)
        runs = [r for r in self.runs(text) if not r.blocked]
        plausible = [r for r in runs if r.plausible]
        out = [f for f in findings if f.entity_type != Entity.PERSON.value]
        grown: list[Finding] = []
        for f in persons:
            if f.recognizer == "spacy" and not any(r.start < f.end and f.start < r.end for r in plausible):
                continue  # the English model's PERSON on a Portuguese common word, heading or lower-case phrase
            touched = [
                r for r in (plausible if f.recognizer == "spacy" else runs) if r.start < f.end and f.start < r.end
            ]
            if f.recognizer == "spacy":  # the model's span is replaced by the runs it touches (no "Segundo X")
                start, end = min(r.start for r in touched), max(r.end for r in touched)
            else:
                start, end = min([f.start, *(r.start for r in touched)]), max([f.end, *(r.end for r in touched)])
            grown.append(Finding(f.entity_type, start, end, f.score, f.recognizer))
        # A model span around a name that adds only title/stop words (``Cliente`` + name as ORG) goes.
        kept = [f for f in out if not (f.recognizer == "spacy" and self._only_cues_outside(text, f, grown))]
        return kept + grown

    def _only_cues_outside(self, text: str, finding: Finding, persons: Sequence[Finding]) -> bool:
        covered = [p for p in persons if p.start < finding.end and finding.start < p.end]
        if not covered:
            return False
        rest = "".join(
            " " if any(p.start <= i < p.end for p in covered) else text[i] for i in range(finding.start, finding.end)
        )
        keys = [normalize(m.group()) for m in _WORD.finditer(rest)]
        return not any(c.isdigit() for c in rest) and all(k in CUE_WORDS or k in self._stop for k in keys)

    def _only_cue_words(self, text: str, finding: Finding) -> bool:
        if finding.recognizer != "spacy":
            return False
        keys = [m.group() for m in _WORD.finditer(text, finding.start, finding.end)]
        return bool(keys) and all(normalize(k) in CUE_WORDS or normalize(k) in self._stop for k in keys)

    def is_name(self, value: str) -> bool:
        """Whether a whole value is shaped like a person name and backed by the lexicon."""
        shape = self.name_shape(value)
        return shape is not None and (shape[1] >= 1 and (shape[0] >= 2 or shape[2]))

    def name_shape(self, value: str) -> tuple[int, int, bool] | None:
        """(words, lexicon hits, first word is a first name) when ``value`` looks like a name, else None.

        A name value has 1-6 words, no digits, every word capitalised (or a particle), and
        no blocker word.
        """
        text = value.strip()
        if not text or len(text) > 80 or any(c.isdigit() for c in text) or "@" in text:
            return None
        if _WORD.sub("", text).strip(" .'’-"):
            return None  # commas, slashes, brackets...: not a bare name
        words = self._words(text)
        body = [w for w in words if not (w.key in PARTICLES and not w.cap)]
        if not 1 <= len(body) <= 6 or not all(w.cap for w in body):
            return None
        if _blocked([w.key for w in body], False):
            return None
        hits = sum(1 for w in body if w.key in self.first_names or w.key in self.surnames)
        return len(body), hits, body[0].key in self.first_names


def _blocked(keys: Sequence[str], cue: bool) -> bool:
    """Whether blocker words make a run a place/organisation: head-only blockers count first, and not after a cue."""
    if any(k in BLOCKERS and k not in HEAD_BLOCKERS for k in keys):
        return True
    return bool(keys) and keys[0] in HEAD_BLOCKERS and not cue


def _joined(text: str, a: _Word, b: _Word) -> bool:
    """Whether two words are separated only by spaces and at most a period or colon (``Sr. X``)."""
    gap = text[a.end : b.start]
    return len(gap) <= 3 and gap.strip() in ("", ".", ":")


@lru_cache(maxsize=1)
def default_matcher() -> NameMatcher:
    """The shared matcher on the shipped lexicon (loaded once per process)."""
    return NameMatcher()
