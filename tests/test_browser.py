"""report.html and history.html in a real browser, as a person opens them: headless Chromium loads
each page from disk with no console error, every image decoded and no request leaving the file
system; a screenshot of each goes to $HARNESS_SCREENSHOT_DIR (CI keeps it).

Chromium is driven through the DevTools protocol over a pipe (``--remote-debugging-pipe``: JSON
messages ending in NUL on file descriptors 3 and 4), so no port is opened and no client library
is needed. Skipped where Chromium is not installed (Debian: ``apt-get install chromium``).
"""

from __future__ import annotations

import base64
import json
import os
import select
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from harness.report import write_run_reports
from harness.report.history import write_history
from harness.report.synthetic import (
    environment,
    journal_records,
    serving_entry,
    trials_record,
    write_journal,
)

CHROMIUM = next(
    (path for name in ("chromium", "chromium-browser") if (path := shutil.which(name))), None
)
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed"),
]
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1280,1000",
    "--remote-debugging-pipe",
]
LOCAL_SCHEMES = ("file:", "data:", "about:", "blob:")
"""What a request may use: anything else would leave the file system."""
TIMEOUT_S = 120.0
"""Generous: the development machine has two shared cores."""
SCREENSHOT_DIR = "HARNESS_SCREENSHOT_DIR"
NARROW_PX = 800
"""A narrow window (half a laptop screen): a page must fit its width, a wide table scrolling
inside its own box rather than the whole page sideways."""
OVERFLOW = """(() => {
  const root = document.documentElement, body = document.body, limit = root.clientWidth;
  return {viewport: limit, page: root.scrollWidth, body: body.scrollWidth,
    body_box: body.clientWidth,
    wide: Array.from(body.children).filter(e => e.getBoundingClientRect().right > limit)
      .map(e => e.outerHTML.slice(0, 80))};
})()"""
"""How wide the page and its body are against the window, and which of the body's children
reach past it."""


class DevTools:
    """One headless Chromium, its DevTools protocol on a pipe, one page attached."""

    def __init__(self, profile: Path) -> None:
        commands_read, self._commands = os.pipe()
        self._events, events_write = os.pipe()

        def onto_3_and_4() -> None:  # Chromium reads commands on fd 3 and writes on fd 4
            read, write = os.dup(commands_read), os.dup(events_write)
            os.dup2(read, 3)
            os.dup2(write, 4)

        self.process = subprocess.Popen(
            [CHROMIUM, *FLAGS, f"--user-data-dir={profile}", "about:blank"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=onto_3_and_4,
            pass_fds=(3, 4),
        )
        os.close(commands_read)
        os.close(events_write)
        self._buffer = b""
        self._next_id = 0
        self.events: list[dict[str, Any]] = []
        try:
            target = self.call("Target.createTarget", url="about:blank")["targetId"]
            attached = self.call("Target.attachToTarget", targetId=target, flatten=True)
            self.session = attached["sessionId"]
            for domain in ("Page", "Runtime", "Log", "Network"):
                self.call(f"{domain}.enable", session=True)
        except BaseException:
            self.close()  # never leave a browser behind
            raise

    def call(self, method: str, session: bool = False, **params: Any) -> dict[str, Any]:
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params}
        if session:
            message["sessionId"] = self.session
        os.write(self._commands, json.dumps(message).encode() + b"\0")
        while True:
            reply = self._receive()
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply["result"]

    def wait_for(self, method: str) -> None:
        while not any(event.get("method") == method for event in self.events):
            self._receive()

    def _receive(self) -> dict[str, Any]:
        deadline = time.monotonic() + TIMEOUT_S
        while b"\0" not in self._buffer:
            ready, _, _ = select.select([self._events], [], [], deadline - time.monotonic())
            chunk = os.read(self._events, 1 << 20) if ready else b""
            if not chunk:
                raise RuntimeError("chromium closed its DevTools pipe or did not answer in time")
            self._buffer += chunk
        raw, self._buffer = self._buffer.split(b"\0", 1)
        message = json.loads(raw)
        if "method" in message:
            self.events.append(message)
        return message

    def close(self) -> None:
        os.close(self._commands)
        os.close(self._events)
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[DevTools]:
    devtools = DevTools(tmp_path / "profile")
    try:
        yield devtools
    finally:
        devtools.close()


@pytest.fixture(scope="module")
def pages(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A finished run's report.html and a history of ten runs (one column each: wider than an
    800 px window), from synthetic journals."""
    root = tmp_path_factory.mktemp("pages")
    runs = []
    for day in range(1, 11):
        records = journal_records(f"run-{day}", seed=day, latency_ms=2.0 if day == 4 else 1.0)
        records[0]["started"] = f"2025-01-{day:02d}T00:00:00+00:00"
        records[-1]["finished"] = f"2025-01-{day:02d}T00:01:00+00:00"
        records[0]["environment"] = {
            **environment(),
            "cpu": {"vendor": "GenuineIntel", "isa": ["avx", "avx2", "fma"]},
        }
        records.insert(-1, trials_record(1, 2.0 if day == 4 else 1.0, seed=day))
        for cell in (r for r in records if r["type"] == "cell" and r["dataset"] == "mnist"):
            cell["serving"] = serving_entry()  # the report's widest table
        write_journal(root / "runs" / f"run-{day}", records)
        runs.append(root / "runs" / f"run-{day}")
    write_run_reports(runs[-1])
    write_history([root / "runs"], root / "history")
    return {"report": runs[-1] / "report.html", "history": root / "history" / "history.html"}


def open_page(browser: DevTools, page: Path) -> dict[str, Any]:
    """Load ``page`` from disk; what a person's browser saw of it."""
    browser.call("Page.navigate", session=True, url=page.as_uri())
    browser.wait_for("Page.loadEventFired")
    images = browser.call(
        "Runtime.evaluate",
        session=True,
        returnByValue=True,
        expression="Array.from(document.images, i => ({src: i.currentSrc.slice(0, 60), "
        "complete: i.complete, width: i.naturalWidth}))",
    )["result"]["value"]
    return {"images": images, "events": list(browser.events)}


def console_errors(events: list[dict[str, Any]]) -> list[str]:
    errors = []
    for event in events:
        params = event.get("params", {})
        if event["method"] == "Runtime.exceptionThrown":
            errors.append(params["exceptionDetails"].get("text", "exception"))
        elif event["method"] == "Runtime.consoleAPICalled" and params["type"] in (
            "error",
            "assert",
        ):
            errors.append(
                " ".join(str(a.get("value", a.get("description"))) for a in params["args"])
            )
        elif event["method"] == "Log.entryAdded" and params["entry"]["level"] == "error":
            errors.append(f"{params['entry']['text']} ({params['entry'].get('url', '')})")
    return errors


def requested(events: list[dict[str, Any]]) -> list[str]:
    return [
        event["params"]["request"]["url"]
        for event in events
        if event["method"] == "Network.requestWillBeSent"
    ]


def save_screenshot(browser: DevTools, name: str, fallback: Path) -> Path:
    """A full-page PNG in $HARNESS_SCREENSHOT_DIR (else ``fallback``), for a person to look at."""
    size = browser.call("Page.getLayoutMetrics", session=True)["cssContentSize"]
    shot = browser.call(
        "Page.captureScreenshot",
        session=True,
        format="png",
        captureBeyondViewport=True,
        clip={"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1},
    )
    folder = Path(os.environ.get(SCREENSHOT_DIR) or fallback)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.png"
    path.write_bytes(base64.b64decode(shot["data"]))
    return path


@pytest.mark.parametrize("name", ["report", "history"])
def test_a_page_loads_from_disk_whole_and_alone(browser, pages, name, tmp_path):
    seen = open_page(browser, pages[name])
    assert console_errors(seen["events"]) == []
    images = seen["images"]
    assert images, f"{name}: no images"
    undecoded = [image for image in images if not (image["complete"] and image["width"] > 0)]
    assert undecoded == [], f"{name}: images not decoded: {undecoded}"
    urls = requested(seen["events"])
    assert pages[name].as_uri() in urls
    leaving = [url for url in urls if not url.startswith(LOCAL_SCHEMES)]
    assert leaving == [], f"{name}: requests leaving the file system: {leaving}"
    screenshot = save_screenshot(browser, name, tmp_path)
    assert screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def width_at(browser: DevTools, page: Path, width: int) -> dict[str, Any]:
    """Load ``page`` in a window ``width`` CSS pixels wide; what :data:`OVERFLOW` measures."""
    browser.call(
        "Emulation.setDeviceMetricsOverride",
        session=True,
        width=width,
        height=1000,
        deviceScaleFactor=1,
        mobile=False,
    )
    open_page(browser, page)
    measured = browser.call(
        "Runtime.evaluate", session=True, returnByValue=True, expression=OVERFLOW
    )
    return measured["result"]["value"]


def assert_fits(seen: dict[str, Any], name: str) -> None:
    assert NARROW_PX - 30 <= seen["viewport"] <= NARROW_PX, "the window (less a scrollbar)"
    assert seen["page"] <= seen["viewport"], f"{name} scrolls sideways: {seen}"
    assert seen["body"] <= seen["body_box"], f"{name}'s body overflows: {seen}"


@pytest.mark.parametrize("name", ["report", "history"])
def test_a_page_fits_an_800_pixel_window(browser, pages, name, tmp_path):
    assert_fits(width_at(browser, pages[name], NARROW_PX), name)
    save_screenshot(browser, f"{name}-{NARROW_PX}px", tmp_path)


@pytest.mark.parametrize("boxed", [False, True])
def test_the_width_check_sees_a_table_wider_than_the_window(browser, tmp_path, boxed):
    """A 20-column table overflows an 800 px page unless it scrolls in its own box."""
    row = "<tr>" + "<td>a&nbsp;long&nbsp;cell</td>" * 20 + "</tr>"
    table = f"<table>{row}</table>"
    page = tmp_path / "wide.html"
    page.write_text(
        "<!doctype html><title>wide</title><body>"
        + (f'<div style="overflow-x: auto">{table}</div>' if boxed else table)
    )
    seen = width_at(browser, page, NARROW_PX)
    if boxed:
        assert_fits(seen, "boxed")
    else:
        assert seen["page"] > seen["viewport"] and seen["body"] > seen["body_box"]
        assert seen["wide"] and seen["wide"][0].startswith("<table>")


def test_the_checks_see_an_error_a_broken_image_and_a_request_off_the_disk(browser, tmp_path):
    """The checks above can fail: a page with each fault is caught by each."""
    page = tmp_path / "faulty.html"
    page.write_text(
        "<!doctype html><title>faulty</title>"
        '<script>console.error("boom")</script>'
        '<img src="missing.png"><img src="http://127.0.0.1:9/off-disk.png">'
    )
    seen = open_page(browser, page)
    errors = console_errors(seen["events"])
    assert "boom" in errors and any("missing.png" in error for error in errors)
    assert [image["width"] for image in seen["images"]] == [0, 0]
    assert "http://127.0.0.1:9/off-disk.png" in requested(seen["events"])
