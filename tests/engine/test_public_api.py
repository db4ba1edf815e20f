"""Pin what ``engine`` exports: a change here is a change to the public API."""

from __future__ import annotations

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
    for name in engine.__all__:
        assert getattr(engine, name) is not None
