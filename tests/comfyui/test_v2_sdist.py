"""The integration test that ships in the comfy-sdk 0.5.0 sdist
(``tests/integration/test_gateway_e2e.py``), run unchanged against a real Easel with one
fake ComfyUI behind it. The sdist is downloaded once with pip and kept in a cache
directory of the virtual environment; a failed download fails the test."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from ops.fakecomfy import FakeComfy
from tests.comfyui.conftest import EaselFactory, ready

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

VERSION = "0.5.0"
MEMBER = f"comfy_sdk-{VERSION}/tests/integration/test_gateway_e2e.py"
CACHE = Path(sys.prefix) / "easel-test-cache"
RUN_TIMEOUT = 240.0


def sdist() -> Path:
    """The comfy-sdk sdist, from the cache or downloaded into it."""
    found = sorted(CACHE.glob(f"comfy_sdk-{VERSION}.tar.gz"))
    if found:
        return found[0]
    CACHE.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--no-binary",
            ":all:",
            f"comfy-sdk=={VERSION}",
            "-d",
            str(CACHE),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    found = sorted(CACHE.glob(f"comfy_sdk-{VERSION}.tar.gz"))
    assert done.returncode == 0, done.stdout + done.stderr
    assert found, f"pip left no sdist in {CACHE}: {done.stdout}{done.stderr}"
    return found[0]


def extract(archive: Path, into: Path) -> Path:
    with tarfile.open(archive) as tar:
        member = tar.getmember(MEMBER)
        handle = tar.extractfile(member)
        assert handle is not None
        target = into / "test_gateway_e2e.py"
        target.write_bytes(handle.read())
    return target


async def test_the_sdks_own_integration_test_passes_against_easel(
    easel_factory: EaselFactory, fake: FakeComfy, tmp_path: Path
) -> None:
    archive = await asyncio.to_thread(sdist)
    test_file = extract(archive, tmp_path)
    easel = await easel_factory()
    await easel.register(fake, "one")
    await ready(easel, "one")
    made = await easel.ok("POST", "/api/v1/keys", {"name": "sdk-e2e", "role": "client"}, 201)
    env = {
        **os.environ,
        "COMFY_BASE_URL": easel.url,
        "COMFY_API_KEY": made["token"],
    }
    env.pop("COMFY_WORKFLOW_FILE", None)
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "pytest",
        "-q",
        "-rA",
        "-p",
        "no:cacheprovider",
        str(test_file),
        "-o",
        "addopts=",
        cwd=tmp_path,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        stdout, _ = await asyncio.wait_for(process.communicate(), RUN_TIMEOUT)
    except TimeoutError:
        process.kill()
        stdout, _ = await process.communicate()
        pytest.fail(f"the SDK's tests ran over {RUN_TIMEOUT} s:\n{stdout.decode()}")
    output = stdout.decode()
    print(output)
    assert process.returncode == 0, output
    assert "3 passed" in output, output
    assert "1 xpassed" in output, output  # test_image_edit_by_asset_handle works on Easel
