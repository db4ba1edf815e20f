"""A benchmark's rows: summary numbers per target, a text table, ratios, JSON."""

from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass
from typing import Any

from ops.bench.load import LoadResult

__all__ = ["Row", "format_table", "ratios", "row_from"]

MIB = 1024 * 1024


@dataclass(frozen=True)
class Row:
    """One target under one load."""

    label: str
    clients: int
    sent: int
    answered: int
    superseded: int
    errors: int
    unanswered: int
    fps: float
    mib_s: float
    p50_ms: float | None
    p90_ms: float | None
    p99_ms: float | None
    max_ms: float | None
    loop_lag_p99_ms: float | None = None
    rss_start_mib: float | None = None
    rss_peak_mib: float | None = None
    rss_end_mib: float | None = None
    error_codes: dict[str, int] | None = None
    kept: int | None = None
    """Captures paced clients replaced before sending (``None``: clients not paced)."""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _pct(ordered: list[float], q: float) -> float | None:
    if not ordered:
        return None
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000.0


def row_from(
    label: str,
    clients: int,
    tally: LoadResult,
    *,
    loop_lag_p99: float | None = None,
    rss: list[int] | None = None,
    paced: bool = False,
) -> Row:
    """Summarize ``tally``: answers per second during the measured span, latency percentiles."""
    ordered = sorted(tally.latencies)
    span = tally.span or 1.0
    mib = (lambda b: b / MIB) if rss else (lambda b: None)
    return Row(
        label=label,
        clients=clients,
        sent=tally.sent,
        answered=tally.answered,
        superseded=tally.superseded,
        errors=tally.errors,
        unanswered=tally.unanswered,
        fps=tally.in_span / span,
        mib_s=tally.in_span_bytes / span / MIB,
        p50_ms=statistics.median(ordered) * 1000.0 if ordered else None,
        p90_ms=_pct(ordered, 0.90),
        p99_ms=_pct(ordered, 0.99),
        max_ms=ordered[-1] * 1000.0 if ordered else None,
        loop_lag_p99_ms=None if loop_lag_p99 is None else loop_lag_p99 * 1000.0,
        rss_start_mib=mib(rss[0]) if rss else None,
        rss_peak_mib=mib(max(rss)) if rss else None,
        rss_end_mib=mib(rss[-1]) if rss else None,
        error_codes=dict(tally.error_codes) or None,
        kept=tally.kept if paced else None,
    )


COLUMNS: list[tuple[str, str, str]] = [
    ("label", "target", "{}"),
    ("clients", "clients", "{}"),
    ("fps", "frames/s", "{:.1f}"),
    ("mib_s", "MiB/s", "{:.2f}"),
    ("p50_ms", "p50 ms", "{:.3f}"),
    ("p90_ms", "p90 ms", "{:.3f}"),
    ("p99_ms", "p99 ms", "{:.3f}"),
    ("max_ms", "max ms", "{:.2f}"),
    ("sent", "sent", "{}"),
    ("answered", "answered", "{}"),
    ("superseded", "superseded", "{}"),
    ("kept", "kept", "{}"),
    ("errors", "errors", "{}"),
    ("unanswered", "unanswered", "{}"),
    ("loop_lag_p99_ms", "lag p99 ms", "{:.2f}"),
    ("rss_start_mib", "RSS start", "{:.1f}"),
    ("rss_peak_mib", "RSS peak", "{:.1f}"),
    ("rss_end_mib", "RSS end", "{:.1f}"),
]


def format_table(rows: list[Row]) -> str:
    """Rows as an aligned text table; columns no row has a value for are left out."""
    data = [row.as_dict() for row in rows]
    columns = [c for c in COLUMNS if any(d[c[0]] is not None for d in data)]
    cells = [[title for _, title, _ in columns]]
    for d in data:
        cells.append(["-" if d[key] is None else fmt.format(d[key]) for key, _, fmt in columns])
    widths = [max(len(line[i]) for line in cells) for i in range(len(columns))]
    lines = ["  ".join(cell.rjust(w) if i else cell.ljust(w) for i, (cell, w) in
                       enumerate(zip(line, widths, strict=True))) for line in cells]  # fmt: skip
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def ratios(easel: Row, baseline: Row) -> dict[str, float | None]:
    """Easel against the baseline: throughput ratio and latency differences."""

    def diff(a: float | None, b: float | None) -> float | None:
        return None if a is None or b is None else a - b

    return {
        "throughput_ratio": easel.fps / baseline.fps if baseline.fps else None,
        "p50_delta_ms": diff(easel.p50_ms, baseline.p50_ms),
        "p99_delta_ms": diff(easel.p99_ms, baseline.p99_ms),
        "p50_ratio": easel.p50_ms / baseline.p50_ms if easel.p50_ms and baseline.p50_ms else None,
    }
