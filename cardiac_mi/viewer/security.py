"""Who may drive the server from a browser: allowed origins, the Host check, and request values.

MONAI Label 0.8.5 answers every ``Origin`` with ``access-control-allow-origin: <that origin>`` and
``access-control-allow-credentials: true`` (``CORSMiddleware`` with ``["*"]``), and accepts any ``Host``:
any web page the clinician opens can read from and write to the server, directly or through DNS
rebinding. Its own setting, ``MONAI_LABEL_CORS_ORIGINS``, cannot fix that: ``monailabel start_server``
crashes when it is set (``json.dumps`` of pydantic's ``AnyHttpUrl`` while it logs the settings), and the
origins it would hold end with ``/``, which never equals a browser's ``Origin``. So ``cardiac-mi serve``
passes the list as ``CARDIAC_MI_ALLOWED_ORIGINS`` (comma-separated; defaults below, more with
``--allow-origin``), and :func:`secure` puts three middlewares in front of the app:

1. ``TrustedHostMiddleware`` (Starlette): the ``Host`` header must name a host of an allowed origin
   (400 otherwise), so a page of ``evil.example`` rebound to 127.0.0.1 gets nothing;
2. :class:`RequestGuard`: a request whose ``Origin`` is neither allowed nor the request's own (its host and
   port equal to the ``Host`` header, which step 1 has checked: a page of the server under a published
   port that Docker maps, say) is refused with 403 whatever its method (so is an unsafe one that a
   browser marks ``Sec-Fetch-Site: cross-site`` without an Origin);
   a path holding ``.`` or ``..`` segments, backslashes, NUL or an encoded ``/``, ``\\`` or NUL is 404;
   a query value that becomes part of a path (``image``, ``id``, ``label``: a series UID; ``tag``: a
   label tag; ``session_id``) must match its pattern (:mod:`cardiac_mi.ids`), else 422 naming it;
3. :class:`BodyLimits`: a request body over the limit of its route (:data:`BODY_LIMITS`, in MB, each
   with its ``CARDIAC_MI_MAX_*_MB`` setting) is refused with 413 before any of it is read when its
   ``Content-Length`` says so, and as soon as the limit is passed otherwise (chunked uploads), through
   Starlette's ``RequestBodyLimitMiddleware`` which caps every read of the body;
4. ``CORSMiddleware`` limited to the allowed origins (in place of MONAI Label's ``*``).

:func:`secure` also sets the umask to 077, so that what the server writes (image caches, the datastore's
JSON, outbox SEGs, labels, logs) is 0600 in 0700 folders; ``cardiac-mi serve`` has already set it for its
children, this covers a server started with ``monailabel start_server`` directly.

Default origins: ``http://127.0.0.1:PORT``, ``http://localhost:PORT`` and ``http://HOST:PORT`` for the
address serve binds (for 0.0.0.0 / ``::``: the machine's host name, its fully qualified name and the
addresses they resolve to). Requests without an ``Origin`` (curl, scripts, the server's own checks) are
not cross-site and pass; authentication is a separate matter.
"""

from __future__ import annotations

import json
import logging
import os
import socket
from collections.abc import Callable, Iterable, Sequence
from urllib.parse import parse_qsl, urlsplit

from cardiac_mi.ids import is_local_image_id, is_tag, is_uid, shown
from lgemri.errors import InputError

__all__ = [
    "ORIGINS_ENV",
    "normalise_origin",
    "default_origins",
    "allowed_origins",
    "origin_hosts",
    "RequestGuard",
    "BodyLimits",
    "BODY_LIMITS",
    "body_limits",
    "secure",
]

logger = logging.getLogger(__name__)

ORIGINS_ENV = "CARDIAC_MI_ALLOWED_ORIGINS"
WILDCARD_HOSTS = ("0.0.0.0", "::", "")
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")
_DEFAULT_PORTS = {"http": 80, "https": 443}
_ENCODED_SEPARATORS = ("%2f", "%5c", "%00")
MB = 1 << 20

# (path prefixes, setting, default MB, what is sent): the first whose prefix starts the path applies.
BODY_LIMITS = (
    (
        ("/datastore/label", "/viewer/monailabel/datastore/label", "/viewer/labels/"),
        "CARDIAC_MI_MAX_LABEL_MB",
        64,
        "a label",
    ),
    (("/proxy/",), "CARDIAC_MI_MAX_STOW_MB", 256, "a STOW-RS upload"),
    (("/model/",), "CARDIAC_MI_MAX_MODEL_MB", 256, "a model file"),
    (("/",), "CARDIAC_MI_MAX_BODY_MB", 16, "a request body"),
)


def normalise_origin(text: str) -> str:
    """``scheme://host[:port]`` in lower case, without a default port or a trailing ``/``.

    Raises:
        InputError: ``text`` is not an http(s) origin (a path, a query, ``*`` or user info are refused).
    """
    value = str(text).strip()
    try:
        parts = urlsplit(value.rstrip("/"))
        port = parts.port
    except ValueError:
        raise InputError(f"allowed origin {shown(value)}: not a URL") from None
    if (
        parts.scheme not in _DEFAULT_PORTS
        or not parts.hostname
        or parts.path
        or parts.query
        or parts.fragment
        or parts.username is not None
        or "*" in value
    ):
        raise InputError(
            f"allowed origin {shown(value)}: expected http(s)://HOST[:PORT], e.g. https://viewer.hospital.org"
        )
    host = parts.hostname.lower()
    host = f"[{host}]" if ":" in host else host
    if port is None or port == _DEFAULT_PORTS[parts.scheme]:
        return f"{parts.scheme}://{host}"
    return f"{parts.scheme}://{host}:{port}"


def _machine_names() -> list[str]:
    names = [socket.gethostname(), socket.getfqdn()]
    for name in list(names):
        try:
            names += [info[4][0] for info in socket.getaddrinfo(name, None, proto=socket.IPPROTO_TCP)]
        except OSError:
            pass
    return [n for n in names if n]


def default_origins(host: str, port: int) -> list[str]:
    """The origins of the server itself: 127.0.0.1, localhost, and the bound address (its names for 0.0.0.0)."""
    hosts = ["127.0.0.1", "localhost"]
    hosts += _machine_names() if host in WILDCARD_HOSTS else [host]
    found: list[str] = []
    for name in hosts:
        name = f"[{name}]" if ":" in name and not name.startswith("[") else name
        try:
            origin = normalise_origin(f"http://{name}:{port}")
        except InputError:
            continue
        if origin not in found:
            found.append(origin)
    return found


def parse_origins(text: str | Iterable[str] | None) -> list[str]:
    """Origins from a comma-separated string, a JSON list (MONAI Label's form) or an iterable; normalised."""
    if text is None:
        return []
    if isinstance(text, str):
        stripped = text.strip()
        if stripped.startswith("["):
            try:
                items = json.loads(stripped)
            except ValueError:
                raise InputError(f"allowed origins {shown(stripped)}: not a JSON list") from None
        else:
            items = stripped.split(",")
    else:
        items = list(text)
    found: list[str] = []
    for item in items:
        if str(item).strip():
            origin = normalise_origin(str(item))
            if origin not in found:
                found.append(origin)
    return found


def allowed_origins() -> list[str]:
    """``$CARDIAC_MI_ALLOWED_ORIGINS`` (set by serve), else the defaults for MONAI Label's port on 127.0.0.1."""
    given = parse_origins(os.environ.get(ORIGINS_ENV))
    if given:
        return given
    from monailabel.config import settings

    return default_origins("127.0.0.1", int(settings.MONAI_LABEL_SERVER_PORT))


def origin_hosts(origins: Iterable[str]) -> list[str]:
    """The host names of ``origins``, as TrustedHostMiddleware compares them (an IPv6 address in brackets)."""
    hosts: list[str] = []
    for origin in origins:
        netloc = urlsplit(origin).netloc
        name = netloc[: netloc.index("]") + 1] if netloc.startswith("[") else netloc.split(":")[0]
        if name and name not in hosts:
            hosts.append(name)
    return hosts


def _json(status: int, detail: str) -> tuple[dict, bytes]:
    body = json.dumps({"detail": detail}).encode()
    start = {
        "type": "http.response.start",
        "status": status,
        "headers": [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"vary", b"Origin"),
        ],
    }
    return start, body


def _image_id_problem(value: str, name: str, dicomweb: bool) -> str | None:
    if dicomweb:
        if is_uid(value):
            return None
        return f"{name}: {shown(value)} is not a series UID (digits separated by dots, at most 64 characters)"
    if is_local_image_id(value):
        return None
    return f"{name}: {shown(value)} is not an image id (letters, digits, '_', '-' and single dots)"


class RequestGuard:
    """ASGI middleware: the Origin rule, path hygiene and request values (see the module docstring).

    Args:
        app: the ASGI app behind.
        origins: the allowed origins (normalised).
        dicomweb: a callable telling whether image ids are series UIDs (the datastore is DICOMweb).
    """

    IMAGE_PARAMETERS = ("image", "id", "label")
    TAG_PARAMETERS = ("tag", "session_id")

    def __init__(self, app, origins: Sequence[str], dicomweb: Callable[[], bool] = lambda: True):
        self.app = app
        self.origins = frozenset(origins)
        self.dicomweb = dicomweb

    def origin_allowed(self, origin: str, host: str | None = None) -> bool:
        """Whether ``origin`` is allowed, or is the request's own (its host[:port] is the ``Host`` header)."""
        try:
            origin = normalise_origin(origin)
        except InputError:
            return False  # "null", garbage
        if origin in self.origins:
            return True
        if not host:
            return False
        scheme = origin.split("://", 1)[0]
        try:
            return normalise_origin(f"{scheme}://{host}") == origin
        except InputError:
            return False

    def refusal(self, scope) -> tuple[int, str] | None:
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        method = scope.get("method", "GET")
        origin = headers.get("origin")
        if origin is not None and not self.origin_allowed(origin, headers.get("host")):
            return 403, (
                f"cross-site request refused: origin {shown(origin)} is not allowed "
                f"(allowed: {', '.join(sorted(self.origins))}; add one with serve --allow-origin)"
            )
        if origin is None and method not in SAFE_METHODS and headers.get("sec-fetch-site") == "cross-site":
            return 403, "cross-site request refused (Sec-Fetch-Site: cross-site)"
        raw = scope.get("raw_path")
        raw = raw.decode("latin-1") if isinstance(raw, (bytes, bytearray)) else scope.get("path", "")
        path = scope.get("path", "")
        lowered = raw.lower()
        if (
            any(code in lowered for code in _ENCODED_SEPARATORS)
            or "\\" in path
            or "\0" in path
            or any(s in (".", "..") for s in path.split("/"))
        ):
            return 404, "no such resource (dot segments, backslashes, NUL and encoded separators are refused)"
        query = scope.get("query_string", b"").decode("latin-1")
        if query:
            dicomweb = self.dicomweb()
            for name, value in parse_qsl(query, keep_blank_values=True):
                if not value:
                    continue
                if name in self.IMAGE_PARAMETERS:
                    problem = _image_id_problem(value, name, dicomweb)
                elif name in self.TAG_PARAMETERS:
                    problem = (
                        None
                        if is_tag(value)
                        else (
                            f"{name}: {shown(value)} is not a {'label tag' if name == 'tag' else 'session id'} "
                            "(1 to 64 letters, digits, '_' or '-')"
                        )
                    )
                else:
                    continue
                if problem:
                    return 422, problem
        return None

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        refused = self.refusal(scope)
        if refused is None:
            await self.app(scope, receive, send)
            return
        status, detail = refused
        logger.warning("refused %s %s: %d %s", scope.get("method", "WS"), scope.get("path", "")[:300], status, detail)
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})
            return
        start, body = _json(status, detail)
        await send(start)
        await send({"type": "http.response.body", "body": body})


def body_limits() -> list[tuple[tuple[str, ...], int, str, str]]:
    """``(path prefixes, bytes, setting, what)`` for each route family of :data:`BODY_LIMITS`, with the
    ``CARDIAC_MI_MAX_*_MB`` settings of the environment applied.

    Raises:
        InputError: a setting that is not a positive number of MB.
    """
    found = []
    for prefixes, setting, default, what in BODY_LIMITS:
        text = os.environ.get(setting, "").strip()
        try:
            megabytes = float(text) if text else float(default)
        except ValueError:
            megabytes = float("nan")
        if not 0 < megabytes < 1 << 20:
            raise InputError(f"${setting}={text!r}: expected a size in MB, e.g. {default}")
        found.append((prefixes, int(megabytes * MB), setting, what))
    return found


class BodyLimits:
    """ASGI middleware: the size limit of each route's request body (see the module docstring).

    Args:
        app: the ASGI app behind.
        limits: what :func:`body_limits` returns (read from the environment by default).
    """

    def __init__(self, app, limits: Sequence[tuple[tuple[str, ...], int, str, str]] | None = None):
        from starlette.middleware.body_limit import RequestBodyLimitMiddleware

        self.app = app
        self.limits = list(limits) if limits is not None else body_limits()
        # one Starlette limiter per size: it counts every chunk the app reads and stops at the limit
        self._limiters = {size: RequestBodyLimitMiddleware(app, size) for _, size, _, _ in self.limits}

    def limit_for(self, path: str) -> tuple[int, str, str]:
        """(bytes, setting, what) for a request to ``path``."""
        for prefixes, size, setting, what in self.limits:
            if path.startswith(prefixes):
                return size, setting, what
        return self.limits[-1][1:]

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        size, setting, what = self.limit_for(scope.get("path", ""))
        length = next((v for k, v in scope.get("headers", []) if k.lower() == b"content-length"), None)
        if length is not None and length.strip().isdigit() and int(length) > size:
            detail = (
                f"{what} of {int(length) / MB:.1f} MB is over this server's limit of {size / MB:g} MB "
                f"(set ${setting} to change it); nothing was read"
            )
            logger.warning("refused %s %s: 413 %s", scope.get("method"), scope.get("path", "")[:300], detail)
            start, body = _json(413, detail)
            start["headers"].append((b"connection", b"close"))  # the unread body is not waited for
            await send(start)
            await send({"type": "http.response.body", "body": body})
            return
        await self._limiters[size](scope, receive, send)


def secure(app, origins: Sequence[str] | None = None) -> list[str]:
    """Replace MONAI Label's CORS middleware of ``app`` by the Host check, :class:`RequestGuard` and a CORS
    limited to ``origins`` (default :func:`allowed_origins`); returns the origins."""
    from fastapi.middleware import Middleware
    from monailabel.config import settings
    from starlette.middleware.cors import CORSMiddleware
    from starlette.middleware.trustedhost import TrustedHostMiddleware

    os.umask(0o077)  # what the server writes is its user's only (serve has set it for its children already)
    origins = list(origins) if origins is not None else allowed_origins()
    hosts = origin_hosts(origins)
    limits = body_limits()
    ours = (CORSMiddleware, TrustedHostMiddleware, RequestGuard, BodyLimits)
    kept = [m for m in app.user_middleware if m.cls not in ours]
    app.user_middleware[:] = [
        Middleware(TrustedHostMiddleware, allowed_hosts=hosts, www_redirect=False),
        Middleware(
            RequestGuard,
            origins=origins,
            dicomweb=lambda: str(settings.MONAI_LABEL_STUDIES).startswith(("http://", "https://")),
        ),
        Middleware(BodyLimits, limits=limits),
        Middleware(
            CORSMiddleware,
            allow_origins=origins,
            allow_credentials=True,
            allow_methods=["GET", "HEAD", "POST", "PUT", "DELETE"],
            allow_headers=["*"],
        ),
        *kept,
    ]
    app.middleware_stack = None  # built again, with these, on the next request
    logger.info(
        "allowed origins: %s; hosts: %s; body limits: %s",
        ", ".join(origins),
        ", ".join(hosts),
        ", ".join(f"{prefixes[0]} {size / MB:g} MB" for prefixes, size, _, _ in limits),
    )
    return origins
