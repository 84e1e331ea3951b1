"""Driving the viewer (OHIF with our configuration) in Chromium: the study list, a study in the Cardiac MI mode,
the MONAI Label panel's Run, the brush, Save, and clocks measured in the page.

Times are measured in the page (from the DOM click to the first frame that shows the image, or the overlay,
on the viewport's canvas). ``page`` is a Playwright page (the ``page`` fixture of tests/browser/conftest.py),
``served`` a running ``cardiac-mi serve``.
"""

from __future__ import annotations

import pydicom

from cardiac_mi.serve import SAMPLE_DICOM

# In-page clocks: the DOM time of the next click, and the first frame whose viewport canvas shows what we
# wait for (image: enough non-black pixels; overlay: coloured pixels, the image itself being grey).
ARM_CLICK_CLOCK = """() => {
  window.__clickAt = null;
  document.addEventListener('click', () => { window.__clickAt = performance.now(); }, { capture: true, once: true });
}"""
WAIT_FOR_CANVAS = """async ({ what, timeout }) => {
  const count = () => {
    const canvas = document.querySelector('[data-cy="viewport-pane"] canvas');
    const ctx = canvas && canvas.width ? canvas.getContext('2d') : null;
    if (!ctx) return 0;
    const d = ctx.getImageData(0, 0, canvas.width, canvas.height).data;
    let n = 0;
    for (let i = 0; i < d.length; i += 8) {
      const r = d[i], g = d[i + 1], b = d[i + 2];
      if (what === 'image' ? r + g + b > 60 : Math.max(Math.abs(r - g), Math.abs(r - b), Math.abs(g - b)) > 40) n++;
    }
    return n;
  };
  const needed = what === 'image' ? 2000 : 50;
  const start = performance.now();
  while (performance.now() - start < timeout) {
    await new Promise(requestAnimationFrame);
    if (count() >= needed) {
      return { clickAt: window.__clickAt, shownAt: performance.now() };
    }
  }
  return { clickAt: window.__clickAt, shownAt: null, pixels: count() };
}"""
SEGMENTATION_VOXELS = """() => {
  const cs = window.extensionManager.getModuleEntry('@ohif/extension-cornerstone.utilityModule.common')
    .exports.getCornerstoneLibraries().cornerstone;
  const segs = window.services.segmentationService.getSegmentations();
  let n = 0;
  for (const seg of segs) {
    for (const id of seg.representationData.Labelmap.imageIds) {
      const px = cs.cache.getImage(id).getPixelData();
      for (let i = 0; i < px.length; i++) if (px[i]) n++;
    }
  }
  return n;
}"""


def sample_series() -> dict[str, tuple[str, str]]:
    """Sample case name -> (StudyInstanceUID, SeriesInstanceUID)."""
    out = {}
    for folder in sorted(p for p in SAMPLE_DICOM.iterdir() if p.is_dir()):
        ds = pydicom.dcmread(sorted(folder.rglob("*.dcm"))[0], stop_before_pixels=True)
        out[folder.name] = (str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID))
    return out


def notification(page, text: str, timeout: float = 30_000) -> str:
    """Wait for a notification containing ``text``; return the text of its message."""
    message = page.get_by_text(text).first
    message.wait_for(timeout=timeout)
    return message.inner_text()


def open_study_list(page, served):
    page.goto(f"{served.url}/ohif/")
    confirm = page.get_by_text("Confirm and Hide")
    confirm.wait_for(timeout=60_000)
    confirm.click()
    page.locator('[data-cy="study-list-results"]').wait_for(timeout=60_000)


def open_in_viewer(page, served, study_uid: str) -> dict:
    """From the study list, open a study in the Cardiac MI mode; the page clock of click and first image."""
    page.locator(f'[data-cy="studyRow-{study_uid}"]').click()
    mode = page.locator(f'[data-cy="mode-cardiac-mi-{study_uid}"]')
    mode.wait_for(timeout=30_000)
    page.evaluate(ARM_CLICK_CLOCK)
    mode.click()
    shown = page.evaluate(WAIT_FOR_CANVAS, {"what": "image", "timeout": 60_000})
    assert shown["shownAt"] is not None, f"no image on the viewport ({shown})"
    # the panel connects by itself once the image is there
    page.get_by_text("cardiac_mi", exact=True).wait_for(timeout=60_000)
    page.locator(".tab-content button", has_text="Run").first.wait_for(timeout=30_000)
    return shown


def run_segmentation(page) -> float:
    """Click the panel's Run; seconds from the click to the first frame with the overlay."""
    page.locator('[data-cy="monailabel-btn"]').click()
    run = page.locator(".tab-content button", has_text="Run").first
    page.evaluate(ARM_CLICK_CLOCK)
    run.click()
    shown = page.evaluate(WAIT_FOR_CANVAS, {"what": "overlay", "timeout": 120_000})
    assert shown["shownAt"] is not None, f"no overlay on the viewport ({shown})"
    # (a series with a saved label shows an overlay before: the panel's answer is what counts then)
    notification(page, "Running Segmentation - Successful", timeout=120_000)
    return (shown["shownAt"] - shown["clickAt"]) / 1000


def click_save(page):
    """Click Save and return the server's answer to the SEG it was sent."""
    with page.expect_response("**/viewer/labels/studies", timeout=120_000) as answer:
        page.locator('[data-cy="CardiacMiSave"]').click()
    return answer.value


def brush_stroke(page) -> None:
    """Paint an infarct stroke across the middle slice, left of the heart."""
    page.locator('[data-cy="panelSegmentationWithTools-btn"]').click()
    page.locator('[data-cy="data-row"]').filter(has_text="Infarct").first.click()
    page.locator('[data-cy="Brush"]').click()
    box = page.locator('[data-cy="viewport-pane"] canvas').first.bounding_box()
    x, y = box["x"] + box["width"] * 0.35, box["y"] + box["height"] * 0.56
    page.mouse.move(x, y)
    page.mouse.down()
    for step in range(1, 21):
        page.mouse.move(x + 4 * step, y, steps=2)
    page.mouse.up()
    page.wait_for_timeout(300)


def shown_slice(page) -> tuple[int, int]:
    """The viewport's slice as its overlay shows it ("I: 4 (4/7)"): (index from 0, number of slices)."""
    text = page.locator('[data-cy="viewport-overlay-bottom-right"]').inner_text()
    current, total = text.split("(")[1].split(")")[0].split("/")
    return int(current) - 1, int(total)
