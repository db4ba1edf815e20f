"""Credit pacing over real sockets: the server grants a window, paced clients keep it."""

from __future__ import annotations

import asyncio

from engine.settings import Settings
from tests.support import Easel, png
from transport.client import Client, Result
from transport.protocol import ContentType


async def simulated(easel: Easel, name: str = "sim", **options: object) -> None:
    body = {"name": name, "kind": "simulated", "options": options}
    status, answer = await easel.post("/api/v1/pipelines", body)
    assert status == 201, answer


async def results_until(client: Client, last: int) -> list[Result]:
    answers: list[Result] = []
    async with asyncio.timeout(20):
        async for answer in client.results():
            assert isinstance(answer, Result)
            answers.append(answer)
            if answer.seq == last:
                return answers
    raise AssertionError("the connection closed first")


async def test_welcome_and_results_grant_a_window_per_drain(easel: Easel) -> None:
    latest = await easel.connect(drain="latest")
    assert latest.welcome.credit == 2  # one in the pipeline, one waiting
    every = await easel.connect(drain="all")
    defaults = Settings()
    assert every.welcome.credit == defaults.max_inflight + defaults.drain_capacity
    await latest.send_frame(0, ContentType.PNG, png())
    (answer,) = await results_until(latest, 0)
    assert answer.credit == 2
    assert latest.outstanding == 0


async def test_a_paced_latest_client_is_never_superseded_and_ends_on_its_newest_frame(
    easel: Easel,
) -> None:
    await simulated(easel, cost_ms=30)
    client = await easel.connect(pipeline="sim", drain="latest")
    image = png()
    sent_now = [await client.offer(seq, ContentType.PNG, image) for seq in range(20)]
    assert sent_now[:2] == [True, True]  # the window
    assert not any(sent_now[2:])
    assert client.outstanding <= 2
    answers = await results_until(client, 19)  # the newest offer is always sent
    assert sum(a.superseded for a in answers) == 0
    assert [a.seq for a in answers] == [0, 1, 19]
    assert client.kept == 17  # offers 2..18 were replaced on the client, never sent
    stats = await client.call("session.stats")
    assert stats["superseded"] == 0
    assert stats["frames_in"] == 3


async def test_a_client_that_ignores_credits_still_works(easel: Easel) -> None:
    await simulated(easel, cost_ms=30)
    client = await easel.connect(pipeline="sim", drain="latest")
    image = png()
    for seq in range(10):
        await client.send_frame(seq, ContentType.PNG, image)
    assert client.outstanding == 10  # well beyond the window: the server supersedes
    answers = await results_until(client, 9)
    assert len(answers) + sum(a.superseded for a in answers) == 10
    assert sum(a.superseded for a in answers) > 0
    assert client.outstanding == 0


async def test_wait_for_credit_returns_when_an_answer_frees_a_place(easel: Easel) -> None:
    await simulated(easel, cost_ms=20)
    client = await easel.connect(pipeline="sim", drain="latest")
    image = png()
    for seq in range(2):
        await client.send_frame(seq, ContentType.PNG, image)
    assert not client.may_send
    async with asyncio.timeout(10):
        await client.wait_for_credit()
    assert client.may_send


async def test_a_congested_pipeline_grants_latest_sessions_one_frame(easel: Easel) -> None:
    body = {"name": "one", "kind": "simulated", "max_batch": 1, "options": {"cost_ms": 50}}
    status, answer = await easel.post("/api/v1/pipelines", body)
    assert status == 201, answer  # room for 2 frames: 1 running, 1 gathering
    clients = [await easel.connect(pipeline="one", drain="latest") for _ in range(4)]
    image = png()
    for client in clients:
        await client.send_frame(0, ContentType.PNG, image)
    credits = []
    for client in clients:
        (result,) = await results_until(client, 0)
        credits.append(result.credit)
    # while sessions queued for room, answers granted 1; the last, alone, gets 2 again
    assert credits[0] == 1
    assert credits[-1] == 2
