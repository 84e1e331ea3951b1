"""The OHIF viewer of ``cardiac-mi serve``: MONAI Label's bundled OHIF 3 with a configuration we own.

MONAI Label 0.8.5 serves a built OHIF 3.10 at ``/ohif/``, configured to open studies in a three-viewport
MPR, with a MONAI Label panel that looks for its server on port 8000 of the page's host, cannot save, and
expects infer results the app does not write. We neither rebuild nor copy the 51 MB bundle. The MONAI
Label server is started with ``--uvicorn_app cardiac_mi.viewer.server:app`` (MONAI Label's own option
for a custom ASGI app): :mod:`.server` imports MONAI Label's FastAPI app and puts our routes in front:

- ``/ohif/app-config.js``: ``ohif/app-config.js`` of this package: the archive through the server's
  DICOMweb proxy, a second data source for the save, our mode;
- ``/ohif/cardiac-mi/{mode,extension}.js``: the "Cardiac MI" OHIF mode and extension, plain ES modules
  that OHIF loads at run time with ``import()`` (short-axis stack, brush, Save, panel connected);
- every other ``/ohif/`` path: the bundle's file (MONAI Label's route mangles nested paths), its
  ``index.html`` and style sheet without their Google Fonts links (the viewer works offline);
- ``/proxy/dicom/...``: the DICOMweb proxy (:mod:`.proxy`), which the browser's QIDO, WADO and STOW
  (uploads) go through;
- ``/viewer/monailabel/...``: the MONAI Label API as the panel sees it (:mod:`.panel`): only the
  viewer's task, results in the viewer's voxel order, the series' final label;
- ``/viewer/labels/studies``: the save (:mod:`.labels`): STOW-RS of the viewer's DICOM SEG, which the
  datastore makes the series' final label (a coded MANUAL SEG in the archive);
- ``/viewer/segments``: the label classes with their colours and DICOM codes (:data:`lgemri.seg.SEGMENTS`).

docs/viewer.md is the clinician's guide and explains these choices.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["OHIF_DIR", "UVICORN_APP"]

OHIF_DIR = Path(__file__).resolve().parent / "ohif"
UVICORN_APP = "cardiac_mi.viewer.server:app"
