from __future__ import annotations

import actors.plugins


def test_public_names_are_pinned() -> None:
    assert sorted(actors.plugins.__all__) == [
        "Answer",
        "BUILTIN_PIPELINES",
        "ENTRY_POINT_GROUP",
        "FrameIn",
        "FrameOut",
        "ImageFx",
        "ImageFxOptions",
        "ImageFxParams",
        "NoOptions",
        "NoParams",
        "Params",
        "Passthrough",
        "Pipeline",
        "PipelineCatalog",
        "PipelineConfig",
        "PluginClass",
        "PluginContext",
        "Simulated",
        "SimulatedCodec",
        "SimulatedCodecOptions",
        "SimulatedCrash",
        "SimulatedOptions",
        "SimulatedParams",
        "build",
        "check_answers",
        "each_frame",
    ]
    assert all(hasattr(actors.plugins, name) for name in actors.plugins.__all__)
