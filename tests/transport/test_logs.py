"""Structured logs: ``easel serve --log-format json`` as an operator runs it, and the
request ids that tie a response to its log lines."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import subprocess
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from engine.logcontext import ContextFilter, JsonFormatter, job_context, log_context
from engine.settings import SettingsError, load_settings
from tests.support import (
    EASEL,
    ROOT,
    Easel,
    ServerFactory,
    eventually,
    free_port,
    png,
    wait_until_serving,
)
from transport.client import Client, Result
from transport.protocol import ContentType

REQUEST_ID = "X-Request-Id"
JSON = ("--log-format", "json")


def _lines(raw: bytes) -> list[dict[str, Any]]:
    """Every line the process wrote, each parsed as JSON (a line that isn't fails)."""
    return [json.loads(line) for line in raw.decode().splitlines() if line.strip()]


async def _traffic(base: str, key: str) -> dict[str, Any]:
    """Requests whose ids the log must show; returns what the test checks against."""
    seen: dict[str, Any] = {}
    async with aiohttp.ClientSession() as http:
        async with http.get(base + "/api/v1/health", headers={REQUEST_ID: "probe-1"}) as r:
            seen["health"] = (r.status, r.headers.get(REQUEST_ID))
        async with http.get(base + "/api/v1/sessions") as r:  # no key: 401
            seen["refused"] = (r.status, r.headers.get(REQUEST_ID))
        async with http.get(base + "/api/v1/health", headers={REQUEST_ID: "no spaces!"}) as r:
            seen["replaced"] = r.headers.get(REQUEST_ID)
        headers = {"Authorization": f"Bearer {key}", REQUEST_ID: "create-1"}
        async with http.post(
            base + "/api/v1/sessions", json={"pipeline": "passthrough"}, headers=headers
        ) as r:
            assert r.status == 201
            created = await r.json()
    async with aiohttp.ClientSession(headers={REQUEST_ID: "socket-1"}) as http:
        client = await Client.connect(
            base, token=created["token"], session=created["id"], http=http
        )
        await client.send_frame(1, ContentType.PNG, png())
        async for answer in client.results():
            assert isinstance(answer, Result)
            break
        await client.close()
    seen["session"] = created["id"]
    return seen


def test_serve_with_json_logs_writes_one_object_per_line_with_request_and_session_ids(
    tmp_path: Path,
) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    clean = {k: v for k, v in os.environ.items() if not k.startswith("EASEL_")}
    proc = subprocess.Popen(
        [*EASEL, "serve", "--port", str(port), "--data-dir", str(tmp_path / "d"), *JSON],
        env={**clean, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=tmp_path,
    )
    try:
        wait_until_serving(base + "/api/v1/health", proc)
        key = (tmp_path / "d" / "admin.key").read_text().strip()
        seen = asyncio.run(_traffic(base, key))
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
        assert proc.returncode == 0, err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    lines = _lines(out) + _lines(err)  # a line that is not JSON fails here

    assert seen["health"] == (200, "probe-1")
    status, generated = seen["refused"]
    assert status == 401
    assert generated is not None
    assert len(generated) == 32  # a fresh uuid4, in hex
    assert seen["replaced"] not in (None, "no spaces!")
    for line in lines:
        assert {"time", "level", "logger", "message"} <= line.keys(), line
        assert line["time"].endswith("+00:00")
    access = {line["request_id"]: line for line in lines if line["logger"] == "aiohttp.access"}
    assert {k: access["probe-1"][k] for k in ("method", "path", "status", "level")} == {
        "method": "GET",
        "path": "/api/v1/health",
        "status": 200,
        "level": "INFO",
    }
    assert access[generated]["status"] == 401
    assert access["create-1"]["status"] == 201
    assert access["socket-1"]["status"] == 101
    attached = [line for line in lines if "connection attached" in line["message"]]
    assert [(line["session_id"], line["request_id"]) for line in attached] == [
        (seen["session"], "socket-1")
    ]
    listening = [line for line in lines if "Running on" in line["message"]]
    assert len(listening) == 1


async def test_every_response_carries_its_request_id(easel: Easel) -> None:
    async with easel.http.get(easel.url + "/api/v1/nope", headers={REQUEST_ID: "a.b:c-1"}) as r:
        assert (r.status, r.headers[REQUEST_ID]) == (404, "a.b:c-1")
    too_long = "x" * 129
    async with easel.http.get(easel.url + "/api/v1/health", headers={REQUEST_ID: too_long}) as r:
        assert r.headers[REQUEST_ID] != too_long
    async with (
        aiohttp.ClientSession() as anonymous,
        anonymous.get(easel.url + "/api/v1/pipelines") as r,
    ):
        assert r.status == 401
        assert len(r.headers[REQUEST_ID]) == 32


def test_a_json_line_has_the_bound_ids_and_the_exception(
    caplog: pytest.LogCaptureFixture,
) -> None:
    logger = logging.getLogger("tests.logs")
    with caplog.at_level(logging.INFO, logger="tests.logs"):
        caplog.handler.addFilter(ContextFilter())
        with log_context(request_id="r1", session_id="s1"), job_context("j1"):
            try:
                raise ValueError("boom")
            except ValueError:
                logger.exception("it failed for %s", "j1")
        logger.info("outside", extra={"job_id": "j2"})
    first, second = (json.loads(JsonFormatter().format(r)) for r in caplog.records)
    assert first.pop("time")
    exception = first.pop("exception")
    assert exception.startswith("Traceback")
    assert "ValueError: boom" in exception
    assert first == {
        "level": "ERROR",
        "logger": "tests.logs",
        "message": "it failed for j1",
        "request_id": "r1",
        "session_id": "s1",
        "job_id": "j1",
    }
    second.pop("time")
    assert second == {"level": "INFO", "logger": "tests.logs", "message": "outside", "job_id": "j2"}


async def test_a_session_actor_logs_its_session_not_the_request_that_made_it(
    easel_factory: ServerFactory, caplog: pytest.LogCaptureFixture
) -> None:
    easel = await easel_factory(session_idle_timeout=0.05)
    caplog.handler.addFilter(ContextFilter())
    with caplog.at_level(logging.INFO, logger="actors.sessions"):
        async with easel.http.post(
            easel.url + "/api/v1/sessions", json={}, headers={REQUEST_ID: "create-2"}
        ) as r:
            session_id = (await r.json())["id"]
        await eventually(lambda: any("expired" in r.getMessage() for r in caplog.records))
    (expired,) = (r for r in caplog.records if "expired" in r.getMessage())
    fields = {name: getattr(expired, name) for name in ("request_id", "session_id", "job_id")}
    assert fields == {"request_id": None, "session_id": session_id, "job_id": None}


def test_the_log_format_comes_from_the_flag_or_the_environment() -> None:
    assert load_settings({}, {}).log_format == "text"
    assert load_settings({}, {"EASEL_LOG_FORMAT": "json"}).log_format == "json"
    assert load_settings({"log_format": "text"}, {"EASEL_LOG_FORMAT": "json"}).log_format == "text"
    with pytest.raises(SettingsError, match="EASEL_LOG_FORMAT"):
        load_settings({}, {"EASEL_LOG_FORMAT": "xml"})


def test_extra_fields_cannot_overwrite_a_line_nor_break_it() -> None:
    record = logging.makeLogRecord(
        {"msg": "odd", "levelname": "INFO", "name": "t", "level": "FAKE", "big": 2**70}
    )
    line = json.loads(JsonFormatter().format(record))  # an int past 64 bits: as text
    assert (line["level"], line["logger"], line["message"]) == ("INFO", "t", "odd")
    assert line["big"] == str(2**70)
    keyed = logging.makeLogRecord({"msg": "m", "by_id": {1: "one"}})
    assert json.loads(JsonFormatter().format(keyed))["by_id"] == {"1": "one"}
