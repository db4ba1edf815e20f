"""Which actor hosts a pipeline replica: a thread for blocking kinds, the loop otherwise."""

from __future__ import annotations

from actors.metrics import RealtimeMetrics
from actors.pipelines.handle import PipelineHandle
from actors.pipelines.replicas import LoopPipelineReplica, PipelineReplica, replica_factory
from actors.plugins import ImageFx, Passthrough, PipelineConfig, Simulated
from engine.metrics import new_registry


async def test_blocking_kinds_get_threads_and_non_blocking_kinds_the_loop() -> None:
    metrics = RealtimeMetrics(new_registry())
    for plugin, host in (
        (Passthrough, LoopPipelineReplica),
        (ImageFx, PipelineReplica),
        (Simulated, PipelineReplica),
    ):
        config = PipelineConfig(name=plugin.name, kind=plugin.name)
        handle = PipelineHandle(config, plugin, metrics)
        replica = replica_factory(plugin, config, handle)()
        assert type(replica) is host
        assert replica.core.instance is None  # loading happens in on_start, on its host
