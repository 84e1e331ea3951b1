"""MONAI Label's FastAPI app with the viewer's routes in front: ``uvicorn_app`` of ``cardiac-mi serve``.

Imported by uvicorn inside ``monailabel start_server --uvicorn_app cardiac_mi.viewer.server:app``, after
MONAI Label has set its settings from the command line. See :mod:`cardiac_mi.viewer` for what each route
serves and why.
"""

from __future__ import annotations

import inspect
import json
import logging
import os
import re
import tempfile
import zipfile
from functools import lru_cache
from pathlib import Path
from typing import Any

from fastapi import APIRouter, BackgroundTasks, Depends, File, Form, HTTPException, Request, UploadFile
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from monailabel.app import app
from monailabel.config import settings
from monailabel.endpoints import activelearning, batch_infer, datastore, logs, scoring, train
from monailabel.endpoints import infer as infer_endpoint
from monailabel.endpoints import model as model_endpoint
from monailabel.endpoints.user.auth import RBAC, User
from monailabel.interfaces.tasks.batch_infer import BatchInferImageType
from monailabel.interfaces.utils.app import app_instance
from starlette.concurrency import run_in_threadpool

from cardiac_mi import monailabel_compat as compat
from cardiac_mi.ids import shown
from cardiac_mi.viewer import OHIF_DIR
from cardiac_mi.viewer.labels import save_viewer_seg
from cardiac_mi.viewer.login import install as install_login
from cardiac_mi.viewer.panel import INFERENCE, PANEL_PREFIX, run_panel_infer
from cardiac_mi.viewer.panel import router as panel_router
from cardiac_mi.viewer.proxy import catch_all as proxy_catch_all
from cardiac_mi.viewer.proxy import router as proxy_router
from cardiac_mi.viewer.results import router as results_router
from cardiac_mi.viewer.security import secure
from cardiac_mi.viewer.training import router as training_router

__all__ = ["app", "install", "bundle_dir", "segment_table"]

logger = logging.getLogger(__name__)

NO_CACHE = {"Cache-Control": "no-cache"}

_MEDIA_TYPES = {
    ".js": "text/javascript",
    ".mjs": "text/javascript",
    ".wasm": "application/wasm",
    ".css": "text/css",
    ".json": "application/json",
    ".html": "text/html",
    ".map": "application/json",
}
# Google Fonts links of the bundle: the viewer must work without internet access (and send nothing out)
_FONTS = re.compile(
    r"<link[^>]*https://fonts\.(?:googleapis|gstatic)\.com[^>]*>|@import url\(https://fonts\.googleapis\.com[^)]*\);?"
)


def bundle_dir() -> Path:
    """The OHIF build that MONAI Label bundles."""
    import monailabel.endpoints

    return Path(monailabel.endpoints.__file__).resolve().parent / "static" / "ohif"


@lru_cache(maxsize=4)
def _offline(name: str) -> str:
    """A text file of the bundle (index.html, a style sheet) without its Google Fonts links."""
    return _FONTS.sub("", (bundle_dir() / name).read_text(encoding="utf-8"))


def segment_table() -> list[dict]:
    """The EMIDEC classes as the viewer codes them in a SEG (from :data:`lgemri.seg.SEGMENTS`)."""
    from lgemri.labels import DISPLAY_NAMES
    from lgemri.seg import PRIVATE_SCHEME, SEGMENTS

    def code(c) -> dict:
        return {"CodeValue": c.value, "CodingSchemeDesignator": c.scheme_designator, "CodeMeaning": c.meaning}

    return [
        {
            "label": label,
            "name": spec.name,
            "display": DISPLAY_NAMES[label],
            "colour": [int(spec.colour[i : i + 2], 16) for i in (1, 3, 5)],
            "cielab": [round(v, 4) for v in spec.cielab],
            "category": code(spec.category),
            "type": code(spec.type),
            "privateScheme": spec.type.scheme_designator == PRIVATE_SCHEME,
        }
        for label, spec in SEGMENTS.items()
    ]


router = APIRouter(include_in_schema=False)
_user = Depends(RBAC(settings.MONAI_LABEL_AUTH_ROLE_USER))


@router.get("/ohif/app-config.js")
def app_config(user: User = _user) -> FileResponse:
    return FileResponse(OHIF_DIR / "app-config.js", media_type="text/javascript", headers=NO_CACHE)


@router.get("/ohif/cardiac-mi/{name}")
def viewer_module(name: str, user: User = _user) -> FileResponse:
    path = (OHIF_DIR / name).resolve()
    if path.parent != OHIF_DIR or path.suffix != ".js" or not path.is_file():
        raise HTTPException(404, f"no viewer module {name!r}")
    return FileResponse(path, media_type="text/javascript", headers=NO_CACHE)


@router.get("/ohif/")
@router.get("/ohif/{path:path}")
def ohif_file(path: str = "", user: User = _user):
    """A file of the bundle, else its index.html (OHIF routes /ohif/viewer?..., /ohif/cardiac-mi?... itself)."""
    root = bundle_dir()
    if path:
        file = (root / path).resolve()
        if file.is_relative_to(root) and file.is_file():
            if file.suffix == ".css" and file.parent == root:
                return Response(_offline(file.name), media_type="text/css")
            media = _MEDIA_TYPES.get(file.suffix)
            return FileResponse(file, media_type=media) if media else FileResponse(file)
        if Path(path).suffix in _MEDIA_TYPES and Path(path).suffix != ".html":
            raise HTTPException(404, f"no such viewer file: {path}")
    return HTMLResponse(_offline("index.html"), headers=NO_CACHE)


@router.get("/viewer/segments")
def segments(user: User = _user) -> JSONResponse:
    """The label classes and their SEG codes: what the viewer writes in the SEGs it stores."""
    return JSONResponse(segment_table(), headers=NO_CACHE)


@router.post("/viewer/labels/studies")
async def save_label(request: Request, user: User = Depends(RBAC(settings.MONAI_LABEL_AUTH_ROLE_ANNOTATOR))):
    """STOW-RS of the viewer's DICOM SEG: it becomes the final label of its series (see :mod:`.labels`)."""
    body = await request.body()
    result = await run_in_threadpool(
        save_viewer_seg, request.headers.get("content-type", ""), body, getattr(user, "username", "") or ""
    )
    return JSONResponse(result)


# ------------------------------------------------------------------------------ request checks
# MONAI Label's own routes, checked before they run: a form field that is not a JSON object, an unknown
# task (which started a background process running until stopped), an unknown label's info (200 {}) and
# an empty dataset answered 500s or worse. Each route below checks, then calls MONAI Label's function.


def json_object(text: str | None, name: str) -> dict[str, Any]:
    """The JSON object of form field ``name`` ({} when empty); a 422 naming it otherwise."""
    if not text:
        return {}
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise HTTPException(422, f"{name}: not JSON ({exc}): {shown(text)}") from None
    if not isinstance(value, dict):
        raise HTTPException(
            422, f"{name}: expected a JSON object {{...}}, got a JSON {type(value).__name__}: {shown(text)}"
        )
    return value


def infer_params(model: str, params: str | None) -> dict[str, Any]:
    """The infer ``params`` as an object, checked with the app's rules (model, device); never an ``image``."""
    options = json_object(params, "params")
    if "image" in options:
        raise HTTPException(
            422, "params: 'image' cannot be given in params; the image is the ?image= id of the datastore"
        )
    app_instance().check_request("infer", {**options, "model": model})
    return options


root_checks = APIRouter(include_in_schema=False)  # routes MONAI Label has only at the root
both_checks = APIRouter(include_in_schema=False)  # routes it also has under the panel's prefix
panel_checks = APIRouter(include_in_schema=False)  # the panel's own routes
_BATCH_DEFAULTS = inspect.signature(batch_infer.api_run).parameters["params"].default


@root_checks.post("/infer/{model}")
async def checked_infer(
    background_tasks: BackgroundTasks,
    model: str,
    image: str = "",
    session_id: str = "",
    params: str = Form("{}"),
    file: UploadFile = File(None),
    label: UploadFile = File(None),
    output: infer_endpoint.ResultType | None = None,
    user: User = Depends(RBAC(settings.MONAI_LABEL_AUTH_ROLE_USER)),
):
    def run():
        infer_params(model, params)
        return infer_endpoint.run_inference(background_tasks, model, image, session_id, params, file, label, output)

    return await INFERENCE.run(run)  # never on the thread pool of the study list and the proxy


@root_checks.post("/batch/infer/{model}")
def checked_batch_infer(
    model: str,
    images: BatchInferImageType | None = BatchInferImageType.IMAGES_ALL,
    params: dict | None = None,
    run_sync: bool | None = False,
    user: User = Depends(RBAC(settings.MONAI_LABEL_AUTH_ROLE_ADMIN)),
):
    params = dict(_BATCH_DEFAULTS) if params is None else params
    app_instance().check_request("batch_infer", {**params, "model": model})
    return batch_infer.run(model, images, params, run_sync)


@root_checks.post("/scoring/{method}")
def checked_scoring(
    method: str,
    params: dict | None = None,
    run_sync: bool | None = False,
    user: User = Depends(RBAC(settings.MONAI_LABEL_AUTH_ROLE_ANNOTATOR)),
):
    app_instance().check_request("scoring", {**(params or {}), "method": method})
    return scoring.run_method(method, params, run_sync)


@root_checks.put("/model/{model}")
def checked_put_model(
    background_tasks: BackgroundTasks,
    model: str,
    file: UploadFile = File(...),
    user: User = Depends(RBAC(settings.MONAI_LABEL_AUTH_ROLE_ADMIN)),
):
    """MONAI Label's model upload for admins only (0.8.5 lets an annotator replace the model), and only a
    checkpoint of the model's task (garbage made every infer a 500)."""
    from lgemri.errors import InputError
    from lgemri.nets.checkpoint import TASKS, load_checkpoint

    app_instance().model_file(model, validate=False)  # 404 for an unknown model
    with tempfile.TemporaryDirectory(prefix="model-upload-") as folder:
        path = Path(folder) / "upload.pt"
        with open(path, "wb") as sink:
            while chunk := file.file.read(1 << 20):
                sink.write(chunk)
        try:
            load_checkpoint(path, task=model if model in TASKS else None)
        except InputError as exc:
            raise HTTPException(
                422, f"not a {model} model: {str(exc).replace(str(path), file.filename or 'the file')}"
            ) from None
    file.file.seek(0)
    logger.info("model %s replaced by %s", model, getattr(user, "username", "") or "a user")
    return model_endpoint.update_model(background_tasks, model, file)


@root_checks.delete("/model/{model}")
def checked_delete_model(model: str, user: User = Depends(RBAC(settings.MONAI_LABEL_AUTH_ROLE_ADMIN))):
    """MONAI Label's model deletion for admins only (0.8.5 lets an annotator delete the model)."""
    return model_endpoint.delete_model(model)


@both_checks.post("/train/{model}")
def checked_train(
    model: str,
    params: dict | None = None,
    run_sync: bool | None = False,
    enqueue: bool | None = False,
    user: User = Depends(RBAC(settings.MONAI_LABEL_AUTH_ROLE_ADMIN)),
):
    app_instance().check_request("train", {**(params or {}), "model": model})
    return train.run_model(model, params, run_sync, enqueue)


@both_checks.put("/datastore/image/info")
def checked_image_info(
    image: str, info: str = Form("{}"), user: User = Depends(RBAC(settings.MONAI_LABEL_AUTH_ROLE_ANNOTATOR))
):
    return datastore.update_image_info(image, json.dumps(json_object(info, "info")), user.username)


@both_checks.get("/datastore/label/info")
def checked_label_info(label: str, tag: str, user: User = Depends(RBAC(settings.MONAI_LABEL_AUTH_ROLE_USER))):
    info = datastore.get_label_info(label, tag)
    if not info:
        raise HTTPException(404, f"image {label} has no {tag!r} label")
    return info


@both_checks.put("/datastore/label/info")
def checked_put_label_info(
    label: str, tag: str, info: str = Form("{}"), user: User = Depends(RBAC(settings.MONAI_LABEL_AUTH_ROLE_ANNOTATOR))
):
    return datastore.update_label_info(label, tag, json.dumps(json_object(info, "info")), user.username)


@both_checks.get("/datastore/dataset")
def checked_dataset(
    background_tasks: BackgroundTasks,
    limit_cases: int | None = None,
    user: User = Depends(RBAC(settings.MONAI_LABEL_AUTH_ROLE_ANNOTATOR)),
) -> FileResponse:
    """The images with a final label and those labels as one ZIP: ``image/``, ``label/`` and ``datalist.json``.

    MONAI Label's own archive writes every key of a datalist item as a file (the DICOMweb datastore's
    ``image_id`` too: a 500), and answers a 500 for an empty dataset."""
    if limit_cases is not None and limit_cases < 1:
        raise HTTPException(422, f"limit_cases: {limit_cases} is not a number of cases (1 or more)")
    items = app_instance().datastore().datalist()
    if not items:
        raise HTTPException(404, "the dataset is empty: no image has a final label yet, nothing to download")
    items = items[:limit_cases] if limit_cases else items
    fd, path = tempfile.mkstemp(suffix=".zip", prefix="dataset_")
    os.close(fd)
    background_tasks.add_task(os.remove, path)
    listed = []
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as archive:  # NIfTI files are compressed
        for item in items:
            entry = {"image_id": item.get("image_id", "")}
            for key in ("image", "label"):
                entry[key] = f"{key}/{os.path.basename(item[key])}"
                archive.write(item[key], arcname=entry[key])
            listed.append(entry)
        archive.writestr("datalist.json", json.dumps(listed, indent=1))
    logger.info("dataset download: %d images with final labels", len(listed))
    return FileResponse(path, media_type="application/zip", filename="dataset.zip")


@panel_checks.post(f"{PANEL_PREFIX}/infer/{{model}}")
async def checked_panel_infer(
    model: str,
    background_tasks: BackgroundTasks,
    image: str = "",
    output: str = "image",
    params: str = Form("{}"),
    user: User = Depends(RBAC(settings.MONAI_LABEL_AUTH_ROLE_USER)),
):
    def run():
        infer_params(model, params)
        return run_panel_infer(model, background_tasks, image, output, params)

    return await INFERENCE.run(run)


def install(target) -> None:
    """Put the request checks, the viewer's and the proxy's routes in front of MONAI Label's (first match wins),
    remove MONAI Label's own DICOMweb proxy (it forwards any path and method to the archive), and put the
    origin, Host and request checks of :mod:`.security` in front of everything."""

    def include() -> None:
        for routes in (root_checks, both_checks):
            target.include_router(routes)
        target.include_router(both_checks, prefix=PANEL_PREFIX)
        for routes in (
            panel_checks,
            router,
            proxy_router,
            proxy_catch_all,
            panel_router,
            training_router,
            results_router,
        ):
            target.include_router(routes)
        for module in (activelearning, datastore, train, logs):
            target.include_router(module.router, prefix=PANEL_PREFIX, include_in_schema=False)

    added, removed = compat.put_routes_first(target, include, drop=compat.is_monailabel_proxy)
    logger.info(
        "cardiac_mi viewer: %d routes in front of MONAI Label's (/ohif/, /proxy/dicom/, /viewer/); "
        "MONAI Label's %d proxy routes removed",
        added,
        removed,
    )
    secure(target)
    install_login(target)  # the login (cardiac_mi.viewer.login): who the user is, for the routes' RBAC


install(app)
