"""The OHIF viewer of ``cardiac-mi serve``: MONAI Label's bundled OHIF 3 with a configuration we own.

MONAI Label 0.8.5 bundles a built OHIF viewer and serves it at ``/ohif/``, but its ``app-config.js``
cannot save (no ``stowRoot``), opens studies in a three-viewport MPR, and its MONAI Label panel looks for
the server on port 8000 of the page's host. We do not rebuild or copy the bundle. Instead, the MONAI Label
server is started with ``--uvicorn_app cardiac_mi.viewer.server:app`` (MONAI Label's own option for a
custom ASGI app): :mod:`cardiac_mi.viewer.server` imports MONAI Label's FastAPI app and puts a few routes
in front of its ``/ohif/`` route:

- ``/ohif/app-config.js`` is ``ohif/app-config.js`` of this package (data source through the server's
  DICOMweb proxy, with STOW; our mode and extension);
- ``/ohif/cardiac-mi/*.js`` are our runtime-loaded OHIF mode and extension (plain ES modules: OHIF loads
  a mode or extension given as a URL with ``import()``);
- every other ``/ohif/`` path is the bundle's file (MONAI Label's route mangles nested paths), or the
  bundle's ``index.html`` without its Google Fonts link (the viewer works offline);
- ``/viewer/segments`` lists the EMIDEC classes with their DICOM codes (:data:`lgemri.seg.SEGMENTS`), so
  the SEG the viewer stores carries the same codes as the SEGs the server writes; ``/viewer/time`` is the
  server's clock, used as the SEG's ContentDate/ContentTime (the datastore picks the newest by them).

The DICOMweb proxy (``/proxy/dicom/{qido,wado,stow}``) is replaced too (:mod:`cardiac_mi.viewer.proxy`):
MONAI Label's forwards POST but without time-outs and turns an unreachable archive into a bare 500.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["OHIF_DIR", "UVICORN_APP"]

OHIF_DIR = Path(__file__).resolve().parent / "ohif"
UVICORN_APP = "cardiac_mi.viewer.server:app"
