"""Realtime load generation against Easel and a raw echo baseline (``easel bench``)."""

from transport.bench.command import add_arguments, bench, run
from transport.bench.load import Load, Tally, make_jpeg, make_payload
from transport.bench.report import Row, format_table, ratios
from transport.bench.run import PipelineSpec, measure, measure_interleaved
from transport.bench.servers import Target, in_process, spawned

__all__ = [
    "Load",
    "PipelineSpec",
    "Row",
    "Tally",
    "Target",
    "add_arguments",
    "bench",
    "format_table",
    "in_process",
    "make_jpeg",
    "make_payload",
    "measure",
    "measure_interleaved",
    "ratios",
    "run",
    "spawned",
]
