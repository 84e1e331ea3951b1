"""What the viewer's Cardiac MI results panel shows, and its Report action: ``/viewer/results...``.

The panel (``ohif/extension.js``) shows, for the series on screen, the latest of two results:

- the model's, kept here when the panel's ``infer/segmentation`` answers (:func:`remember_inference`):
  the cascade's quality checks (:mod:`lgemri.qc`) and its quantification (:mod:`lgemri.quantification`),
  exactly the JSON that ``cardiac-mi infer`` and ``/infer/segmentation`` give;
- the final label's (the series' newest MANUAL SEG), measured after each save from the label as the
  archive holds it (:func:`measure_final_label`), and when a study opens that has one.

Routes:

- ``GET /viewer/results?image=SERIES``: that result as JSON (:func:`panel_view`), or 204 when the series
  has neither; with the AHA level of each slice in the viewer's order (``slice_levels``: the base/apex cue
  beside the slice number);
- ``GET /viewer/results/bullseye.png?image=SERIES``: the AHA-17 bullseyes of that result;
- ``POST /viewer/results/report?image=SERIES[&rv_insertion_deg=A]``: the report of the series' final
  label (:func:`lgemri.report.make_report`, as ``cardiac-mi report`` makes it). Its DICOM Encapsulated
  PDF and measurement SR are stored in the archive, in the image's study. The answer is the PDF, with
  what was stored in the ``X-Cardiac-Mi-Report`` header (JSON). When the archive is unreachable, the
  PDF still comes back, and the header says that nothing was stored and why.
"""

from __future__ import annotations

import datetime
import json
import logging
import shutil
import tempfile
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np
from fastapi import APIRouter, BackgroundTasks, Depends, HTTPException
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, JSONResponse, Response
from monailabel.config import settings
from monailabel.endpoints.user.auth import RBAC, User
from monailabel.interfaces.utils.app import app_instance

from cardiac_mi.ids import uid_problem
from lgemri.errors import InputError
from lgemri.images import read_image
from lgemri.qc import UNCERTAINTY_LIMIT, quality_checks
from lgemri.quantification import quantify

__all__ = ["router", "remember_inference", "forget", "latest", "measure_final_label", "panel_view", "RESULTS_LIMIT"]

logger = logging.getLogger(__name__)

RESULTS_LIMIT = 256  # series whose latest result is kept in memory
NO_CACHE = {"Cache-Control": "no-store"}

router = APIRouter(prefix="/viewer/results", include_in_schema=False)

_lock = threading.Lock()
_results: OrderedDict[str, dict[str, Any]] = OrderedDict()


def _now() -> str:
    return datetime.datetime.now().astimezone().isoformat(timespec="seconds")


def _keep(series_uid: str, entry: dict[str, Any]) -> dict[str, Any]:
    with _lock:
        _results[series_uid] = entry
        _results.move_to_end(series_uid)
        while len(_results) > RESULTS_LIMIT:
            _results.popitem(last=False)
    return entry


_watched: set[int] = set()


def _watch_saves() -> None:
    """Forget a series' result whenever a final label of it is saved, by any route (the datastore's
    listeners): the next ask measures the saved label."""
    datastore = app_instance().datastore()
    listeners = getattr(datastore, "on_final_label", None)
    with _lock:
        if listeners is None or id(datastore) in _watched:
            return
        _watched.add(id(datastore))
    listeners.append(lambda image_id, _outcome: forget(image_id))


def slice_levels(image: Any, quantification: dict[str, Any]) -> list[str | None]:
    """The AHA level of each slice (basal, mid, apical, or None without myocardium) in the viewer's slice
    order (along the slice normal, :func:`cardiac_mi.viewer.panel.viewer_order`)."""
    slices = int(image.shape[2])
    levels: list[str | None] = [None] * slices
    for row in quantification.get("slices") or []:
        if 0 <= int(row["k"]) < slices:
            levels[int(row["k"])] = row.get("level")
    affine = np.asarray(image.affine, dtype=float)
    if float(np.cross(affine[:3, 0], affine[:3, 1]) @ affine[:3, 2]) < 0:
        levels.reverse()
    return levels


def _image_levels(series_uid: str, quantification: dict[str, Any]) -> list[str | None] | None:
    try:
        image = read_image(app_instance().datastore().get_image_uri(series_uid))
    except Exception:  # noqa: BLE001 - the levels are a cue on screen; the result stands without them
        logger.warning("slice levels of series %s not known", series_uid, exc_info=True)
        return None
    return slice_levels(image, quantification)


def remember_inference(series_uid: str, model: str, params: dict[str, Any]) -> dict[str, Any] | None:
    """Keep the model's result JSON for ``series_uid`` (what a task's ``result_json`` answered).

    Results without a quality or quantification part (the localization task) are not kept."""
    if not isinstance(params, dict) or "quality" not in params or "quantification" not in params:
        return None
    _watch_saves()
    entry = {
        "image": series_uid,
        "source": "model",
        "model": model,
        "created": _now(),
        "quality": params["quality"],
        "quantification": params["quantification"],
        "warnings": list(params.get("warnings") or []),
        "uncertainty": params.get("uncertainty"),
        "slice_levels": None,  # when first asked (:func:`_result`): not on the infer's path
    }
    return _keep(series_uid, entry)


def forget(series_uid: str) -> None:
    with _lock:
        _results.pop(series_uid, None)


def latest(series_uid: str) -> dict[str, Any] | None:
    with _lock:
        return _results.get(series_uid)


def _final_label(series_uid: str) -> tuple[Any, Any, dict[str, Any]] | None:
    """(image volume, final label volume, label info) of a series; None when it has no final label."""
    datastore = app_instance().datastore()
    uri = datastore.get_label_uri(series_uid, "final")
    if not uri or not Path(uri).exists():
        return None
    info = datastore.get_label_info(series_uid, "final") or {}
    image = read_image(datastore.get_image_uri(series_uid))
    label = read_image(uri)
    if label.shape != image.shape:
        raise InputError(f"the final label of series {series_uid} has shape {label.shape}, its images {image.shape}")
    return image, label, info


def measure_final_label(series_uid: str) -> dict[str, Any] | None:
    """Quality checks and quantification of the series' final label, kept as its latest result; None when
    the series has no final label."""
    _watch_saves()
    found = _final_label(series_uid)
    if found is None:
        return None
    image, label, info = found
    findings = quality_checks(label)
    try:
        quantification = quantify(image, label)
    except InputError as exc:  # e.g. a label without myocardium: shown as such, not an error of the request
        quantification = {"error": str(exc)}
    entry = {
        "image": series_uid,
        "source": "final label",
        "model": None,
        "created": _now(),
        "label": {key: info.get(key) for key in ("seg_series_uid", "seg_datetime", "creator", "pending_upload")},
        "quality": {"doubtful": bool(findings), "findings": [f.as_dict() for f in findings]},
        "quantification": quantification,
        "warnings": [f"doubtful result: {f.message}" for f in findings],
        "slice_levels": slice_levels(image, quantification),
    }
    return _keep(series_uid, entry)


def _round(value: Any, digits: int = 1) -> float | None:
    return None if value is None else round(float(value), digits)


def panel_view(entry: dict[str, Any]) -> dict[str, Any]:
    """The result as the panel shows it: the quality verdict, the headline figures and the 17 segments
    (with the whole quantification, for whoever wants more)."""
    quantification = entry.get("quantification") or {}
    view = {
        key: entry.get(key)
        for key in (
            "image",
            "source",
            "model",
            "created",
            "label",
            "quality",
            "warnings",
            "uncertainty",
            "slice_levels",
        )
    }
    if view["uncertainty"]:
        view["uncertainty"] = {**view["uncertainty"], "limit": UNCERTAINTY_LIMIT}
    if "error" in quantification or "lv" not in quantification:
        view.update(figures=None, segments=[], error=quantification.get("error", "no quantification"))
        return {**view, "quantification": quantification}
    lv, infarct, mvo = quantification["lv"], quantification["infarct"], quantification["no_reflow"]
    view["figures"] = {
        "lv_mass_g": _round(lv["myocardium_mass_g"]),
        "myocardium_volume_ml": _round(lv["myocardium_volume_ml"]),
        "cavity_volume_ml": _round(lv["cavity_volume_ml"]),
        "infarct_volume_ml": _round(infarct["volume_ml"]),
        "infarct_percent_lv": _round(infarct["percent_lv"]),
        "mvo_volume_ml": _round(mvo["volume_ml"]),
        "mvo_percent_lv": _round(mvo["percent_lv"]),
        "classification": quantification["classification"]["label"],
        "infarcted_segments": quantification["infarcted_segments"],
        "nonviable_segments": quantification["nonviable_segments"],
        "rv_insertion_deg": quantification["parameters"]["rv_insertion_deg"],
        "viability_threshold_percent": quantification["parameters"]["viability_threshold_percent"],
    }
    view["segments"] = [
        {
            "segment": row["segment"],
            "name": row["name"],
            "present": row["present"],
            "infarct_percent": _round(row["infarct_percent"]),
            "transmurality_mean_percent": _round(row["transmurality_mean_percent"]),
            "transmurality_bin": row["transmurality_bin"],
            "viable": row["viable"],
        }
        for row in quantification["segments"]
    ]
    view["error"] = None
    return {**view, "quantification": quantification}


def _checked(image: str) -> str:
    problem = uid_problem(image, "image")
    if problem:
        raise HTTPException(422, problem)
    return image


def _result(image: str) -> dict[str, Any] | None:
    entry = latest(image)
    if entry is not None and entry["slice_levels"] is None:
        entry["slice_levels"] = _image_levels(image, entry["quantification"])
    if entry is None:
        try:
            entry = measure_final_label(image)
        except InputError as exc:
            raise HTTPException(422, f"series {image}: {exc}") from None
    return entry


_user = Depends(RBAC(settings.MONAI_LABEL_AUTH_ROLE_USER))


@router.get("")
async def results(image: str, user: User = _user):
    """The latest result of series ``image`` (the model's or its final label's); 204 when it has none."""
    entry = await run_in_threadpool(_result, _checked(image))
    if entry is None:
        return Response(status_code=204, headers=NO_CACHE)
    return JSONResponse(panel_view(entry), headers=NO_CACHE)


@router.get("/bullseye.png")
async def bullseye(image: str, user: User = _user):
    """The AHA-17 bullseyes (infarct extent, transmurality) of the latest result of series ``image``."""
    from lgemri.report.bullseye import bullseye_png

    entry = await run_in_threadpool(_result, _checked(image))
    if entry is None:
        raise HTTPException(404, f"series {image} has no result yet: run the segmentation or save a label first")
    quantification = entry.get("quantification") or {}
    if "segments" not in quantification:
        raise HTTPException(422, f"series {image}: {quantification.get('error', 'nothing quantified')}")
    png = await run_in_threadpool(bullseye_png, quantification, 110)
    return Response(png, media_type="image/png", headers=NO_CACHE)


def make_viewer_report(image: str, folder: Path, rv_insertion_deg: float | None) -> tuple[Path, dict[str, Any]]:
    """The report of series ``image``'s final label in ``folder``, stored in the archive; (PDF, what happened)."""
    from lgemri.report import make_report
    from lgemri.report.api import FILE_NAMES

    datastore = app_instance().datastore()
    if not hasattr(datastore, "series_folder"):
        raise HTTPException(409, "reports from the viewer need a DICOMweb archive (serve --studies http://...)")
    label_uri = datastore.get_label_uri(image, "final")
    if not label_uri or not Path(label_uri).exists():
        raise HTTPException(
            409, f"series {image} has no saved label: save the segmentation first, then make the report"
        )
    series_dir = datastore.series_folder(image)
    try:
        paths = make_report(series_dir, label_uri, folder, rv_insertion_deg=rv_insertion_deg, series_uid=image)
    except InputError as exc:
        raise HTTPException(422, f"no report for series {image}: {exc}") from None
    report = json.loads(paths["json"].read_text())
    outcome: dict[str, Any] = {
        "study_uid": report["dicom"]["study_uid"],
        "pdf_sop_instance_uid": report["dicom"]["pdf_sop_instance_uid"],
        "sr_sop_instance_uid": report["dicom"]["sr_sop_instance_uid"],
        "infarct_percent_lv": report["quantification"]["infarct"]["percent_lv"],
    }
    try:
        stowed = datastore.store_instances([paths["dicom"], paths["sr"]])
    except InputError as exc:
        outcome.update(stored=False, reason=str(exc))
    else:
        outcome.update(stored=stowed.ok, reason=None if stowed.ok else stowed.summary())
    logger.info("report of series %s: %s", image, "stored in the archive" if outcome["stored"] else outcome["reason"])
    return folder / FILE_NAMES["pdf"], outcome


@router.post("/report")
async def report(
    image: str,
    background_tasks: BackgroundTasks,
    rv_insertion_deg: float | None = None,
    user: User = Depends(RBAC(settings.MONAI_LABEL_AUTH_ROLE_ANNOTATOR)),
):
    """The PDF report of series ``image``'s final label; its DICOM PDF and SR go to the archive."""
    _checked(image)
    if rv_insertion_deg is not None and not -360.0 <= rv_insertion_deg <= 360.0:
        raise HTTPException(422, f"rv_insertion_deg must be an angle in degrees (-360 to 360), got {rv_insertion_deg}")
    folder = Path(tempfile.mkdtemp(prefix="viewer_report_"))
    background_tasks.add_task(shutil.rmtree, folder, True)
    pdf, outcome = await run_in_threadpool(make_viewer_report, image, folder, rv_insertion_deg)
    header = json.dumps(outcome, ensure_ascii=True)
    return FileResponse(
        pdf,
        media_type="application/pdf",
        filename="cardiac-mi-report.pdf",
        headers={"X-Cardiac-Mi-Report": header, **NO_CACHE},
    )
