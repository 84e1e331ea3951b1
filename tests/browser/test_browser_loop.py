"""The clinician's loop in the real viewer, in Chromium, against a real Orthanc and server.

Study list -> open a study in the Cardiac MI mode -> the MONAI Label panel (connected by itself) runs
``segmentation`` -> the overlay -> a brush stroke -> Save -> a coded MANUAL DICOM SEG of the series in
Orthanc -> the datastore's final label is that SEG, equal to the model's label plus the stroke. Then the
bad input: saving twice, saving nothing, a study deleted while open, Orthanc and the server restarted
during a session; and an upload from the study list.

Times are measured in the page (from the DOM click to the first frame that shows the image, or the
overlay, on the viewport's canvas), recorded in the artifacts' measurements.json and printed.
"""

from __future__ import annotations

import io
import os
import shutil
import time

import numpy as np
import pytest

pytest.importorskip("playwright")
pytest.importorskip("monailabel")
requests = pytest.importorskip("requests")

import pydicom  # noqa: E402

from cardiac_mi.serve import SAMPLE_DICOM  # noqa: E402
from lgemri.labels import INFARCT  # noqa: E402
from lgemri.seg import SEGMENTATION_STORAGE, SEGMENTS  # noqa: E402
from tests.helpers.viewer import (  # noqa: E402
    SEGMENTATION_VOXELS,
    WAIT_FOR_CANVAS,
    brush_stroke,
    click_save,
    notification,
    open_in_viewer,
    open_study_list,
    run_segmentation,
    sample_series,
    shown_slice,
)

# ------------------------------------------ helpers of this module (those the others share: tests/helpers/viewer.py)


def orthanc_get(served, path: str, **kwargs):
    return requests.get(f"{served.orthanc.url}{path}", auth=served.orthanc.auth, timeout=30, **kwargs)


def seg_series(served, study_uid: str) -> list[str]:
    """SeriesInstanceUIDs of the SEG series of a study in Orthanc (QIDO-RS)."""
    answer = orthanc_get(
        served,
        f"/dicom-web/studies/{study_uid}/series",
        params={"Modality": "SEG"},
        headers={"Accept": "application/dicom+json"},
    )
    if answer.status_code in (204, 404):
        return []
    answer.raise_for_status()
    return sorted(item["0020000E"]["Value"][0] for item in answer.json() or [])


def fetch_seg(served, series_uid: str) -> pydicom.Dataset:
    """The (single) instance of a SEG series, read from Orthanc."""
    found = requests.post(
        f"{served.orthanc.url}/tools/find",
        auth=served.orthanc.auth,
        timeout=30,
        json={"Level": "Instance", "Query": {"SeriesInstanceUID": series_uid}},
    ).json()
    assert len(found) == 1, found
    return pydicom.dcmread(io.BytesIO(orthanc_get(served, f"/instances/{found[0]}/file").content))


def read_nifti(content: bytes) -> np.ndarray:
    import nibabel as nib

    return np.asarray(nib.Nifti1Image.from_bytes(content).dataobj)


def model_label(served, series_uid: str) -> np.ndarray:
    answer = requests.post(
        f"{served.url}/infer/segmentation",
        params={"image": series_uid, "output": "image"},
        files={"params": (None, "{}")},
        timeout=120,
    )
    assert answer.status_code == 200, answer.text[:500]
    import gzip

    content = answer.content
    return read_nifti(gzip.decompress(content) if content[:2] == b"\x1f\x8b" else content)


def final_label(served, series_uid: str) -> tuple[dict, np.ndarray | None]:
    """The datastore's final-label info and label array of a series (info {} and None when it has none)."""
    objects = requests.get(f"{served.url}/datastore/", params={"output": "all"}, timeout=60).json()["objects"]
    info = objects.get(series_uid, {}).get("labels", {}).get("final", {}).get("info", {})
    if not info:
        return {}, None
    answer = requests.get(f"{served.url}/datastore/label", params={"label": series_uid, "tag": "final"}, timeout=60)
    assert answer.status_code == 200, answer.text[:500]
    import gzip

    content = answer.content
    return info, read_nifti(gzip.decompress(content) if content[:2] == b"\x1f\x8b" else content)


ZOOM = """(factor) => {
  const { cornerstoneViewportService, viewportGridService } = window.services;
  const viewport = cornerstoneViewportService.getCornerstoneViewport(viewportGridService.getActiveViewportId());
  if (factor) { viewport.setZoom(factor); } else { viewport.resetCamera(); }
  viewport.render();
}"""


def docs_screenshot(page, path) -> None:
    """The README's picture: the overlay zoomed on the heart, the quality verdict on the image and the
    Results panel (figures, bullseye)."""
    page.locator('[data-cy="cardiacMiResults-btn"]').click()
    page.wait_for_function(
        "() => { const i = document.querySelector('[data-cy=\"cardiac-mi-bullseye\"]');"
        " return i && i.complete && i.naturalWidth > 100; }",
        timeout=30_000,
    )
    page.evaluate(ZOOM, 1.8)
    page.wait_for_timeout(500)
    # without the notifications, which cover the picture
    page.screenshot(path=str(path), style="li:has([data-description]) { visibility: hidden !important; }")
    page.evaluate(ZOOM, 0)
    page.locator('[data-cy="monailabel-btn"]').click()


# ----------------------------------------------------------------------------------------- tests


def test_viewer_is_served_with_our_configuration(served):
    config = requests.get(f"{served.ohif_url}app-config.js", timeout=10)
    assert config.status_code == 200 and "/ohif/cardiac-mi/mode.js" in config.text
    index = requests.get(f"{served.ohif_url}viewer?StudyInstanceUIDs=1", timeout=10).text
    assert "app-config.js" in index and "fonts.googleapis.com" not in index
    css = requests.get(f"{served.ohif_url}app.bundle.css", timeout=10).text
    assert "fonts.googleapis.com" not in css and len(css) > 1000
    info = requests.get(f"{served.url}/viewer/monailabel/info/", timeout=30).json()
    assert list(info["models"]) == ["segmentation"]
    # the panel names its segments by these: the display names, in class order
    assert info["labels"] == ["LV blood pool", "Myocardium", "Infarct", "MVO"]
    assert info["models"]["segmentation"]["labels"] == {"LV blood pool": 1, "Myocardium": 2, "Infarct": 3, "MVO": 4}
    assert (
        requests.get(
            f"{served.url}/viewer/monailabel/train/", params={"check_if_running": "true"}, timeout=10
        ).status_code
        == 200
    )
    # the proxy answers QIDO with the archive's studies, without the browser knowing its credentials
    studies = requests.get(f"{served.url}/proxy/dicom/qido/studies", timeout=30)
    assert studies.status_code == 200 and len(studies.json()) == 4
    # no file outside the bundle is served
    outside = requests.get(f"{served.ohif_url}..%2F..%2F..%2F..%2Fmonailabel%2Fconfig.py", timeout=10)
    assert "MONAI_LABEL" not in outside.text
    assert requests.get(f"{served.ohif_url}cardiac-mi/nothing.js", timeout=10).status_code == 404


def test_clinician_loop(served, page, artifacts, measure):
    study_uid, series_uid = sample_series()["Case_P001"]
    before = seg_series(served, study_uid)
    open_study_list(page, served)
    assert page.locator('[data-cy^="studyRow-"]').count() == 4
    page.screenshot(path=str(artifacts / "01-study-list.png"))

    shown = open_in_viewer(page, served, study_uid)
    first_image = (shown["shownAt"] - shown["clickAt"]) / 1000
    measure("study list to first image", first_image)
    page.screenshot(path=str(artifacts / "02-study-open.png"))

    first_run = run_segmentation(page)
    measure("Run to overlay (first run of the server)", first_run)
    page.wait_for_timeout(1500)  # the panel's own colours, then ours
    page.screenshot(path=str(artifacts / "03-overlay.png"))
    docs_screenshot(page, artifacts / "viewer.png")
    keep = os.environ.get("CARDIAC_MI_VIEWER_SCREENSHOT")
    if keep:  # refresh the README's screenshot: CARDIAC_MI_VIEWER_SCREENSHOT=docs/images/viewer.png
        shutil.copyfile(artifacts / "viewer.png", keep)

    painted_before = page.evaluate(SEGMENTATION_VOXELS)
    brush_stroke(page)
    assert page.evaluate(SEGMENTATION_VOXELS) > painted_before, "the brush stroke painted nothing"
    page.screenshot(path=str(artifacts / "04-brush.png"))
    viewer_slice, slices = shown_slice(page)

    answer = click_save(page)
    assert answer.status == 200, answer.text()
    saved = answer.json()
    assert saved["stored"] is True and saved["image"] == series_uid
    notification(page, "Saved as the final label")
    page.screenshot(path=str(artifacts / "05-saved.png"))

    # the SEG in Orthanc: coded, MANUAL, referencing the image series
    new = sorted(set(seg_series(served, study_uid)) - set(before))
    assert new == [saved["seg_series_uid"]]
    seg = fetch_seg(served, new[0])
    assert seg.SOPClassUID == SEGMENTATION_STORAGE
    assert [str(r.SeriesInstanceUID) for r in seg.ReferencedSeriesSequence] == [series_uid]
    for item in seg.SegmentSequence:
        spec = SEGMENTS[int(item.SegmentNumber)]
        assert item.SegmentAlgorithmType == "MANUAL"
        assert item.SegmentLabel == spec.name
        code = item.SegmentedPropertyTypeCodeSequence[0]
        assert (code.CodingSchemeDesignator, code.CodeValue) == (spec.type.scheme_designator, spec.type.value)
        category = item.SegmentedPropertyCategoryCodeSequence[0]
        assert category.CodeValue == spec.category.value

    # the datastore: that SEG is the final label, equal to the model's label plus the stroke
    info, label = final_label(served, series_uid)
    assert info["seg_series_uid"] == new[0] and info["manual"] is True
    model = model_label(served, series_uid)
    assert label.shape == model.shape
    changed = label != model
    assert 5 < changed.sum() < 5000, changed.sum()
    assert np.all(label[changed] == INFARCT)
    painted_slices = np.unique(np.nonzero(changed)[2])
    assert len(painted_slices) == 1, painted_slices
    # the viewer counts slices along the slice normal; lgemri's k may run the other way
    from lgemri.dicom import read_dicom_series

    k_along_normal = read_dicom_series(SAMPLE_DICOM / "Case_P001").volume
    affine = np.asarray(k_along_normal.affine)
    along = float(np.cross(affine[:3, 0], affine[:3, 1]) @ affine[:3, 2]) > 0
    assert painted_slices[0] == (viewer_slice if along else slices - 1 - viewer_slice)

    # saving twice: a second, newer SEG; the label stays; nothing lost
    second = click_save(page)
    assert second.status == 200
    assert len(seg_series(served, study_uid)) == len(before) + 2
    info2, label2 = final_label(served, series_uid)
    assert info2["seg_series_uid"] == second.json()["seg_series_uid"] != new[0]
    assert np.array_equal(label2, label)

    # a double click saves once and says a save is running
    posts = []
    page.on("request", lambda r: posts.append(r.url) if r.url.endswith("/viewer/labels/studies") else None)
    with page.expect_response("**/viewer/labels/studies", timeout=120_000):
        page.evaluate(
            "() => { const b = document.querySelector('[data-cy=\"CardiacMiSave\"]'); b.click(); b.click(); }"
        )
    notification(page, "A save is already running")
    page.wait_for_timeout(1000)
    assert len(posts) == 1
    assert len(seg_series(served, study_uid)) == len(before) + 3

    assert page.problems.unexpected() == []  # the times are targets of bench/viewer_speed.py, not asserted here


def test_reopened_study_shows_its_final_label(served, page, tmp_path):
    import nibabel as nib

    from lgemri.dicom import read_dicom_series

    study_uid, series_uid = sample_series()["Case_P001"]
    # a final label saved by another client (MONAI Label's API): the model's, with an infarct block added
    label = model_label(served, series_uid).astype(np.uint8)
    label[5:25, 5:25, 2] = INFARCT
    affine = read_dicom_series(SAMPLE_DICOM / "Case_P001").volume.affine
    path = tmp_path / "label.nii.gz"
    nib.save(nib.Nifti1Image(label, affine), str(path))
    with open(path, "rb") as stream:
        saved = requests.put(
            f"{served.url}/datastore/label",
            params={"image": series_uid, "tag": "final"},
            files={"label": ("label.nii.gz", stream)},
            timeout=120,
        )
    assert saved.status_code == 200, saved.text[:500]

    open_study_list(page, served)
    open_in_viewer(page, served, study_uid)
    notification(page, "Showing the final label of this series")
    shown = page.evaluate(WAIT_FOR_CANVAS, {"what": "overlay", "timeout": 30_000})
    assert shown["shownAt"] is not None
    assert page.evaluate(SEGMENTATION_VOXELS) == int(np.count_nonzero(label))
    assert page.problems.unexpected() == []


def test_upload_from_the_study_list(served, page, tmp_path):
    from pydicom.uid import generate_uid

    study_uid, series_uid = generate_uid(), generate_uid()
    files = []
    for n, path in enumerate(sorted((SAMPLE_DICOM / "Case_N003").rglob("*.dcm"))):
        ds = pydicom.dcmread(path)
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study_uid, series_uid
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        ds.PatientID, ds.PatientName = "UPLOADED-1", "Uploaded^Browser"
        files.append(tmp_path / f"{n:03d}.dcm")
        ds.save_as(files[-1])
    open_study_list(page, served)
    page.get_by_text("Upload", exact=True).click()
    page.locator("input[type=file]").first.set_input_files([str(f) for f in files])
    page.get_by_text(f"{len(files)} files completed").wait_for(timeout=60_000)
    page.get_by_role("button", name="Close").click()
    found = orthanc_get(
        served, "/dicom-web/studies", params={"PatientID": "UPLOADED-1"}, headers={"Accept": "application/dicom+json"}
    ).json()
    assert [item["0020000D"]["Value"][0] for item in found] == [study_uid]
    page.reload()
    page.locator(f'[data-cy="studyRow-{study_uid}"]').wait_for(timeout=30_000)
    assert page.problems.unexpected() == []


def test_segmentation_panel_export_saves_the_same_way(served, page):
    study_uid, series_uid = sample_series()["Case_P004"]
    before = seg_series(served, study_uid)
    open_study_list(page, served)
    open_in_viewer(page, served, study_uid)
    run_segmentation(page)
    page.locator('[data-cy="panelSegmentationWithTools-btn"]').click()
    menu = page.get_by_text("Segmentations", exact=True).last.bounding_box()
    page.mouse.click(menu["x"] - 25, menu["y"] + menu["height"] / 2)  # the "..." left of the selector
    page.get_by_text("Export & Download").hover()
    with page.expect_response("**/viewer/labels/studies", timeout=120_000) as answer:
        page.get_by_text("Export DICOM SEG").click()
    assert answer.value.status == 200
    notification(page, "Saved as the final label")
    new = sorted(set(seg_series(served, study_uid)) - set(before))
    assert new == [answer.value.json()["seg_series_uid"]]
    seg = fetch_seg(served, new[0])
    assert {str(item.SegmentedPropertyTypeCodeSequence[0].CodeValue) for item in seg.SegmentSequence} == {
        spec.type.value for spec in SEGMENTS.values()
    }
    assert final_label(served, series_uid)[0]["seg_series_uid"] == new[0]
    assert page.problems.unexpected() == []


def test_save_with_nothing_to_save(served, page):
    study_uid, series_uid = sample_series()["Case_P002"]
    before = seg_series(served, study_uid)
    open_study_list(page, served)
    open_in_viewer(page, served, study_uid)
    posts = []
    page.on("request", lambda r: posts.append(r.url) if "/viewer/labels" in r.url else None)
    page.locator('[data-cy="CardiacMiSave"]').click()
    text = notification(page, "Nothing to save")
    assert "run the segmentation" in text.lower() or text == "Nothing to save"
    page.wait_for_timeout(500)
    assert posts == [] and seg_series(served, study_uid) == before
    assert final_label(served, series_uid)[0] == {}
    assert page.problems.unexpected() == []


def test_study_deleted_while_open(served, page, measure):
    study_uid, series_uid = sample_series()["Case_N003"]
    open_study_list(page, served)
    open_in_viewer(page, served, study_uid)
    measure("Run to overlay (another study)", run_segmentation(page))
    found = requests.post(f"{served.orthanc.url}/tools/lookup", data=study_uid, auth=served.orthanc.auth, timeout=30)
    orthanc_id = next(item["ID"] for item in found.json() if item["Type"] == "Study")
    assert (
        requests.delete(f"{served.orthanc.url}/studies/{orthanc_id}", auth=served.orthanc.auth, timeout=30).status_code
        == 200
    )
    answer = click_save(page)
    assert answer.status == 404
    notification(page, "no longer in the archive")
    # nothing came back: no study, no SEG, no label
    assert (
        requests.post(f"{served.orthanc.url}/tools/lookup", data=study_uid, auth=served.orthanc.auth, timeout=30).json()
        == []
    )
    assert final_label(served, series_uid)[0] == {}
    assert page.problems.unexpected("/viewer/labels/studies") == []


def test_orthanc_restarted_during_a_session(served, page):
    study_uid, series_uid = sample_series()["Case_P004"]
    before = seg_series(served, study_uid)
    open_study_list(page, served)
    open_in_viewer(page, served, study_uid)
    run_segmentation(page)
    served.orthanc.stop()
    try:
        answer = click_save(page)
        assert answer.status == 200 and answer.json()["stored"] is False
        notification(page, "archive is unreachable")
    finally:
        served.orthanc.start()
    # the server's outbox sends the kept SEG once Orthanc is back
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and len(seg_series(served, study_uid)) == len(before):
        time.sleep(1)
    assert len(seg_series(served, study_uid)) == len(before) + 1
    info, label = final_label(served, series_uid)
    assert info.get("manual") is True and label is not None and label.any()
    # the session goes on: the model runs again
    run_segmentation(page)
    assert page.problems.unexpected() == []


def test_server_restarted_during_a_session(served, page):
    study_uid, series_uid = sample_series()["Case_P002"]
    before = seg_series(served, study_uid)
    open_study_list(page, served)
    open_in_viewer(page, served, study_uid)
    run_segmentation(page)
    painted = page.evaluate(SEGMENTATION_VOXELS)
    served.handle.stop()
    try:
        page.locator('[data-cy="CardiacMiSave"]').click()
        notification(page, "does not answer")
        assert page.evaluate(SEGMENTATION_VOXELS) == painted  # the segmentation stays in the viewer
    finally:
        served.restart()
    answer = click_save(page)
    assert answer.status == 200 and answer.json()["stored"] is True
    notification(page, "Saved as the final label")
    assert len(seg_series(served, study_uid)) == len(before) + 1
    # while the server was stopped: the save, and the active-learning box's status poll (every few s)
    assert page.problems.unexpected("/viewer/labels/studies", "/viewer/training/status") == []
