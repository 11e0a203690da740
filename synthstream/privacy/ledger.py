"""The privacy ledger: an append-only DuckDB record of every DP release, written before it is published.

One DuckDB file (``state_dir/privacy.duckdb``) holds:

- ``releases``: one row per released query (stream, scope, unit, window, query, mechanism, ρ/ε, δ,
  sensitivity, noise). Rows are only ever inserted; nothing updates or deletes them.
- ``refusals``: releases that were refused because they would have exceeded the budget.
- ``window_releases``: the full noisy answer of each released window (the stats event as JSON).
  It is committed in the same transaction as the ledger rows, so a window whose release is on
  disk is re-published from disk after a crash instead of being noised a second time (fresh
  noise on the same window would let an observer average it away).
- ``marginals``: the noisy marginals in long form (query, noisy values, noise std, window), for SQL
  and for the generators that fit from the stream's statistics (post-processing: no extra cost).
- ``domains``: the discretisation (numeric bin edges, categorical domains) each stream releases over.
- ``dpsgd_history``: every DP-SGD fit (noise multiplier, sample rate, steps), which a model
  accountant composes over the stream's whole history (warm starts and restarts never reset it).

- ``window_published``: windows whose stored release was acknowledged by the broker; on start the
  stats stage re-publishes every stored window missing here (a crash between commit and publish).

Budgets: ``stats`` releases obey w-event privacy (Kellaris et al., VLDB 2014): the spend of any w
consecutive windows never exceeds the configured budget B. Why the check below suffices: a new
release adds spend only to its own window i, so the only sums of w consecutive windows that change
are those of the w runs that contain i, the runs ``j..j+w-1`` for ``j = i-w+1 .. i``. Before the
release every run was within B (induction over the ledger's history: every earlier release was
checked the same way); the check adds the new spend to each of those w runs and refuses when any
of them would pass B. So after the release every run of w consecutive windows is still within B,
whatever order windows are committed in (a window committed after a later one, e.g. after a
restart or from a lagging partition, is checked against the windows after it too). By the
w-event composition theorem (Kellaris et al., Theorem 3), a mechanism whose spend on any w
consecutive windows is at most B gives B-DP (ε or ρ-zCDP) for any two neighbouring streams that
differ within a span of w windows. The check and the insert happen in one transaction. Other
scopes (model training: AIM/MST measurements, DP-SGD) have a total budget. Restarts never
refresh a budget: the spend is always summed from the file.

Connection policy (one per process, one per file): every operation takes the process-wide lock of
its file, opens one connection in the ledger's one mode (read-write; ``read_only=True`` only for
outside readers such as the ``synthstream budget`` command), works in one transaction and closes
it again. Inside a process no two connections to the file are ever open at once, so DuckDB never
sees one file opened with two configurations (its ``ConnectionException: Can't open a connection
to same database file with a different configuration``) whichever threads (stats releases, the
metrics server, a fit) use it. Between processes (ingest worker, trainer, training pool, the
``budget`` command) DuckDB's file lock serialises them; a process that finds the file locked
retries for a while. A commit is durable once it returns: a worker killed with SIGKILL afterwards
loses nothing.

Failing closed: any error of the file (corrupt, unreadable, read-only, disk full) raises
:class:`LedgerError` naming the real cause; a failed transaction is rolled back only when one is
still active, so a rollback never buries the original error. Callers refuse the release on a
:class:`LedgerError`: nothing is published that is not in the ledger.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb

from synthstream.errors import SynthstreamError
from synthstream.privacy.accounting import Spend

__all__ = [
    "BudgetExceeded",
    "DomainRow",
    "LedgerError",
    "NoisyMarginalRow",
    "PrivacyLedger",
    "Release",
    "ScopeSummary",
    "WindowAlreadyReleasedError",
]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS releases (
    release_id VARCHAR PRIMARY KEY,
    stream VARCHAR NOT NULL,
    scope VARCHAR NOT NULL,
    unit VARCHAR NOT NULL,
    window_index BIGINT,
    window_start TIMESTAMPTZ,
    window_end TIMESTAMPTZ,
    query VARCHAR NOT NULL,
    mechanism VARCHAR NOT NULL,
    rho DOUBLE NOT NULL,
    epsilon DOUBLE NOT NULL,
    delta DOUBLE NOT NULL,
    sensitivity DOUBLE,
    noise_std DOUBLE,
    recorded_at TIMESTAMPTZ NOT NULL
);
CREATE TABLE IF NOT EXISTS refusals (
    stream VARCHAR NOT NULL,
    scope VARCHAR NOT NULL,
    unit VARCHAR NOT NULL,
    window_index BIGINT,
    rho DOUBLE NOT NULL,
    epsilon DOUBLE NOT NULL,
    delta DOUBLE NOT NULL,
    reason VARCHAR NOT NULL,
    recorded_at TIMESTAMPTZ NOT NULL
);
CREATE TABLE IF NOT EXISTS window_releases (
    stream VARCHAR NOT NULL,
    scope VARCHAR NOT NULL,
    unit VARCHAR NOT NULL,
    window_index BIGINT NOT NULL,
    payload VARCHAR NOT NULL,
    recorded_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (stream, scope, unit, window_index)
);
CREATE TABLE IF NOT EXISTS window_published (
    stream VARCHAR NOT NULL,
    scope VARCHAR NOT NULL,
    unit VARCHAR NOT NULL,
    window_index BIGINT NOT NULL,
    published_at TIMESTAMPTZ NOT NULL
);
CREATE TABLE IF NOT EXISTS marginals (
    stream VARCHAR NOT NULL,
    window_index BIGINT NOT NULL,
    window_start TIMESTAMPTZ NOT NULL,
    window_end TIMESTAMPTZ NOT NULL,
    query VARCHAR[] NOT NULL,
    kind VARCHAR NOT NULL,
    answer DOUBLE[] NOT NULL,
    noise_std DOUBLE NOT NULL,
    mechanism VARCHAR NOT NULL
);
CREATE TABLE IF NOT EXISTS domains (
    stream VARCHAR NOT NULL,
    attribute VARCHAR NOT NULL,
    kind VARCHAR NOT NULL,
    labels VARCHAR[],
    edges DOUBLE[],
    source VARCHAR NOT NULL,
    recorded_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (stream, attribute)
);
CREATE TABLE IF NOT EXISTS dpsgd_history (
    stream VARCHAR NOT NULL,
    scope VARCHAR NOT NULL,
    unit VARCHAR NOT NULL,
    fit_key VARCHAR NOT NULL,
    noise_multiplier DOUBLE NOT NULL,
    sample_rate DOUBLE NOT NULL,
    steps BIGINT NOT NULL,
    recorded_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (stream, scope, unit, fit_key)
);
"""

_LOCK_WAIT_S = 30.0

#: One lock per ledger file (by real path) for the whole process: no two connections at once.
_FILE_LOCKS: dict[str, threading.RLock] = {}
_FILE_LOCKS_GUARD = threading.Lock()


def _file_lock(path: Path) -> threading.RLock:
    """The process-wide lock of one ledger file (created on first use)."""
    key = os.path.realpath(path)
    with _FILE_LOCKS_GUARD:
        lock = _FILE_LOCKS.get(key)
        if lock is None:
            lock = _FILE_LOCKS[key] = threading.RLock()
        return lock


class LedgerError(SynthstreamError):
    """The ledger file cannot be opened or written."""


class WindowAlreadyReleasedError(LedgerError):
    """A window's statistics are already in the ledger (released by this or another worker)."""


class BudgetExceeded(SynthstreamError):  # noqa: N818 - part of the public API, named for what happened
    """A release would exceed its budget; it was refused and recorded as a refusal."""

    def __init__(self, stream: str, scope: str, unit: str, window_index: int | None, detail: str) -> None:
        self.stream = stream
        self.scope = scope
        self.unit = unit
        self.window_index = window_index
        self.detail = detail
        where = f" window {window_index}" if window_index is not None else ""
        super().__init__(f"budget of {stream}/{scope}/{unit} exceeded{where}: {detail}")


@dataclass(frozen=True)
class Release:
    """One released query and what it cost."""

    query: str
    mechanism: str
    spend: Spend
    sensitivity: float | None = None
    noise_std: float | None = None


@dataclass(frozen=True)
class NoisyMarginalRow:
    """A noisy marginal (or count/sum) of one window, as stored for SQL and the generators."""

    query: tuple[str, ...]
    kind: str
    answer: tuple[float, ...]
    noise_std: float


@dataclass(frozen=True)
class DomainRow:
    """The released domain of one attribute: numeric bin edges or categorical labels, and where it came from."""

    attribute: str
    kind: str
    labels: tuple[str, ...] | None
    edges: tuple[float, ...] | None
    source: str


@dataclass
class ScopeSummary:
    """Spend of one stream/scope/unit: lifetime totals and the current sliding window."""

    stream: str
    scope: str
    unit: str
    releases: int = 0
    refusals: int = 0
    windows: int = 0
    total: Spend = field(default_factory=Spend)
    last_window: int | None = None
    recent: Spend = field(default_factory=Spend)


class PrivacyLedger:
    """Append-only, durable record of DP spend with atomic budget checks (see the module docstring)."""

    def __init__(self, path: Path, *, read_only: bool = False) -> None:
        """Open (and create, unless ``read_only``) the ledger at ``path``.

        ``read_only`` is for outside readers (the ``synthstream budget`` command): such a ledger
        never writes and, in a process of its own, does not block the worker's writes for longer
        than one read. Raises :class:`LedgerError` when the file cannot be opened or read.
        """
        self.path = Path(path)
        self.read_only = read_only
        self._lock = _file_lock(self.path)
        if not read_only:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise LedgerError(f"cannot create the directory of the privacy ledger {self.path}: {exc}") from exc
            with self._connect() as con:
                con.execute(_SCHEMA)

    def __repr__(self) -> str:
        return f"PrivacyLedger(path={str(self.path)!r}, read_only={self.read_only})"

    @contextmanager
    def _connect(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """One connection for one operation, under the file's process-wide lock (see the module docstring).

        Every DuckDB error (opening or inside the operation) becomes a :class:`LedgerError` that
        names the real cause; the ledger's own signals (:class:`BudgetExceeded`, already released)
        pass through.
        """
        with self._lock:
            con = self._open()
            try:
                yield con
            except duckdb.Error as exc:
                raise LedgerError(f"privacy ledger {self.path}: {type(exc).__name__}: {_first_line(exc)}") from exc
            finally:
                with suppress(duckdb.Error):
                    con.close()

    def _open(self) -> duckdb.DuckDBPyConnection:
        """Open the file in this ledger's mode, retrying while another process holds its lock."""
        if self.read_only and not self.path.exists():
            raise LedgerError(f"no privacy ledger at {self.path}")
        deadline = time.monotonic() + _LOCK_WAIT_S
        while True:
            try:
                # One thread: ledger queries are tiny, and DuckDB's thread pool dominates a connect otherwise.
                return duckdb.connect(str(self.path), read_only=self.read_only, config={"threads": 1})
            except duckdb.Error as exc:
                locked = "lock" in str(exc).lower() and isinstance(exc, duckdb.IOException)
                if not locked or time.monotonic() > deadline:
                    raise LedgerError(
                        f"cannot open the privacy ledger {self.path}: {type(exc).__name__}: {_first_line(exc)}"
                    ) from exc
                time.sleep(0.05)

    @contextmanager
    def _transaction(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A connection inside one transaction: committed on success, rolled back (if still active) on error."""
        with self._connect() as con:
            con.execute("BEGIN TRANSACTION")
            try:
                yield con
            except BaseException:
                _rollback(con)
                raise
            con.execute("COMMIT")

    # -- w-event window releases ------------------------------------------------------------

    def stored_window(self, stream: str, scope: str, unit: str, window_index: int) -> dict[str, Any] | None:
        """The release of a window that is already on disk (to re-publish), or ``None``."""
        with self._connect() as con:
            row = con.execute(
                "SELECT payload FROM window_releases WHERE stream=? AND scope=? AND unit=? AND window_index=?",
                [stream, scope, unit, window_index],
            ).fetchone()
        return None if row is None else dict(json.loads(row[0]))

    def last_released_window(self, stream: str, scope: str, unit: str) -> int | None:
        """Index of the newest window with a statistics release, or ``None``."""
        with self._connect() as con:
            row = con.execute(
                "SELECT max(window_index) FROM window_releases WHERE stream=? AND scope=? AND unit=?",
                [stream, scope, unit],
            ).fetchone()
        return None if row is None or row[0] is None else int(row[0])

    def stored_windows(self, stream: str, scope: str, unit: str, first: int) -> list[dict[str, Any]]:
        """Stored releases of windows >= ``first``, oldest first (re-published after a restart)."""
        with self._connect() as con:
            rows = con.execute(
                "SELECT payload FROM window_releases WHERE stream=? AND scope=? AND unit=? AND window_index >= ? "
                "ORDER BY window_index",
                [stream, scope, unit, first],
            ).fetchall()
        return [dict(json.loads(r[0])) for r in rows]

    def window_state(
        self, stream: str, scope: str, unit: str, window_index: int, w: int
    ) -> tuple[dict[str, Any] | None, Spend, Spend]:
        """In one read: the stored release of a window (or None), what the other windows spend, its own spend.

        "Other" is the largest spend of the *other* windows of any run of w consecutive windows
        that contains this one (windows ``i-w+1..i`` through ``i..i+w-1``), component-wise: an
        allocation that stays within ``budget - other`` keeps every run within budget, also when
        later windows were committed first (out of order). A window's own spend can be non-zero
        before its statistics are released: the DP bootstrap of bins and domains is charged to
        the first window.
        """
        with self._connect() as con:
            row = con.execute(
                "SELECT payload FROM window_releases WHERE stream=? AND scope=? AND unit=? AND window_index=?",
                [stream, scope, unit, window_index],
            ).fetchone()
            other, own = _containing_runs(con, (stream, scope, unit), window_index, w)
        return (None if row is None else dict(json.loads(row[0]))), other, own

    def other_spend(self, stream: str, scope: str, unit: str, window_index: int, w: int) -> Spend:
        """The largest spend of the other windows of any run of w consecutive windows containing ``window_index``."""
        with self._connect() as con:
            return _containing_runs(con, (stream, scope, unit), window_index, w)[0]

    def window_spend(self, stream: str, scope: str, unit: str, first: int, last: int) -> Spend:
        """Summed spend of windows ``first..last`` (inclusive) of one stream/scope/unit."""
        with self._connect() as con:
            return _sum_windows(con, stream, scope, unit, first, last)

    def max_run_spend(self, stream: str, scope: str, unit: str, w: int) -> Spend:
        """The largest spend of any w consecutive windows (component-wise), over the whole history."""
        with self._connect() as con:
            rows = con.execute(
                "SELECT window_index, sum(rho), sum(epsilon), sum(delta) FROM releases "
                "WHERE stream=? AND scope=? AND unit=? AND window_index IS NOT NULL GROUP BY 1",
                [stream, scope, unit],
            ).fetchall()
        spend = {int(i): Spend(float(r), float(e), float(d)) for i, r, e, d in rows}
        worst = Spend()
        for start in {j for i in spend for j in range(i - w + 1, i + 1)}:
            run = sum((spend.get(k, Spend()) for k in range(start, start + w)), Spend())
            worst = _max(worst, run)
        return worst

    def commit_window(
        self,
        *,
        stream: str,
        scope: str,
        unit: str,
        window_index: int,
        window_start: datetime,
        window_end: datetime,
        releases: Sequence[Release],
        budget: Spend,
        w: int,
        payload: dict[str, Any] | None,
        marginals: Sequence[NoisyMarginalRow] = (),
        domains: Sequence[DomainRow] = (),
    ) -> Spend:
        """Record releases of window ``i = window_index`` if every run of w windows containing it stays in budget.

        The runs checked are ``j..j+w-1`` for ``j = i-w+1 .. i`` (see the module docstring for
        why that keeps *every* run of w windows within budget, in any commit order). With a
        ``payload`` this is the window's statistics release (at most one per window: it is
        stored for re-publishing); without one it is a bootstrap release on the window's data
        (learned bins and domains, given in ``domains``) that precedes the statistics.
        Atomic: either every row (ledger, payload, marginals, domains) is committed or none is.
        Raises :class:`BudgetExceeded` (after recording the refusal) when the budget would be
        exceeded, :class:`WindowAlreadyReleasedError` when the window's statistics are already
        stored, and :class:`LedgerError` when the file cannot be read or written (nothing is
        recorded then). Returns the largest spend of a run containing the window, after the release.
        """
        if w < 1:
            raise ValueError("w must be at least 1")
        spend = sum((r.spend for r in releases), Spend())
        now = datetime.now(UTC)
        where = (stream, scope, unit)
        refused = ""
        with self._transaction() as con:
            existing = con.execute(
                "SELECT count(*) FROM window_releases WHERE stream=? AND scope=? AND unit=? AND window_index=?",
                [stream, scope, unit, window_index],
            ).fetchone()
            if payload is not None and existing is not None and existing[0]:
                raise WindowAlreadyReleasedError(
                    f"window {window_index} of {stream}/{scope}/{unit} was already released"
                )
            other, own = _containing_runs(con, where, window_index, w)
            after = other + own + spend
            refused = _over_budget(after, budget)
            if refused:
                _refuse(con, stream, scope, unit, window_index, spend, refused, now)
            else:
                _insert_releases(
                    con,
                    where,
                    (window_index, window_start, window_end),
                    [(f"{stream}/{scope}/{unit}/{window_index}/{r.query}", r) for r in releases],
                    now,
                )
                if payload is not None:
                    con.execute(
                        "INSERT INTO window_releases VALUES (?,?,?,?,?,?)",
                        [stream, scope, unit, window_index, json.dumps(payload, default=str), now],
                    )
                for domain in domains:
                    _insert_domain(con, stream, domain, now)
                if marginals:
                    con.executemany(
                        "INSERT INTO marginals VALUES (?,?,?,?,?,?,?,?,?)",
                        [
                            [
                                stream,
                                window_index,
                                window_start,
                                window_end,
                                list(m.query),
                                m.kind,
                                list(m.answer),
                                m.noise_std,
                                releases[0].mechanism if releases else "",
                            ]
                            for m in marginals
                        ],
                    )
        if refused:
            raise BudgetExceeded(stream, scope, unit, window_index, refused)
        return after

    def mark_published(self, stream: str, scope: str, unit: str, window_index: int) -> None:
        """Note that a stored window release was acknowledged by the broker (so a restart need not re-publish it)."""
        with self._connect() as con:
            con.execute(
                "INSERT INTO window_published VALUES (?,?,?,?,?)",
                [stream, scope, unit, window_index, datetime.now(UTC)],
            )

    def unpublished_windows(self, stream: str, scope: str, unit: str) -> list[dict[str, Any]]:
        """Stored window releases never marked published, oldest first (re-published on start)."""
        with self._connect() as con:
            rows = con.execute(
                "SELECT payload FROM window_releases r WHERE stream=? AND scope=? AND unit=? AND NOT EXISTS ("
                "SELECT 1 FROM window_published p WHERE p.stream=r.stream AND p.scope=r.scope AND p.unit=r.unit "
                "AND p.window_index=r.window_index) ORDER BY window_index",
                [stream, scope, unit],
            ).fetchall()
        return [dict(json.loads(r[0])) for r in rows]

    def released_windows(self, stream: str, scope: str, unit: str) -> set[int]:
        """Indices of every window whose statistics are stored (released)."""
        with self._connect() as con:
            rows = con.execute(
                "SELECT window_index FROM window_releases WHERE stream=? AND scope=? AND unit=?", [stream, scope, unit]
            ).fetchall()
        return {int(r[0]) for r in rows}

    def refused_windows(self, stream: str, scope: str, unit: str) -> set[int]:
        """Indices of windows whose statistics release was refused (and never released afterwards)."""
        with self._connect() as con:
            rows = con.execute(
                "SELECT DISTINCT window_index FROM refusals f WHERE stream=? AND scope=? AND unit=? "
                "AND window_index IS NOT NULL AND NOT EXISTS (SELECT 1 FROM window_releases r WHERE "
                "r.stream=f.stream AND r.scope=f.scope AND r.unit=f.unit AND r.window_index=f.window_index)",
                [stream, scope, unit],
            ).fetchall()
        return {int(r[0]) for r in rows}

    # -- totals for other scopes (model training) -------------------------------------------

    def charge(
        self,
        *,
        stream: str,
        scope: str,
        unit: str,
        releases: Sequence[Release],
        budget: Spend | None,
        key: str,
    ) -> Spend:
        """Record spend outside the window timeline (e.g. AIM/MST measurements, DP-SGD) against a total budget.

        ``key`` makes the charge idempotent (a retried charge with the same key is not counted
        twice). Returns the scope's total spend after the charge; raises :class:`BudgetExceeded`
        when ``budget`` is given and would be exceeded.
        """
        now = datetime.now(UTC)
        spend = sum((r.spend for r in releases), Spend())
        refused = ""
        with self._transaction() as con:
            already = con.execute(
                "SELECT count(*) FROM releases WHERE release_id LIKE ?", [f"{stream}/{scope}/{unit}/{key}/%"]
            ).fetchone()
            total = _sum_scope(con, stream, scope, unit)
            if already is not None and already[0]:
                return total
            after = total + spend
            refused = _over_budget(after, budget)
            if refused:
                _refuse(con, stream, scope, unit, None, spend, refused, now)
            else:
                _insert_releases(
                    con,
                    (stream, scope, unit),
                    (None, None, None),
                    [(f"{stream}/{scope}/{unit}/{key}/{i}:{r.query}", r) for i, r in enumerate(releases)],
                    now,
                )
        if refused:
            raise BudgetExceeded(stream, scope, unit, None, refused)
        return after

    def scope_spend(self, stream: str, scope: str, unit: str) -> Spend:
        """Lifetime spend of one stream/scope/unit."""
        with self._connect() as con:
            return _sum_scope(con, stream, scope, unit)

    def key_spend(self, stream: str, scope: str, unit: str, key: str) -> Spend | None:
        """What the :meth:`charge` (or :meth:`charge_dpsgd`) with ``key`` recorded, or ``None`` if it never happened.

        A retried fit asks this first: when its key was charged, it may redo its work within that
        spend without being charged again (nothing of the first attempt was published).
        """
        with self._connect() as con:
            row = con.execute(
                "SELECT count(*), coalesce(sum(rho), 0), coalesce(sum(epsilon), 0), coalesce(sum(delta), 0) "
                "FROM releases WHERE release_id LIKE ?",
                [f"{stream}/{scope}/{unit}/{key}/%"],
            ).fetchone()
        if row is None or not row[0]:
            return None
        return Spend(float(row[1]), float(row[2]), float(row[3]))

    # -- DP-SGD history (composed with an RDP/PRV accountant, never reset) -------------------

    def charge_dpsgd(
        self,
        *,
        stream: str,
        scope: str,
        unit: str,
        key: str,
        noise_multiplier: float,
        sample_rate: float,
        steps: int,
        release: Release,
    ) -> bool:
        """Append one DP-SGD fit (its accountant history entry and its ledger row) in one transaction.

        The ``dpsgd_history`` rows are what an accountant composes over the whole life of a
        stream's models (warm-start retrains and restarts continue it, nothing resets it);
        ``release`` is the fit's row in ``releases`` (its ε is the increase of the composed
        total). Idempotent on ``key``: returns ``False`` when that fit was already recorded.
        The budget check is the caller's (an RDP composition is not a sum of ε).
        """
        if steps < 0 or not 0 <= sample_rate <= 1 or noise_multiplier <= 0:
            raise ValueError("DP-SGD history needs steps >= 0, a sample rate in [0, 1] and a positive noise multiplier")
        now = datetime.now(UTC)
        with self._transaction() as con:
            row = con.execute(
                "SELECT count(*) FROM dpsgd_history WHERE stream=? AND scope=? AND unit=? AND fit_key=?",
                [stream, scope, unit, key],
            ).fetchone()
            if row is not None and row[0]:
                return False
            con.execute(
                "INSERT INTO dpsgd_history VALUES (?,?,?,?,?,?,?,?)",
                [stream, scope, unit, key, float(noise_multiplier), float(sample_rate), int(steps), now],
            )
            _insert_releases(
                con,
                (stream, scope, unit),
                (None, None, None),
                [(f"{stream}/{scope}/{unit}/{key}/0:{release.query}", release)],
                now,
            )
        return True

    def dpsgd_history(self, stream: str, scope: str, unit: str) -> list[tuple[float, float, int]]:
        """Every recorded DP-SGD fit of a stream/scope/unit, oldest first: (noise multiplier, sample rate, steps)."""
        with self._connect() as con:
            rows = con.execute(
                "SELECT noise_multiplier, sample_rate, steps FROM dpsgd_history WHERE stream=? AND scope=? AND unit=? "
                "ORDER BY recorded_at, fit_key",
                [stream, scope, unit],
            ).fetchall()
        return [(float(a), float(b), int(c)) for a, b, c in rows]

    # -- domains and marginals (post-processing inputs) -------------------------------------

    def save_domains(self, stream: str, domains: Sequence[DomainRow]) -> int:
        """Record declared (data-independent) domains not yet recorded; return how many were new."""
        now = datetime.now(UTC)
        new = 0
        with self._transaction() as con:
            known = {r[0] for r in con.execute("SELECT attribute FROM domains WHERE stream=?", [stream]).fetchall()}
            for domain in domains:
                if domain.attribute not in known:
                    _insert_domain(con, stream, domain, now)
                    new += 1
        return new

    def domains(self, stream: str) -> dict[str, dict[str, Any]]:
        """Recorded domains of ``stream``: attribute -> {kind, labels, edges, source}."""
        with self._connect() as con:
            rows = con.execute(
                "SELECT attribute, kind, labels, edges, source FROM domains WHERE stream=?", [stream]
            ).fetchall()
        return {a: {"kind": k, "labels": lab, "edges": e, "source": s} for a, k, lab, e, s in rows}

    def marginals(self, stream: str, *, last_windows: int | None = None) -> list[dict[str, Any]]:
        """Noisy marginals of ``stream`` (newest ``last_windows`` windows, or all), oldest window first."""
        with self._connect() as con:
            newest = con.execute("SELECT max(window_index) FROM marginals WHERE stream=?", [stream]).fetchone()
            if newest is None or newest[0] is None:
                return []
            first = int(newest[0]) - last_windows + 1 if last_windows is not None else -(2**62)
            rows = con.execute(
                "SELECT window_index, window_start, window_end, query, kind, answer, noise_std, mechanism "
                "FROM marginals WHERE stream=? AND window_index >= ? ORDER BY window_index",
                [stream, first],
            ).fetchall()
        keys = ("window_index", "window_start", "window_end", "query", "kind", "answer", "noise_std", "mechanism")
        return [dict(zip(keys, row, strict=True)) for row in rows]

    # -- reports ----------------------------------------------------------------------------

    def summaries(self, w_by_scope: dict[str, int] | None = None) -> list[ScopeSummary]:
        """Spend per stream/scope/unit: lifetime totals and the newest sliding window of ``w`` windows."""
        w_by_scope = w_by_scope or {}
        with self._connect() as con:
            rows = con.execute(
                "SELECT stream, scope, unit, count(*), count(DISTINCT window_index), sum(rho), sum(epsilon), "
                "sum(delta), max(window_index) FROM releases GROUP BY stream, scope, unit ORDER BY 1, 2, 3"
            ).fetchall()
            refused = dict(
                ((s, sc, u), n)
                for s, sc, u, n in con.execute(
                    "SELECT stream, scope, unit, count(*) FROM refusals GROUP BY 1, 2, 3"
                ).fetchall()
            )
            out = []
            for stream, scope, unit, n, windows, rho, eps, delta, last in rows:
                summary = ScopeSummary(
                    stream,
                    scope,
                    unit,
                    int(n),
                    int(refused.get((stream, scope, unit), 0)),
                    int(windows),
                    Spend(float(rho or 0), float(eps or 0), float(delta or 0)),
                    None if last is None else int(last),
                )
                w = w_by_scope.get(scope)
                if w is not None and last is not None:
                    summary.recent = _sum_windows(con, stream, scope, unit, int(last) - w + 1, int(last))
                else:
                    summary.recent = summary.total
                out.append(summary)
        return out

    def record_refusal(
        self, stream: str, scope: str, unit: str, window_index: int | None, requested: Spend, reason: str
    ) -> None:
        """Record a release refused before it reached :meth:`commit_window` (nothing was left to allocate)."""
        with self._connect() as con:
            _refuse(con, stream, scope, unit, window_index, requested, reason, datetime.now(UTC))

    def refusal_count(self, stream: str, scope: str) -> int:
        """How many releases of ``stream``/``scope`` were refused for budget."""
        with self._connect() as con:
            row = con.execute("SELECT count(*) FROM refusals WHERE stream=? AND scope=?", [stream, scope]).fetchone()
        return int(row[0]) if row else 0


def _sum_windows(con: duckdb.DuckDBPyConnection, stream: str, scope: str, unit: str, first: int, last: int) -> Spend:
    row = con.execute(
        "SELECT coalesce(sum(rho), 0), coalesce(sum(epsilon), 0), coalesce(sum(delta), 0) FROM releases "
        "WHERE stream=? AND scope=? AND unit=? AND window_index BETWEEN ? AND ?",
        [stream, scope, unit, first, last],
    ).fetchone()
    assert row is not None
    return Spend(float(row[0]), float(row[1]), float(row[2]))


def _sum_scope(con: duckdb.DuckDBPyConnection, stream: str, scope: str, unit: str) -> Spend:
    row = con.execute(
        "SELECT coalesce(sum(rho), 0), coalesce(sum(epsilon), 0), coalesce(sum(delta), 0) FROM releases "
        "WHERE stream=? AND scope=? AND unit=?",
        [stream, scope, unit],
    ).fetchone()
    assert row is not None
    return Spend(float(row[0]), float(row[1]), float(row[2]))


def _over_budget(after: Spend, budget: Spend | None) -> str:
    """Why ``after`` exceeds ``budget`` ('' when it does not); a relative slack absorbs float rounding."""
    if budget is None:
        return ""
    problems = []
    for name in ("rho", "epsilon", "delta"):
        spent, allowed = getattr(after, name), getattr(budget, name)
        if spent > allowed * (1 + 1e-9) + 1e-15:
            problems.append(f"{name} {spent:.6g} > {allowed:.6g}")
    return "; ".join(problems)


def _insert_domain(con: duckdb.DuckDBPyConnection, stream: str, domain: DomainRow, now: datetime) -> None:
    con.execute(
        "INSERT INTO domains VALUES (?,?,?,?,?,?,?)",
        [
            stream,
            domain.attribute,
            domain.kind,
            list(domain.labels) if domain.labels is not None else None,
            list(domain.edges) if domain.edges is not None else None,
            domain.source,
            now,
        ],
    )


def _insert_releases(
    con: duckdb.DuckDBPyConnection,
    where: tuple[str, str, str],
    window: tuple[int | None, datetime | None, datetime | None],
    releases: Sequence[tuple[str, Release]],
    now: datetime,
) -> None:
    """Append ``(row id, release)`` rows of one stream/scope/unit and window (None: not windowed)."""
    con.executemany(
        "INSERT INTO releases VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
        [
            [
                row_id,
                *where,
                *window,
                r.query,
                r.mechanism,
                r.spend.rho,
                r.spend.epsilon,
                r.spend.delta,
                r.sensitivity,
                r.noise_std,
                now,
            ]
            for row_id, r in releases
        ],
    )


def _refuse(
    con: duckdb.DuckDBPyConnection,
    stream: str,
    scope: str,
    unit: str,
    window_index: int | None,
    spend: Spend,
    reason: str,
    now: datetime,
) -> None:
    con.execute(
        "INSERT INTO refusals VALUES (?,?,?,?,?,?,?,?,?)",
        [stream, scope, unit, window_index, spend.rho, spend.epsilon, spend.delta, reason, now],
    )


def _containing_runs(
    con: duckdb.DuckDBPyConnection, where: tuple[str, str, str], window_index: int, w: int
) -> tuple[Spend, Spend]:
    """(largest spend of the other windows of a run of w windows containing ``window_index``, its own spend).

    The runs are ``j..j+w-1`` for ``j = window_index-w+1 .. window_index``; "largest" is
    component-wise (ρ, ε and δ each take their worst run), so ``other + own + new <= budget``
    holds for every run when it holds for this sum.
    """
    stream, scope, unit = where
    rows = con.execute(
        "SELECT window_index, coalesce(sum(rho), 0), coalesce(sum(epsilon), 0), coalesce(sum(delta), 0) "
        "FROM releases WHERE stream=? AND scope=? AND unit=? AND window_index BETWEEN ? AND ? GROUP BY 1",
        [stream, scope, unit, window_index - w + 1, window_index + w - 1],
    ).fetchall()
    spend = {int(i): Spend(float(r), float(e), float(d)) for i, r, e, d in rows}
    own = spend.pop(window_index, Spend())
    other = Spend()
    for start in range(window_index - w + 1, window_index + 1):
        run = sum((spend.get(k, Spend()) for k in range(start, start + w)), Spend())
        other = _max(other, run)
    return other, own


def _max(a: Spend, b: Spend) -> Spend:
    return Spend(max(a.rho, b.rho), max(a.epsilon, b.epsilon), max(a.delta, b.delta))


def _first_line(exc: BaseException) -> str:
    """The first line of an error message (DuckDB appends hints and stack notes below it)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _rollback(con: duckdb.DuckDBPyConnection) -> None:
    """Roll back the open transaction, if there still is one; never mask the error that caused it.

    After a failed COMMIT (disk full, I/O error) DuckDB has already ended the transaction, and a
    ROLLBACK would raise ``cannot rollback - no transaction is active`` over the real cause.
    """
    with suppress(duckdb.Error):
        con.execute("ROLLBACK")
