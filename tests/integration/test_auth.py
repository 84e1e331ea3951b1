"""Issue 16, point 4: the login of a real ``cardiac-mi serve`` (its default ``--auth embedded``), by role and route class.

One serve (free ports, a temporary state folder, the sample studies) serves the module, started without
``--auth``: the default must be the embedded login. Accounts are added to its state folder while it runs
(``cardiac_mi.auth.AuthStore``, what ``cardiac-mi users`` does): a reviewer and an annotator besides the
generated ``admin``. Requests go out with ``requests``, a token from ``POST /auth/token`` in
``Authorization: Bearer``, or the session cookie of ``POST /login``.
"""

from __future__ import annotations

import json
import os
import stat
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("monailabel")
requests = pytest.importorskip("requests")

from cardiac_mi.serve import APP_DIR, SAMPLE_DICOM, serve  # noqa: E402
from lgemri.dicom import read_dicom_series  # noqa: E402
from lgemri.emidec import load_case  # noqa: E402
from lgemri.volume import Volume, write_nifti  # noqa: E402
from tests.helpers.serve import serve_options as _options  # noqa: E402
from tests.helpers.uploads import multipart, new_study_instance  # noqa: E402

os.environ.setdefault("OMP_NUM_THREADS", "1")
CASE = "Case_P001"
PASSWORDS = {"rita": "reviewer-password-1", "anna": "annotator-password-1"}
NO_CREDENTIAL = "log in at /login"


def _default_options(state: Path):
    options = _options(state)
    options.auth = None  # as a user starts it: no --auth, so the default applies
    return options


@pytest.fixture(scope="module")
def state(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("auth") / "state"


@pytest.fixture(scope="module")
def served(state):
    handle = serve(_default_options(state), block=False)
    store = handle.auth_store
    store.add("rita", ["reviewer"], PASSWORDS["rita"])
    store.add("anna", ["annotator"], PASSWORDS["anna"])
    yield handle
    handle.stop()


def token(served, name: str, password: str | None = None) -> str:
    if password is None:
        password = PASSWORDS.get(name) or served.auth_store.admin_password_path.read_text().strip()
    answer = requests.post(f"{served.url}/auth/token", data={"username": name, "password": password}, timeout=30)
    assert answer.status_code == 200, answer.text
    found = answer.json()
    assert found["token_type"] == "bearer" and found["expires_in"] > 0
    return found["access_token"]


def bearer(value: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {value}"}


@pytest.fixture(scope="module")
def tokens(served) -> dict[str, str]:
    return {name: token(served, name) for name in ("admin", "anna", "rita")}


def series_uid() -> str:
    return read_dicom_series(SAMPLE_DICOM / CASE).series_uid


def label_file(tmp_path: Path) -> Path:
    truth = np.asarray(load_case(SAMPLE_DICOM.parent / "emidec", CASE).label.array)
    path = tmp_path / "label.nii.gz"
    write_nifti(Volume(truth.astype(np.uint8), read_dicom_series(SAMPLE_DICOM / CASE).volume.affine), path)
    return path


def put_label(served, headers: dict[str, str], label: Path) -> requests.Response:
    with open(label, "rb") as fh:
        return requests.put(
            f"{served.url}/datastore/label",
            params={"image": series_uid(), "tag": "final"},
            files={"label": ("label.nii.gz", fh)},
            headers=headers,
            timeout=180,
        )


def stow(served, headers: dict[str, str], tmp_path: Path) -> requests.Response:
    _, data = new_study_instance(tmp_path)
    content_type, body = multipart(data)
    return requests.post(
        f"{served.url}/proxy/dicom/wado/studies",
        data=body,
        timeout=60,
        headers={**headers, "Content-Type": content_type, "Accept": "application/dicom+json"},
    )


def put_model(served, headers: dict[str, str], data: bytes = b"not a model") -> requests.Response:
    return requests.put(
        f"{served.url}/model/segmentation", files={"file": ("segmentation.pt", data)}, headers=headers, timeout=60
    )


def assert_forbidden(answer: requests.Response, what: str) -> None:
    assert answer.status_code == 403, (what, answer.status_code, answer.text[:300])
    assert "is required" in answer.json()["detail"], answer.text


def assert_let_through(answer: requests.Response, what: str) -> None:
    assert answer.status_code not in (401, 403), (what, answer.status_code, answer.text[:300])


# ----------------------------------------------------------------------------------------- no credential


ROUTES = [
    ("GET", "/info/"),
    ("GET", "/proxy/dicom/qido/studies"),
    ("GET", "/datastore/?output=all"),
    ("POST", "/train/segmentation"),
    ("PUT", "/model/segmentation"),
    ("DELETE", "/model/segmentation"),
    ("GET", "/logs/"),
    ("POST", "/viewer/training/start"),
    ("POST", "/viewer/labels/studies"),
    ("POST", "/reload"),
    ("GET", "/openapi.json"),
    ("GET", "/viewer/monailabel/info/"),
    ("GET", "/ohif/app-config.js"),
]


@pytest.mark.parametrize("method, path", ROUTES, ids=[f"{m} {p}" for m, p in ROUTES])
def test_no_credential_is_401_with_what_to_do(served, method, path):
    answer = requests.request(method, served.url + path, timeout=30)
    assert answer.status_code == 401, answer.text[:300]
    detail = answer.json()["detail"]
    assert NO_CREDENTIAL in detail and "Authorization: Bearer" in detail and "/auth/token" in detail
    assert answer.headers["www-authenticate"] == "Bearer"


def test_a_browser_without_a_session_is_sent_to_the_login_page(served):
    answer = requests.get(
        f"{served.url}/ohif/viewer?StudyInstanceUIDs=1.2.3",
        headers={"Accept": "text/html"},
        allow_redirects=False,
        timeout=30,
    )
    assert answer.status_code == 303
    assert answer.headers["location"] == "/login?next=%2Fohif%2Fviewer%3FStudyInstanceUIDs%3D1.2.3"
    page = requests.get(served.url + answer.headers["location"], timeout=30)
    assert page.status_code == 200 and 'action="/login"' in page.text
    assert 'value="/ohif/viewer?StudyInstanceUIDs=1.2.3"' in page.text


def test_wrong_password_or_unknown_user_is_401(served):
    for name, password in (("admin", "not-the-password"), ("rita", PASSWORDS["anna"]), ("nobody", "whatever-1")):
        answer = requests.post(f"{served.url}/auth/token", data={"username": name, "password": password}, timeout=30)
        assert answer.status_code == 401 and answer.json()["detail"] == "wrong user name or password", answer.text
        page = requests.post(
            f"{served.url}/login", data={"username": name, "password": password}, allow_redirects=False, timeout=30
        )
        assert page.status_code == 401 and "Wrong user name or password" in page.text
        assert "set-cookie" not in page.headers
    answer = requests.post(f"{served.url}/auth/token", data={"username": "admin"}, timeout=30)
    assert answer.status_code == 422 and "username and password" in answer.json()["detail"]


def test_expired_forged_and_orphaned_tokens_are_401(served, tmp_path):
    import jwt

    from cardiac_mi.auth import Account, AuthStore

    store = served.auth_store
    expired = store.issue(Account("admin", ("admin",)), minutes=5, now=time.time() - 3600)
    answer = requests.get(f"{served.url}/info/", headers=bearer(expired), timeout=30)
    assert answer.status_code == 401 and "the token has expired" in answer.json()["detail"], answer.text

    other = AuthStore(tmp_path / "other-auth")  # another state folder's key: a token this server never issued
    other.ensure()
    forged = other.issue(Account("admin", ("admin",)))
    answer = requests.get(f"{served.url}/info/", headers=bearer(forged), timeout=30)
    assert answer.status_code == 401 and "not valid" in answer.json()["detail"], answer.text
    unsigned = jwt.encode(jwt.decode(forged, options={"verify_signature": False}), key=None, algorithm="none")
    answer = requests.get(f"{served.url}/info/", headers=bearer(unsigned), timeout=30)
    assert answer.status_code == 401 and "not valid" in answer.json()["detail"], answer.text
    answer = requests.get(f"{served.url}/info/", headers={"Authorization": "Basic YWRtaW46eA=="}, timeout=30)
    assert answer.status_code == 401 and "Bearer TOKEN" in answer.json()["detail"]

    store.add("gone", ["admin"], "a-password-of-gone")
    kept = token(served, "gone", "a-password-of-gone")
    assert requests.get(f"{served.url}/info/", headers=bearer(kept), timeout=30).status_code == 200
    store.remove("gone")
    answer = requests.get(f"{served.url}/info/", headers=bearer(kept), timeout=30)
    assert answer.status_code == 401 and "no longer exists" in answer.json()["detail"]


# ----------------------------------------------------------------------------------------------- roles


def test_reviewer_views_and_runs_the_model_but_cannot_save_upload_or_train(served, tokens, tmp_path):
    rita = bearer(tokens["rita"])
    assert requests.get(f"{served.url}/info/", headers=rita, timeout=30).status_code == 200
    studies = requests.get(f"{served.url}/proxy/dicom/qido/studies", headers=rita, timeout=30)
    assert studies.status_code == 200 and len(studies.json()) >= 4
    infer = requests.post(
        f"{served.url}/infer/segmentation", params={"image": series_uid(), "output": "json"}, headers=rita, timeout=600
    )
    assert infer.status_code == 200, infer.text[:500]
    assert_forbidden(put_label(served, rita, label_file(tmp_path)), "save a label")
    assert_forbidden(
        requests.post(f"{served.url}/viewer/labels/studies", data=b"x", headers=rita, timeout=30),
        "save from the viewer",
    )
    assert_forbidden(stow(served, rita, tmp_path), "upload a study")
    assert_forbidden(requests.post(f"{served.url}/train/segmentation", headers=rita, timeout=30), "train")
    assert_forbidden(requests.post(f"{served.url}/viewer/training/start", headers=rita, timeout=30), "train (viewer)")
    assert_forbidden(put_model(served, rita), "replace the model")
    assert_forbidden(requests.get(f"{served.url}/logs/", headers=rita, timeout=30), "read the logs")
    # MONAI Label's own token check route sees the same user
    valid = requests.get(f"{served.url}/auth/token/valid", headers=rita, timeout=30)
    assert valid.status_code == 200 and valid.json()["username"] == "rita"
    assert "monailabel-admin" not in valid.json()["roles"]


def test_annotator_saves_and_uploads_but_cannot_publish_train_or_replace_the_model(served, tokens, tmp_path):
    anna = bearer(tokens["anna"])
    saved = put_label(served, anna, label_file(tmp_path))
    assert saved.status_code == 200, saved.text[:500]
    uploaded = stow(served, anna, tmp_path)
    assert uploaded.status_code == 200, uploaded.text[:500]
    assert_forbidden(
        requests.post(f"{served.url}/viewer/training/publish", json={}, headers=anna, timeout=30), "publish"
    )
    assert_forbidden(requests.post(f"{served.url}/viewer/training/start", headers=anna, timeout=30), "train")
    assert_forbidden(requests.post(f"{served.url}/train/segmentation", headers=anna, timeout=30), "train")
    assert_forbidden(put_model(served, anna), "PUT /model")
    assert_forbidden(requests.delete(f"{served.url}/model/segmentation", headers=anna, timeout=30), "DELETE /model")
    assert_forbidden(requests.get(f"{served.url}/logs/", headers=anna, timeout=30), "logs")


def test_admin_reads_this_state_folders_log_and_may_replace_the_model(served, tokens, state):
    admin = bearer(tokens["admin"])
    logs = requests.get(f"{served.url}/logs/", params={"lines": 50}, headers=admin, timeout=30)
    assert logs.status_code == 200 and logs.headers["content-type"].startswith("text/plain")
    assert len(logs.text.splitlines()) == 50
    log = state / "logs" / "app.log"
    assert log.is_file() and "admin logged in" in log.read_text()
    assert stat.S_IMODE(log.stat().st_mode) == 0o600
    own = requests.get(f"{served.url}/viewer/monailabel/logs/", headers=admin, timeout=30)
    assert own.status_code == 200 and "admin logged in" in own.text
    install_log = APP_DIR / "logs" / "app.log"
    assert not install_log.exists() or served.url.rsplit(":", 1)[1] not in install_log.read_text(errors="replace")
    # the role lets it through; the file is refused for what it is, the served model stays
    answer = put_model(served, admin)
    assert_let_through(answer, "PUT /model")
    assert answer.status_code == 422 and "not a segmentation model" in answer.json()["detail"], answer.text[:300]
    served_model = state / "models" / "segmentation.pt"
    before = served_model.read_bytes()
    answer = put_model(served, admin, before)  # a real checkpoint of the task: accepted
    assert answer.status_code == 200 and answer.json()["checksum"].startswith("SHA256:"), answer.text[:300]
    assert served_model.read_bytes() == before
    answer = requests.post(f"{served.url}/viewer/training/publish", json={}, headers=admin, timeout=30)
    assert_let_through(answer, "publish")
    assert requests.get(f"{served.url}/info/", headers=admin, timeout=30).json()["models"]


# -------------------------------------------------------------------------------------- browser session


def test_login_sets_an_httponly_samesite_strict_cookie_that_works_until_logout(served):
    password = served.auth_store.admin_password_path.read_text().strip()
    browser = requests.Session()
    login = browser.post(
        f"{served.url}/login",
        data={"username": "admin", "password": password, "next": "/ohif/viewer?x=1"},
        allow_redirects=False,
        timeout=30,
    )
    assert login.status_code == 303 and login.headers["location"] == "/ohif/viewer?x=1"
    cookie = login.headers["set-cookie"]
    assert cookie.startswith("cardiac_mi_session=ey")
    for attribute in ("HttpOnly", "SameSite=Strict", "Path=/"):
        assert attribute in cookie, cookie
    assert "Secure" not in cookie  # plain http on loopback; under https the cookie is Secure
    assert browser.get(f"{served.url}/auth/session", timeout=30).json() == {"username": "admin", "roles": ["admin"]}
    assert browser.get(f"{served.url}/info/", timeout=30).status_code == 200
    # a request started by another site (its Origin) does not get through with the cookie
    foreign = browser.post(f"{served.url}/viewer/training/stop", headers={"Origin": "http://evil.example"}, timeout=30)
    assert foreign.status_code == 403 and "origin" in foreign.json()["detail"]
    logout = browser.post(f"{served.url}/logout", allow_redirects=False, timeout=30)
    assert logout.status_code == 303 and "Max-Age=0" in logout.headers["set-cookie"]
    assert browser.get(f"{served.url}/info/", timeout=30).status_code == 401


def test_login_never_sends_the_browser_to_another_site(served):
    password = served.auth_store.admin_password_path.read_text().strip()
    for target in ("//evil.example/x", "https://evil.example/", "/\\evil.example", "ohif"):
        login = requests.post(
            f"{served.url}/login",
            data={"username": "admin", "password": password, "next": target},
            allow_redirects=False,
            timeout=30,
        )
        assert login.status_code == 303 and login.headers["location"] == "/ohif/", target


# -------------------------------------------------------------------------------------- state and key


def test_credential_files_are_private_and_hold_no_plain_password(served, state):
    folder = state / "auth"
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    for name in ("users.json", "admin-password", "token-key.pem", "token-key.pub.pem"):
        assert stat.S_IMODE((folder / name).stat().st_mode) == 0o600, name
    password = (folder / "admin-password").read_text().strip()
    assert served.admin_password == password and len(password) >= 16
    users = json.loads((folder / "users.json").read_text())["users"]
    assert users["admin"]["roles"] == ["admin"] and users["admin"]["password"].startswith("scrypt$")
    text = (folder / "users.json").read_text()
    assert password not in text and PASSWORDS["rita"] not in text


def test_realm_publishes_the_key_that_checks_the_servers_tokens(served, tokens):
    import jwt

    realm = requests.get(f"{served.url}/auth/realm", timeout=30)
    assert realm.status_code == 200
    key = f"-----BEGIN PUBLIC KEY-----\n{realm.json()['public_key']}\n-----END PUBLIC KEY-----"
    claims = jwt.decode(tokens["anna"], key, algorithms=["RS256"])
    assert claims["preferred_username"] == "anna"
    assert set(claims["realm_access"]["roles"]) == {"monailabel-user", "monailabel-annotator"}
    configuration = requests.get(f"{served.url}/auth/realm/.well-known/openid-configuration", timeout=30).json()
    assert configuration["token_endpoint"] == f"{served.url}/auth/token"


def test_a_role_change_applies_to_the_next_request(served):
    store = served.auth_store
    store.add("eve", ["reviewer"], "a-password-of-eve")
    try:
        eve = bearer(token(served, "eve", "a-password-of-eve"))
        assert_forbidden(requests.get(f"{served.url}/logs/", headers=eve, timeout=30), "logs as reviewer")
        store.set_roles("eve", ["admin"])
        assert requests.get(f"{served.url}/logs/", headers=eve, timeout=30).status_code == 200
    finally:
        store.remove("eve")


def test_a_restart_keeps_the_accounts_and_makes_no_new_admin_password(served, state):
    """The generated password is made once per state folder: a second start finds the accounts."""
    from cardiac_mi.auth import AuthStore

    again = AuthStore.of_state(state)
    assert again.ensure() is None
    assert {a.name for a in again.accounts()} >= {"admin", "rita", "anna"}
