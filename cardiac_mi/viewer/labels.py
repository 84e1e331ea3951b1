"""The viewer's save: a DICOM SEG from OHIF becomes the final label of its image series.

The viewer's Save button (``ohif/extension.js``) has OHIF build a DICOM SEG of the segmentation on
screen (OHIF's own ``generateSegmentation``: the segments' names, the frames placed by source image) and
sends it by STOW-RS to ``POST /viewer/labels/studies`` instead of the archive. Here:

1. the request must hold exactly one DICOM SEG, referencing exactly one image series;
2. that series must still be in the archive (a study deleted while it was open is refused: a SEG stored
   now would bring back a study holding nothing but the label). When the archive cannot be asked, the
   save goes on: the datastore keeps the label until the archive is back;
3. segments that no frame uses are dropped (OHIF writes every segment of the segmentation, empty ones
   too, and their names are not ours to check);
4. the datastore's ``save_label(series, seg, "final")`` does the rest: it reads the SEG onto the series
   grid by segment code or name (:func:`lgemri.seg.read_seg`), refuses an empty or unmappable one with a
   message, writes the label as a coded MANUAL SEG (:func:`lgemri.seg.write_seg`) and stores it in the
   archive, or keeps it in its outbox while the archive is unreachable.

So the SEG that lands in the archive is always the server's coded one (SNOMED CT segment codes,
SegmentNumber = EMIDEC class, the server's clock as ContentDate/ContentTime), whatever the viewer wrote.
"""

from __future__ import annotations

import io
import logging
import tempfile
from pathlib import Path
from typing import Any

import pydicom
from fastapi import HTTPException
from monailabel.config import settings
from monailabel.interfaces.utils.app import app_instance

from cardiac_mi.ids import uid_problem
from cardiac_mi.store import DicomStore, DicomStoreError, split_multipart
from cardiac_mi.viewer.results import measure_final_label, panel_view
from lgemri.errors import InputError
from lgemri.seg import SEGMENTATION_STORAGE

__all__ = ["save_viewer_seg", "split_multipart", "series_in_archive"]

logger = logging.getLogger(__name__)

FINAL = "final"
CHECK_TIMEOUT_S = (3.0, 10.0)  # (connect, answer) for the check that the series is still there


def series_in_archive(study_uid: str, series_uid: str) -> bool | None:
    """Whether the archive still holds the series: True, False, or None when it cannot be asked.

    Raises:
        InputError: A UID is not a DICOM UID (it would become part of the archive's URL).
    """
    for value, name in ((study_uid, "StudyInstanceUID"), (series_uid, "SeriesInstanceUID")):
        problem = uid_problem(value, name)
        if problem:
            raise InputError(problem)
    root = settings.MONAI_LABEL_STUDIES.rstrip("/")
    if not root.startswith(("http://", "https://")):
        return None
    user, password = settings.MONAI_LABEL_DICOMWEB_USERNAME, settings.MONAI_LABEL_DICOMWEB_PASSWORD
    connect, answer = CHECK_TIMEOUT_S
    store = DicomStore(
        root, *((user, password) if user and password else (None, None)), timeout=answer, connect_timeout=connect
    )
    try:
        found = store.search_series({"SeriesInstanceUID": series_uid}, study_uid=study_uid)
    except DicomStoreError as exc:
        if exc.status == 404:
            return False
        logger.warning("cannot ask %s for series %s: %s", root, series_uid, exc)
        return None
    finally:
        store.session.close()
    return any(item.series_uid == series_uid for item in found)


def _read(parts: list[bytes]) -> pydicom.Dataset:
    if len(parts) != 1:
        raise InputError(f"expected one DICOM SEG, got {len(parts)} files")
    try:
        ds = pydicom.dcmread(io.BytesIO(parts[0]))
    except Exception as exc:  # pydicom raises many kinds for damaged data
        raise InputError(f"the file sent is not readable DICOM ({exc})") from None
    if str(ds.get("SOPClassUID", "")) != SEGMENTATION_STORAGE:
        raise InputError(f"expected a DICOM Segmentation, got SOP class {ds.get('SOPClassUID', '(none)')}")
    return ds


def _referenced_series(ds: pydicom.Dataset) -> tuple[str, str]:
    series = {str(item.get("SeriesInstanceUID", "")) for item in ds.get("ReferencedSeriesSequence", [])} - {""}
    if len(series) != 1:
        raise InputError(f"the SEG must reference exactly one image series; it references {len(series)}")
    study_uid, series_uid = str(ds.get("StudyInstanceUID", "")), series.pop()
    for value, name in ((study_uid, "the SEG's StudyInstanceUID"), (series_uid, "its referenced SeriesInstanceUID")):
        problem = uid_problem(value, name)
        if problem:
            raise InputError(problem)
    return study_uid, series_uid


def _drop_unused_segments(ds: pydicom.Dataset) -> list[str]:
    """Remove the segments that no frame uses; returns the labels of those kept."""
    used = set()
    shared = ds.get("SharedFunctionalGroupsSequence", [None])[0]
    for item in ds.get("PerFrameFunctionalGroupsSequence", []):
        for group in (item, shared):
            if group is not None and group.get("SegmentIdentificationSequence"):
                used.add(int(group.SegmentIdentificationSequence[0].ReferencedSegmentNumber))
                break
    kept = [item for item in ds.get("SegmentSequence", []) if int(item.SegmentNumber) in used]
    ds.SegmentSequence = kept
    return [str(item.get("SegmentLabel", item.SegmentNumber)) for item in kept]


def save_viewer_seg(content_type: str, body: bytes, user: str = "") -> dict[str, Any]:
    """Make the SEG of a viewer's STOW-RS request the final label of its series; the datastore's answer.

    Raises:
        HTTPException: 400 for a request that is not one DICOM SEG of one series, 404 when the series
            is no longer in the archive, 422 for an empty SEG; the datastore's own errors pass through.
    """
    try:
        ds = _read(split_multipart(content_type, body))
        study_uid, series_uid = _referenced_series(ds)
    except InputError as exc:
        raise HTTPException(400, str(exc)) from None
    kept = _drop_unused_segments(ds)
    if not kept:
        raise HTTPException(422, "the segmentation is empty: nothing to save (run the model or draw first)")
    present = series_in_archive(study_uid, series_uid)
    if present is False:
        raise HTTPException(
            404,
            f"series {series_uid} is no longer in the archive (deleted while it was open?); the label was not saved",
        )
    logger.info("viewer save for series %s by %s: segments %s", series_uid, user or "(anonymous)", ", ".join(kept))
    instance = app_instance()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "viewer-seg.dcm"
        ds.save_as(path, write_like_original=False)
        try:
            label_id = instance.datastore().save_label(
                series_uid, str(path), FINAL, {"user": user, "source": "OHIF viewer"}
            )
        except InputError as exc:
            raise HTTPException(422, str(exc)) from None
    result = dict(instance.on_save_label(series_uid, label_id) or {})
    return {
        "image": series_uid,
        "study": study_uid,
        "segments": kept,
        "archive_checked": present is True,
        **result,
        "results": _measured(series_uid),
    }


def _measured(series_uid: str) -> dict[str, Any] | None:
    """The saved label's checks and figures for the results panel; None (and a log line) when they fail:
    the label is saved either way."""
    try:
        entry = measure_final_label(series_uid)
    except Exception:  # noqa: BLE001 - the save succeeded; the panel asks again and says what failed
        logger.exception("the saved label of series %s could not be measured", series_uid)
        return None
    return panel_view(entry) if entry else None
