"""Mutation check of the five guards that matter most: does a test fail when a guard is removed.

For each guard the script copies the working tree (no ``.git``, no ``.venv``) to a temporary
folder, applies one textual mutation to the copy, runs the tests that should catch it there (the
checkout itself is never modified, so other work in it is undisturbed), and prints a table
guard -> tests that failed (the killers). A guard whose mutation no test kills is a hole in the
suite; a mutation whose pattern is no longer found means the guard moved: update its pattern.

    .venv/bin/python scripts/mutation_check.py                 # all five guards
    .venv/bin/python scripts/mutation_check.py --guard ledger  # one of them
    .venv/bin/python scripts/mutation_check.py --list          # the mutations, without running

Exit status: 0 when every guard was killed, 1 when one survived or its pattern was not found.
The tests run with the same interpreter (the project's venv); the copy's own ``synthstream``
package is imported (pytest puts the rootdir first on ``sys.path``: ``pythonpath = ["."]``).
"""

# A command-line script: it prints its table (T201) and runs pytest on a list it builds itself (S603).
# ruff: noqa: T201, S603

from __future__ import annotations

import argparse
import glob
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
IGNORE = shutil.ignore_patterns(
    ".git", ".venv", "__pycache__", ".pytest_cache", ".ruff_cache", ".mypy_cache", "*.egg-info"
)


@dataclass(frozen=True)
class Guard:
    """One guard, the mutation that removes it, and the tests expected to notice."""

    name: str
    what: str
    path: str
    pattern: str  # a regular expression matched once in ``path``
    replacement: str
    tests: tuple[str, ...]  # test files or node ids; globs allowed (files others add later)


GUARDS: tuple[Guard, ...] = (
    Guard(
        name="ledger",
        what="ledger budget check: _over_budget never refuses",
        path="synthstream/privacy/ledger.py",
        pattern=r"(def _over_budget\(.*?\n(?:\s*\"\"\".*?\"\"\"\n)?)(\s+)if budget is None:",
        replacement=r"\1\2if True:  # MUTANT: the budget is never checked",
        tests=(
            "tests/test_privacy_ledger.py",
            "tests/test_ledger_*.py",
            "tests/test_dp_stats_e2e.py::test_a_smaller_budget_after_a_restart_refuses_releases_and_says_so",
            "tests/test_neural_dp.py::test_dpsgd_spend_is_recorded_and_never_resets_across_warm_starts_and_restarts",
        ),
    ),
    Guard(
        name="redactor",
        what="redactor replacement: every structured operator keeps the raw value",
        path="synthstream/processors/pii/redactor.py",
        pattern=r"new\[name\] = value if fn is None else fn\(value\)",
        replacement="new[name] = value  # MUTANT: no replacement",
        tests=(
            "tests/test_pii_redactor.py",
            "tests/test_pii_operators.py",
            "tests/test_sequence_pipeline.py",
            "tests/test_e2e_all_features.py",
        ),
    ),
    Guard(
        name="deadletter",
        what="dead-letter conservation: a rejected record is counted but never published",
        path="synthstream/streams/ingest.py",
        pattern=r"messages\.append\(self\._dead_letter\(rejection\)\)",
        replacement="self._dead_letter(rejection)  # MUTANT: counted, never published",
        tests=(
            "tests/test_pipeline_e2e.py::test_bad_inputs_are_dead_lettered_while_valid_records_flow",
            "tests/test_dp_stats_e2e.py::test_window_releases_match_the_truth_and_late_records_are_dead_lettered",
            "tests/test_faults_records.py",
        ),
    ),
    Guard(
        name="audit",
        what="audit gate verdict: always pass",
        path="synthstream/processors/auditor.py",
        pattern=r'(verdict: Literal\["pass", "fail"\] = )"fail" if reasons else "pass"',
        replacement=r'\1"pass"  # MUTANT: the verdict ignores the reasons',
        tests=(
            "tests/test_audit_gate.py",
            "tests/test_audit_risk.py",
            "tests/test_audit_failclosed*.py",
            "tests/test_audit_leaks*.py",
        ),
    ),
    Guard(
        name="noise",
        what="noise calibration: Gaussian noise drawn at sigma/2 while sigma is accounted and reported",
        path="synthstream/privacy/mechanisms.py",
        pattern=(
            r"self\._measurement = dp\.m\.make_gaussian\(\*space, scale=self\.sigma\)\n"
            r"(\s+)spent = float\(self\._measurement\.map\(d_in\)\)"
        ),
        replacement=(
            "self._measurement = dp.m.make_gaussian(*space, scale=self.sigma / 2)  # MUTANT\n"
            r"\1spent = float(dp.m.make_gaussian(*space, scale=self.sigma).map(d_in))"
        ),
        tests=(
            "tests/test_privacy_mechanisms.py",
            "tests/test_dp_stats_e2e.py::test_released_noise_has_the_variance_the_configuration_implies",
        ),
    ),
)


@dataclass
class Outcome:
    """What one guard's mutant run gave: the failing tests (killers) among those that ran."""

    guard: Guard
    applied: bool
    killers: list[str]
    ran: int
    seconds: float
    note: str = ""


def _expand(tests: tuple[str, ...], root: Path) -> list[str]:
    """Test arguments that exist in ``root`` (globs expanded; node ids kept when their file exists)."""
    out: list[str] = []
    for test in tests:
        file, _, node = test.partition("::")
        matches = sorted(glob.glob(str(root / file)))
        out += [str(Path(m).relative_to(root)) + (f"::{node}" if node else "") for m in matches]
    return out


def mutate(source: str, guard: Guard) -> str | None:
    """``source`` with the guard's mutation applied once, or None when its pattern is not found."""
    mutated, n = re.subn(guard.pattern, guard.replacement, source, count=1, flags=re.DOTALL)
    return mutated if n == 1 else None


def run_guard(guard: Guard, timeout_s: float) -> Outcome:
    """Copy the tree, mutate the copy, run the guard's tests in it, collect the failing ones."""
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix=f"mutant-{guard.name}-") as tmp:
        root = Path(tmp) / "repo"
        shutil.copytree(REPO, root, ignore=IGNORE, symlinks=True)
        target = root / guard.path
        mutated = mutate(target.read_text(), guard)
        if mutated is None:
            return Outcome(guard, False, [], 0, 0.0, f"pattern not found in {guard.path}: the guard moved")
        target.write_text(mutated)
        tests = _expand(guard.tests, root)
        if not tests:
            return Outcome(guard, True, [], 0, 0.0, "none of its tests exist")
        command = [sys.executable, "-m", "pytest", *tests, "-v", "-p", "no:cacheprovider", "--color=no"]
        # Its own process group, so that a timeout also ends the workers and CLIs the tests started.
        proc = subprocess.Popen(
            command, cwd=root, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
        )
        try:
            output, _ = proc.communicate(timeout=timeout_s)
            note = ""
        except subprocess.TimeoutExpired:  # keep what finished: pytest -v prints each result as it ends
            # SIGINT first: pytest stops and tears its fixtures down (the embedded broker runs in a session
            # of its own and is stopped by that teardown, not by a signal to this group).
            os.killpg(proc.pid, signal.SIGINT)
            try:
                output, _ = proc.communicate(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                output, _ = proc.communicate()
            note = f"stopped after {timeout_s:.0f} s; results of the tests that finished"
        results = dict(RESULT.findall(output))
        killers = sorted(node for node, result in results.items() if result in ("FAILED", "ERROR"))
        return Outcome(guard, True, killers, len(results), time.monotonic() - started, note)


#: One line of ``pytest -v``: ``tests/test_x.py::test_y[param] PASSED [ 10%]``.
RESULT = re.compile(r"^(tests/\S+::\S+) (PASSED|FAILED|ERROR|SKIPPED|XFAIL|XPASS)", re.MULTILINE)


def main() -> int:
    """Run the chosen guards' mutants and print the table; 0 when every mutant was killed."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--guard", action="append", choices=[g.name for g in GUARDS], help="Only these guards.")
    parser.add_argument("--timeout", type=float, default=1_200, help="Seconds per guard's test run.")
    parser.add_argument("--list", action="store_true", help="Print the mutations and their tests, run nothing.")
    args = parser.parse_args()
    guards = [g for g in GUARDS if not args.guard or g.name in args.guard]
    if args.list:
        for g in guards:
            found = mutate((REPO / g.path).read_text(), g) is not None
            print(f"{g.name:<11} {'ok' if found else 'PATTERN NOT FOUND':<18} {g.what}")
            for t in _expand(g.tests, REPO):
                print(f"{'':<11} {t}")
        return 0
    outcomes = []
    for guard in guards:
        print(f"[{guard.name}] {guard.what} ...", flush=True)
        outcomes.append(outcome := run_guard(guard, args.timeout))
        verdict = "KILLED" if outcome.killers else "SURVIVED"
        print(f"[{guard.name}] {verdict}: {len(outcome.killers)}/{outcome.ran} tests failed in {outcome.seconds:.0f} s"
              + (f" ({outcome.note})" if outcome.note else ""), flush=True)  # fmt: skip
    print("\n| guard | mutation | killed | tests run | killing tests |")
    print("|---|---|---|---|---|")
    for o in outcomes:
        killed = "yes" if o.killers else ("n/a" if not o.applied else "**no**")
        names = "<br>".join(o.killers) if o.killers else (o.note or "none")
        print(f"| {o.guard.name} | {o.guard.what} | {killed} | {o.ran} | {names} |")
    return 0 if all(o.killers for o in outcomes) else 1


if __name__ == "__main__":
    raise SystemExit(main())
