"""Per-field redaction operators, each resolved once into a plain function.

- keyed pseudonyms: HMAC-SHA256 with a secret from the environment, prefixed with a key id
  so keys can rotate; stable across records and restarts, reveal nothing. The key id is
  itself keyed (:func:`derive_key_id`: an HMAC of a fixed label), so it is no oracle to test
  guessed keys against; the id is recorded in the state directory and a changed key is
  refused at start unless rotation is asked for (:func:`check_recorded_key`);
- format-preserving fakes: Faker (en_US or pt_BR) seeded from the pseudonym, so the same
  person always gets the same fake and the original never reaches the generator of the fake;
- masks and generalizations (date -> year/month, zip/CEP -> prefix, age -> band).
Every returned function maps None to None, and returns a value of its field's output type
(:func:`output_type`) for any valid value of the input type, so one value can never make a
record unencodable. Which operator fits which field type is checked up front
(:func:`operator_problem`), for every field at once, before the first record.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import os
import random
import re
import tempfile
from collections.abc import Callable
from datetime import UTC, date, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from faker import Faker

from synthstream.errors import ConfigError
from synthstream.processors.pii.checksums import generate_card, generate_cnpj, generate_cpf
from synthstream.schemas.record import FieldType

Transform = Callable[[Any], Any]
Locale = Literal["en_US", "pt_BR"]
GeneralizeKind = Literal["year", "month", "prefix", "band"]
#: Least length of a pseudonym key, not counting surrounding whitespace.
MIN_KEY_BYTES = 16
#: Least number of distinct characters in a key ("0000000000000000" is no secret).
MIN_KEY_DISTINCT = 6
#: The fixed label the key id is an HMAC of (versioned: a new derivation gets a new label).
KEY_ID_LABEL = b"synthstream/pseudonym-key-id/v1"
#: File in the redaction state directory recording the id of the key in use (never the key).
KEY_RECORD = "key.json"
_LONG_MAX = 2**63 - 1


def key_problems(key: bytes, name: str = "the pseudonym key") -> list[str]:
    """What is wrong with ``key`` as an HMAC secret (empty list when it is fine); never quotes it."""
    stripped = key.strip()
    if not stripped:
        return [f"{name} is empty or whitespace only; use a random secret of at least {MIN_KEY_BYTES} bytes"]
    problems = []
    if len(stripped) < MIN_KEY_BYTES:
        problems.append(
            f"{name} is {len(stripped)} bytes without surrounding whitespace, shorter than the minimum of "
            f"{MIN_KEY_BYTES} bytes"
        )
    if len(set(stripped)) < MIN_KEY_DISTINCT:
        problems.append(f"{name} has fewer than {MIN_KEY_DISTINCT} distinct characters: not a secret")
    return problems


def derive_key_id(key: bytes) -> str:
    """The public id of ``key``: HMAC-SHA256(key, :data:`KEY_ID_LABEL`), first 8 hex characters.

    It prefixes every pseudonym, so it is public. Being keyed, it reveals nothing about the
    key and cannot be used to test guessed keys offline without the HMAC of the label under
    each guess, which is as costly as guessing the key against any pseudonym; an unsalted
    hash of the key, the former id, let anyone check a guess with one SHA-256.
    """
    return hmac.new(key, KEY_ID_LABEL, hashlib.sha256).hexdigest()[:8]


class Pseudonymizer:
    """Keyed HMAC-SHA256 pseudonyms: ``<key_id>_<24 hex chars>``."""

    def __init__(self, key: bytes, key_id: str) -> None:
        problems = key_problems(key)
        if problems:
            raise ConfigError(problems, "redaction")
        if not key_id or not key_id.isalnum():
            raise ConfigError(["the key id must be a non-empty alphanumeric string"], "redaction")
        self.key_id = key_id
        self._key = key
        # The keyed inner/outer state is computed once; each value copies it (1.6x faster per value
        # than hmac.new, which re-derives the pads from the key every time).
        self._mac = hmac.new(key, digestmod=hashlib.sha256)

    def __repr__(self) -> str:
        return f"Pseudonymizer(key_id={self.key_id!r})"  # never the key

    def digest(self, value: str) -> bytes:
        """The raw HMAC of ``value`` (used to seed fakes)."""
        mac = self._mac.copy()
        mac.update(value.encode())
        return mac.digest()

    def __call__(self, value: str) -> str:
        """The pseudonym of ``value``."""
        return f"{self.key_id}_{self.digest(value).hex()[:24]}"

    def __reduce__(self) -> Any:
        raise TypeError("a Pseudonymizer holds a secret and must not be pickled")


def key_from_env(var: str = "SYNTHSTREAM_PSEUDONYM_KEY") -> tuple[bytes, str]:
    """The pseudonym key from ``var`` and its id (:func:`derive_key_id`).

    Refused with a :class:`ConfigError` naming the variable and the rule (never the value):
    unset, whitespace only, shorter than :data:`MIN_KEY_BYTES` or fewer than
    :data:`MIN_KEY_DISTINCT` distinct characters.
    """
    secret = os.environ.get(var)
    if not secret:
        raise ConfigError([f"set {var} to a secret of at least {MIN_KEY_BYTES} bytes"], "redaction")
    key = secret.encode("utf-8", "surrogateescape")
    problems = key_problems(key, var)
    if problems:
        raise ConfigError(problems, "redaction")
    return key, derive_key_id(key)


def check_recorded_key(directory: Path, key_id: str, *, rotate: bool = False) -> str | None:
    """Compare ``key_id`` with the id recorded in ``directory``; record it when none is.

    A different recorded id means the key changed, which silently changes every pseudonym and
    fake (joins across the change break): refused with a :class:`ConfigError` unless
    ``rotate`` (``redaction.rotate_key``) asks for the rotation, in which case the new id is
    recorded. Returns the previous id when a rotation happened, else None. The file holds
    the derived id only, never the key.
    """
    path = directory / KEY_RECORD
    previous: str | None = None
    if path.is_file():
        try:
            recorded = json.loads(path.read_text(encoding="utf-8"))
            previous = str(recorded["key_id"])
        except (OSError, ValueError, KeyError, TypeError):
            raise ConfigError(
                [f"{path} is unreadable; it should hold the id of the pseudonym key in use (delete it to re-record)"],
                "redaction",
            ) from None
        if previous == key_id:
            return None
        if not rotate:
            raise ConfigError(
                [
                    f"the pseudonym key changed: its id is {key_id}, the state directory recorded {previous} "
                    f"({path}); every pseudonym and fake would change. Restore the key, or set "
                    "redaction.rotate_key: true for one start to rotate it on purpose"
                ],
                "redaction",
            )
    directory.mkdir(parents=True, exist_ok=True)
    doc: dict[str, Any] = {"key_id": key_id, "derivation": "hmac-sha256(key, 'synthstream/pseudonym-key-id/v1')[:8]"}
    if previous is not None:
        doc["previous_key_id"] = previous
    _write_atomically(path, json.dumps(doc, indent=2))
    return previous


def _write_atomically(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def mask_function(keep_last: int = 4, char: str = "*") -> Transform:
    """Mask all but the last ``keep_last`` letters/digits, keeping separators; emails keep the domain."""
    if keep_last < 0 or len(char) != 1:
        raise ValueError("keep_last must be >= 0 and char a single character")

    def mask(value: Any) -> Any:
        if value is None:
            return None
        text = str(value)
        if "@" in text:
            local, _, domain = text.partition("@")
            return f"{local[:1]}{char * 3}@{domain}"
        alnum = [i for i, c in enumerate(text) if c.isalnum()]
        hidden = set(alnum[: max(0, len(alnum) - keep_last)])
        return "".join(char if i in hidden else c for i, c in enumerate(text))

    return mask


def _seed(pseudonymizer: Pseudonymizer, value: Any) -> int:
    return int.from_bytes(pseudonymizer.digest(str(value))[:8], "big")


def _same_shape(template: str, replacement_digits: str) -> str:
    """Put ``replacement_digits`` into the digit positions of ``template`` (keeps separators)."""
    digits = iter(replacement_digits)
    return "".join(next(digits, "0") if c.isdigit() else c for c in template)


def _faker_generators(locale: Locale, variant: str) -> dict[str, Callable[[Faker, random.Random, str], str]]:
    name = {"first_name": lambda f, r, v: f.first_name(), "last_name": lambda f, r, v: f.last_name()}.get(
        variant, lambda f, r, v: f.name()
    )
    return {
        "PERSON": name,
        "EMAIL_ADDRESS": lambda f, r, v: f"{f.user_name()}{r.randrange(100)}@{f.free_email_domain()}",
        "PHONE_NUMBER": lambda f, r, v: _same_shape(v, "".join(str(r.randrange(10)) for _ in range(20))),
        "BR_PHONE": lambda f, r, v: _same_shape(v, "".join(str(r.randrange(10)) for _ in range(20))),
        "CREDIT_CARD": lambda f, r, v: _same_shape(v, generate_card(r, prefix="4", length=sum(c.isdigit() for c in v))),
        "BR_CPF": lambda f, r, v: generate_cpf(r, formatted="." in v or "-" in v),
        "BR_CNPJ": lambda f, r, v: generate_cnpj(r, formatted="/" in v),
        "STREET_ADDRESS": lambda f, r, v: f.street_address(),
        "LOCATION": lambda f, r, v: f.city(),
        "US_SSN": lambda f, r, v: _same_shape(
            v, f"{r.randrange(100, 665):03d}{r.randrange(1, 99):02d}{r.randrange(1, 9999):04d}"
        ),
        "IBAN_CODE": lambda f, r, v: f.iban(),
        "IP_ADDRESS": lambda f, r, v: f.ipv4_private() if ":" not in v else f.ipv6(),
    }


def fake_function(
    entity: str,
    locale: Locale,
    pseudonymizer: Pseudonymizer,
    field_type: FieldType,
    *,
    variant: str = "name",
    cache_size: int = 65_536,
) -> Transform:
    """A format-preserving fake for ``entity``, seeded from the value's pseudonym.

    The same input always gives the same fake (across records and restarts, for the same
    key); the original value is only ever used as HMAC input. Results are cached per
    pseudonym digest (streams repeat the same people), so a fake costs one HMAC when hot.
    Entities without a fake generator fall back to the pseudonym.
    """
    faker = Faker(locale)
    generators = _faker_generators(locale, variant)
    date_like = entity == "DATE_OF_BIRTH" or field_type == FieldType.TIMESTAMP
    make = generators.get(entity)

    @lru_cache(maxsize=cache_size)
    def fake_for(seed: int, shape: str) -> str:
        rng = random.Random(seed)
        if make is None:
            return f"{pseudonymizer.key_id}_{seed:016x}"
        faker.seed_instance(seed)
        return make(faker, rng, shape)

    def fake(value: Any) -> Any:
        if value is None:
            return None
        seed = _seed(pseudonymizer, value)
        if field_type == FieldType.BOOLEAN:
            return bool(seed & 1)
        if date_like:
            if field_type == FieldType.LONG:
                return _fake_date_long(seed, value)
            if field_type == FieldType.DOUBLE:
                return float(_fake_date_long(seed, int(value)))
            return _fake_date(seed, value)
        text = str(value)
        # Shaped fakes follow the value's layout; the cache key keeps only that layout (digits -> 9).
        shape = "".join("9" if c.isdigit() else c for c in text) if entity in _SHAPED else ""
        out = fake_for(seed, shape)
        if field_type in (FieldType.LONG, FieldType.DOUBLE):
            digits = "".join(c for c in out if c.isdigit())
            number = _fit_long(int(digits) if digits else seed % 10 ** min(18, max(1, len(text))))
            return number if field_type == FieldType.LONG else float(number)
        return out

    return fake


def _fit_long(value: int) -> int:
    """``value`` kept inside the Avro long range (its last 18 digits when it is longer)."""
    return value if -_LONG_MAX <= value <= _LONG_MAX else value % 10**18


def _fake_date_long(seed: int, value: int) -> int:
    """A fake date for an integer field, in the value's own layout (year, YYYYMM, YYYYMMDD, epoch s/ms)."""
    rng = random.Random(seed)
    fake = date.fromordinal(date(1940, 1, 1).toordinal() + rng.randrange(365 * 65))
    digits = len(str(abs(int(value))))
    if digits <= 4:
        return fake.year
    if digits == 6:
        return fake.year * 100 + fake.month
    if digits == 8:
        return (fake.year * 100 + fake.month) * 100 + fake.day
    epoch = int(datetime(fake.year, fake.month, fake.day, tzinfo=UTC).timestamp())
    if digits in (9, 10):
        return epoch
    if digits in (12, 13):
        return epoch * 1000
    return int(seed % 10 ** min(18, digits))


_SHAPED = {"PHONE_NUMBER", "BR_PHONE", "CREDIT_CARD", "BR_CPF", "BR_CNPJ", "US_SSN", "IP_ADDRESS"}


def _fake_date(seed: int, value: Any) -> Any:
    """A date derived from the seed only (1940-2005), in the value's own type."""
    rng = random.Random(seed)
    day = date(1940, 1, 1).toordinal() + rng.randrange(365 * 65)
    fake = date.fromordinal(day)
    if isinstance(value, datetime):
        return datetime(fake.year, fake.month, fake.day, tzinfo=value.tzinfo or UTC)
    return fake.isoformat()


def generalize_function(
    kind: GeneralizeKind,
    *,
    field_type: FieldType,
    prefix_len: int = 3,
    band_width: int = 10,
    digits: int | None = None,
) -> Transform:
    """Coarsen values: date -> start of year/month, zip/CEP -> prefix, age -> band lower bound.

    Types are preserved: a datetime stays a datetime, an int stays an int, a string stays a
    string (``01310-100`` -> ``013**-***`` for a CEP; ``28654`` -> ``28600`` as an int;
    ``1310100`` -> ``1300000`` with ``digits=8``, the CEP's lost leading zero counted).
    """
    if kind not in ("year", "month", "prefix", "band"):
        raise ValueError(f"unknown generalization {kind!r}; use year, month, prefix or band")
    if prefix_len < 0 or band_width < 1:
        raise ValueError("prefix_len must be >= 0 and band_width >= 1")
    problem = operator_problem("generalize", field_type, kind)
    if problem is not None:
        raise ValueError(problem)
    if kind in ("year", "month"):
        return _long_date_generalizer(kind) if field_type == FieldType.LONG else _date_generalizer(kind)
    if kind == "band":
        if field_type == FieldType.DOUBLE:
            return lambda v: None if v is None else float(math.floor(v / band_width) * band_width)
        return lambda v: None if v is None else max(-_LONG_MAX - 1, (int(v) // band_width) * band_width)

    def prefix(value: Any) -> Any:
        if value is None:
            return None
        if field_type == FieldType.LONG and isinstance(value, int):
            # ``digits``: the identifier's width (8 for a CEP), so a lost leading zero counts as one.
            text = str(abs(value)).zfill(digits or 0)
            kept = text[:prefix_len] + "0" * max(0, len(text) - prefix_len)
            return int(kept) * (1 if value >= 0 else -1)
        text = str(value)
        seen = 0
        out = []
        for c in text:
            if c.isalnum():
                seen += 1
                out.append(c if seen <= prefix_len else "*")
            else:
                out.append(c)
        return "".join(out)

    return prefix


_DAY_FIRST = re.compile(r"(\d{1,2})([/.-])(\d{1,2})\2(\d{4})")


def _date_generalizer(kind: str) -> Transform:
    def generalize(value: Any) -> Any:
        if value is None:
            return None
        if isinstance(value, datetime):
            return value.replace(
                month=1 if kind == "year" else value.month, day=1, hour=0, minute=0, second=0, microsecond=0
            )
        text = str(value)
        if len(text) >= 7 and text[4] == "-":
            return f"{text[:4]}-01-01" if kind == "year" else f"{text[:7]}-01"
        day_first = _DAY_FIRST.fullmatch(text.strip())
        if day_first:  # 03/04/1980 -> 01/01/1980 (year) or 01/04/1980 (month), separator kept
            sep, month, year = day_first.group(2), day_first.group(3), day_first.group(4)
            return f"01{sep}{'01' if kind == 'year' else month.zfill(2)}{sep}{year}"
        return text[:4]

    return generalize


def _long_date_generalizer(kind: str) -> Transform:
    """Year/month of an integer date, kept an integer of the same layout.

    ``YYYY`` stays; ``YYYYMM`` and ``YYYYMMDD`` lose their month/day (``19880309`` ->
    ``19880101`` for year, ``19880301`` for month); other layouts (epoch seconds) keep their
    first 4 (year) or 6 (month) digits and zero the rest: a coarse prefix, never an error.
    """

    def generalize(value: Any) -> Any:
        if value is None:
            return None
        sign = -1 if value < 0 else 1
        digits = str(abs(int(value)))
        n = len(digits)
        if n <= 4:
            return value
        if n == 6:
            return sign * int(digits[:4] + "01") if kind == "year" else value
        if n == 8:
            return sign * int(digits[:4] + ("0101" if kind == "year" else digits[4:6] + "01"))
        keep = 4 if kind == "year" else 6
        return sign * int(digits[:keep].ljust(n, "0"))

    return generalize


#: Which field types each generalization can coarsen (and keep in its own type).
GENERALIZE_TYPES: dict[str, frozenset[FieldType]] = {
    "year": frozenset({FieldType.TIMESTAMP, FieldType.STRING, FieldType.LONG}),
    "month": frozenset({FieldType.TIMESTAMP, FieldType.STRING, FieldType.LONG}),
    "prefix": frozenset({FieldType.STRING, FieldType.LONG}),
    "band": frozenset({FieldType.LONG, FieldType.DOUBLE}),
}
#: Field types each other operator takes (mask and pseudonymize output strings; fake keeps any type).
_OPERATOR_TYPES: dict[str, frozenset[FieldType]] = {
    "scan": frozenset({FieldType.STRING}),
}


def operator_problem(operator: str, field_type: FieldType, generalize: str | None = None) -> str | None:
    """Why ``operator`` (with generalization ``generalize``) cannot run on a ``field_type`` field, or None.

    The check behind the up-front validation of a redaction plan: a mismatch such as
    ``generalize: band`` on a string field is refused at start, never met at the first record.

    >>> operator_problem("generalize", FieldType.STRING, "band")
    'generalize: band needs a field of type double or long, not string'
    >>> operator_problem("generalize", FieldType.LONG, "prefix") is None
    True
    """
    if operator == "generalize":
        kind = generalize or "year"
        allowed = GENERALIZE_TYPES.get(kind)
        if allowed is None:
            return f"unknown generalization {kind!r}; use one of {sorted(GENERALIZE_TYPES)}"
    else:
        allowed = _OPERATOR_TYPES.get(operator)
        if generalize is not None and operator not in ("auto",):
            return f"generalize: {generalize} is set but the operator is {operator!r}, not generalize"
        if allowed is None:
            return None
        kind = ""
    if FieldType(field_type) in allowed:
        return None
    what = f"generalize: {kind}" if operator == "generalize" else operator
    types = " or ".join(sorted(t.value for t in allowed))
    return f"{what} needs a field of type {types}, not {FieldType(field_type).value}"


def output_type(operator: str, field_type: FieldType) -> FieldType:
    """The type a field has after ``operator`` (pseudonyms and masks are strings)."""
    if operator in ("pseudonymize", "mask"):
        return FieldType.STRING
    return field_type
