"""Per-field redaction operators, each resolved once into a plain function.

- keyed pseudonyms: HMAC-SHA256 with a secret from the environment, prefixed with a key id
  so keys can rotate; stable across records and restarts, reveal nothing;
- format-preserving fakes: Faker (en_US or pt_BR) seeded from the pseudonym, so the same
  person always gets the same fake and the original never reaches the generator of the fake;
- masks and generalizations (date -> year/month, zip/CEP -> prefix, age -> band).
Every returned function maps None to None.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import random
from collections.abc import Callable
from datetime import UTC, date, datetime
from functools import lru_cache
from typing import Any, Literal

from faker import Faker

from synthstream.errors import ConfigError
from synthstream.processors.pii.checksums import generate_card, generate_cnpj, generate_cpf
from synthstream.schemas.record import FieldType

Transform = Callable[[Any], Any]
Locale = Literal["en_US", "pt_BR"]
GeneralizeKind = Literal["year", "month", "prefix", "band"]
MIN_KEY_BYTES = 16


class Pseudonymizer:
    """Keyed HMAC-SHA256 pseudonyms: ``<key_id>_<24 hex chars>``."""

    def __init__(self, key: bytes, key_id: str) -> None:
        if len(key) < MIN_KEY_BYTES:
            raise ConfigError([f"the pseudonym key must be at least {MIN_KEY_BYTES} bytes"], "redaction")
        if not key_id or not key_id.isalnum():
            raise ConfigError(["the key id must be a non-empty alphanumeric string"], "redaction")
        self.key_id = key_id
        self._key = key

    def __repr__(self) -> str:
        return f"Pseudonymizer(key_id={self.key_id!r})"  # never the key

    def digest(self, value: str) -> bytes:
        """The raw HMAC of ``value`` (used to seed fakes)."""
        return hmac.new(self._key, value.encode(), hashlib.sha256).digest()

    def __call__(self, value: str) -> str:
        """The pseudonym of ``value``."""
        return f"{self.key_id}_{self.digest(value).hex()[:24]}"

    def __reduce__(self) -> Any:
        raise TypeError("a Pseudonymizer holds a secret and must not be pickled")


def key_from_env(var: str = "SYNTHSTREAM_PSEUDONYM_KEY") -> tuple[bytes, str]:
    """The pseudonym key from ``var`` and its id (first 8 hex chars of its SHA-256)."""
    secret = os.environ.get(var)
    if not secret:
        raise ConfigError([f"set {var} to a secret of at least {MIN_KEY_BYTES} bytes"], "redaction")
    key = secret.encode()
    if len(key) < MIN_KEY_BYTES:
        raise ConfigError([f"{var} is shorter than {MIN_KEY_BYTES} bytes"], "redaction")
    return key, hashlib.sha256(key).hexdigest()[:8]


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
        if date_like:
            return _fake_date(seed, value)
        text = str(value)
        # Shaped fakes follow the value's layout; the cache key keeps only that layout (digits -> 9).
        shape = "".join("9" if c.isdigit() else c for c in text) if entity in _SHAPED else ""
        out = fake_for(seed, shape)
        if field_type == FieldType.LONG:
            digits = "".join(c for c in out if c.isdigit())
            return int(digits) if digits else seed % 10 ** max(1, len(text))
        return out

    return fake


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
    kind: GeneralizeKind, *, field_type: FieldType, prefix_len: int = 3, band_width: int = 10
) -> Transform:
    """Coarsen values: date -> start of year/month, zip/CEP -> prefix, age -> band lower bound.

    Types are preserved: a datetime stays a datetime, an int stays an int, a string stays a
    string (``01310-100`` -> ``013**-***`` for a CEP; ``28654`` -> ``28600`` as an int).
    """
    if kind not in ("year", "month", "prefix", "band"):
        raise ValueError(f"unknown generalization {kind!r}; use year, month, prefix or band")
    if prefix_len < 0 or band_width < 1:
        raise ValueError("prefix_len must be >= 0 and band_width >= 1")
    if kind in ("year", "month"):
        return _date_generalizer(kind)
    if kind == "band":
        return lambda v: None if v is None else type(v)((int(v) // band_width) * band_width)

    def prefix(value: Any) -> Any:
        if value is None:
            return None
        if field_type == FieldType.LONG and isinstance(value, int):
            digits = str(abs(value))
            kept = digits[:prefix_len] + "0" * max(0, len(digits) - prefix_len)
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
        return text[:4]

    return generalize


def output_type(operator: str, field_type: FieldType) -> FieldType:
    """The type a field has after ``operator`` (pseudonyms and masks are strings)."""
    if operator in ("pseudonymize", "mask"):
        return FieldType.STRING
    return field_type
