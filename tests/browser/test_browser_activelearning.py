"""The MONAI Label panel's Active Learning tab, in Chromium, against a real Orthanc and server.

Three of the four sample series get a final label (MONAI Label's datastore API); in the viewer, the tab
shows 3/4 annotated, its Next Sample asks the app's strategy (``POST /viewer/monailabel/activelearning/
random``), the bundle's "Next Sample" dialog names the only unlabelled series, and its OK (after the
browser's confirm) opens that study in the viewer.
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("playwright")
pytest.importorskip("monailabel")
requests = pytest.importorskip("requests")

from cardiac_mi.serve import SAMPLE_DICOM  # noqa: E402
from lgemri.labels import INFARCT  # noqa: E402
from tests.helpers.viewer import open_in_viewer, open_study_list, sample_series  # noqa: E402

SHOWN_SERIES = """() => {
  const { viewportGridService, displaySetService } = window.services;
  const viewport = viewportGridService.getState().viewports.get(viewportGridService.getActiveViewportId());
  const displaySet = viewport && displaySetService.getDisplaySetByUID(viewport.displaySetInstanceUIDs[0]);
  return displaySet ? displaySet.SeriesInstanceUID : null;
}"""


def put_final_label(served, case: str, tmp_path) -> None:
    """Save a final label of ``case`` through MONAI Label's datastore API (as another client would)."""
    import nibabel as nib

    from lgemri.dicom import read_dicom_series

    volume = read_dicom_series(SAMPLE_DICOM / case).volume
    label = np.zeros(np.asarray(volume.array).shape, dtype=np.uint8)
    label[5:15, 5:15, 1] = INFARCT
    path = tmp_path / f"{case}.nii.gz"
    nib.save(nib.Nifti1Image(label, np.asarray(volume.affine)), str(path))
    with open(path, "rb") as stream:
        answer = requests.put(
            f"{served.url}/datastore/label",
            params={"image": sample_series()[case][1], "tag": "final"},
            files={"label": (path.name, stream)},
            timeout=120,
        )
    assert answer.status_code == 200, answer.text[:500]


def test_next_sample_opens_the_unlabelled_series(served, page, tmp_path):
    series = sample_series()
    unlabelled = "Case_N003"
    for case in series:
        if case != unlabelled:
            put_final_label(served, case, tmp_path)
    study_uid, series_uid = series[unlabelled]

    open_study_list(page, served)
    open_in_viewer(page, served, series["Case_P001"][0])
    page.get_by_text("Active Learning", exact=True).click()
    tab = page.locator(".tab-content", has=page.get_by_text("Next Sample", exact=True))
    tab.wait_for(timeout=10_000)
    # the tab's state comes from the panel API: 3 of 4 series annotated, no training running
    assert tab.get_by_title("3/4 samples annotated").inner_text() == "75%"
    assert tab.get_by_role("button", name="Update Model").is_visible()
    assert tab.locator("select option").all_inner_texts() == ["random", "first", "epistemic"]

    confirms = []
    page.on("dialog", lambda dialog: (confirms.append(dialog.message), dialog.accept()))
    with page.expect_response("**/viewer/monailabel/activelearning/random", timeout=60_000) as answer:
        tab.get_by_role("button", name="Next Sample").click()
    assert answer.value.status == 200, answer.value.text()
    sample = answer.value.json()
    assert sample["id"] == series_uid and sample["StudyInstanceUID"] == study_uid

    dialog = page.locator(".nextSampleForm").last
    dialog.wait_for(timeout=10_000)
    shown = dialog.inner_text()
    assert series_uid in shown and study_uid in shown
    dialog.get_by_role("button", name="OK").click()
    page.wait_for_url(f"**StudyInstanceUIDs={study_uid}", timeout=30_000)
    assert len(confirms) == 1 and "reload" in confirms[0]
    # the viewer opens the sample's study by itself, with its series on the viewport and the panel connected
    page.get_by_text("cardiac_mi", exact=True).wait_for(timeout=60_000)
    page.wait_for_function(f"() => ({SHOWN_SERIES})() === {series_uid!r}", timeout=60_000)
    assert page.problems.unexpected() == []
