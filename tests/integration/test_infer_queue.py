"""Infers queue on their own threads under ``cardiac-mi serve`` (issue 16, point 11): a bounded load test.

While infers wait their turn (the server's default, one at a time), the study list (QIDO through the
DICOMweb proxy) and ``/info/`` keep answering quickly, and every infer, through MONAI Label's route and
the viewer panel's, answers its label. ``bench/concurrent_infer.py`` measures the same with 16 infers.
"""

from __future__ import annotations

import concurrent.futures
import os
import time

import pytest

pytest.importorskip("monailabel")
requests = pytest.importorskip("requests")

from cardiac_mi.serve import SAMPLE_DICOM  # noqa: E402
from lgemri.dicom import read_dicom_series  # noqa: E402

os.environ.setdefault("OMP_NUM_THREADS", "1")
STUDY_LIST = "/proxy/dicom/qido/studies?limit=101&offset=0&includefield=00081030,00080060"
INFERS = 4


@pytest.fixture(scope="module")
def served(default_workers, server):
    """The module's ``cardiac-mi serve`` (tests/integration/conftest.py) with the default number of infer workers."""
    return server


@pytest.fixture(scope="module")
def default_workers():
    """No ``$CARDIAC_MI_INFER_WORKERS`` while the server starts and runs: one infer at a time."""
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("CARDIAC_MI_INFER_WORKERS", raising=False)
        yield


def _infer(url: str, uid: str, panel: bool) -> tuple[float, requests.Response]:
    tick = time.perf_counter()
    if panel:
        answer = requests.post(
            f"{url}/viewer/monailabel/infer/segmentation",
            params={"image": uid},
            data={"params": '{"result_extension": ".nrrd"}'},
            timeout=600,
        )
    else:
        answer = requests.post(f"{url}/infer/segmentation", params={"image": uid, "output": "json"}, timeout=600)
    return time.perf_counter() - tick, answer


def test_listing_answers_while_infers_queue(served):
    uid = read_dicom_series(SAMPLE_DICOM / "Case_P001").series_uid
    warm, answer = _infer(served.url, uid, panel=False)  # models loaded, series fetched: the rest is the model
    assert answer.status_code == 200, answer.text[:1000]
    with concurrent.futures.ThreadPoolExecutor(INFERS) as pool:
        futures = [pool.submit(_infer, served.url, uid, i % 2 == 1) for i in range(INFERS)]
        listing = []
        while not all(f.done() for f in futures):
            for path in (STUDY_LIST, "/info/"):
                tick = time.perf_counter()
                answer = requests.get(f"{served.url}{path}", timeout=60)
                listing.append((path, time.perf_counter() - tick, sum(not f.done() for f in futures)))
                assert answer.status_code == 200, (path, answer.status_code, answer.text[:500])
            time.sleep(0.05)
        infers = [f.result() for f in futures]
    for index, (_elapsed, answer) in enumerate(infers):
        assert answer.status_code == 200, answer.text[:1000]
        if index % 2:
            assert answer.content.startswith(b"NRRD"), answer.content[:40]
        else:
            assert answer.json()["volumes_ml"]["myocardium"] > 0
    slowest_infer = max(elapsed for elapsed, _ in infers)
    print(
        f"warm infer {warm:.2f} s; {INFERS} concurrent infers, slowest {slowest_infer:.2f} s; "
        f"{len(listing)} listings, slowest {max(t for _, t, _ in listing):.3f} s"
    )
    queued = [t for _, t, waiting in listing if waiting >= 2]  # answered while infers waited their turn
    assert queued, "no listing while two or more infers were waiting or running"
    assert max(queued) < max(2.0, slowest_infer / 4), f"listing took {max(queued):.2f} s during the infers"
