"""The codec benchmark runs and prints one row per case."""

from __future__ import annotations

import pytest

from ops.bench import codec


def test_benchmark_prints_a_ratio_table(capsys: pytest.CaptureFixture[str]) -> None:
    codec.main(["--size", "1024", "--repeat", "1", "--number", "10"])
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("payload 1024 bytes")
    rows = lines[2:]
    assert [row.split("  ")[0] for row in rows] == [case.name for case in codec.cases(b"x")]
    assert all(row.endswith("x") for row in rows)
