"""The attacks of issue 16 (points 1-3) against a real ``cardiac-mi serve``: each is refused, and nothing happened.

One serve start (free ports, a temporary state folder, the four sample studies; ``serve_options`` of
tests/helpers/serve.py) serves the module. Requests go out through ``http.client`` so that their path and
``Host`` reach the server exactly as written (``requests`` would normalise ``..`` and set the Host).

1. The DICOMweb proxy forwarded any path to Orthanc with the server's credentials: ``/system``,
   ``/tools/bulk-delete``, ``/tools/shutdown``, ``DELETE /studies/{id}``, behind ``%2e%2e`` and friends.
2. Any web page could drive the server: every ``Origin`` was echoed with credentials, any ``Host``
   accepted (DNS rebinding).
3. ``PUT /datastore/label?tag=../../x`` wrote a file outside the state folder, and the answer quoted an
   older save ("stored in Orthanc").
"""

from __future__ import annotations

import http.client
import json
import os
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("monailabel")
requests = pytest.importorskip("requests")

from cardiac_mi.serve import SAMPLE_DICOM, serve  # noqa: E402
from lgemri.dicom import read_dicom_series  # noqa: E402
from lgemri.emidec import load_case  # noqa: E402
from lgemri.volume import Volume, write_nifti  # noqa: E402
from tests.helpers.serve import serve_options as _options  # noqa: E402
from tests.helpers.uploads import label_file as _label_file  # noqa: E402
from tests.helpers.uploads import multipart, new_study_instance  # noqa: E402
from tests.helpers.uploads import put_label as _put_label  # noqa: E402

os.environ.setdefault("OMP_NUM_THREADS", "1")
CASE = "Case_P001"
FOREIGN = "http://evil.example"
ORTHANC_SYSTEM_KEYS = ("DicomAet", "ApiVersion", "DatabaseVersion")


@pytest.fixture(scope="module")
def state(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("security") / "state"


@pytest.fixture(scope="module")
def sessions(state) -> Path:
    """MONAI Label's session folder, inside the test's folder (``DELETE /session/..`` would remove its parent)."""
    folder = state.parent / "sessions-parent" / "sessions"
    folder.mkdir(parents=True)
    return folder


@pytest.fixture(scope="module")
def served(state, sessions):
    saved = os.environ.get("MONAI_LABEL_SESSION_PATH")
    os.environ["MONAI_LABEL_SESSION_PATH"] = str(sessions)
    try:
        handle = serve(_options(state), block=False)
    finally:
        if saved is None:
            os.environ.pop("MONAI_LABEL_SESSION_PATH", None)
        else:
            os.environ["MONAI_LABEL_SESSION_PATH"] = saved
    yield handle
    handle.stop()


def send(
    served,
    method: str,
    path: str,
    headers: dict[str, str] | None = None,
    body: bytes | None = None,
    host: str | None = None,
) -> tuple[int, dict[str, str], bytes]:
    """One request with ``path`` and ``Host`` exactly as given; (status, lower-case headers, body)."""
    address = served.url.split("//", 1)[1]
    name, port = address.rsplit(":", 1)
    connection = http.client.HTTPConnection(name, int(port), timeout=120)
    try:
        connection.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
        connection.putheader("Host", address if host is None else host)
        for key, value in (headers or {}).items():
            connection.putheader(key, value)
        connection.putheader("Content-Length", str(len(body or b"")))
        connection.endheaders(body or None)
        answer = connection.getresponse()
        return answer.status, {k.lower(): v for k, v in answer.getheaders()}, answer.read()
    finally:
        connection.close()


def orthanc(served, method: str, path: str, **kwargs) -> requests.Response:
    """Orthanc's REST API directly, with its credentials (what the test checks afterwards)."""
    return requests.request(method, f"{served.orthanc.url}{path}", auth=served.orthanc.auth, timeout=30, **kwargs)


def orthanc_studies(served) -> list[str]:
    answer = orthanc(served, "GET", "/studies")
    assert answer.status_code == 200
    return answer.json()


def assert_orthanc_untouched(served, studies: list[str]) -> None:
    assert served.orthanc.running
    system = orthanc(served, "GET", "/system")
    assert system.status_code == 200 and "ApiVersion" in system.json()
    assert sorted(orthanc_studies(served)) == sorted(studies)


def assert_refused(status: int, body: bytes, expected: tuple[int, ...] = (404,)) -> None:
    """Refused with ``expected`` (400 too where the HTTP parser refuses the request line), Orthanc unseen."""
    expected = (*expected, 400)
    assert status in expected, (status, body[:300])
    text = body.decode("latin-1")
    assert not any(key in text for key in ORTHANC_SYSTEM_KEYS), text[:300]


def qido_has_study(served, study_uid: str) -> bool:
    answer = requests.get(
        f"{served.orthanc.dicomweb_url}/studies",
        params={"StudyInstanceUID": study_uid},
        auth=served.orthanc.auth,
        headers={"Accept": "application/dicom+json"},
        timeout=30,
    )
    return answer.status_code == 200 and bool(answer.json())


def orthanc_seg_series(served) -> set[str]:
    answer = requests.get(
        f"{served.orthanc.dicomweb_url}/series",
        params={"Modality": "SEG"},
        auth=served.orthanc.auth,
        headers={"Accept": "application/dicom+json"},
        timeout=30,
    )
    return {item["0020000E"]["Value"][0] for item in answer.json()} if answer.status_code == 200 else set()


# ------------------------------------------------------------------------------------------------ 1. the proxy

# ".." spelt every way a router, a decoder or Orthanc may turn back into a parent folder
DOTDOT = ["%2e%2e", "%2E%2E", ".%2e", "%2e.", "..", "%252e%252e", "%25%32%65%25%32%65", "%c0%ae%c0%ae", "%u002e%u002e"]
ESCAPES = [f"/proxy/dicom/{dots}/system" for dots in DOTDOT] + [
    "/proxy/dicom/..%2fsystem",
    "/proxy/dicom/..%2Fsystem",
    "/proxy/dicom/%2e%2e%2fsystem",
    "/proxy/dicom/..%252fsystem",
    "/proxy/dicom/..%5csystem",
    "/proxy/dicom/..\\system",
    "/proxy/dicom/%2e%2e/%2e%2e/system",
    "/proxy/dicom/qido/%2e%2e/system",
    "/proxy/dicom/wado/..%2f..%2fsystem",
    "/proxy/dicom/stow/%2e%2e/%2e%2e/system",
    "/proxy/dicom/qido/studies/%2e%2e/%2e%2e/system",
    "/proxy/dicom/qido/studies%2f..%2f..%2fsystem",
    "/proxy/dicom/qido/studies/..;/..;/system",
    "/proxy/dicom/studies%00/../../system",
    "/proxy/dicom/./../system",
    "/proxy/dicom//system",
    "/proxy/dicom/system",
    "/proxy/dicom/qido/system",
    "/proxy/dicom/%71ido/..%2fsystem",
    "/proxy/system",
    "/proxy/../system",
    "/proxy/dicom/qido/studies/1.2.3/../../../system",
]


def test_proxy_does_not_reach_orthancs_rest_api(served):
    studies = orthanc_studies(served)
    assert len(studies) == 4
    for path in ESCAPES:
        status, _, body = send(served, "GET", path)
        assert_refused(status, body)
    # the same through requests, which normalises what it can
    for path in ("/proxy/dicom/%2e%2e/system", "/proxy/dicom/qido/%2e%2e/%2e%2e/system"):
        answer = requests.get(f"{served.url}{path}", timeout=30)
        assert_refused(answer.status_code, answer.content)
    assert_orthanc_untouched(served, studies)


def test_proxy_bulk_delete_deletes_nothing(served):
    studies = orthanc_studies(served)
    payload = json.dumps({"Resources": studies}).encode()
    for dots in DOTDOT + ["..%2f..", "%2e%2e%2f%2e%2e"]:
        for op in ("", "qido/", "stow/"):
            status, _, body = send(
                served,
                "POST",
                f"/proxy/dicom/{op}{dots}/tools/bulk-delete",
                {"Content-Type": "application/json"},
                payload,
            )
            assert_refused(status, body)
    # Orthanc's own REST DELETE of a study, and DICOMweb paths with other methods
    status, _, body = send(served, "DELETE", f"/proxy/dicom/%2e%2e/studies/{studies[0]}")
    assert_refused(status, body, (404, 405))
    status, _, body = send(served, "DELETE", f"/proxy/dicom/{studies[0]}")
    assert_refused(status, body, (404, 405))
    for method in ("PUT", "DELETE", "PATCH"):
        status, _, body = send(
            served, method, "/proxy/dicom/wado/studies", {"Content-Type": "application/json"}, payload
        )
        assert_refused(status, body, (404, 405))
    assert_orthanc_untouched(served, studies)


def test_proxy_shutdown_does_not_stop_orthanc(served):
    studies = orthanc_studies(served)
    for dots in DOTDOT:
        status, _, body = send(served, "POST", f"/proxy/dicom/{dots}/tools/shutdown")
        assert_refused(status, body)
        status, _, body = send(served, "POST", f"/proxy/dicom/wado/{dots}/{dots}/tools/shutdown")
        assert_refused(status, body)
    assert_orthanc_untouched(served, studies)


def test_proxy_refuses_what_is_not_a_uid_or_a_viewer_resource(served):
    found = requests.get(f"{served.url}/proxy/dicom/qido/studies", timeout=30).json()
    study = found[0]["0020000D"]["Value"][0]
    for path in (
        f"/proxy/dicom/qido/studies/{study}x/series",
        "/proxy/dicom/qido/studies/1.2.-3/series",
        f"/proxy/dicom/wado/studies/{study}/bulk/7fe00010",
        f"/proxy/dicom/wado/studies/{study}/instances/1.2",
        "/proxy/dicom/qido/studies/" + "1." * 40 + "1",
        f"/proxy/dicom/qido/studies/{study}/archive",
        "/proxy/dicom/qido/patients",
        "/proxy/dicom/wado/series/1.2.3",
    ):
        status, _, body = send(served, "GET", path)
        assert_refused(status, body)
    # STOW only to studies and studies/{uid}
    content_type, body = multipart(b"not dicom")
    for path in (
        f"/proxy/dicom/wado/studies/{study}/series",
        "/proxy/dicom/wado/series",
        "/proxy/dicom/wado/instances",
    ):
        status, _, answer = send(served, "POST", path, {"Content-Type": content_type}, body)
        assert_refused(status, answer)


def test_legitimate_viewer_requests_still_work(served, tmp_path):
    """What OHIF asks for: QIDO studies, series, instances; series metadata; a frame; STOW (a SEG)."""
    studies = requests.get(
        f"{served.url}/proxy/dicom/qido/studies",
        params={"limit": "101", "offset": "0", "fuzzymatching": "true", "includefield": "00081030,00080060"},
        timeout=30,
    )
    assert studies.status_code == 200 and len(studies.json()) == 4
    series_uid = read_dicom_series(SAMPLE_DICOM / CASE).series_uid
    study_uid = str(read_dicom_series(SAMPLE_DICOM / CASE).study_uid)
    series = requests.get(f"{served.url}/proxy/dicom/qido/studies/{study_uid}/series", timeout=30)
    assert series.status_code == 200 and series_uid in json.dumps(series.json())
    metadata = requests.get(
        f"{served.url}/proxy/dicom/wado/studies/{study_uid}/series/{series_uid}/metadata", timeout=60
    )
    assert metadata.status_code == 200 and len(metadata.json()) > 1
    instances = requests.get(
        f"{served.url}/proxy/dicom/qido/studies/{study_uid}/series/{series_uid}/instances", timeout=30
    ).json()
    instance_uid = instances[0]["00080018"]["Value"][0]
    frame = requests.get(
        f"{served.url}/proxy/dicom/wado/studies/{study_uid}/series/{series_uid}/instances/{instance_uid}/frames/1",
        headers={"Accept": 'multipart/related; type="application/octet-stream"; transfer-syntax=*'},
        timeout=60,
    )
    assert frame.status_code == 200 and len(frame.content) > 1000
    assert frame.headers["content-type"].startswith("multipart/related")

    # STOW-RS of a SEG to {wadoRoot}/studies, as OHIF uploads, from the viewer's own origin
    from lgemri.seg import write_seg

    truth = np.asarray(load_case(SAMPLE_DICOM.parent / "emidec", CASE).label.array)
    dicom = read_dicom_series(SAMPLE_DICOM / CASE)
    path = tmp_path / "seg.dcm"
    write_seg(Volume(truth.astype(np.uint8), dicom.volume.affine), dicom, path, manual=True)
    import pydicom

    seg_uid = str(pydicom.dcmread(path, stop_before_pixels=True).SeriesInstanceUID)
    content_type, body = multipart(path.read_bytes())
    status, headers, answer = send(
        served,
        "POST",
        "/proxy/dicom/wado/studies",
        {"Content-Type": content_type, "Accept": "application/dicom+json", "Origin": served.url},
        body,
    )
    assert status == 200, answer[:500]
    assert headers.get("access-control-allow-origin") == served.url
    assert seg_uid in orthanc_seg_series(served)


# ------------------------------------------------------------------------------------------------ 2. origins, Host


def test_foreign_origin_is_refused_on_get_and_post(served, tmp_path):
    studies = orthanc_studies(served)
    for origin in (
        FOREIGN,
        "null",
        "http://127.0.0.1.evil.example",
        served.url + ".evil.example",
        "http://127.0.0.1:1",
    ):
        for path in ("/info/", "/proxy/dicom/qido/studies", "/datastore/?output=stats"):
            status, headers, body = send(served, "GET", path, {"Origin": origin})
            assert status == 403, (origin, path, status)
            assert "access-control-allow-origin" not in headers and "access-control-allow-credentials" not in headers
            assert b"0020000D" not in body and b"models" not in body
        # the preflight of a cross-site PUT is not granted
        status, headers, _ = send(
            served, "OPTIONS", "/datastore/label", {"Origin": origin, "Access-Control-Request-Method": "PUT"}
        )
        assert status >= 400 and "access-control-allow-origin" not in headers

    # a cross-site STOW (a "simple" form-like POST needs no preflight): refused, nothing stored
    study_uid, data = new_study_instance(tmp_path)
    content_type, body = multipart(data)
    status, headers, _ = send(
        served, "POST", "/proxy/dicom/wado/studies", {"Content-Type": content_type, "Origin": FOREIGN}, body
    )
    assert status == 403 and "access-control-allow-origin" not in headers
    assert not qido_has_study(served, study_uid)
    # without an Origin but marked cross-site by the browser
    status, _, _ = send(
        served,
        "POST",
        "/proxy/dicom/wado/studies",
        {"Content-Type": content_type, "Sec-Fetch-Site": "cross-site"},
        body,
    )
    assert status == 403 and not qido_has_study(served, study_uid)
    # a cross-site label save and a cross-site reload: refused, no SEG in Orthanc
    segs = orthanc_seg_series(served)
    status, _, _ = send(
        served, "POST", "/viewer/labels/studies", {"Content-Type": content_type, "Origin": FOREIGN}, body
    )
    assert status == 403
    status, _, _ = send(
        served,
        "PUT",
        f"/datastore/label?image={read_dicom_series(SAMPLE_DICOM / CASE).series_uid}",
        {"Origin": FOREIGN, "Content-Type": "multipart/form-data; boundary=x"},
        b"--x--\r\n",
    )
    assert status == 403
    status, _, _ = send(served, "POST", "/reload", {"Origin": FOREIGN})
    assert status == 403
    assert orthanc_seg_series(served) == segs
    assert_orthanc_untouched(served, studies)

    # the server's own origins are granted, with credentials
    port = served.url.rsplit(":", 1)[1]
    for origin in (f"http://127.0.0.1:{port}", f"http://localhost:{port}"):
        assert origin in served.origins
        status, headers, body = send(served, "GET", "/info/", {"Origin": origin})
        assert status == 200 and headers.get("access-control-allow-origin") == origin
        assert headers.get("access-control-allow-credentials") == "true"
        status, headers, _ = send(
            served, "OPTIONS", "/datastore/label", {"Origin": origin, "Access-Control-Request-Method": "PUT"}
        )
        assert status == 200 and headers.get("access-control-allow-origin") == origin
    # a page of the server under another port of a served name (Docker's published port): same origin
    status, _, _ = send(served, "POST", "/reload", {"Origin": "http://localhost:9999"}, host="localhost:9999")
    assert status == 200
    status, _, _ = send(served, "POST", "/reload", {"Origin": "http://localhost:9999"})
    assert status == 403
    # and a request without an Origin (curl, scripts) is not cross-site
    status, _, _ = send(served, "GET", "/info/")
    assert status == 200


def test_dns_rebinding_host_is_refused(served, tmp_path):
    port = served.url.rsplit(":", 1)[1]
    for host in (
        f"evil.example:{port}",
        "evil.example",
        f"127.0.0.1.nip.io:{port}",
        f"localhost.evil.example:{port}",
        "",
    ):
        status, _, body = send(served, "GET", "/proxy/dicom/qido/studies", host=host)
        assert status == 400, (host, status)
        assert b"0020000D" not in body
        status, _, body = send(served, "GET", "/info/", {"Origin": f"http://{host}"}, host=host)
        assert status == 400 and b"models" not in body
    # a rebound page's STOW (same-origin for the browser: Origin and Host are the attacker's name)
    study_uid, data = new_study_instance(tmp_path)
    content_type, body = multipart(data)
    status, _, _ = send(
        served,
        "POST",
        "/proxy/dicom/wado/studies",
        {"Content-Type": content_type, "Origin": f"http://evil.example:{port}"},
        body,
        host=f"evil.example:{port}",
    )
    assert status == 400 and not qido_has_study(served, study_uid)
    for host in (f"127.0.0.1:{port}", f"localhost:{port}"):
        status, _, _ = send(served, "GET", "/info/", host=host)
        assert status == 200


# ------------------------------------------------------------------------------------------------ 3. paths from values


def _files(root: Path) -> set[Path]:
    return {p for p in root.rglob("*") if p.is_file()}


def test_tag_traversal_writes_nothing_and_the_answer_is_this_saves(served, state, sessions, tmp_path):
    uid = read_dicom_series(SAMPLE_DICOM / CASE).series_uid
    label = _label_file(tmp_path)
    outside = state.parent
    before = {p for p in _files(outside) if state not in p.parents}
    tags = [
        "../../../../escaped",
        "../../../escaped",
        "..%2f..%2fescaped",
        "final/../../../../escaped",
        str(outside / "escaped"),
        "..",
        "final/..",
        "a" * 65,
        "fi nal",
        "final\x00",
    ]
    for tag in tags:
        answer = _put_label(served, label, image=uid, tag=tag)
        assert answer.status_code == 422, (tag, answer.status_code, answer.text[:300])
        assert answer.json()["detail"].startswith("tag:")
    for image in ("../../../../escaped", "..", f"{uid}/../../../../escaped", "1.2.3.4.5.6a"):
        answer = _put_label(served, label, image=image, tag="final")
        assert answer.status_code == 422 and answer.json()["detail"].startswith("image:"), answer.text[:300]
    for params in ({"label": "../../x", "tag": "final"}, {"label": uid, "tag": "../../x"}):
        answer = requests.get(f"{served.url}/datastore/label", params=params, timeout=30)
        assert answer.status_code == 422 and answer.json()["detail"].split(":")[0] in params
    answer = requests.delete(f"{served.url}/datastore/label", params={"id": uid, "tag": "../../../.."}, timeout=30)
    assert answer.status_code == 422 and answer.json()["detail"].startswith("tag:")
    answer = requests.get(f"{served.url}/datastore/image", params={"image": "../../../etc/passwd"}, timeout=30)
    assert answer.status_code == 422 and answer.json()["detail"].startswith("image:")
    status, _, _ = send(served, "DELETE", "/session/%2e%2e")
    assert status == 404 and sessions.is_dir()
    status, _, _ = send(served, "DELETE", "/session/..")
    assert status == 404 and sessions.is_dir()
    # nothing was written outside the state folder
    after = {p for p in _files(outside) if state not in p.parents}
    assert after - before == set(), sorted(after - before)
    assert not list(outside.rglob("escaped*"))

    # a final save is stored in Orthanc; a later save with another tag says what it did, not what the first did
    first = _put_label(served, label, image=uid, tag="final")
    assert first.status_code == 200, first.text[:500]
    assert first.json()["stored"] is True and first.json()["tag"] == "final"
    draft = _put_label(served, label, image=uid, tag="draft")
    assert draft.status_code == 200, draft.text[:500]
    answer = draft.json()
    assert answer["tag"] == "draft" and answer["stored"] is False and answer["seg_series_uid"] is None
    assert "stored in" not in answer["message"] and answer["message"] != first.json()["message"]
    assert (state / "monailabel" / "dicom-cache" / "labels" / "draft" / f"{uid}.nii.gz").is_file()
    # a save that fails answers its error, not the older success
    empty = tmp_path / "empty.nii.gz"
    write_nifti(
        Volume(
            np.zeros_like(np.asarray(load_case(SAMPLE_DICOM.parent / "emidec", CASE).label.array), dtype=np.uint8),
            read_dicom_series(SAMPLE_DICOM / CASE).volume.affine,
        ),
        empty,
    )
    failed = _put_label(served, empty, image=uid, tag="final")
    assert failed.status_code == 422 and "stored" not in failed.json()
