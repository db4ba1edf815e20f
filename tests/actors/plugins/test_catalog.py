from __future__ import annotations

from collections.abc import Iterable, Sequence
from importlib.metadata import EntryPoint

import pytest

from actors.plugins import (
    ENTRY_POINT_GROUP,
    Answer,
    FrameIn,
    ImageFx,
    NoParams,
    Passthrough,
    Pipeline,
    PipelineCatalog,
    Simulated,
)
from actors.plugins.catalog import EntryPointSource
from engine.errors import NotFound, PipelineError


class Plugin(Pipeline[NoParams]):
    name = "plugin"
    params_model = NoParams

    def process(self, batch: Sequence[FrameIn[NoParams]]) -> list[Answer]:
        return []


class Misnamed(Plugin):
    name = "other"


NotAPipeline = object()


def source(**targets: str) -> EntryPointSource:
    def entry_points(group: str) -> Iterable[EntryPoint]:
        assert group == ENTRY_POINT_GROUP
        return [EntryPoint(name, f"{__name__}:{attr}", group) for name, attr in targets.items()]

    return entry_points


def catalog(**targets: str) -> PipelineCatalog:
    return PipelineCatalog(entry_points=source(**targets))


def test_builtins_are_known() -> None:
    found = catalog()
    assert found.kinds() == ["imagefx", "passthrough", "simulated", "simulated-codec"]
    assert found.get("imagefx") is ImageFx
    assert found.get("passthrough") is Passthrough
    assert found.get("simulated") is Simulated


def test_unknown_kind_is_not_found() -> None:
    with pytest.raises(NotFound, match="nope"):
        catalog().get("nope")


def test_entry_points_are_discovered_and_loaded_on_use() -> None:
    found = catalog(plugin="Plugin")
    assert found.kinds() == ["imagefx", "passthrough", "plugin", "simulated", "simulated-codec"]
    assert found.get("plugin") is Plugin
    assert found.get("plugin") is Plugin


def test_a_builtin_name_cannot_be_taken_over() -> None:
    assert catalog(imagefx="Plugin").get("imagefx") is ImageFx


@pytest.mark.parametrize(
    ("kind", "target"),
    [("other", "Missing"), ("other", "NotAPipeline"), ("plugin", "Misnamed")],
)
def test_broken_plugins_fail_only_when_asked_for(kind: str, target: str) -> None:
    found = catalog(**{kind: target})
    assert kind in found.kinds()
    with pytest.raises(PipelineError):
        found.get(kind)
    assert found.get("passthrough") is Passthrough


def test_catalogs_are_independent() -> None:
    assert "plugin" not in catalog().kinds()
    assert "plugin" in catalog(plugin="Plugin").kinds()
