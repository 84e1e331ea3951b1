"""The viewer's DICOMweb proxy: ``/proxy/dicom/{qido,wado,stow}/PATH`` to the server's ``--studies`` root.

The browser never sees the archive's address or credentials: the server adds them. This replaces MONAI
Label 0.8.5's proxy of the same paths, which forwards POST (STOW) too, but calls ``requests`` without a
time-out inside ``async`` handlers (one slow archive answer stalls every request of the server, inference
included), forwards every browser header (cookies, Host, Origin) to the archive, and answers a bare 500
when the archive is down. Here the handlers are plain functions (FastAPI runs them in its thread pool),
share one connection pool, forward only the content headers, and answer 502 or 504 with a JSON
``detail`` the viewer shows when the archive does not answer.
"""

from __future__ import annotations

import logging
import threading
import time

import requests
from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool
from monailabel.config import settings
from monailabel.endpoints.user.auth import RBAC, User

__all__ = ["router", "forward", "archive_session"]

logger = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 5.0
READ_TIMEOUT_S = 120.0  # a STOW of a whole study, or a slow PACS
REQUEST_HEADERS = ("accept", "content-type")
RESPONSE_HEADERS = ("content-type", "content-location", "warning", "etag", "last-modified")

router = APIRouter(prefix="/proxy/dicom", tags=["Others"], include_in_schema=False)
_local = threading.local()


def archive_session() -> requests.Session:
    """One ``requests.Session`` per worker thread (a Session is not documented as thread-safe)."""
    session = getattr(_local, "session", None)
    if session is None:
        session = _local.session = requests.Session()
        user, password = settings.MONAI_LABEL_DICOMWEB_USERNAME, settings.MONAI_LABEL_DICOMWEB_PASSWORD
        if user and password:
            session.auth = (user, password)
    return session


def _prefix(op: str, path: str) -> str:
    if op == "qido" and path.endswith("metadata"):  # some OHIF versions ask QIDO for metadata
        op = "wado"
    prefix = {
        "qido": settings.MONAI_LABEL_QIDO_PREFIX,
        "wado": settings.MONAI_LABEL_WADO_PREFIX,
        "stow": settings.MONAI_LABEL_STOW_PREFIX,
    }.get(op)
    return f"{prefix.strip('/')}/" if prefix else ""


def forward(method: str, op: str, path: str, query: bytes, headers: dict[str, str], body: bytes | None) -> Response:
    """Send one DICOMweb request to the archive and return its answer (or a 502/504 JSON error)."""
    root = settings.MONAI_LABEL_STUDIES.rstrip("/")
    url = f"{root}/{_prefix(op, path)}{path}"
    if query:
        url = f"{url}?{query.decode('latin-1')}"
    sent = {name: headers[name] for name in REQUEST_HEADERS if name in headers}
    tick = time.perf_counter()
    try:
        answer = archive_session().request(method, url, headers=sent, data=body, timeout=(CONNECT_TIMEOUT_S, READ_TIMEOUT_S))
    except requests.Timeout:
        logger.warning("DICOMweb %s %s: no answer within %g s", method, url, READ_TIMEOUT_S)
        return JSONResponse({"detail": f"the DICOM archive did not answer within {READ_TIMEOUT_S:g} s"}, 504)
    except requests.RequestException as exc:
        logger.warning("DICOMweb %s %s: %s", method, url, exc)
        return JSONResponse({"detail": "the DICOM archive does not answer (stopped or restarting?)"}, 502)
    logger.debug("DICOMweb %s %s -> %d in %.3f s", method, url, answer.status_code, time.perf_counter() - tick)
    kept = {name: answer.headers[name] for name in RESPONSE_HEADERS if name in answer.headers}
    return Response(content=answer.content, status_code=answer.status_code, headers=kept)


def _handler(op: str):
    def get(path: str, request: Request, user: User = Depends(RBAC(settings.MONAI_LABEL_AUTH_ROLE_USER))) -> Response:
        return forward("GET", op, path, request.url.query.encode("latin-1"), dict(request.headers), None)

    async def post(path: str, request: Request,
                   user: User = Depends(RBAC(settings.MONAI_LABEL_AUTH_ROLE_USER))) -> Response:
        body = await request.body()
        # the blocking call goes to the thread pool, like the GET handler
        return await run_in_threadpool(forward, "POST", op, path, request.url.query.encode("latin-1"),
                                       dict(request.headers), body)

    return get, post


for _op in ("qido", "wado", "stow"):
    _get, _post = _handler(_op)
    router.add_api_route(f"/{_op}/{{path:path}}", _get, methods=["GET"])
    router.add_api_route(f"/{_op}/{{path:path}}", _post, methods=["POST"])
_get, _post = _handler("")
router.add_api_route("/{path:path}", _get, methods=["GET"])
router.add_api_route("/{path:path}", _post, methods=["POST"])
