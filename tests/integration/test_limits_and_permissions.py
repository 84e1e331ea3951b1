"""Request size limits and private state files, through a real ``cardiac-mi serve`` (issue 16, points 6 and 9).

One serve start (free ports, a temporary state folder, the sample studies; ``serve_options`` of
tests/helpers/serve.py) serves the module. Its state folder is made to look like one of an older version first
(a 0755 folder and a 0644 file, as the issue found them), so the test sees serve close it.

6. A body over its route's limit is refused with 413: at once when its Content-Length says so (the
   server reads none of it: its memory does not grow), and as soon as the limit is passed when it is
   sent in chunks without a length. Bodies within the limits still work.
9. Every file under the state folder is 0600 and every folder 0700: image caches, the datastore's JSON,
   outbox SEGs, labels, logs, models and Orthanc's own files.
"""

from __future__ import annotations

import json
import os
import socket
import stat
import time
from pathlib import Path

import pytest

pytest.importorskip("monailabel")
requests = pytest.importorskip("requests")

from cardiac_mi.serve import SAMPLE_DICOM, serve  # noqa: E402
from lgemri.dicom import read_dicom_series  # noqa: E402
from lgemri.errors import InputError  # noqa: E402
from tests.helpers.serve import serve_options as _options  # noqa: E402
from tests.helpers.uploads import label_file as _label_file  # noqa: E402
from tests.helpers.uploads import put_label as _put_label  # noqa: E402

os.environ.setdefault("OMP_NUM_THREADS", "1")
CASE = "Case_P001"
MB = 1 << 20


@pytest.fixture(scope="module")
def state(tmp_path_factory) -> Path:
    state = tmp_path_factory.mktemp("private") / "state"
    old = state / "monailabel" / "dicom-cache"
    old.mkdir(parents=True, mode=0o755)
    for folder in (state, state / "monailabel", old):
        folder.chmod(0o755)
    (old / "left-by-an-older-version.json").write_text("{}\n")
    (old / "left-by-an-older-version.json").chmod(0o644)
    return state


@pytest.fixture(scope="module")
def served(state):
    handle = serve(_options(state), block=False)
    yield handle
    handle.stop()


def uid() -> str:
    return read_dicom_series(SAMPLE_DICOM / CASE).series_uid


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def raw_request(
    served, method: str, path: str, headers: dict[str, str], chunks=(), timeout: float = 60
) -> tuple[int, bytes]:
    """Send a request line, ``headers`` and the ``chunks`` as they are (a socket: no client checks the
    length), then read the answer; (status, body). A server that closes while we send is fine."""
    host, port = served.url.split("//", 1)[1].rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=timeout) as sock:
        head = f"{method} {path} HTTP/1.1\r\nHost: {host}:{port}\r\n"
        head += "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
        try:
            sock.sendall(head.encode())
            for chunk in chunks:
                sock.sendall(chunk)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered and closed before it took the whole body
        answer = b""
        while b"\r\n\r\n" not in answer or len(answer) < answer.index(b"\r\n\r\n") + 4 + _length(answer):
            data = sock.recv(65536)
            if not data:
                break
            answer += data
    status = int(answer.split(b" ", 2)[1])
    return status, answer.split(b"\r\n\r\n", 1)[1]


def _length(answer: bytes) -> int:
    for line in answer.split(b"\r\n\r\n", 1)[0].split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value.strip())
    return 0


def chunked(total: int, size: int = 256 << 10):
    """``total`` bytes as HTTP/1.1 chunks of ``size``, then the last chunk."""
    sent = 0
    while sent < total:
        n = min(size, total - sent)
        yield f"{n:x}\r\n".encode() + b"\0" * n + b"\r\n"
        sent += n
    yield b"0\r\n\r\n"


@pytest.mark.parametrize(
    "method, path, megabytes, setting",
    [
        ("PUT", "/datastore/label?image={uid}&tag=final", 200, "CARDIAC_MI_MAX_LABEL_MB"),
        ("POST", "/viewer/labels/studies", 200, "CARDIAC_MI_MAX_LABEL_MB"),
        ("POST", "/proxy/dicom/stow/studies", 300, "CARDIAC_MI_MAX_STOW_MB"),
        ("PUT", "/model/segmentation", 300, "CARDIAC_MI_MAX_MODEL_MB"),
        ("POST", "/infer/segmentation?image={uid}", 20, "CARDIAC_MI_MAX_BODY_MB"),
    ],
)
def test_a_declared_oversized_body_is_refused_before_it_is_read(served, method, path, megabytes, setting):
    before = rss_mb(served.process.pid)
    tick = time.perf_counter()
    headers = {
        "Content-Type": 'multipart/related; type="application/dicom"; boundary=x',
        "Content-Length": str(megabytes * MB),
    }
    status, body = raw_request(served, method, path.format(uid=uid()), headers, [b"\0" * MB])
    seconds = time.perf_counter() - tick
    assert status == 413, body[:300]
    detail = json.loads(body)["detail"]
    assert f"{megabytes:.1f} MB" in detail and setting in detail, detail
    assert seconds < 5, f"the refusal took {seconds:.1f} s"
    grown = rss_mb(served.process.pid) - before
    assert grown < megabytes / 2  # the body was not held
    print(
        f"{method} {path.split('?')[0]} declaring {megabytes} MB: 413 in {seconds:.2f} s, server memory {grown:+.0f} MB"
    )
    assert requests.get(f"{served.url}/info/", timeout=30).status_code == 200


@pytest.mark.parametrize(
    "name, value",
    [("CARDIAC_MI_MAX_LABEL_MB", "lots"), ("CARDIAC_MI_MAX_BODY_MB", "0"), ("CARDIAC_MI_ARCHIVE_TIMEOUT", "-1")],
)
def test_a_bad_setting_stops_serve_before_it_starts(tmp_path, monkeypatch, name, value):
    monkeypatch.setenv(name, value)
    with pytest.raises(InputError, match=name):
        serve(_options(tmp_path / "state", "--no-samples"), block=False)
    assert not (tmp_path / "state").exists()


def test_a_streamed_body_is_cut_at_the_limit(served):
    # no Content-Length: the server can only count; it stops reading just past the 64 MB of a label
    headers = {
        "Content-Type": 'multipart/related; type="application/dicom"; boundary=x',
        "Transfer-Encoding": "chunked",
    }
    status, body = raw_request(served, "POST", "/viewer/labels/studies", headers, chunked(64 * MB + MB))
    assert status == 413, body[:300]
    # a body within the limit, streamed the same way, is read and judged on its content
    status, body = raw_request(served, "POST", "/viewer/labels/studies", headers, chunked(MB))
    assert status in (400, 422), body[:300]  # not a SEG: the save route read it and said why


def test_saves_within_the_limits_still_work(served, tmp_path):
    saved = _put_label(served, _label_file(tmp_path), image=uid(), tag="final")
    assert saved.status_code == 200 and saved.json()["stored"] is True, saved.text[:300]


def _not_private(root: Path) -> list[str]:
    found = []
    for folder, _dirs, files in os.walk(root):
        for path in [Path(folder)] + [Path(folder) / name for name in files]:
            mode = path.lstat().st_mode
            if not stat.S_ISLNK(mode) and stat.S_IMODE(mode) & 0o077:
                found.append(f"{oct(stat.S_IMODE(mode))} {path.relative_to(root)}")
    return found


def test_state_files_are_private(served, state, tmp_path):
    label = _label_file(tmp_path)
    assert _put_label(served, label, image=uid(), tag="final").status_code == 200  # image cache, label, SEG sent
    assert _put_label(served, label, image=uid(), tag="draft").status_code == 200  # a label kept in the cache
    served.orthanc.stop()  # on purpose: the supervisor leaves a stopped Orthanc alone
    try:
        kept = _put_label(served, label, image=uid(), tag="final")
        assert kept.status_code == 200 and kept.json()["stored"] is False, kept.text[:300]
        pending = Path(kept.json()["pending"])
        assert pending.is_file() and stat.S_IMODE(pending.stat().st_mode) == 0o600  # an outbox SEG
        assert _not_private(state) == []
    finally:
        served.orthanc.start()
    cache = state / "monailabel" / "dicom-cache"
    assert (cache / "left-by-an-older-version.json").stat().st_mode & 0o777 == 0o600
    assert list(cache.rglob("*.nii.gz")) and (state / "monailabel.log").is_file()
    assert list((state / "orthanc" / "db").rglob("*")) and list((state / "models").glob("*.pt"))
    deadline = time.monotonic() + 60
    while pending.exists() and time.monotonic() < deadline:  # Orthanc is back: the kept SEG leaves the outbox
        time.sleep(0.2)
    assert not pending.exists()
    assert _not_private(state) == []
