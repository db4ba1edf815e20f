"""Easel's runtime: actors, supervision, settings, errors and metrics.

Implementation lives in small modules; the names a user needs are re-exported here,
loaded on first use, so that importing one light module (``engine.types``,
``engine.errors``) does not start up the whole runtime.
"""

import importlib as _importlib
import typing as _typing

if _typing.TYPE_CHECKING:
    from engine.actor import ActorContext, LoopActor, ThreadActor
    from engine.engine import Engine, Health
    from engine.errors import (
        ActorCrashed,
        ActorError,
        ActorStopped,
        AskTimeout,
        EaselError,
        MailboxFull,
        Undeliverable,
    )
    from engine.mailbox import MailboxSpec, Overflow
    from engine.ref import ActorRef, ActorState
    from engine.settings import Settings, SettingsError, load_settings
    from engine.supervisor import (
        ActorSpec,
        Backoff,
        Restart,
        RestartIntensityExceeded,
        Strategy,
        Supervisor,
        SupervisorSpec,
    )
    from engine.system import ActorSystem, DeadLetter

__all__ = [
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

_WHERE: dict[str, str] = {
    "ActorContext": "engine.actor",
    "ActorCrashed": "engine.errors",
    "ActorError": "engine.errors",
    "ActorRef": "engine.ref",
    "ActorSpec": "engine.supervisor",
    "ActorState": "engine.ref",
    "ActorStopped": "engine.errors",
    "ActorSystem": "engine.system",
    "AskTimeout": "engine.errors",
    "Backoff": "engine.supervisor",
    "DeadLetter": "engine.system",
    "EaselError": "engine.errors",
    "Engine": "engine.engine",
    "Health": "engine.engine",
    "LoopActor": "engine.actor",
    "MailboxFull": "engine.errors",
    "MailboxSpec": "engine.mailbox",
    "Overflow": "engine.mailbox",
    "Restart": "engine.supervisor",
    "RestartIntensityExceeded": "engine.supervisor",
    "Settings": "engine.settings",
    "SettingsError": "engine.settings",
    "Strategy": "engine.supervisor",
    "Supervisor": "engine.supervisor",
    "SupervisorSpec": "engine.supervisor",
    "ThreadActor": "engine.actor",
    "Undeliverable": "engine.errors",
    "load_settings": "engine.settings",
}


def __getattr__(name: str) -> _typing.Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'engine' has no attribute {name!r}")
    value = getattr(_importlib.import_module(module), name)
    globals()[name] = value
    return value
