"""How plug-ins are built: with the engine's context when they use it, as before otherwise."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from actors.plugins import (
    FrameIn,
    NoParams,
    Pipeline,
    PipelineConfig,
    PluginContext,
    build,
)


class Plain(Pipeline[NoParams]):
    name = "plain"
    params_model = NoParams

    def __init__(self, config: PipelineConfig) -> None:  # the one-argument constructor
        super().__init__(config)

    def process(self, batch: Sequence[FrameIn[NoParams]]) -> list[Any]:
        return []


class Needy(Plain):
    name = "needy"
    uses_context = True

    def __init__(self, config: PipelineConfig, context: PluginContext | None = None) -> None:
        Pipeline.__init__(self, config, context)


def test_a_kind_that_uses_the_context_is_built_with_it_and_others_as_before() -> None:
    context = PluginContext()
    needy = build(Needy, PipelineConfig(name="n", kind="needy"), context)
    plain = build(Plain, PipelineConfig(name="p", kind="plain"), context)
    assert needy.context is context
    assert plain.context is not context
    assert plain.context == PluginContext()
