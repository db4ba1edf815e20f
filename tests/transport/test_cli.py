"""``easel serve`` as a user runs it: a real process, real sockets, real signals."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import aiohttp
import pytest

from engine.metrics import new_registry
from engine.settings import Settings, SettingsError, load_settings
from engine.storage import SessionRecord, SessionStatus, open_store
from tests.support import EASEL, ROOT, collect, free_port, get, png, wait_until_serving
from transport.client import Client, ConnectionClosed, Result
from transport.protocol import ContentType


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_serve_answers_health_and_metrics_and_stops_cleanly(
    tmp_path: Path, sig: signal.Signals
) -> None:
    port = free_port()
    env = {**os.environ, "EASEL_PORT": "1", "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [*EASEL, "serve", "--port", str(port), "--data-dir", str(tmp_path / "d")],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=tmp_path,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        wait_until_serving(base + "/api/v1/health", proc)
        status, body = get(base + "/api/v1/health")
        assert (status, json.loads(body)) == (200, {"status": "ok", "detail": "ok"})
        assert get(base + "/metrics")[0] == 401  # scraping needs a metrics (or admin) key
        key = (tmp_path / "d" / "admin.key").read_text().strip()
        status, body = get(base + f"/metrics?token={key}")
        assert status == 200
        assert b'easel_actors{kind="supervisor"' not in body  # supervisors are not actors
        assert b"easel_event_loop_lag_seconds_bucket" in body
        proc.send_signal(sig)
        assert proc.wait(timeout=30) == 0
        assert (tmp_path / "d").is_dir()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def serve(data_dir: Path, cwd: Path) -> tuple[subprocess.Popen[bytes], str]:
    """``easel serve`` on a free port; returns the process and its base URL."""
    port = free_port()
    proc = subprocess.Popen(
        [*EASEL, "serve", "--port", str(port), "--data-dir", str(data_dir)],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=cwd,
    )
    return proc, f"http://127.0.0.1:{port}"


def test_a_second_process_on_a_data_dir_in_use_is_refused(tmp_path: Path) -> None:
    data_dir = tmp_path / "d"
    first, first_url = serve(data_dir, tmp_path)
    procs = [first]
    try:
        wait_until_serving(first_url + "/api/v1/health", first)
        second, second_url = serve(data_dir, tmp_path)
        procs.append(second)
        deadline = time.monotonic() + 60  # a hang guard
        while second.poll() is None:
            with contextlib.suppress(OSError):
                get(second_url + "/api/v1/health")
                raise AssertionError("a second engine serves on a data dir in use")
            assert time.monotonic() < deadline, "the second engine neither served nor exited"
            time.sleep(0.1)
        assert second.stderr is not None
        err = second.stderr.read().decode()
        assert second.returncode == 1
        assert f"data dir {data_dir} is in use by another Easel process (pid {first.pid})" in err
        assert "Traceback" not in err
        assert get(first_url + "/api/v1/health")[0] == 200  # the first one is unharmed
        first.send_signal(signal.SIGTERM)
        assert first.wait(timeout=30) == 0
        third, third_url = serve(data_dir, tmp_path)  # free again once the first stopped
        procs.append(third)
        wait_until_serving(third_url + "/api/v1/health", third)
        third.send_signal(signal.SIGTERM)
        assert third.wait(timeout=30) == 0
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


async def test_sigterm_answers_the_frame_in_flight_then_ends_each_session_with_1001(
    tmp_path: Path,
) -> None:
    proc, url = serve(tmp_path / "d", tmp_path)
    try:
        await asyncio.to_thread(wait_until_serving, url + "/api/v1/health", proc)
        key = (tmp_path / "d" / "admin.key").read_text().strip()
        async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {key}"}) as http:
            slow = {"name": "slow", "kind": "simulated", "options": {"cost_ms": 1000}}
            async with http.post(url + "/api/v1/pipelines", json=slow) as response:
                assert response.status == 201, await response.text()
            body = {"pipeline": "slow", "drain": "all"}
            async with http.post(url + "/api/v1/sessions", json=body) as response:
                created = await response.json()
            client = await Client.connect(
                url, token=created["token"], session=created["id"], http=http
            )
            await client.send_frame(1, ContentType.PNG, png())
            assert [a.seq for a in await collect(client, 1) if isinstance(a, Result)] == [1]
            await client.send_frame(2, ContentType.PNG, png())
            await asyncio.sleep(0.3)  # room for frame 2 to reach the pipeline (1 s there)
            stopping = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            answers = await collect(client, 1)
            assert [a.seq for a in answers if isinstance(a, Result)] == [2]
            event = await client.next_event()
            assert (event.name, event.data) == ("session.closed", {"reason": "server going away"})
            with pytest.raises(ConnectionClosed) as closed:
                await client.next_event()
            assert closed.value.code == 1001
        assert await asyncio.to_thread(proc.wait, 30) == 0
        assert time.monotonic() - stopping < 30
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_after_a_kill_the_next_start_takes_the_data_dir_and_closes_what_was_left_open(
    tmp_path: Path,
) -> None:
    data_dir = tmp_path / "d"
    first, url = serve(data_dir, tmp_path)
    procs = [first]
    try:
        wait_until_serving(url + "/api/v1/health", first)
        admin_key = (data_dir / "admin.key").read_text().strip()  # made at first start
        request = urllib.request.Request(
            url + "/api/v1/sessions",
            data=json.dumps({"pipeline": "passthrough"}).encode(),
            headers={"Content-Type": "application/json", "Authorization": f"Bearer {admin_key}"},
        )
        with urllib.request.urlopen(request, timeout=5) as response:
            session_id = json.loads(response.read())["id"]
        first.kill()  # SIGKILL: no shutdown at all
        first.wait()
        second, url = serve(data_dir, tmp_path)
        procs.append(second)
        wait_until_serving(url + "/api/v1/health", second)
        second.send_signal(signal.SIGTERM)
        assert second.wait(timeout=30) == 0
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    stored = asyncio.run(_stored_session(Settings(data_dir=data_dir), session_id))
    assert (stored.status, stored.end_reason) == (SessionStatus.CLOSED, "engine_restart")


async def _stored_session(settings: Settings, session_id: str) -> SessionRecord:
    store = await open_store(settings, new_registry())
    try:
        return await store.sessions.get(session_id)
    finally:
        await store.close()


def test_bad_settings_are_refused_with_a_clear_message(tmp_path: Path) -> None:
    env = {**os.environ, "EASEL_LOG_LEVEL": "LOUD", "PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        [*EASEL, "serve", "--port", "99999"],
        env=env,
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "port" in result.stderr
    assert "less than or equal to 65535" in result.stderr
    assert "log_level" in result.stderr
    assert "EASEL_LOG_LEVEL" in result.stderr


def test_flags_beat_environment_which_beats_defaults() -> None:
    settings = load_settings({"port": 9001}, {"EASEL_PORT": "9000", "EASEL_HOST": "0.0.0.0"})
    assert (settings.port, settings.host) == (9001, "0.0.0.0")
    defaults = load_settings({}, {})
    assert (defaults.host, defaults.port, str(defaults.data_dir)) == ("127.0.0.1", 8080, "data")
    with pytest.raises(SettingsError, match="port"):
        load_settings({}, {"EASEL_PORT": "eighty"})


def test_db_upgrade_and_current(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from engine.storage import migrations
    from transport.cli import main

    assert main(["db", "current", "--data-dir", str(tmp_path / "none")]) == 1
    assert "no database in" in capsys.readouterr().err
    assert main(["db", "upgrade", "--data-dir", str(tmp_path / "d"), "--revision", "0001"]) == 0
    assert capsys.readouterr().out.strip() == (
        f"schema revision: 0001 (newest: {migrations.head()})"
    )
    assert main(["db", "upgrade", "--data-dir", str(tmp_path / "d")]) == 0
    assert capsys.readouterr().out.strip() == (
        f"schema revision: {migrations.head()} (newest: {migrations.head()})"
    )


WITHOUT_UVLOOP = (
    "import runpy, sys; sys.modules['uvloop'] = None; sys.argv[0] = 'easel'; "
    "runpy.run_module('transport.cli', run_name='__main__')"
)
"""Runs the CLI (its arguments after ``-c``) where ``import uvloop`` fails, as on Windows."""


def easel_without_uvloop(
    tmp_path: Path, *args: str, **env: str
) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("EASEL_")}
    return subprocess.run(
        [sys.executable, "-c", WITHOUT_UVLOOP, *args],
        env={**clean, "PYTHONPATH": str(ROOT), **env},
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=60,
        check=False,
    )


def test_the_cli_works_without_uvloop(tmp_path: Path) -> None:
    helped = easel_without_uvloop(tmp_path, "--help")
    assert helped.returncode == 0, helped.stderr
    assert "serve" in helped.stdout
    upgraded = easel_without_uvloop(tmp_path, "db", "upgrade", "--data-dir", str(tmp_path / "d"))
    assert upgraded.returncode == 0, upgraded.stderr
    assert upgraded.stdout.startswith("schema revision: ")


def test_serve_without_uvloop_falls_back_to_asyncio(tmp_path: Path) -> None:
    port = free_port()
    clean = {k: v for k, v in os.environ.items() if not k.startswith("EASEL_")}
    proc = subprocess.Popen(
        [sys.executable, "-c", WITHOUT_UVLOOP, "serve", "--port", str(port)],
        env={**clean, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=tmp_path,
    )
    try:
        wait_until_serving(f"http://127.0.0.1:{port}/api/v1/health", proc)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
        assert proc.stderr is not None
        assert b"uvloop is not installed: using the asyncio event loop" in proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_asking_for_uvloop_where_it_is_missing_is_refused_clearly(tmp_path: Path) -> None:
    result = easel_without_uvloop(tmp_path, "serve", EASEL_EVENT_LOOP="uvloop")
    assert result.returncode == 2
    assert result.stderr == (
        "easel: EASEL_EVENT_LOOP=uvloop, but uvloop is not installed "
        "(install it, or set EASEL_EVENT_LOOP=asyncio)\n"
    )


def test_a_port_in_use_is_refused_with_a_clear_message(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {**os.environ, "PYTHONPATH": str(ROOT), "EASEL_INSECURE": "true"}
        result = subprocess.run(
            [*EASEL, "serve", "--port", str(port), "--data-dir", str(tmp_path / "data")],
            env=env,
            capture_output=True,
            text=True,
            cwd=tmp_path,
            timeout=60,
            check=False,
        )
    assert result.returncode == 1, result.stderr
    assert f"easel: cannot listen on 127.0.0.1:{port}" in result.stderr
    assert "Traceback" not in result.stderr
