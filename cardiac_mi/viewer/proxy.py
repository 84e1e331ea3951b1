"""The viewer's DICOMweb proxy: ``/proxy/dicom/{qido,wado,stow}/PATH`` to the server's ``--studies`` root.

The browser never sees the archive's address or credentials: the server adds them. This replaces MONAI
Label 0.8.5's proxy of the same paths, which forwards POST (STOW) too, but calls ``requests`` without a
time-out inside ``async`` handlers (one slow archive answer stalls every request of the server, inference
included), forwards every browser header (cookies, Host, Origin) to the archive, and answers a bare 500
when the archive is down. Here the handlers are plain functions (FastAPI runs them in its thread pool),
share one connection pool, forward only the content headers, and answer with a JSON ``detail`` the
viewer shows when the archive does not answer: 502 when it refuses the connection, 504 when it does not
answer within ``$CARDIAC_MI_ARCHIVE_TIMEOUT`` seconds (10; a STOW-RS upload may take
``STOW_TIMEOUT_S``), and 503 at once while it is known not to answer (:class:`cardiac_mi.store.ArchiveGate`:
a hung archive costs one time-out, not one per request; the archive's own errors pass through).

It forwards only the DICOMweb resources the viewer uses, never the rest of the archive's REST API (an
Orthanc answers ``/system``, ``/tools/shutdown``, ``/tools/bulk-delete`` with the same credentials).
The path after ``/proxy/dicom/[qido|wado|stow/]`` must be, literally (no percent-encoding at all: the
viewer never needs it, and it is how ``..``, ``/`` and NUL get smuggled past a router), one of::

    studies | series | instances                                          QIDO-RS searches
    studies/{study}[/metadata|/rendered|/thumbnail|/series|/instances]    WADO-RS, QIDO-RS
    studies/{study}/series/{series}[/metadata|/rendered|/thumbnail|/instances]
    studies/{study}/series/{series}/instances/{instance}[/metadata|/rendered|/thumbnail]
    studies/{study}/series/{series}/instances/{instance}/frames/{1,2,...}[/rendered|/thumbnail]

with every ``{...}`` a DICOM UID (:mod:`cardiac_mi.ids`) and ``frames`` a list of frame numbers. GET
for all of them; POST (STOW-RS) only on ``studies`` and ``studies/{study}``. The query string is
forwarded when it holds no control character, space, non-ASCII byte, ``#``, ``"``, ``<``, ``>`` or
``\\``. Anything else, any other method, and any other path under ``/proxy/``, is answered 404
without a request to the archive (and logged). This is also the list of what OHIF 3.10's DICOMweb data
source asks for: QIDO of studies, series and instances, series metadata, frames for images and
thumbnails, and STOW-RS to ``{wadoRoot}/studies`` for uploads.
"""

from __future__ import annotations

import logging
import re
import threading
import time

import requests
from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response
from monailabel.config import settings
from monailabel.endpoints.user.auth import RBAC, User
from starlette.concurrency import run_in_threadpool

from cardiac_mi.ids import is_uid
from cardiac_mi.store import CONNECT_TIMEOUT_S, ArchiveDown, ArchiveSession, archive_timeout

__all__ = ["router", "catch_all", "forward", "archive_session", "dicomweb_resource", "split_include_fields"]

logger = logging.getLogger(__name__)

STOW_TIMEOUT_S = 120.0  # the archive answers a STOW-RS of a whole study once it has stored it
RETRY_AFTER_S = 5
REQUEST_HEADERS = ("accept", "content-type")
RESPONSE_HEADERS = ("content-type", "content-location", "warning", "etag", "last-modified")

router = APIRouter(prefix="/proxy/dicom", tags=["Others"], include_in_schema=False)
_local = threading.local()


def archive_session() -> requests.Session:
    """One :class:`ArchiveSession` per worker thread (a Session is not documented as thread-safe): time-outs
    for every request, and refused at once (``ArchiveDown``) while the archive does not answer."""
    session = getattr(_local, "session", None)
    if session is None:
        session = _local.session = ArchiveSession()
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


_COLLECTIONS = {"studies": 0, "series": 1, "instances": 2}  # their level in a resource path
_LEAVES = ("metadata", "rendered", "thumbnail")
_FRAMES = re.compile(r"[1-9][0-9]{0,5}(?:,[1-9][0-9]{0,5}){0,255}")
_QUERY = re.compile(r'[^\x00-\x20\x7f-\xff#"<>\\]*')  # printable ASCII that a browser sends unencoded in a query
NOT_FORWARDED = "not a DICOMweb resource of the viewer; nothing was sent to the archive"


def dicomweb_resource(method: str, path: str) -> str | None:
    """``path`` (after the proxy's prefix, exactly as sent) when the viewer may ``method`` it, else None.

    See the module docstring for the resources. The check is on the path as the client sent it, so
    ``%2e%2e``, ``%2f``, ``%252e`` (double encoding), ``%00`` and ``%5c`` are refused outright; so are
    ``.`` and ``..`` segments, empty segments, backslashes and anything that is not a UID where a UID
    belongs.
    """
    if method not in ("GET", "POST") or not path or len(path) > 1024 or "%" in path or "\\" in path or "\0" in path:
        return None
    segments = path.split("/")
    if any(s in ("", ".", "..") for s in segments):
        return None
    if method == "POST":  # STOW-RS
        ok = segments == ["studies"] or (len(segments) == 2 and segments[0] == "studies" and is_uid(segments[1]))
        return path if ok else None
    if len(segments) == 1:
        return path if segments[0] in _COLLECTIONS else None
    level, position = -1, 0
    while position < len(segments):
        name = segments[position]
        if name in _COLLECTIONS:
            if position == 0 and name != "studies":
                return None  # series/{uid} and instances/{uid} are not DICOMweb resources
            if _COLLECTIONS[name] <= level or (name == "instances" and level == 0 and position + 1 < len(segments)):
                return None  # out of order, or studies/{uid}/instances/{uid} (WADO needs the series)
            level = _COLLECTIONS[name]
            if position + 1 == len(segments):
                return path  # a QIDO-RS search of that level
            if not is_uid(segments[position + 1]):
                return None
            position += 2
            continue
        if level < 0:
            return None
        rest = segments[position:]
        if len(rest) == 1 and name in _LEAVES:
            return path
        if level == 2 and name == "frames" and len(rest) in (2, 3) and _FRAMES.fullmatch(rest[1]):
            return path if len(rest) == 2 or rest[2] in ("rendered", "thumbnail") else None
        return None
    return path


def _refused(method: str, raw_path: str, why: str = NOT_FORWARDED) -> Response:
    logger.warning("DICOMweb proxy: %s %s refused (%s)", method, raw_path[:300], why)
    return JSONResponse({"detail": why}, 404)


def _raw_rest(request: Request, op: str, path: str) -> str:
    """The part of the request's path after ``/proxy/dicom/[op/]`` as the client sent it (still encoded)."""
    raw = request.scope.get("raw_path")
    raw = raw.decode("latin-1") if isinstance(raw, (bytes, bytearray)) else request.url.path
    prefix = router.prefix + (f"/{op}/" if op else "/")
    position = raw.find(prefix)
    if position < 0:  # the prefix itself was percent-encoded: refuse
        return "%"
    return raw[position + len(prefix) :]


def split_include_fields(query: str) -> str:
    """``includefield=A,B`` (a comma-separated list, as OHIF sends it and PS3.18 allows) as
    ``includefield=A&includefield=B``: Orthanc's DICOMweb plugin 1.7 ignores a list, and the study list's
    Description column stayed empty."""
    parts = []
    for part in query.split("&") if query else []:
        name, equals, value = part.partition("=")
        if equals and name.lower() == "includefield" and ("," in value or "%2c" in value.lower()):
            fields = re.split(r",|%2[cC]", value)
            parts += [f"{name}={field}" for field in fields if field]
        else:
            parts.append(part)
    return "&".join(parts)


def forward(method: str, op: str, path: str, query: bytes, headers: dict[str, str], body: bytes | None) -> Response:
    """Send one DICOMweb request to the archive and return its answer (or a 502/504 JSON error).

    ``path`` must be one of the viewer's DICOMweb resources (:func:`dicomweb_resource`) and ``query`` a
    plain URL query; otherwise the answer is 404 and the archive is not asked.
    """
    if dicomweb_resource(method, path) is None:
        return _refused(method, path)
    text = query.decode("latin-1")
    if not _QUERY.fullmatch(text):
        return _refused(method, f"{path}?{text}", "the query string holds characters a URL query cannot")
    root = settings.MONAI_LABEL_STUDIES.rstrip("/")
    if not root.startswith(("http://", "https://")):
        return JSONResponse({"detail": "this server has no DICOMweb archive (--studies is a folder)"}, 404)
    url = f"{root}/{_prefix(op, path)}{path}"
    text = split_include_fields(text)
    if text:
        url = f"{url}?{text}"
    sent = {name: headers[name] for name in REQUEST_HEADERS if name in headers}
    tick = time.perf_counter()
    wait = STOW_TIMEOUT_S if method == "POST" else archive_timeout()
    try:
        answer = archive_session().request(method, url, headers=sent, data=body, timeout=(CONNECT_TIMEOUT_S, wait))
    except ArchiveDown as exc:
        logger.debug("DICOMweb %s %s: %s", method, url, exc)
        return JSONResponse(
            {
                "detail": "the DICOM archive is not answering (stopped, hung or restarting); "
                f"try again in a few seconds ({exc})"
            },
            503,
            headers={"Retry-After": str(RETRY_AFTER_S)},
        )
    except requests.Timeout:
        logger.warning("DICOMweb %s %s: no answer within %g s", method, url, wait)
        return JSONResponse({"detail": f"the DICOM archive did not answer within {wait:g} s"}, 504)
    except requests.RequestException as exc:
        logger.warning("DICOMweb %s %s: %s", method, url, exc)
        return JSONResponse({"detail": "the DICOM archive does not answer (stopped or restarting?)"}, 502)
    logger.debug("DICOMweb %s %s -> %d in %.3f s", method, url, answer.status_code, time.perf_counter() - tick)
    kept = {name: answer.headers[name] for name in RESPONSE_HEADERS if name in answer.headers}
    return Response(content=answer.content, status_code=answer.status_code, headers=kept)


def _handler(op: str):
    def get(path: str, request: Request, user: User = Depends(RBAC(settings.MONAI_LABEL_AUTH_ROLE_USER))) -> Response:
        return forward(
            "GET", op, _raw_rest(request, op, path), request.url.query.encode("latin-1"), dict(request.headers), None
        )

    async def post(
        path: str,
        request: Request,  # STOW-RS: an upload of studies, an annotator's
        user: User = Depends(RBAC(settings.MONAI_LABEL_AUTH_ROLE_ANNOTATOR)),
    ) -> Response:
        raw = _raw_rest(request, op, path)
        if dicomweb_resource("POST", raw) is None:  # refused before the body is read
            return _refused("POST", raw)
        body = await request.body()
        # the blocking call goes to the thread pool, like the GET handler
        return await run_in_threadpool(
            forward, "POST", op, raw, request.url.query.encode("latin-1"), dict(request.headers), body
        )

    return get, post


def _not_forwarded(path: str, request: Request) -> Response:
    return _refused(request.method, request.url.path)


for _op in ("qido", "wado", "stow"):
    _get, _post = _handler(_op)
    router.add_api_route(f"/{_op}/{{path:path}}", _get, methods=["GET"])
    router.add_api_route(f"/{_op}/{{path:path}}", _post, methods=["POST"])
_get, _post = _handler("")
router.add_api_route("/{path:path}", _get, methods=["GET"])
router.add_api_route("/{path:path}", _post, methods=["POST"])
# every other method under /proxy/dicom/, and every other path under /proxy/ (MONAI Label's own proxy
# routes are removed from the app by cardiac_mi.viewer.server.install): 404, the archive is not asked
_ALL_METHODS = ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"]
router.add_api_route("/{path:path}", _not_forwarded, methods=[m for m in _ALL_METHODS if m not in ("GET", "POST")])
catch_all = APIRouter(prefix="/proxy", include_in_schema=False)
catch_all.add_api_route("/{path:path}", _not_forwarded, methods=_ALL_METHODS)
