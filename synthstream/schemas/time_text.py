"""Times written as text in something other than ISO 8601: ``Jan 1 2000``, ``2010/01/01 00:00``, ``01/31/2020``.

Users' tables write dates many ways. Schema inference (is this column a timestamp?), the file
reader, the sequence model (a string time field) and the keyed sequence state (an event's time)
must agree on what such text means; they all read it the way pandas' per-value parser does
(dateutil: month first in ``01/02/2020``, a naive time is UTC). The record validator does not:
a string arriving on the wire for a ``timestamp`` field must be ISO 8601 (``09/03/1988`` is
dead-lettered with the reason, not guessed); ``synthstream replay`` sends a file's dated text as ISO.

Text that names no year and month (``12:30``, ``5``, ``Tuesday``) is not a time here: dateutil
would fill the missing parts from today's date, which would make a record's time depend on the
day it was read. A missing day is the 1st (``Jan 2000`` is a monthly reading).
"""

from __future__ import annotations

import functools
import warnings
from datetime import UTC, datetime

import pandas as pd
from dateutil import parser as dateutil_parser
from pandas.tseries.api import guess_datetime_format

__all__ = ["MAX_TEXT", "parse_time_text", "written_format"]

#: Longest text read as a time (longer strings are free text, not dates).
MAX_TEXT = 64
_DEFAULTS = (datetime(2000, 1, 1), datetime(2001, 2, 1))


@functools.lru_cache(maxsize=8_192)
def parse_time_text(text: str) -> datetime | None:
    """``text`` as a UTC-aware datetime when it names at least a year and a month, else None.

    Cached: a daily or monthly series repeats its strings across entities and batches.
    """
    text = text.strip()
    if not text or len(text) > MAX_TEXT or not any(c.isdigit() for c in text):
        return None
    parsed: list[datetime] = []
    for default in _DEFAULTS:
        try:
            parsed.append(dateutil_parser.parse(text, default=default))
        except (ValueError, OverflowError, TypeError):
            return None
    first, second = parsed
    if (first.year, first.month) != (second.year, second.month):
        return None  # the year or the month came from the default: the text does not name them
    return first.replace(tzinfo=UTC) if first.tzinfo is None else first.astimezone(UTC)


def written_format(strings: pd.Series, share: float = 1.0) -> str | None:
    """The ``strftime`` pattern ``strings`` are written in, when one reads at least ``share`` of them.

    pandas guesses the pattern from the first value (month first when ambiguous); it is kept only
    when the pattern names a year and a month and reads ``share`` of the values to the time the
    per-value parser reads. Day-first text whose days pass 12 therefore finds no pattern, and
    stays text rather than being misread. Zoned text is left to ISO handling (None).
    """
    text = strings.dropna().astype(str).str.strip()
    text = text[text != ""]
    if text.empty or bool(text.str.contains(r"(?:Z|[+-]\d{2}:?\d{2})$").any()):
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pandas warns when the guess is day first
        fmt = guess_datetime_format(str(text.iloc[0]))
    if fmt is None or "%z" in fmt or "%Z" in fmt or ("%Y" not in fmt and "%y" not in fmt):
        return None
    if not any(token in fmt for token in ("%m", "%b", "%B")):
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        exact = pd.to_datetime(text, format=fmt, errors="coerce")
        loose = pd.to_datetime(text, format="mixed", errors="coerce")
    agree = exact.notna() & (exact == loose)
    return fmt if float(agree.mean()) >= share else None
