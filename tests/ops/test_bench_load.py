"""``easel bench`` and ``easel client`` as a user runs them."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from ops.bench.load import Load, make_payload
from ops.bench.measure import measure_interleaved
from ops.bench.servers import in_process, spawned
from tests.support import EASEL, ROOT, free_port, wait_until_serving
from transport.cli import main
from transport.protocol import DrainStrategy

TINY = ["--duration", "1", "--warmup", "0.2", "--frame-size", "2048", "--quiet", "--json"]


def _rows(capsys: pytest.CaptureFixture[str], *argv: str) -> dict[str, Any]:
    assert main(["bench", *TINY, *argv]) == 0
    report: dict[str, Any] = json.loads(capsys.readouterr().out)
    return report


def test_bench_answers_frames_without_errors(capsys: pytest.CaptureFixture[str]) -> None:
    report = _rows(capsys, "--pipelined", "--window", "2", "--drain", "all")
    (row,) = report["rows"]
    assert row["label"] == "easel"
    assert row["answered"] > 0
    assert row["answered"] == row["sent"]
    assert row["fps"] > 0
    assert (row["errors"], row["unanswered"]) == (0, 0)
    assert row["p50_ms"] is not None
    assert row["p50_ms"] <= row["p99_ms"] <= row["max_ms"]
    assert report["ratios"] is None


def test_bench_with_echo_baseline_prints_both_rows_and_ratios(
    capsys: pytest.CaptureFixture[str],
) -> None:
    report = _rows(capsys, "--rate", "50", "--clients", "2", "--baseline", "echo")
    easel, echo = report["rows"]
    assert (easel["label"], echo["label"]) == ("easel", "echo")
    for row in (easel, echo):
        assert row["clients"] == 2
        assert row["answered"] > 0
        assert row["fps"] > 0
        assert row["errors"] == 0
    assert report["ratios"]["throughput_ratio"] > 0


def test_bench_table_names_both_targets(capsys: pytest.CaptureFixture[str]) -> None:
    argv = [a for a in TINY if a != "--json"]
    assert main(["bench", *argv, "--pipelined", "--baseline", "echo"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:3] == ["target", "clients", "frames/s"]
    assert [line.split()[0] for line in lines[2:4]] == ["easel", "echo"]
    assert lines[4].startswith("throughput_ratio=")


def test_client_sends_frames_and_saves_results(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "EASEL_LOG_LEVEL": "WARNING"}
    serve = [*EASEL, "serve", "--port", str(port), "--data-dir", str(tmp_path / "d")]
    proc = subprocess.Popen(serve, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_until_serving(url + "/api/v1/health", proc)
        out = tmp_path / "out"
        key = (tmp_path / "d" / "admin.key").read_text().strip()
        client = ["client", "--url", url, "--api-key", key, "-n", "3", "--out", str(out)]
        assert main(client) == 0
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)
    saved = sorted(path.name for path in out.iterdir())
    assert saved == ["00000.jpg", "00001.jpg", "00002.jpg"]
    assert (out / "00000.jpg").read_bytes()[:2] == b"\xff\xd8"  # passthrough: our JPEG back
    assert "3 frames, 0 failed" in capsys.readouterr().out


async def test_interleaved_targets_take_turns_and_rows_add_up() -> None:
    load = Load(
        payload=make_payload(2048), window=2, drain=DrainStrategy.ALL, duration=0.6, warmup=0.05
    )
    async with in_process("easel") as easel, in_process("echo") as echo:
        rows, turns = await measure_interleaved(
            [(easel, "easel"), (echo, "echo")], load, slices=3, progress=False
        )
    assert [row.label for row in rows] == ["easel", "echo"]
    assert len(turns) == 3
    assert all([row.label for row in turn] == ["easel", "echo"] for turn in turns)
    for index, row in enumerate(rows):
        each = [turn[index] for turn in turns]
        assert all(part.answered > 0 and part.errors == 0 for part in each)
        assert row.sent == sum(part.sent for part in each)
        assert row.answered == sum(part.answered for part in each)
        assert min(part.fps for part in each) <= row.fps <= max(part.fps for part in each)


async def test_a_spawned_server_runs_the_code_of_the_tree_it_is_given(tmp_path: Path) -> None:
    """``spawned(tree=...)`` is how ops.bench.compare runs an older checkout: the
    server imports that tree's modules, not this one's."""
    other = tmp_path / "other"
    for package in ("engine", "actors", "transport", "ops"):
        shutil.copytree(ROOT / package, other / package)
    marker = other / "transport" / "rest" / "health.py"
    marker.write_text(
        marker.read_text().replace('"ok" if report.alive', '"other tree" if report.alive')
    )
    async with spawned("easel", tree=other) as target, aiohttp.ClientSession() as http:
        response = await http.get(target.url + "/api/v1/health")
        assert (await response.json())["status"] == "other tree"


def test_paced_bench_clients_keep_captures_instead_of_being_superseded(
    capsys: pytest.CaptureFixture[str],
) -> None:
    slow = ["--pipeline", "sim", "--kind", "simulated", "--options", '{"cost_ms": 40}']
    report = _rows(capsys, "--rate", "60", "--clients", "2", "--paced", *slow)
    (row,) = report["rows"]
    assert row["answered"] > 0
    assert row["errors"] == 0
    assert row["kept"] > 0  # captures outran the 40 ms model: kept on the client
    assert row["superseded"] == 0  # and none sent only to be thrown away
    unpaced = _rows(capsys, "--rate", "60", "--clients", "2", *slow)
    (row,) = unpaced["rows"]
    assert row["kept"] is None
    assert row["superseded"] > 0
