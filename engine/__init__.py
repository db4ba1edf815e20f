"""Easel's runtime: actors, supervision, settings, errors and metrics.

Implementation lives in small modules; the names a user needs are re-exported here.
"""

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
