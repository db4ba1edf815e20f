"""``easel serve`` as a user runs it: a real process, real sockets, real signals."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from engine.settings import SettingsError, load_settings
from tests.support import EASEL, ROOT, free_port


def get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def wait_until_serving(url: str, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"easel serve exited early: {proc.stderr.read()!r}")  # type: ignore[union-attr]
        try:
            get(url)
            return
        except OSError:
            time.sleep(0.1)
    raise AssertionError("easel serve did not start listening")


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
