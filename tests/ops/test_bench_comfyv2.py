"""The Comfy API v2 benchmark runs end to end on a few jobs and reports every row."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ops.bench import comfyv2


def test_benchmark_reports_latency_and_rates_against_its_baselines(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "report.json"
    report = comfyv2.main(["--jobs", "2", "--burst", "4", "--proxy-burst", "4", "--json", str(out)])
    assert json.loads(out.read_text()) == json.loads(json.dumps(report))
    sequential, throughput = report["sequential"], report["throughput"]
    labels = [row["label"] for row in sequential["rows"]]
    assert labels[:2] == ["direct", "proxy"]
    assert all(row["jobs"] == 2 and row["p50_ms"] > 0 for row in sequential["rows"])
    assert (sequential["easel_over_proxy"] is None) == ("easel" not in labels)
    rates = throughput["jobs_per_s"]
    assert {"direct x10", "direct x1", "proxy x1"} <= rates.keys()
    assert all(rate > 0 for rate in rates.values())
    assert ("easel x10" in rates) == ("easel" in labels)
    printed = capsys.readouterr().out
    assert printed.startswith("1. submit → result, 2 sequential jobs")
    assert "2. throughput, 4 jobs via the SDK" in printed
