"""The viewer's login in Chromium against a real ``cardiac-mi serve`` with its default login (issue 16, point 4).

The page is sent to the login page, a wrong password is refused on the page, the right one leads to the
study list (QIDO through the proxy with the session cookie alone), the cookie is HttpOnly and
SameSite=Strict and invisible to the page's scripts, a reviewer's Save-like request is refused, and after
logging out the viewer asks for the login again.
"""

from __future__ import annotations

import time

import pytest

from tests.helpers.timings import record

pytest.importorskip("playwright")

PASSWORD = "reviewer-password-2"


@pytest.fixture(scope="module")
def served_login(start_served):
    """``cardiac-mi serve`` without ``--auth`` (so with the embedded login), the sample studies uploaded."""
    service = start_served("login-state", auth=None)  # the default, as a user starts it
    service.handle.auth_store.add("rita", ["reviewer"], PASSWORD)
    return service


def log_in(page, name: str, password: str) -> None:
    page.fill("#username", name)
    page.fill("#password", password)
    page.click("#submit")


def test_login_page_then_study_list_then_logout(served_login, page, artifacts):
    url = served_login.url
    admin_password = served_login.handle.auth_store.admin_password_path.read_text().strip()
    page.goto(f"{url}/ohif/")
    assert page.url == f"{url}/login?next=%2Fohif%2F"
    page.locator("#login").wait_for()
    page.screenshot(path=str(artifacts / "login-page.png"))

    log_in(page, "admin", "not-the-password")
    message = page.locator("#message")
    message.wait_for()
    assert message.inner_text() == "Wrong user name or password."
    assert page.context.cookies() == []
    page.screenshot(path=str(artifacts / "login-refused.png"))

    tick = time.perf_counter()
    log_in(page, "admin", admin_password)
    page.wait_for_url(f"{url}/ohif/**")
    page.locator('[data-cy="study-list-results"]').wait_for(timeout=60_000)
    page.locator('[data-cy^="studyRow-"]').first.wait_for(timeout=60_000)
    record("login to study list", time.perf_counter() - tick)
    page.screenshot(path=str(artifacts / "login-study-list.png"))

    cookies = {c["name"]: c for c in page.context.cookies()}
    session = cookies["cardiac_mi_session"]
    assert session["httpOnly"] is True and session["sameSite"] == "Strict" and session["path"] == "/"
    assert "cardiac_mi_session" not in page.evaluate("document.cookie")
    who = page.evaluate("fetch('/auth/session').then(r => r.json())")
    assert who == {"username": "admin", "roles": ["admin"]}

    # back on the login page while logged in: it goes on to the viewer by itself
    page.goto(f"{url}/login?next=%2Fohif%2F")
    page.wait_for_url(f"{url}/ohif/**")

    page.goto(f"{url}/logout")
    assert page.url == f"{url}/login"
    assert "cardiac_mi_session" not in {c["name"] for c in page.context.cookies()}
    page.goto(f"{url}/ohif/")
    assert page.url.startswith(f"{url}/login")
    assert page.evaluate("fetch('/info/').then(r => r.status)") == 401


def test_a_reviewer_in_the_browser_cannot_save_or_train(served_login, page):
    url = served_login.url
    page.goto(f"{url}/login")
    log_in(page, "rita", PASSWORD)
    page.wait_for_url(f"{url}/ohif/**")
    statuses = page.evaluate("""async () => ({
        info: (await fetch('/info/')).status,
        save: (await fetch('/viewer/labels/studies', {method: 'POST', body: 'x'})).status,
        train: (await fetch('/viewer/training/start', {method: 'POST'})).status,
        logs: (await fetch('/logs/')).status,
    })""")
    assert statuses == {"info": 200, "save": 403, "train": 403, "logs": 403}
