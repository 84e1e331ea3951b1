"""Browser tests: Debian's Chromium, driven by Playwright, against a real ``cardiac-mi serve``.

- The browser is the system's ``chromium`` (``apt-get install chromium``; ``$CARDIAC_MI_CHROMIUM`` names
  another binary), never one downloaded by Playwright. Without it the tests skip; without Orthanc, the
  tests that start a serve skip (tests/conftest.py, which marks them ``browser`` and ``integration``).
- One ``serve`` (embedded Orthanc with the sample studies, MONAI Label with the viewer) per module, on
  free ports with a temporary state folder: ``served``, or ``start_served(...)`` for another kind.
- Screenshots and the measured times go to ``$CARDIAC_MI_ARTIFACTS/browser`` (else a temporary folder);
  the folder and the times are printed at the end of the run.
- Every page records its console errors and uncaught exceptions; a test asserts there are none, except
  the failed requests it provokes on purpose.
"""

from __future__ import annotations

import argparse
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.helpers.serve import serve_options
from tests.helpers.timings import ARTIFACTS as _ARTIFACTS
from tests.helpers.timings import MEASURED, record

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
VIEWPORT = {"width": 1600, "height": 1000}


def chromium_binary() -> str | None:
    """The system Chromium: ``$CARDIAC_MI_CHROMIUM``, else ``chromium`` or ``chromium-browser`` on PATH."""
    given = os.environ.get("CARDIAC_MI_CHROMIUM")
    if given:
        return given if os.access(given, os.X_OK) else None
    return shutil.which("chromium") or shutil.which("chromium-browser")


def pytest_terminal_summary(terminalreporter) -> None:
    if not _ARTIFACTS and not MEASURED:
        return
    terminalreporter.section("cardiac_mi viewer (browser tests)")
    if _ARTIFACTS:
        terminalreporter.write_line(f"screenshots and measurements: {_ARTIFACTS[0]}")
    for name, seconds in MEASURED.items():
        terminalreporter.write_line(f"{name}: {seconds:.2f} s")


@pytest.fixture(scope="session")
def artifacts(tmp_path_factory) -> Path:
    root = os.environ.get("CARDIAC_MI_ARTIFACTS")
    folder = Path(root) / "browser" if root else tmp_path_factory.mktemp("browser-artifacts")
    folder.mkdir(parents=True, exist_ok=True)
    _ARTIFACTS[:] = [folder]
    return folder


class Served:
    """A running ``cardiac-mi serve`` (``serve(..., block=False)``) that a test can restart."""

    def __init__(self, options: argparse.Namespace):
        from cardiac_mi.serve import serve

        self.options = options
        tick = time.perf_counter()
        self.handle = serve(options, block=False)
        self.start_seconds = time.perf_counter() - tick

    url = property(lambda self: self.handle.url)
    ohif_url = property(lambda self: self.handle.ohif_url)
    orthanc = property(lambda self: self.handle.orthanc)

    def restart(self) -> None:
        """Stop MONAI Label and Orthanc, then start both again with the same state and ports."""
        from cardiac_mi.serve import serve

        self.handle.stop()
        self.handle = serve(self.options, block=False)

    def stop(self) -> None:
        self.handle.stop()


@pytest.fixture(scope="module")
def start_served(tmp_path_factory):
    """``start_served(folder, auth="off")``: a ``cardiac-mi serve`` on free ports with a fresh state folder
    named ``folder`` (the sample studies uploaded), stopped at the module's end. ``auth=None`` is the default
    login, as a user starts it (``--auth off`` otherwise: the login has its own test, test_browser_login.py)."""
    started: list[Served] = []

    def start(folder: str, auth: str | None = "off") -> Served:
        os.environ.setdefault("OMP_NUM_THREADS", "1")
        options = serve_options(tmp_path_factory.mktemp(folder))
        options.auth = auth
        started.append(Served(options))
        return started[-1]

    yield start
    for service in reversed(started):
        service.stop()


@pytest.fixture(scope="module")
def served(start_served):
    """``cardiac-mi serve`` on free ports with a fresh state folder (the sample studies uploaded), no login."""
    service = start_served("serve-state")
    record("serve start to ready", service.start_seconds)
    return service


@pytest.fixture
def measure():
    """``measure(name, seconds)``: keep a measured time (printed at the end, in measurements.json)."""
    return record


@pytest.fixture(scope="module")
def browser():
    binary = chromium_binary()
    if binary is None:
        pytest.skip("chromium is not installed (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=binary, headless=True, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@dataclass
class Problems:
    """What a page reported: console errors (with the URL they are about) and uncaught exceptions."""

    console: list[tuple[str, str]] = field(default_factory=list)
    exceptions: list[str] = field(default_factory=list)

    def unexpected(self, *allowed_urls: str) -> list[str]:
        """Everything reported, less the failures of requests to ``allowed_urls`` (parts of URLs) that a
        test provokes: the browser's "Failed to load resource" line, and the three lines the DICOMweb
        client of OHIF logs for a failed request ("request failed: XMLHttpRequest", its Error, and the
        server's JSON answer, empty when there was no server)."""
        found = [f"uncaught: {text}" for text in self.exceptions]
        for text, url in self.console:
            if allowed_urls:
                if "Failed to load resource" in text and any(part in url for part in allowed_urls):
                    continue
                if text.startswith(("request failed", "Error: request failed", '{"detail":')) or not text.strip():
                    continue
            found.append(f"console error: {text} ({url})")
        return found


@pytest.fixture
def page(browser):
    """A fresh browser context and page; ``page.problems`` collects its errors."""
    context = browser.new_context(viewport=VIEWPORT)
    tab = context.new_page()
    tab.problems = Problems()
    tab.on(
        "console",
        lambda m: tab.problems.console.append((m.text, m.location.get("url", ""))) if m.type == "error" else None,
    )
    tab.on("pageerror", lambda e: tab.problems.exceptions.append(str(e)))
    yield tab
    context.close()
