"""Pin what ``engine`` exports: a change here is a change to the public API."""

from __future__ import annotations

import subprocess
import sys
import types

import engine


def test_public_names_are_pinned() -> None:
    assert sorted(engine.__all__) == [
        "ActorContext",
        "ActorCrashed",
        "ActorError",
        "ActorRef",
        "ActorSpec",
        "ActorState",
        "ActorStopped",
        "ActorSystem",
        "AskTimeout",
        "Backoff",
        "DeadLetter",
        "EaselError",
        "Engine",
        "Health",
        "LoopActor",
        "MailboxFull",
        "MailboxSpec",
        "Overflow",
        "Restart",
        "RestartIntensityExceeded",
        "Settings",
        "SettingsError",
        "Strategy",
        "Supervisor",
        "SupervisorSpec",
        "ThreadActor",
        "Undeliverable",
        "load_settings",
    ]


def test_each_export_is_the_public_object_of_its_own_module() -> None:
    for name in engine.__all__:
        exported = getattr(engine, name)
        home = sys.modules[exported.__module__]
        assert exported.__module__.startswith("engine."), name
        assert exported.__name__ == name, f"{name} is an alias of {exported.__name__}"
        assert name in home.__all__, f"{name} is not public in {home.__name__}"
        assert getattr(home, name) is exported, name


def test_every_name_the_package_defines_is_exported() -> None:
    for name in engine.__all__:  # re-exports load on first use: load them all
        getattr(engine, name)
    defined = {
        name
        for name, value in vars(engine).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType)
    }
    assert defined == set(engine.__all__)


def test_the_shared_vocabulary_and_the_codec_load_without_the_runtime() -> None:
    code = (
        "import sys, engine.types, transport.protocol; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('engine', 'actors', 'pykka')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["['engine',", "'engine.errors',", "'engine.types']"]
