"""The repository stands alone: tests read committed fixtures only, each with its provenance.

CI proves it end to end (``.ci/run`` clones the checkout where no ``../shared`` is beside it);
these checks fail earlier, on the machine of whoever adds a test that reaches outside.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from tests.helpers import FIXTURES

TESTS = Path(__file__).resolve().parent
#: What a test must not name: the developers' shared data folder, or its environment variables.
OUTSIDE = re.compile(r"\.\./shared|shared/data|SYNTHSTREAM_SHARED_DATA|SYNTHSTREAM_DATA")


def test_no_test_reads_data_outside_the_repository() -> None:
    offenders = [
        f"{path.name}:{n}"
        for path in sorted(TESTS.rglob("*.py"))
        if path.name != Path(__file__).name
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if OUTSIDE.search(line)
    ]
    assert not offenders, f"tests must read tests/fixtures, not the shared datasets: {offenders}"


def test_every_fixture_is_documented_with_its_checksum() -> None:
    readme = (FIXTURES / "README.md").read_text(encoding="utf-8")
    listed = dict(re.findall(r"^([0-9a-f]{64})  (\S+)$", readme, flags=re.MULTILINE))
    files = {p.name: p for p in FIXTURES.iterdir() if p.is_file() and p.name != "README.md"}
    assert set(listed.values()) == set(files), "every fixture file has one checksum line in fixtures/README.md"
    for digest, name in listed.items():
        assert hashlib.sha256(files[name].read_bytes()).hexdigest() == digest, f"{name} changed without its README"
        assert f"`{name}`" in readme, f"{name} has no provenance row"
