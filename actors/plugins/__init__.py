"""Pipeline plug-ins: the contract, the catalog, and the built-in kinds.

See ``base`` for the lifecycle and threading contract, ``catalog`` for how third
parties add kinds through the ``easel.pipelines`` entry-point group.
"""

from .api import (
    Answer,
    FrameIn,
    FrameOut,
    NoOptions,
    NoParams,
    Params,
    Pipeline,
    PipelineConfig,
    PluginContext,
    build,
    check_answers,
    each_frame,
)
from .catalog import BUILTIN_PIPELINES, ENTRY_POINT_GROUP, PipelineCatalog, PluginClass
from .imagefx import ImageFx, ImageFxOptions, ImageFxParams
from .passthrough import Passthrough
from .simulated import (
    Simulated,
    SimulatedCodec,
    SimulatedCodecOptions,
    SimulatedCrash,
    SimulatedOptions,
    SimulatedParams,
)

__all__ = [
    "BUILTIN_PIPELINES",
    "ENTRY_POINT_GROUP",
    "Answer",
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
