"""What the clinician sees and does besides Run and Save, in Chromium against a real server and Orthanc.

The quality verdict on the image and in the Results panel (good on a sample study, doubtful on a study
whose heart is cut by the field of view); the panel's figures against the report made from the saved
label, whose DICOM PDF and SR land in the study; undo/redo of brush and Run; Run with unsaved edits asks;
the MONAI Label panel and the class colours and order survive a side-panel switch; the Length tool reads mm.
Screenshots of each state go to the artifacts.
"""

from __future__ import annotations

import io
import json

import numpy as np
import pytest

pytest.importorskip("playwright")
pytest.importorskip("monailabel")
requests = pytest.importorskip("requests")

import pydicom  # noqa: E402
from pydicom.uid import generate_uid  # noqa: E402

from cardiac_mi.serve import SAMPLE_DICOM  # noqa: E402
from lgemri.emidec import load_case  # noqa: E402
from tests.helpers.viewer import (  # noqa: E402
    SEGMENTATION_VOXELS,
    brush_stroke,
    click_save,
    notification,
    open_in_viewer,
    open_study_list,
    run_segmentation,
    sample_series,
    shown_slice,
)

LABELMAP = """() => {
  const seg = window.services.segmentationService.getSegmentations()[0];
  const volume = window.services.segmentationService.getLabelmapVolume(seg.segmentationId);
  return Array.from(volume.voxelManager.getCompleteScalarDataArray());
}"""
SEGMENTS = """() => {
  const { segmentationService, viewportGridService } = window.services;
  const seg = segmentationService.getSegmentations()[0];
  const viewportId = viewportGridService.getActiveViewportId();
  return Object.values(seg.segments).filter(Boolean).map(s => ({
    index: s.segmentIndex, label: s.label,
    colour: Array.from(segmentationService.getSegmentColor(viewportId, seg.segmentationId, s.segmentIndex)).slice(0, 3),
  }));
}"""
LENGTHS = """() => {
  const tools = window.extensionManager.getModuleEntry('@ohif/extension-cornerstone.utilityModule.common')
    .exports.getCornerstoneLibraries().cornerstoneTools;
  return tools.annotation.state.getAllAnnotations()
    .filter(a => a.metadata.toolName === 'Length')
    .map(a => Object.values(a.data.cachedStats || {}).map(s => ({ length: s.length, unit: s.unit })))
    .flat();
}"""


LV_CENTRE_ON_CANVAS = """() => {
  const { segmentationService, viewportGridService, cornerstoneViewportService } = window.services;
  const seg = segmentationService.getSegmentations()[0];
  const volume = segmentationService.getLabelmapVolume(seg.segmentationId);
  const viewport = cornerstoneViewportService.getCornerstoneViewport(viewportGridService.getActiveViewportId());
  const [columns, rows] = volume.dimensions;
  const k = volume.imageData.worldToIndex(viewport.getCamera().focalPoint).map(Math.round)[2];
  const data = volume.voxelManager.getCompleteScalarDataArray();
  let n = 0, si = 0, sj = 0;
  for (let j = 0; j < rows; j++) for (let i = 0; i < columns; i++) {
    if (data[k * rows * columns + j * columns + i]) { n++; si += i; sj += j; }
  }
  return viewport.worldToCanvas(volume.imageData.indexToWorld([si / n, sj / n, k]));
}"""


def results_json(served, series_uid: str) -> dict:
    answer = requests.get(f"{served.url}/viewer/results", params={"image": series_uid}, timeout=60)
    assert answer.status_code == 200, answer.text[:300]
    return answer.json()


def banner(page) -> tuple[str, str]:
    element = page.locator("#cardiac-mi-quality")
    element.wait_for(timeout=30_000)
    return element.get_attribute("data-verdict"), element.inner_text()


def wait_verdict(page, verdict: str, timeout: float = 30_000) -> str:
    page.wait_for_function(
        "v => { const b = document.getElementById('cardiac-mi-quality'); return b && b.dataset.verdict === v; }",
        arg=verdict,
        timeout=timeout,
    )
    return page.locator("#cardiac-mi-quality").inner_text()


def shown_number(value) -> str:
    """A figure of the results JSON as the panel's JavaScript writes it (24.0 is "24")."""
    return str(int(value)) if float(value).is_integer() else str(value)


def figure(page, key: str) -> str:
    return page.locator(f'[data-cy="cardiac-mi-figures"] tr[data-key="{key}"] td').nth(1).inner_text()


def upload_cut_study(served) -> tuple[str, str]:
    """Case_P001 with its left columns cut off through the middle of the LV (the field of view too small),
    uploaded as a new study; (StudyInstanceUID, SeriesInstanceUID)."""
    truth = np.asarray(load_case(SAMPLE_DICOM.parent / "emidec", "Case_P001").label.array)
    rows_with_lv = np.nonzero(np.isin(truth, (1, 2, 3, 4)).any(axis=(1, 2)))[0]
    cut = int((rows_with_lv.min() + rows_with_lv.max()) // 2)  # lgemri's i runs along a DICOM row
    study, series = generate_uid(), generate_uid()
    for path in sorted((SAMPLE_DICOM / "Case_P001").rglob("*.dcm")):
        ds = pydicom.dcmread(path)
        pixels = ds.pixel_array[:, cut:]
        row = np.array([float(v) for v in ds.ImageOrientationPatient[:3]])
        spacing = float(ds.PixelSpacing[1])
        ds.ImagePositionPatient = [float(p) + cut * spacing * r for p, r in zip(ds.ImagePositionPatient, row)]
        ds.Columns = pixels.shape[1]
        ds.PixelData = np.ascontiguousarray(pixels).tobytes()
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID = study, series, generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.PatientID, ds.PatientName, ds.StudyDescription = "CUT001", "Cut^Field", "LGE, heart cut by the FOV"
        buffer = io.BytesIO()
        ds.save_as(buffer, write_like_original=False)
        answer = requests.post(
            f"{served.orthanc.url}/instances", data=buffer.getvalue(), auth=served.orthanc.auth, timeout=30
        )
        assert answer.status_code == 200, answer.text[:300]
    return study, series


def test_results_panel_report_and_banner(served, page, artifacts):
    study_uid, series_uid = sample_series()["Case_P002"]
    open_study_list(page, served)
    open_in_viewer(page, served, study_uid)
    run_segmentation(page)
    text = wait_verdict(page, "good")
    assert "No plausibility problem found" in text and "model result" in text
    page.locator('[data-cy="cardiacMiResults-btn"]').click()
    page.locator('[data-cy="cardiac-mi-figures"]').wait_for(timeout=30_000)
    shown = results_json(served, series_uid)
    assert shown["source"] == "model"
    figures = shown["figures"]
    assert figure(page, "lv_mass_g") == f"{shown_number(figures['lv_mass_g'])} g"
    assert figure(page, "infarct").startswith(
        f"{shown_number(figures['infarct_volume_ml'])} ml, {shown_number(figures['infarct_percent_lv'])} % of LV"
    )
    assert page.locator('[data-cy="cardiac-mi-segments"] tr[data-segment]').count() == 17
    assert figure(page, "uncertainty").startswith(f"{shown['uncertainty']['mutual_information']:.3f} (doubtful above")
    page.wait_for_function(
        "() => { const i = document.querySelector('[data-cy=\"cardiac-mi-bullseye\"]');"
        " return i && i.complete && i.naturalWidth > 100; }",
        timeout=30_000,
    )
    page.screenshot(path=str(artifacts / "10-results-model.png"))

    # the base/apex cue beside the slice number follows the slice on screen
    levels = shown["slice_levels"]
    for key in (None, "ArrowDown", "ArrowDown", "ArrowUp"):
        if key:
            page.locator('[data-cy="viewport-pane"]').first.hover()
            page.keyboard.press(key)
            page.wait_for_timeout(400)
        index, count = shown_slice(page)
        assert len(levels) == count
        page.wait_for_function(
            "v => document.getElementById('cardiac-mi-slice-level').dataset.level === v",
            arg=levels[index] or "",
            timeout=10_000,
        )
    assert {"basal", "mid", "apical"} <= set(levels)

    # a report before any save: refused with the reason, nothing stored
    page.locator('[data-cy="cardiac-mi-report"]').click()
    notification(page, "Save the segmentation first")

    answer = click_save(page)
    assert answer.status == 200, answer.text()
    page.get_by_text("Saved label, measured").wait_for(timeout=30_000)
    saved = results_json(served, series_uid)
    assert saved["source"] == "final label"
    # the saved label is the model's, class for class: as plausible as it was
    assert saved["quality"]["doubtful"] is False and saved["figures"]["lv_mass_g"] == shown["figures"]["lv_mass_g"]
    assert "(saved label)" in wait_verdict(page, "good")
    percent = saved["figures"]["infarct_percent_lv"]
    assert f"{shown_number(percent)} % of LV" in figure(page, "infarct")
    # the RV insertion point picked on the image: a point straight above the LV centre is at 90 degrees
    centre = page.evaluate(LV_CENTRE_ON_CANVAS)
    box = page.locator('[data-cy="viewport-pane"] canvas').first.bounding_box()
    page.locator('[data-cy="cardiac-mi-rv-pick"]').click()
    voxels = page.evaluate(SEGMENTATION_VOXELS)
    page.mouse.click(box["x"] + centre[0], box["y"] + centre[1] - 40)
    notification(page, "RV insertion at")
    assert abs(int(page.locator('[data-cy="cardiac-mi-rv"]').input_value()) - 90) <= 3
    assert page.evaluate(SEGMENTATION_VOXELS) == voxels  # the pick drew nothing
    page.locator('[data-cy="cardiac-mi-rv"]').fill("110")
    with (
        page.expect_download(timeout=120_000) as download,
        page.expect_response("**/viewer/results/report**", timeout=120_000) as response,
    ):
        page.locator('[data-cy="cardiac-mi-report"]').click()
    outcome = json.loads(response.value.headers["x-cardiac-mi-report"])
    pdf = download.value.path().read_bytes()
    assert pdf.startswith(b"%PDF")
    assert outcome["stored"] is True and outcome["study_uid"] == study_uid
    assert round(outcome["infarct_percent_lv"], 1) == percent  # the panel's figure is the report's
    notification(page, "its DICOM PDF and SR are stored")
    modalities = requests.get(
        f"{served.orthanc.url}/dicom-web/studies/{study_uid}/series",
        auth=served.orthanc.auth,
        headers={"Accept": "application/dicom+json"},
        timeout=30,
    ).json()
    assert {"SR", "DOC"} <= {item["00080060"]["Value"][0] for item in modalities}
    page.screenshot(path=str(artifacts / "11-results-saved-report.png"))


def test_doubtful_result_says_why(served, page, artifacts):
    study_uid, series_uid = upload_cut_study(served)
    open_study_list(page, served)
    open_in_viewer(page, served, study_uid)
    page.locator('[data-cy="monailabel-btn"]').click()
    page.locator(".tab-content button", has_text="Run").first.click()  # the overlay may be empty here
    notification(page, "Running Segmentation - Successful", timeout=120_000)
    text = wait_verdict(page, "doubtful")
    assert "Doubtful result" in text
    findings = results_json(served, series_uid)["quality"]["findings"]
    assert findings and all(f["message"] in text for f in findings)
    page.locator('[data-cy="cardiacMiResults-btn"]').click()
    verdict = page.locator('[data-cy="cardiac-mi-verdict"]')
    assert verdict.get_attribute("data-verdict") == "doubtful"
    page.screenshot(path=str(artifacts / "12-doubtful.png"))


def labelmap_settled(page, expected: np.ndarray) -> bool:
    """Whether the labelmap equals ``expected`` once an edit step has settled."""
    page.wait_for_timeout(600)
    return np.array_equal(np.array(page.evaluate(LABELMAP)), expected)


def test_undo_redo_and_run_asks(served, page, artifacts):
    study_uid, _ = sample_series()["Case_P004"]
    open_study_list(page, served)
    open_in_viewer(page, served, study_uid)
    run_segmentation(page)
    page.wait_for_timeout(800)
    after_run = np.array(page.evaluate(LABELMAP))
    brush_stroke(page)
    page.wait_for_timeout(600)
    after_brush = np.array(page.evaluate(LABELMAP))
    assert (after_brush != after_run).sum() > 5
    page.locator('[data-cy="viewport-pane"]').first.hover()
    page.keyboard.press("Control+z")
    assert labelmap_settled(page, after_run), "Ctrl+Z did not restore the model's label"
    page.keyboard.press("Control+y")
    assert labelmap_settled(page, after_brush), "Ctrl+Y did not bring the stroke back"
    page.locator('[data-cy="CardiacMiUndo"]').click()
    assert labelmap_settled(page, after_run), "the Undo button did not undo"
    page.locator('[data-cy="CardiacMiRedo"]').click()
    assert labelmap_settled(page, after_brush)

    # Run with unsaved edits asks; Cancel keeps the edits
    asked = []
    page.once("dialog", lambda dialog: (asked.append(dialog.message), dialog.dismiss()))
    page.locator('[data-cy="monailabel-btn"]').click()
    page.locator(".tab-content button", has_text="Run").first.click()
    page.wait_for_timeout(1500)
    assert asked and "replaces your unsaved edits" in asked[0]
    assert np.array_equal(np.array(page.evaluate(LABELMAP)), after_brush), "Cancel lost the edits"
    # OK runs the model; Undo brings the edits back
    page.once("dialog", lambda dialog: dialog.accept())
    page.locator(".tab-content button", has_text="Run").first.click()
    notification(page, "Running Segmentation - Successful", timeout=120_000)
    page.wait_for_timeout(1000)
    assert np.array_equal(np.array(page.evaluate(LABELMAP)), after_run)
    page.locator('[data-cy="CardiacMiUndo"]').click()
    assert labelmap_settled(page, after_brush), "Undo after Run did not bring the edits back"
    page.screenshot(path=str(artifacts / "13-undo.png"))


def test_panel_switch_colours_order_and_length_tool(served, page, artifacts):
    from lgemri.labels import DISPLAY_NAMES
    from lgemri.seg import SEGMENTS as CLASSES

    study_uid, _ = sample_series()["Case_N003"]
    open_study_list(page, served)
    open_in_viewer(page, served, study_uid)
    run_segmentation(page)
    page.wait_for_timeout(2000)
    expected = [
        {"index": k, "label": DISPLAY_NAMES[k], "colour": [int(CLASSES[k].colour[i : i + 2], 16) for i in (1, 3, 5)]}
        for k in sorted(DISPLAY_NAMES)
    ]
    assert sorted(page.evaluate(SEGMENTS), key=lambda s: s["index"]) == expected
    voxels = page.evaluate(SEGMENTATION_VOXELS)
    # to the Segmentation panel and back: Run is there again, the colours and the overlay hold
    page.locator('[data-cy="panelSegmentationWithTools-btn"]').click()
    page.locator('[data-cy="data-row"]').filter(has_text="LV blood pool").first.wait_for(timeout=30_000)
    page.screenshot(path=str(artifacts / "14-segments-in-order.png"))
    page.locator('[data-cy="monailabel-btn"]').click()
    page.locator(".tab-content button", has_text="Run").first.wait_for(timeout=30_000)
    page.wait_for_timeout(2500)
    assert sorted(page.evaluate(SEGMENTS), key=lambda s: s["index"]) == expected
    assert page.evaluate(SEGMENTATION_VOXELS) == voxels

    # Length: a drag on the image draws a line that reads in mm
    page.locator('[data-cy="Length"]').click()
    box = page.locator('[data-cy="viewport-pane"] canvas').first.bounding_box()
    x, y = box["x"] + box["width"] * 0.4, box["y"] + box["height"] * 0.5
    page.mouse.move(x, y)
    page.mouse.down()
    page.mouse.move(x + 60, y, steps=8)
    page.mouse.up()
    page.wait_for_timeout(500)
    lengths = page.evaluate(LENGTHS)
    assert lengths and lengths[0]["unit"] == "mm" and lengths[0]["length"] > 1, lengths
    page.screenshot(path=str(artifacts / "15-length.png"))


def test_study_list_description_and_modes(served, page, artifacts):
    study_uid, _ = sample_series()["Case_P001"]
    open_study_list(page, served)
    row = page.locator(f'[data-cy="studyRow-{study_uid}"]')
    row.get_by_text("Cardiac MRI LGE (cardiac_mi phantom)").first.wait_for(timeout=30_000)  # the Description column
    row.click()
    page.locator(f'[data-cy="mode-cardiac-mi-{study_uid}"]').wait_for(timeout=30_000)
    modes = page.locator('[data-cy^="mode-"]').all_inner_texts()
    assert modes[0] == "Cardiac MI"
    assert not {"Total Metabolic Tumor Volume", "Microscopy", "Preclinical 4D"} & set(modes), modes
    page.screenshot(path=str(artifacts / "16-study-list.png"))
    assert not page.problems.unexpected()


def test_capture_downloads_the_slice_on_screen(served, page, artifacts):
    from PIL import Image

    study_uid, _ = sample_series()["Case_P001"]
    open_study_list(page, served)
    open_in_viewer(page, served, study_uid)
    run_segmentation(page)
    index, _ = shown_slice(page)
    size = page.evaluate(
        "() => { const c = document.querySelector('[data-cy=\"viewport-pane\"] canvas'); return [c.width, c.height]; }"
    )
    with page.expect_download(timeout=30_000) as download:
        page.locator('[data-cy="Capture"]').click()
    assert download.value.suggested_filename == f"cardiac-mi-PHANTOM-P001-slice-{index + 1}.png"
    picture = np.asarray(Image.open(download.value.path()).convert("RGB")).astype(int)
    assert list(picture.shape[1::-1]) == size  # the viewport as it is, not a reformat of another size
    grey = (np.abs(picture[..., 0] - picture[..., 1]) < 10) & (np.abs(picture[..., 1] - picture[..., 2]) < 10)
    assert (picture.sum(axis=2) > 60).sum() > 2000  # the image
    assert (~grey).sum() > 50  # and the overlay on it
    Image.fromarray(picture.astype(np.uint8)).save(artifacts / "17-capture.png")


def test_saved_label_thumbnail_explains_itself(served, page, artifacts, tmp_path):
    import nibabel as nib

    study_uid, series_uid = sample_series()["Case_N003"]
    label = requests.post(
        f"{served.url}/infer/segmentation",
        params={"image": series_uid, "output": "image"},
        files={"params": (None, "{}")},
        timeout=120,
    )
    assert label.status_code == 200, label.text[:300]
    path = tmp_path / "label.nii.gz"
    path.write_bytes(label.content)
    nib.load(path)  # a NIfTI, as the datastore takes it
    with open(path, "rb") as fh:
        saved = requests.put(
            f"{served.url}/datastore/label",
            params={"image": series_uid, "tag": "final"},
            files={"label": (path.name, fh)},
            timeout=120,
        )
    assert saved.status_code == 200, saved.text[:300]
    open_study_list(page, served)
    open_in_viewer(page, served, study_uid)
    page.get_by_text("Showing the final label of this series").wait_for(timeout=30_000)
    page.get_by_text("SEG", exact=True).first.dblclick()
    notification(page, "This is a saved label of the series")
    page.wait_for_timeout(1000)
    assert page.get_by_text("could not be added to the viewport").count() == 0
    page.screenshot(path=str(artifacts / "18-seg-thumbnail.png"))
