"""The canvas page: how it is served, and a person's session with it in headless Chromium.

The browser test draws with the mouse (desktop) and by touch (phone), checks the
pipeline's answer on the output canvas, changes params and pipeline, cuts the
connection under the page and watches it resume. It saves screenshots to
``.artifacts/canvas-desktop.png`` and ``.artifacts/canvas-phone.png``.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import re
import tomllib
from collections.abc import AsyncIterator, Awaitable, Callable
from fnmatch import fnmatch
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from engine.storage import NewApiKey
from tests.support import Easel, ServerFactory
from transport.keys import STORE
from transport.web import page as web_page

ROOT = Path(__file__).resolve().parents[2]
STATIC = ROOT / "transport" / "web" / "static"
ARTIFACTS = ROOT / ".artifacts"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
WAIT_MS = 45_000  # generous: a 2-core machine runs the engine and the browser at once


# --- how the files are served ----------------------------------------------------------


async def test_the_page_is_served_with_a_strict_policy(easel: Easel) -> None:
    async with easel.http.get(easel.url + "/") as response:
        assert response.status == 200
        body = await response.text()
        headers = response.headers
    assert headers["Content-Type"].startswith("text/html")
    csp = headers["Content-Security-Policy"]
    assert "default-src 'none'" in csp
    assert "script-src 'self'" in csp
    assert "unsafe-inline" not in csp
    assert "unsafe-eval" not in csp
    assert "frame-ancestors 'none'" in csp
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Cache-Control"] == "no-cache"
    assert headers["ETag"]
    assert f"/static/{web_page.STATIC_VERSION}/app.js" in body
    assert "{{static}}" not in body


async def test_assets_are_immutable_under_their_version_and_revalidated_otherwise(
    easel: Easel,
) -> None:
    versioned = f"{easel.url}/static/{web_page.STATIC_VERSION}/easel-client.mjs"
    async with easel.http.get(versioned) as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/javascript")
        assert response.headers["Cache-Control"] == web_page.IMMUTABLE
        assert "max-age=31536000" in response.headers["Cache-Control"]
        assert response.headers["Content-Security-Policy"] == web_page.CSP
        client = await response.read()
    assert client == (STATIC / "easel-client.mjs").read_bytes()
    async with easel.http.get(easel.url + "/static/easel-client.mjs") as response:
        assert response.status == 200
        assert response.headers["Cache-Control"] == "no-cache"
        assert await response.read() == client
    async with easel.http.get(easel.url + "/static/vendor/msgpack.mjs") as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/javascript")


async def test_an_unchanged_file_is_answered_304_by_its_etag(easel: Easel) -> None:
    url = easel.url + "/static/style.css"
    async with easel.http.get(url) as response:
        etag = response.headers["ETag"]
        assert response.headers["Content-Type"].startswith("text/css")
    async with easel.http.get(url, headers={"If-None-Match": etag}) as response:
        assert response.status == 304
        assert await response.read() == b""
    async with easel.http.get(url, headers={"If-None-Match": '"other"'}) as response:
        assert response.status == 200


@pytest.mark.parametrize(
    "path",
    [
        "/static/nope.js",
        "/static/../page.py",
        "/static/%2e%2e/page.py",
        "/static/vendor/../../page.py",
        "/static/index.html",
        "/static/0000000000000000/nope.js",
    ],
)
async def test_only_the_static_files_are_served(easel: Easel, path: str) -> None:
    async with easel.http.get(easel.url + path) as response:
        assert response.status == 404, path


async def test_the_page_needs_no_api_key_but_the_api_does(easel: Easel) -> None:
    async with aiohttp.ClientSession() as anonymous:
        async with anonymous.get(easel.url + "/") as response:
            assert response.status == 200
        async with anonymous.get(easel.url + "/static/app.js") as response:
            assert response.status == 200
        async with anonymous.get(easel.url + "/api/v1/pipelines") as response:
            assert response.status == 401


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.script_text = ""

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data: str) -> None:
        if self.tags and self.tags[-1][0] == "script":
            self.script_text += data.strip()


def test_the_page_has_no_inline_script_or_style() -> None:
    parser = _Tags()
    parser.feed((STATIC / "index.html").read_text())
    scripts = [attrs for tag, attrs in parser.tags if tag == "script"]
    assert scripts, "the page loads its module"
    assert all(attrs.get("src") for attrs in scripts)
    assert parser.script_text == ""
    assert not [tag for tag, _ in parser.tags if tag == "style"]
    for tag, attrs in parser.tags:
        assert "style" not in attrs, tag
        assert not [name for name in attrs if name.startswith("on")], tag
        for name in ("src", "href"):
            link = attrs.get(name)
            if link is not None:
                assert not re.match(r"^(https?:)?//", link), f"{tag} loads {link}"


_IMPORT = re.compile(r"""(?:^|\n)\s*(?:import|export)\b[^'"]*?from\s*["']([^"']+)["']""")


def test_every_module_import_is_a_file_the_page_serves() -> None:
    referenced = set()
    for module in [*STATIC.glob("*.js"), *STATIC.glob("*.mjs")]:
        for target in _IMPORT.findall(module.read_text()):
            assert target.startswith("./"), f"{module.name} imports {target}"
            resolved = (module.parent / target).resolve()
            assert resolved.is_file(), f"{module.name} imports missing {target}"
            referenced.add(resolved.relative_to(STATIC).as_posix())
    assert {"easel-client.mjs", "vendor/msgpack.mjs", "drawing.js"} <= referenced
    html = (STATIC / "index.html").read_text()
    for name in re.findall(r"\{\{static\}\}/([\w./-]+)", html):
        assert (STATIC / name).is_file(), name


def test_the_vendored_library_carries_its_licence() -> None:
    licence = (STATIC / "vendor" / "msgpack.LICENSE.txt").read_text()
    assert "ISC" in (STATIC / "vendor" / "msgpack.mjs").read_text()[:300]
    assert "Permission to use, copy, modify" in licence
    assert "MessagePack" in licence


def test_every_static_file_ships_with_the_package() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    patterns = config["tool"]["setuptools"]["package-data"]["transport.web"]
    for path in STATIC.rglob("*"):
        if path.is_file():
            relative = path.relative_to(STATIC.parent).as_posix()
            assert any(
                fnmatch(relative, p) and relative.count("/") == p.count("/") for p in patterns
            ), relative


def test_assets_are_read_with_a_version_that_follows_their_content(tmp_path: Path) -> None:
    (tmp_path / "index.html").write_text('<script src="{{static}}/a.js"></script>')
    (tmp_path / "a.js").write_text("1")
    version, page, assets = web_page.load_assets(tmp_path)
    assert page.body == f'<script src="/static/{version}/a.js"></script>'.encode()
    assert set(assets) == {"a.js"}
    (tmp_path / "a.js").write_text("2")
    assert web_page.load_assets(tmp_path)[0] != version


# --- the page in a real browser ------------------------------------------------------


def _chromium_or_skip() -> None:
    if not os.path.exists(CHROMIUM):
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed (scripts/check installs it)")
        pytest.skip("chromium is not installed (scripts/check installs it)")


class DroppingProxy:
    """A TCP proxy in front of the engine whose connections can be cut all at once,
    as a flaky network would: neither side gets a goodbye."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = 0
        self.connections = 0
        self._transports: set[asyncio.WriteTransport] = set()
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        self.drop()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    def drop(self) -> None:
        for transport in list(self._transports):
            transport.abort()
        self._transports.clear()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.transport.abort()
            return
        pair = (writer.transport, up_writer.transport)
        self._transports.update(pair)
        await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
        self._transports.difference_update(pair)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        with contextlib.suppress(Exception):
            writer.close()


# Luminance statistics of a canvas: the mean, and the share of dark pixels.
_PIXELS = """(selector) => {
  const canvas = document.querySelector(selector);
  const data = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
  let dark = 0, sum = 0;
  for (let i = 0; i < data.length; i += 4) {
    const l = 0.299 * data[i] + 0.587 * data[i + 1] + 0.114 * data[i + 2];
    sum += l;
    if (l < 128) dark += 1;
  }
  const n = data.length / 4;
  return { mean: sum / n, dark: dark / n };
}"""

_OUTPUT_IS = """([test, after]) => {
  const canvas = document.querySelector("#output");
  if (Number(canvas.dataset.seq) <= after) return false;
  const data = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
  let dark = 0, sum = 0;
  for (let i = 0; i < data.length; i += 4) {
    const l = 0.299 * data[i] + 0.587 * data[i + 1] + 0.114 * data[i + 2];
    sum += l;
    if (l < 128) dark += 1;
  }
  const n = data.length / 4, mean = sum / n, share = dark / n;
  if (test === "inked") return share > 0.01 && mean > 128;
  if (test === "inverted") return mean < 128 && share > 0.5;
  return false;
}"""


async def _eventually(check: Callable[[], Awaitable[bool]], what: str) -> None:
    """Wait (bounded, polling) until ``check`` holds."""
    for _ in range(int(WAIT_MS / 100)):
        if await check():
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"timed out waiting until {what}")


@contextlib.asynccontextmanager
async def _browser() -> AsyncIterator[Any]:
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True
        )
        try:
            yield browser
        finally:
            await browser.close()


async def _stroke(page: Any, points: list[tuple[float, float]]) -> None:
    """One mouse stroke through ``points`` (fractions of the drawing canvas)."""
    box = await page.locator("#draw").bounding_box()
    assert box is not None

    def at(p: tuple[float, float]) -> tuple[float, float]:
        return box["x"] + p[0] * box["width"], box["y"] + p[1] * box["height"]

    await page.mouse.move(*at(points[0]))
    await page.mouse.down()
    for point in points[1:]:
        await page.mouse.move(*at(point), steps=8)
    await page.mouse.up()


async def _touch_stroke(page: Any, cdp: Any, points: list[tuple[float, float]]) -> None:
    """One finger stroke through ``points``, as touch events (pointerType "touch")."""
    box = await page.locator("#draw").bounding_box()
    assert box is not None
    track = [
        {"x": box["x"] + x * box["width"], "y": box["y"] + y * box["height"]} for x, y in points
    ]
    await cdp.send("Input.dispatchTouchEvent", {"type": "touchStart", "touchPoints": [track[0]]})
    for a, b in itertools.pairwise(track):
        for step in range(1, 9):
            point = {k: a[k] + (b[k] - a[k]) * step / 8 for k in ("x", "y")}
            await cdp.send(
                "Input.dispatchTouchEvent", {"type": "touchMove", "touchPoints": [point]}
            )
    await cdp.send("Input.dispatchTouchEvent", {"type": "touchEnd", "touchPoints": []})


async def _seq(page: Any) -> int:
    return int(await page.get_attribute("#output", "data-seq") or -1)


async def _wait_output(page: Any, test: str, after: int) -> None:
    await page.wait_for_function(_OUTPUT_IS, arg=[test, after], timeout=WAIT_MS)


def _watch(page: Any) -> list[str]:
    """Collect what a person would see as breakage: uncaught errors, CSP refusals."""
    problems: list[str] = []
    page.on("pageerror", lambda error: problems.append(f"pageerror: {error}"))

    def console(message: Any) -> None:
        text = message.text
        if message.type == "error":
            problems.append(f"console: {text}")
        if "Content Security Policy" in text or "Refused to" in text:
            problems.append(f"csp: {text}")

    page.on("console", console)
    return problems


async def test_drawing_streams_through_the_pipeline_in_chromium(easel: Easel) -> None:
    _chromium_or_skip()
    proxy = DroppingProxy(easel.server.port or 0)
    await proxy.start()
    ARTIFACTS.mkdir(exist_ok=True)
    try:
        async with _browser() as browser:
            await _desktop(browser, easel, proxy)
            await _phone(browser, proxy, easel.admin_key or "")
    finally:
        await proxy.close()


async def _session(easel: Easel, page: Any) -> dict[str, Any]:
    session_id = await page.get_attribute("body", "data-session")
    status, body = await easel.request("GET", f"/api/v1/sessions/{session_id}")
    assert status == 200, body
    result: dict[str, Any] = body
    return result


async def _desktop(browser: Any, easel: Easel, proxy: DroppingProxy) -> None:
    context = await browser.new_context(viewport={"width": 1280, "height": 800})
    page = await context.new_page()
    page.set_default_timeout(WAIT_MS)
    problems = _watch(page)
    await page.goto(f"http://127.0.0.1:{proxy.port}/#key={easel.admin_key}")
    await page.wait_for_selector("#status[data-state=open]")
    await _picker_and_form(page)
    await _draw(page)
    await _readout_while_drawing(page)
    await _params_change(page, easel)
    await _pipeline_change(page, easel)
    await _drain_change(page, easel)
    await _refused_param(page)
    await _drop_and_resume(page, easel, proxy)

    # the picture a person sees: strokes, the pipeline's answer, live numbers
    await page.select_option("#param-effect", "sketch")
    before = await _seq(page)
    await _stroke(page, [(0.25, 0.75), (0.5, 0.6), (0.75, 0.75)])
    await _wait_output(page, "inked", before)
    await page.wait_for_selector("body[data-synced=true]")
    await page.screenshot(path=str(ARTIFACTS / "canvas-desktop.png"))
    assert problems == []
    await context.close()


async def _picker_and_form(page: Any) -> None:
    """The picker lists the engine's pipelines; the form follows imagefx's schema."""
    names = await page.eval_on_selector_all("#pipeline option", "os => os.map(o => o.value)")
    assert {"imagefx", "passthrough"} <= set(names)
    assert await page.input_value("#pipeline") == "imagefx"
    effects = await page.eval_on_selector_all("#param-effect option", "os => os.map(o => o.value)")
    assert {"none", "invert", "sketch"} <= set(effects)
    assert await page.get_attribute("#param-strength", "type") == "range"
    assert await page.get_attribute("#param-bits", "step") == "1"


async def _draw(page: Any) -> None:
    """Strokes stream to the pipeline: an answer arrives that differs from a blank one."""
    # the blank canvas streams as soon as the session opens: a white answer
    await page.wait_for_function("() => Number(document.querySelector('#output').dataset.seq) >= 0")
    assert (await page.evaluate(_PIXELS, "#output"))["dark"] < 0.001
    before = await _seq(page)
    await _stroke(page, [(0.15, 0.2), (0.85, 0.25), (0.2, 0.5), (0.8, 0.55)])
    await _stroke(page, [(0.5, 0.1), (0.5, 0.9)])
    drawn = await page.evaluate(_PIXELS, "#draw")
    assert drawn["dark"] > 0.01
    await _wait_output(page, "inked", before)

    # undo and clear act on the drawing
    await page.click("#undo")
    assert (await page.evaluate(_PIXELS, "#draw"))["dark"] < drawn["dark"]
    await page.click("#clear")
    assert (await page.evaluate(_PIXELS, "#draw"))["dark"] == 0
    await page.click("#undo")
    assert (await page.evaluate(_PIXELS, "#draw"))["dark"] > 0


async def _readout_while_drawing(page: Any) -> None:
    """While the user keeps drawing, the readout shows a frame rate and the server's times."""
    stop = asyncio.Event()

    async def keep_drawing() -> None:
        x = 0.1
        while not stop.is_set():
            await _stroke(page, [(x, 0.7), (x + 0.1, 0.85)])
            x = 0.1 if x > 0.8 else x + 0.05

    drawing = asyncio.create_task(keep_drawing())
    try:
        await page.wait_for_function(
            "() => parseFloat(document.querySelector('#fps').textContent) > 0"
        )
    finally:
        stop.set()
        await drawing
    for cell in ("#rtt", "#t-queue", "#t-pipeline", "#t-total"):
        assert re.fullmatch(r"\d+(\.\d)?", (await page.text_content(cell) or "").strip()), cell
    answered, sent = (await page.text_content("#frames") or "").split(" / ")
    assert 0 < int(answered) <= int(sent)
    assert await page.text_content("#errors") == "0"


async def _params_change(page: Any, easel: Easel) -> None:
    """A params change takes effect: imagefx inverts."""
    before = await _seq(page)
    await page.select_option("#param-effect", "invert")
    await _wait_output(page, "inverted", before)
    assert (await _session(easel, page))["params"]["effect"] == "invert"


async def _pipeline_change(page: Any, easel: Easel) -> None:
    """A pipeline change takes effect: a new passthrough session, the old one deleted."""
    old = await _session(easel, page)
    await page.select_option("#pipeline", "passthrough")
    await page.wait_for_function(
        "(old) => document.body.dataset.session && document.body.dataset.session !== old",
        arg=old["id"],
    )
    await _wait_output(page, "inked", -1)
    assert (await _session(easel, page))["pipeline"] == "passthrough"
    assert await page.text_content("#params .empty") == "This pipeline takes no parameters."

    async def old_gone() -> bool:
        return (await easel.request("GET", f"/api/v1/sessions/{old['id']}"))[0] == 404

    await _eventually(old_gone, "the replaced session is deleted")

    # back to imagefx: the page remembered its params
    await page.select_option("#pipeline", "imagefx")
    await _wait_output(page, "inverted", -1)
    session = await _session(easel, page)
    assert (session["pipeline"], session["params"]) == ("imagefx", {"effect": "invert"})
    assert await page.input_value("#param-effect") == "invert"


async def _drain_change(page: Any, easel: Easel) -> None:
    """The drain choice opens a session that answers every frame."""
    old = await page.get_attribute("body", "data-session")
    await page.check("input[name=drain][value=all]")
    await page.wait_for_function(
        "(old) => document.body.dataset.session && document.body.dataset.session !== old",
        arg=old,
    )
    await _wait_output(page, "inverted", -1)
    session = await _session(easel, page)
    assert (session["drain"], session["params"]) == ("all", {"effect": "invert"})


async def _refused_param(page: Any) -> None:
    """A value the pipeline refuses is shown as a readable message, not console noise."""
    await page.evaluate(
        """() => {
          const input = document.querySelector('#param-radius');
          input.max = '500'; input.value = '400';
          input.dispatchEvent(new Event('change'));
        }"""
    )
    message = page.locator(".message[data-key='error:bad_params']")
    await message.wait_for()
    text = await message.text_content() or ""
    assert "refused a setting" in text
    assert "radius" in text
    assert await page.input_value("#param-radius") == "2"  # back to what the session has
    # dismissed (it would also go by itself after a while)
    await page.evaluate(
        "() => document.querySelector(\".message[data-key='error:bad_params'] button\")?.click()"
    )
    await message.wait_for(state="detached")


async def _drop_and_resume(page: Any, easel: Easel, proxy: DroppingProxy) -> None:
    """The connection drops under the page: it resumes the same session by itself."""
    await page.evaluate("() => { window.stillTheSamePage = true; }")
    session_id = await page.get_attribute("body", "data-session")
    connections = proxy.connections
    proxy.drop()
    await page.wait_for_function(
        """() => { const s = document.querySelector('#status');
                   return Number(s.dataset.resumes) >= 1 && s.dataset.state === 'open'; }"""
    )
    assert proxy.connections > connections
    assert await page.evaluate("() => window.stillTheSamePage === true")
    assert await page.get_attribute("body", "data-session") == session_id
    before = await _seq(page)
    await _stroke(page, [(0.3, 0.3), (0.7, 0.4)])
    await _wait_output(page, "inverted", before)
    resumed = await _session(easel, page)
    assert resumed["attached"] is True
    assert resumed["params"] == {"effect": "invert"}
    assert resumed["stats"]["frames_out"] > 0


async def _phone(browser: Any, proxy: DroppingProxy, key: str) -> None:
    context = await browser.new_context(
        viewport={"width": 390, "height": 844},
        device_scale_factor=2,
        is_mobile=True,
        has_touch=True,
    )
    page = await context.new_page()
    page.set_default_timeout(WAIT_MS)
    problems = _watch(page)
    await page.goto(f"http://127.0.0.1:{proxy.port}/#key={key}")
    await page.wait_for_selector("#status[data-state=open]")
    await page.wait_for_function("() => Number(document.querySelector('#output').dataset.seq) >= 0")

    # nothing wider than the screen, and a canvas a finger can draw on
    assert await page.evaluate("() => document.documentElement.scrollWidth <= window.innerWidth")
    box = await page.locator("#draw").bounding_box()
    assert box is not None
    assert box["width"] >= 300

    cdp = await context.new_cdp_session(page)
    before = await _seq(page)
    await _touch_stroke(page, cdp, [(0.2, 0.2), (0.8, 0.3), (0.3, 0.6), (0.75, 0.8)])
    await _touch_stroke(page, cdp, [(0.15, 0.85), (0.5, 0.15), (0.85, 0.85)])
    assert (await page.evaluate(_PIXELS, "#draw"))["dark"] > 0.01
    await _wait_output(page, "inked", before)
    before = await _seq(page)
    await page.select_option("#param-effect", "invert")
    await _wait_output(page, "inverted", before)
    await page.wait_for_selector("body[data-synced=true]")
    await page.screenshot(path=str(ARTIFACTS / "canvas-phone.png"), full_page=True)
    assert problems == []
    await context.close()


async def test_the_page_asks_for_an_api_key_when_the_engine_wants_one(
    easel_factory: ServerFactory,
) -> None:
    _chromium_or_skip()
    easel = await easel_factory()
    _, key = await easel.server.app[STORE].api_keys.create(NewApiKey(name="page"))
    async with _browser() as browser:
        context = await browser.new_context(viewport={"width": 1280, "height": 800})
        page = await context.new_page()
        page.set_default_timeout(WAIT_MS)
        await page.goto(easel.url + "/")
        await page.wait_for_selector("#auth", state="visible")
        message = page.locator(".message[data-key='error:unauthorized']")
        assert "API key" in (await message.text_content() or "")
        await page.fill("#api-key", key)
        await page.click("#auth-form button")
        await page.wait_for_selector("#status[data-state=open]")
        assert await page.is_hidden("#auth")
        before = await _seq(page)
        await _stroke(page, [(0.2, 0.2), (0.8, 0.8)])
        await _wait_output(page, "inked", before)
        await context.close()


async def test_the_page_takes_its_key_from_the_url_fragment_and_drops_it(easel: Easel) -> None:
    _chromium_or_skip()
    async with _browser() as browser:
        context = await browser.new_context(viewport={"width": 1280, "height": 800})
        page = await context.new_page()
        page.set_default_timeout(WAIT_MS)
        await page.goto(easel.url + f"/?x=1#key={easel.admin_key}")
        await page.wait_for_selector("#status[data-state=open]")
        assert await page.is_hidden("#auth")
        assert page.url == easel.url + "/?x=1"  # the key left the address bar (and history)
        stored = await page.evaluate("() => sessionStorage.getItem('easel.apiKey')")
        assert stored == easel.admin_key
        await context.close()
