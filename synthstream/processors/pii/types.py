"""Shared vocabulary of the PII processors: entity names and findings.

Entity names follow Presidio's where one exists (PERSON, EMAIL_ADDRESS, CREDIT_CARD, ...),
plus Brazilian ones for LGPD (BR_CPF, BR_CNPJ, BR_PHONE, BR_CEP).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Entity(StrEnum):
    """Kinds of personal data synthstream recognizes."""

    PERSON = "PERSON"
    EMAIL_ADDRESS = "EMAIL_ADDRESS"
    PHONE_NUMBER = "PHONE_NUMBER"
    BR_PHONE = "BR_PHONE"
    CREDIT_CARD = "CREDIT_CARD"
    IBAN_CODE = "IBAN_CODE"
    IP_ADDRESS = "IP_ADDRESS"
    BR_CPF = "BR_CPF"
    BR_CNPJ = "BR_CNPJ"
    BR_CEP = "BR_CEP"
    US_SSN = "US_SSN"
    ZIP_CODE = "ZIP_CODE"
    DATE_OF_BIRTH = "DATE_OF_BIRTH"
    DATE_TIME = "DATE_TIME"
    STREET_ADDRESS = "STREET_ADDRESS"
    LOCATION = "LOCATION"
    ORGANIZATION = "ORGANIZATION"
    NRP = "NRP"
    URL = "URL"


@dataclass(frozen=True, slots=True)
class Finding:
    """One recognized span in a text: what it is, where, how sure, and who found it.

    Never holds the matched text itself, so findings can be logged and counted safely.
    """

    entity_type: str
    start: int
    end: int
    score: float
    recognizer: str
