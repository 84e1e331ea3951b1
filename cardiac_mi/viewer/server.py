"""MONAI Label's FastAPI app with the viewer's routes in front: ``uvicorn_app`` of ``cardiac-mi serve``.

Imported by uvicorn inside ``monailabel start_server --uvicorn_app cardiac_mi.viewer.server:app``, after
MONAI Label has set its settings from the command line. See :mod:`cardiac_mi.viewer` for what each route
serves and why.
"""

from __future__ import annotations

import logging
import re
from functools import lru_cache
from pathlib import Path

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from monailabel.app import app
from monailabel.config import settings
from monailabel.endpoints import activelearning, datastore, logs, train
from monailabel.endpoints.user.auth import RBAC, User
from starlette.concurrency import run_in_threadpool

from cardiac_mi.viewer import OHIF_DIR
from cardiac_mi.viewer.labels import save_viewer_seg
from cardiac_mi.viewer.panel import PANEL_PREFIX
from cardiac_mi.viewer.panel import router as panel_router
from cardiac_mi.viewer.proxy import catch_all as proxy_catch_all
from cardiac_mi.viewer.proxy import router as proxy_router
from cardiac_mi.viewer.security import secure

__all__ = ["app", "install", "bundle_dir", "segment_table"]

logger = logging.getLogger(__name__)

NO_CACHE = {"Cache-Control": "no-cache"}

_MEDIA_TYPES = {".js": "text/javascript", ".mjs": "text/javascript", ".wasm": "application/wasm",
                ".css": "text/css", ".json": "application/json", ".html": "text/html", ".map": "application/json"}
# Google Fonts links of the bundle: the viewer must work without internet access (and send nothing out)
_FONTS = re.compile(r'<link[^>]*https://fonts\.(?:googleapis|gstatic)\.com[^>]*>|@import url\(https://fonts\.googleapis\.com[^)]*\);?')


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
    from lgemri.seg import PRIVATE_SCHEME, SEGMENTS

    def code(c) -> dict:
        return {"CodeValue": c.value, "CodingSchemeDesignator": c.scheme_designator, "CodeMeaning": c.meaning}

    return [
        {"label": label, "name": spec.name, "colour": [int(spec.colour[i:i + 2], 16) for i in (1, 3, 5)],
         "cielab": [round(v, 4) for v in spec.cielab], "category": code(spec.category), "type": code(spec.type),
         "privateScheme": spec.type.scheme_designator == PRIVATE_SCHEME}
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
    result = await run_in_threadpool(save_viewer_seg, request.headers.get("content-type", ""), body,
                                     getattr(user, "username", "") or "")
    return JSONResponse(result)


def _monailabel_proxy(route) -> bool:
    """Whether ``route`` is MONAI Label's DICOMweb proxy (a route, or its router as FastAPI includes it)."""
    from monailabel.endpoints import proxy as theirs

    if getattr(route, "original_router", None) is theirs.router:
        return True
    return getattr(getattr(route, "endpoint", None), "__module__", "") == theirs.__name__


def install(target) -> None:
    """Put the viewer's and the proxy's routes in front of MONAI Label's (first match wins in Starlette),
    remove MONAI Label's own DICOMweb proxy (it forwards any path and method to the archive), and put the
    origin, Host and request checks of :mod:`.security` in front of everything."""
    before = len(target.router.routes)
    target.include_router(router)
    target.include_router(proxy_router)
    target.include_router(proxy_catch_all)
    target.include_router(panel_router)
    for module in (activelearning, datastore, train, logs):
        target.include_router(module.router, prefix=PANEL_PREFIX, include_in_schema=False)
    added = target.router.routes[before:]
    del target.router.routes[before:]
    rest = [r for r in target.router.routes if not _monailabel_proxy(r)]
    removed = len(target.router.routes) - len(rest)
    target.router.routes[:] = added + rest
    if hasattr(target.router, "_mark_routes_changed"):
        target.router._mark_routes_changed()
    logger.info("cardiac_mi viewer: %d routes in front of MONAI Label's (/ohif/, /proxy/dicom/, /viewer/); "
                "MONAI Label's %d proxy routes removed", len(added), removed)
    secure(target)


install(app)
