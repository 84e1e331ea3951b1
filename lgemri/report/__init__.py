"""Clinical infarct report of one LGE study: JSON, bullseye plots, HTML/PDF and DICOM.

:func:`make_report` (in :mod:`.api`) quantifies a study (:func:`lgemri.quantification.quantify`)
and writes into one folder:

    report.json      the machine-readable report (schema :data:`.schema.SCHEMA`, versioned)
    bullseye.png     AHA 17-segment bullseyes of transmurality and infarct % per segment
    report.html      one page for the clinician (figures embedded)
    report.pdf       the same page as a PDF
    report-pdf.dcm   DICOM Encapsulated PDF in the image's study
    report-sr.dcm    DICOM Comprehensive 3D SR (TID 1500 measurement report)

and, when given a ``store``, hands it the DICOM files. This library sends nothing itself:
:func:`cardiac_mi.report.make_report` stores them in a DICOMweb server (STOW-RS).
"""

from __future__ import annotations

from typing import Any

__all__ = ["make_report"]


def __getattr__(name: str) -> Any:  # imported on first use: matplotlib and highdicom are slow to load
    if name == "make_report":
        from .api import make_report

        return make_report
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
