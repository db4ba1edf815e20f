"""The batching benchmark's arithmetic and its codec bound (the full run is not a test)."""

from __future__ import annotations

import pytest

from ops.bench.batching import codec_bound, model_bound, summarize
from ops.bench.hosting import Case, cases, overheads
from ops.bench.load import make_jpeg
from ops.bench.report import Row


def row(label: str, fps: float, p99: float, sent: int, superseded: int, kept: int | None) -> Row:
    return Row(label, 8, sent, 0, superseded, 0, 0, fps, 0.0, p99, None, p99, None, kept=kept)


def test_model_bound_follows_the_batch_cost() -> None:
    assert model_bound(1) == pytest.approx(50.0)
    assert model_bound(8) == pytest.approx(8 / 0.027)


def test_codec_bound_counts_real_decodes_and_encodes() -> None:
    assert codec_bound(make_jpeg(64, 64, quality=95), seconds=0.2, workers=1) > 0


def test_summary_compares_to_the_bound_and_the_unbatched_p99() -> None:
    rows = {
        "unbatched": row("u", 40.0, 100.0, 100, 50, None),
        "batched": row("b", 60.0, 150.0, 100, 60, None),
        "paced": row("p", 80.0, 120.0, 100, 4, 60),
    }
    summary = summarize(8, 100.0, rows)
    assert summary.fraction == pytest.approx(0.8)
    assert summary.fraction_unpaced == pytest.approx(0.6)
    assert summary.p99_ratio == pytest.approx(1.2)
    assert summary.superseded_paced == pytest.approx(4 / 40)  # of the 40 frames sent
    assert summary.superseded_unpaced == pytest.approx(0.6)


def test_hosting_bench_compares_every_host_to_thread_at_the_same_size() -> None:
    found = cases((64 * 1024, 1024 * 1024))
    assert ("passthrough", "loop", 64 * 1024) in [(c.kind, c.hosting, c.size) for c in found]
    assert all(c.hosting != "loop" for c in found if c.kind == "simulated")
    thread = row("t", 100.0, 2.0, 10, 0, None)
    process = row("p", 80.0, 3.0, 10, 0, None)
    both = [
        (Case("passthrough", "thread", 1024), thread),
        (Case("passthrough", "process", 1024), process),
    ]
    (line,) = overheads(both)
    assert "process" in line
