"""``make_report``: quantify one study and write its report files (and hand them to a store, if given).

This library sends nothing: storing the DICOM objects is the ``store`` callable's job
(:func:`cardiac_mi.report.make_report` gives one that speaks DICOMweb).
"""

from __future__ import annotations

import datetime
import json
import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from .. import __version__
from ..atomic import write_bytes, write_text
from ..dicom import read_dicom_series
from ..errors import InputError
from ..images import read_image
from ..quantification import quantify
from .bullseye import bullseye_png
from .dicom_report import StudyInfo, encapsulated_pdf, measurement_sr, write_dicom
from .document import DISCLAIMER, pdf_bytes, write_html
from .schema import SCHEMA_ID, SCHEMA_VERSION, validate

__all__ = ["make_report", "build_report", "FILE_NAMES", "ReportStore"]

logger = logging.getLogger(__name__)

#: Output file of each role, inside the output folder.
FILE_NAMES = {
    "json": "report.json",
    "bullseye": "bullseye.png",
    "html": "report.html",
    "pdf": "report.pdf",
    "dicom": "report-pdf.dcm",
    "sr": "report-sr.dcm",
}


#: Stores the report's DICOM files (Encapsulated PDF, SR) and returns ``(server URL, stored SOPInstanceUIDs)``;
#: raises :class:`InputError` when they are not stored.
ReportStore = Callable[[Sequence[Path]], tuple[str, list[str]]]


def _read_study(image_path: Path, series_uid: str | None):
    """The image volume and its StudyInfo (copied from DICOM, new for NIfTI)."""
    if image_path.is_dir():
        series = read_dicom_series(image_path, series_uid)
        return series.volume, StudyInfo.from_series(series)
    volume = read_image(image_path)
    patient_id = image_path.name.removesuffix(".gz").removesuffix(".nii")
    return volume, StudyInfo.new(patient_id)


def build_report(quantification: dict, study: StudyInfo, image_path: str, label_path: str) -> dict:
    """The report dict (schema :data:`~lgemri.report.schema.SCHEMA`) around a quantification."""
    attributes = study.attributes
    text = lambda keyword: str(attributes[keyword]) if attributes.get(keyword) not in (None, "") else None  # noqa: E731
    return {
        "schema": SCHEMA_ID,
        "schema_version": SCHEMA_VERSION,
        "created": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "software": {"name": "cardiac_mi", "version": __version__},
        "inputs": {"image": str(image_path), "label": str(label_path)},
        "study": {
            "source": study.source,
            "patient_id": text("PatientID"),
            "patient_name": text("PatientName"),
            "study_uid": study.study_uid,
            "series_uid": study.series_uid,
            "study_date": text("StudyDate"),
        },
        "quantification": quantification,
        "disclaimer": DISCLAIMER,
    }


def _public_url(url: str) -> str:
    """``url`` without user:password@ (it goes into the JSON)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = host + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def make_report(
    image_path: str | os.PathLike,
    label_path: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    store: ReportStore | None = None,
    viability_threshold: float = 50.0,
    rv_insertion_deg: float | None = None,
    base_first: bool | None = None,
    series_uid: str | None = None,
) -> dict[str, Path]:
    """Quantify a study and write its report into ``out_dir``.

    Writes (names in :data:`FILE_NAMES`) the bullseye PNG, the HTML and PDF pages, the DICOM
    Encapsulated PDF and the DICOM measurement SR, all in the image's study (a new study when the
    image is NIfTI), and last ``report.json``. With ``store`` the two DICOM files are then handed
    to it (``report.json`` records where they went); a failed store still leaves the files (and
    ``report.json`` says nothing was stored) before the error is raised.

    Args:
        image_path: the LGE image, a NIfTI file or a folder with one DICOM series.
        label_path: its EMIDEC label on the same grid (NIfTI file or DICOM series folder).
        out_dir: the output folder (created when missing).
        store: stores the DICOM report files (see :data:`ReportStore`); None stores nothing.
        viability_threshold: transmurality (%) above which a segment is called non-viable.
        rv_insertion_deg: anterior RV insertion angle (default: patient axes, 120 degrees).
        base_first: False when slice 0 is the apex; None reads it from the anatomy.
        series_uid: the series to read when the image folder holds several.

    Returns:
        The written files by role: ``json``, ``bullseye``, ``html``, ``pdf``, ``dicom``, ``sr``.

    Raises:
        InputError: unreadable or mismatched inputs, a label without myocardium, or a failed store.
    """
    image_path, label_path, out = Path(image_path), Path(label_path), Path(out_dir)
    image, study = _read_study(image_path, series_uid)
    label = read_image(label_path)
    if label.shape != image.shape:
        raise InputError(
            f"{label_path}: label shape {label.shape} differs from image shape {image.shape} ({image_path})"
        )
    quantification = quantify(
        image, label, rv_insertion_deg=rv_insertion_deg, viability_threshold=viability_threshold, base_first=base_first
    )
    report = build_report(quantification, study, str(image_path), str(label_path))
    paths = {role: out / name for role, name in FILE_NAMES.items()}
    report["files"] = dict(FILE_NAMES)

    png = bullseye_png(quantification)
    write_bytes(paths["bullseye"], png)
    write_html(report, paths["html"], png)
    pdf = pdf_bytes(report)
    write_bytes(paths["pdf"], pdf)
    pdf_ds = encapsulated_pdf(pdf, study)
    write_dicom(pdf_ds, paths["dicom"])
    sr_ds = measurement_sr(quantification, study, [pdf_ds, *study.images])
    write_dicom(sr_ds, paths["sr"])
    report["dicom"] = {
        "study_uid": study.study_uid,
        "pdf_sop_instance_uid": str(pdf_ds.SOPInstanceUID),
        "sr_sop_instance_uid": str(sr_ds.SOPInstanceUID),
    }

    error = None
    if store is not None:
        try:
            store_url, uids = store([paths["dicom"], paths["sr"]])
        except InputError as exc:
            error = exc
            report["stored"] = None
        else:
            report["stored"] = {"url": _public_url(store_url), "sop_instance_uids": uids}
    validate(report)
    write_text(paths["json"], json.dumps(report, indent=1) + "\n")
    logger.info(
        "%s: infarct %.1f %% of LV (%s), %d infarcted segment(s); report in %s",
        image_path,
        quantification["infarct"]["percent_lv"],
        quantification["classification"]["label"],
        quantification["n_infarcted_segments"],
        out,
    )
    if error is not None:
        raise error
    return paths
