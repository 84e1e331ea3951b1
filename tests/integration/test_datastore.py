"""The Orthanc datastore against a real Orthanc: listings, the SEG label rule, the outbox.

One Orthanc (free port, temporary state) holds two phantom studies for the module; each test makes
its own datastore on a fresh cache folder unless it says otherwise.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("monailabel")

from cardiac_mi.datastore import DatastoreError, OrthancDatastore  # noqa: E402
from cardiac_mi.orthanc import EmbeddedOrthanc, free_port  # noqa: E402
from cardiac_mi.store import DicomStore, upload  # noqa: E402
from lgemri.dicom import read_dicom_series  # noqa: E402
from lgemri.seg import write_seg  # noqa: E402
from lgemri.volume import Volume, read_nifti, write_nifti  # noqa: E402


@pytest.fixture(scope="module")
def orthanc(tmp_path_factory, phantom_dir):
    server = EmbeddedOrthanc(tmp_path_factory.mktemp("orthanc-state"), http_port=free_port())  # same port on restart
    server.start()
    result = upload(
        [phantom_dir / "dicom" / "Case_P001", phantom_dir / "dicom" / "Case_P002"], DicomStore.from_orthanc(server)
    )
    assert result.ok and result.stored
    yield server
    server.stop()


def _series_uid(phantom_dir: Path, case: str) -> str:
    return read_dicom_series(phantom_dir / "dicom" / case).series_uid


def _datastore(orthanc, cache: Path, **kwargs) -> OrthancDatastore:
    user, password = orthanc.auth
    return OrthancDatastore(orthanc.dicomweb_url, user, password, cache_dir=cache, **kwargs)


def _label_file(tmp_path: Path, image_nifti: str, array: np.ndarray, name: str = "label.nii.gz") -> Path:
    image = read_nifti(image_nifti)
    path = tmp_path / name
    write_nifti(Volume(array.astype(np.uint8), image.affine), path)
    return path


def _truth_array(phantom_dir: Path, case: str, image_nifti: str) -> np.ndarray:
    """The phantom's EMIDEC truth (its NIfTI has the DICOM series' grid)."""
    from lgemri.emidec import load_case

    emidec = load_case(phantom_dir / "emidec", case)
    image = read_nifti(image_nifti)
    assert emidec.label.shape == image.shape
    return np.asarray(emidec.label.array, dtype=np.uint8)


def test_lists_mr_series_and_none_labelled(orthanc, phantom_dir, tmp_path):
    store = _datastore(orthanc, tmp_path)
    images = set(store.list_images())
    assert images == {_series_uid(phantom_dir, "Case_P001"), _series_uid(phantom_dir, "Case_P002")}
    assert store.get_labeled_images() == []
    assert set(store.get_unlabeled_images()) == images
    assert store.status()["total"] == 2 and store.status()["completed"] == 0


def test_image_uri_is_the_series_on_its_own_grid(orthanc, phantom_dir, tmp_path):
    store = _datastore(orthanc, tmp_path)
    uid = _series_uid(phantom_dir, "Case_P001")
    path = store.get_image_uri(uid)
    assert path.endswith(f"{uid}.nii.gz")
    image = read_nifti(path)
    original = read_dicom_series(phantom_dir / "dicom" / "Case_P001").volume
    np.testing.assert_array_equal(image.array, original.array)
    np.testing.assert_allclose(image.affine, original.affine, atol=1e-3)
    assert store.get_image_info(uid)["Modality"] == "MR"


def test_unknown_and_non_mr_series_are_clear_errors(orthanc, phantom_dir, tmp_path):
    store = _datastore(orthanc, tmp_path)
    with pytest.raises(DatastoreError) as missing:
        store.get_image_uri("1.2.3.4.5")
    assert missing.value.status_code == 404 and "not in" in str(missing.value)

    # a SEG series is not an image to segment
    uid = _series_uid(phantom_dir, "Case_P002")
    series = read_dicom_series(phantom_dir / "dicom" / "Case_P002")
    seg = write_seg(
        np.zeros(series.volume.shape, np.uint8) + (series.volume.array > 10**9),
        series,
        tmp_path / "auto.dcm",
        manual=False,
    )
    seg_uid = str(__import__("pydicom").dcmread(seg, stop_before_pixels=True).SeriesInstanceUID)
    assert DicomStore.from_orthanc(orthanc).stow([seg]).stored
    with pytest.raises(DatastoreError) as not_mr:
        store.get_image_uri(seg_uid)
    assert not_mr.value.status_code == 422 and "SEG" in str(not_mr.value)
    # an automatic SEG is never a final label
    store.refresh()
    assert uid not in store.get_labeled_images()


def test_final_label_round_trip_and_newer_correction_wins(orthanc, phantom_dir, tmp_path):
    store = _datastore(orthanc, tmp_path / "a")
    uid = _series_uid(phantom_dir, "Case_P001")
    image = store.get_image_uri(uid)
    truth = _truth_array(phantom_dir, "Case_P001", image)
    store.save_label(uid, str(_label_file(tmp_path, image, truth)), "final", {"user": "reader1"})
    assert store.last_saves[uid]["stored"] is True
    assert not list(store.outbox.glob("*.dcm"))

    # a fresh datastore (empty cache) reads the SEG from Orthanc back voxel for voxel
    fresh = _datastore(orthanc, tmp_path / "b")
    assert fresh.get_labeled_images() == [uid]
    label = read_nifti(fresh.get_label_uri(uid, "final"))
    np.testing.assert_array_equal(label.array, truth)
    assert fresh.datalist()[0]["label"] == fresh.get_label_uri(uid, "final")
    first_seg = fresh.final_seg(uid).SeriesInstanceUID

    # a second, newer correction wins
    time.sleep(0.01)
    corrected = truth.copy()
    corrected[truth == 3] = 2  # the reader removes the infarct
    store.save_label(uid, str(_label_file(tmp_path, image, corrected, "c.nii.gz")), "final", {})
    fresh.refresh()
    assert fresh.final_seg(uid).SeriesInstanceUID != first_seg
    np.testing.assert_array_equal(read_nifti(fresh.get_label_uri(uid, "final")).array, corrected)


def test_bad_labels_are_refused_and_nothing_is_stored(orthanc, phantom_dir, tmp_path):
    store = _datastore(orthanc, tmp_path)
    uid = _series_uid(phantom_dir, "Case_P002")
    image = store.get_image_uri(uid)
    shape = read_nifti(image).shape
    before = len(DicomStore.from_orthanc(orthanc).studies())
    cases = {
        "empty": _label_file(tmp_path, image, np.zeros(shape)),
        "shape": _label_file(tmp_path, image, np.ones(shape[:2] + (shape[2] - 1,)), "s.nii.gz"),
        "values": _label_file(tmp_path, image, np.full(shape, 7), "v.nii.gz"),
    }
    for what, path in cases.items():
        with pytest.raises(DatastoreError) as err:
            store.save_label(uid, str(path), "final", {})
        assert err.value.status_code == 422, what
    assert not list(store.outbox.glob("*.dcm"))
    assert len(DicomStore.from_orthanc(orthanc).studies()) == before


def test_label_is_kept_and_retried_while_orthanc_is_down(orthanc, phantom_dir, tmp_path):
    store = _datastore(orthanc, tmp_path)
    uid = _series_uid(phantom_dir, "Case_P002")
    image = store.get_image_uri(uid)
    truth = _truth_array(phantom_dir, "Case_P002", image)
    orthanc.stop()
    try:
        store.save_label(uid, str(_label_file(tmp_path, image, truth)), "final", {})
        saved = store.last_saves[uid]
        assert saved["stored"] is False and "retried" in saved["message"]
        pending = list(store.outbox.glob("*.dcm"))
        assert len(pending) == 1
        # the pending SEG already is the image's label, and says it waits
        np.testing.assert_array_equal(read_nifti(store.get_label_uri(uid, "final")).array, truth)
        assert store.get_label_info(uid, "final")["pending_upload"] is True
    finally:
        orthanc.start()
    deadline = time.monotonic() + 30
    while list(store.outbox.glob("*.dcm")) and time.monotonic() < deadline:
        store.seg_outbox.start_retry(now=True)
        time.sleep(0.2)
    assert not list(store.outbox.glob("*.dcm"))
    assert store.get_label_info(uid, "final")["pending_upload"] is False  # sent: it waits no more
    fresh = _datastore(orthanc, tmp_path / "fresh")
    np.testing.assert_array_equal(read_nifti(fresh.get_label_uri(uid, "final")).array, truth)


def test_orthanc_unreachable_is_a_503(tmp_path):
    store = OrthancDatastore("http://127.0.0.1:9/dicom-web", cache_dir=tmp_path)
    with pytest.raises(DatastoreError) as err:
        store.list_images()
    assert err.value.status_code == 503 and "cannot reach" in str(err.value)


def _post_variant(orthanc, phantom_dir: Path, tmp_path: Path, name: str, edit, count: int | None = None) -> str:
    """Upload a copy of Case_P002's series with new UIDs, each file changed by ``edit``; returns its series UID."""
    import pydicom
    import requests
    from pydicom.uid import generate_uid

    series_uid = generate_uid()
    files = sorted((phantom_dir / "dicom" / "Case_P002").rglob("*.dcm"))[:count]
    for number, path in enumerate(files):
        ds = pydicom.dcmread(path)
        ds.SeriesInstanceUID = series_uid
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        ds.SeriesDescription = name
        edit(ds)
        out = tmp_path / f"{name}{number}.dcm"
        ds.save_as(out, write_like_original=False)
        response = requests.post(f"{orthanc.url}/instances", data=out.read_bytes(), auth=orthanc.auth, timeout=30)
        assert response.status_code == 200, response.text
    return series_uid


@pytest.mark.parametrize(
    "name, edit, count, message",
    [
        ("single", lambda ds: None, 1, "single image"),
        ("nogeometry", lambda ds: delattr(ds, "ImagePositionPatient"), None, "ImagePositionPatient"),
        ("corrupt", lambda ds: setattr(ds, "PixelData", ds.PixelData[: len(ds.PixelData) // 2]), None, "pixel"),
    ],
)
def test_unusable_series_are_422_naming_the_problem(orthanc, phantom_dir, tmp_path, name, edit, count, message):
    uid = _post_variant(orthanc, phantom_dir, tmp_path, name, edit, count)
    store = _datastore(orthanc, tmp_path / "cache")
    assert uid in store.list_images()
    with pytest.raises(DatastoreError) as err:
        store.get_image_uri(uid)
    assert err.value.status_code == 422
    assert message.lower() in str(err.value).lower(), str(err.value)


def test_new_study_and_new_seg_show_after_the_list_ttl(orthanc, phantom_dir, tmp_path):
    from lgemri.emidec import load_case

    store = _datastore(orthanc, tmp_path, list_ttl=1.0)
    before = set(store.list_images())
    uid = _series_uid(phantom_dir, "Case_N003")
    assert uid not in before
    assert upload([phantom_dir / "dicom" / "Case_N003"], DicomStore.from_orthanc(orthanc)).stored
    time.sleep(1.1)
    assert uid in store.list_images() and uid in store.get_unlabeled_images()

    # a MANUAL SEG stored by someone else (a viewer's STOW) becomes the label once the list is refreshed
    series = read_dicom_series(phantom_dir / "dicom" / "Case_N003")
    truth = np.asarray(load_case(phantom_dir / "emidec", "Case_N003").label.array, dtype=np.uint8)
    seg = write_seg(Volume(truth, series.volume.affine), series, tmp_path / "viewer.dcm", manual=True)
    assert DicomStore.from_orthanc(orthanc).stow([seg]).stored
    time.sleep(1.1)
    assert uid in store.get_labeled_images()
    np.testing.assert_array_equal(read_nifti(store.get_label_uri(uid, "final")).array, truth)


def test_an_outbox_of_an_earlier_version_is_migrated_on_opening(tmp_path):
    """Up to issue 15 a refused SEG's reason was ``refused/<file>.txt``; it is ``<file>.reason.txt`` now
    (:mod:`cardiac_mi.outbox`, the PACS spool's layout), renamed when the datastore opens its cache."""
    refused = tmp_path / "outbox" / "refused"
    refused.mkdir(parents=True)
    name = "20250101T120000000000_1.2.826.0.1.3680043.8.498.1.dcm"
    (refused / name).write_bytes(b"SEG")
    (refused / f"{name}.txt").write_text("refused: no answer\n")
    store = OrthancDatastore("http://127.0.0.1:9/dicom-web", cache_dir=tmp_path, heartbeat=None)
    assert [(entry.name, entry.reason) for entry in store.seg_outbox.refused()] == [(name, "refused: no answer")]
    assert (refused / f"{name}.reason.txt").read_text() == "refused: no answer\n"
    assert not (refused / f"{name}.txt").exists() and (refused / name).read_bytes() == b"SEG"
    assert store.seg_outbox.pending() == [] and not store.seg_outbox.retrying
