"""The server's login: who is asking, for MONAI Label's RBAC; the login page; tokens for scripts.

``cardiac-mi serve`` starts MONAI Label with ``CARDIAC_MI_AUTH`` set to one of:

- ``embedded`` (the default): the accounts of ``STATE/auth`` (:mod:`cardiac_mi.auth`), tokens signed by
  the state folder's RSA key;
- ``oidc``: MONAI Label's own mode, an OpenID provider (Keycloak) given by ``MONAI_LABEL_AUTH_REALM_URI``;
  its tokens are checked with the realm's public key and read with MONAI Label's claim settings
  (``MONAI_LABEL_AUTH_TOKEN_USERNAME``, ``MONAI_LABEL_AUTH_TOKEN_ROLES``, ...);
- ``off``: no login (MONAI Label's ``MONAI_LABEL_AUTH_ENABLE=false``: everyone has every role).

Every route of the app already declares ``Depends(RBAC(role))`` (MONAI Label's ``RBAC``, unchanged: it
compares the user's roles with the route's). Who the user is comes from MONAI Label's
``get_current_user``, which this module replaces through FastAPI's ``dependency_overrides``: 0.8.5's own
cannot check any token with the PyJWT it installs (``jwt.decode`` without ``algorithms``, which PyJWT 2
refuses), and it would fetch the realm key with a blocking request on the event loop (a deadlock when the
realm is this server). Our :func:`current_user` takes the credential from ``Authorization: Bearer TOKEN``
or from the session cookie, checks it, and answers 401 with what to do when it is missing, expired or bad.

In front of the routes, :class:`LoginGate` (ASGI) refuses every request without a valid credential except
the login's own (:data:`PUBLIC_PATHS`): a browser opening a page is sent to ``/login?next=PAGE``, anything
else gets the 401. So MONAI Label routes that have no RBAC (``POST /reload``, the API docs) are closed too.
It also renews a browser session while it is used.

The browser session: ``POST /login`` (the form of ``GET /login``) sets the cookie ``cardiac_mi_session``,
HttpOnly (page scripts cannot read it), ``SameSite=Strict`` (never sent with a request started by another
site: with the Origin checks of :mod:`.security` this is the CSRF defence), ``Secure`` under https. It holds
a token of :data:`~cardiac_mi.auth.SESSION_MINUTES` minutes, renewed when older than
:data:`RENEW_AFTER_S` on a request, so a session ends after that long without use. In embedded mode the
account is read on every request (``users.json``, cached by its time stamp): removing an account or changing
its roles takes effect at once, for sessions and tokens alike.

Scripts: ``POST /auth/token`` with the form fields ``username`` and ``password`` (MONAI Label's form; in oidc
mode forwarded to the provider's token endpoint) answers ``{"access_token": ..., "token_type": "bearer"}``.

``/auth/realm`` serves the embedded public key as a Keycloak realm does (``MONAI_LABEL_AUTH_REALM_URI``
points there), so other tools can check our tokens. ``/logs/`` shows this state folder's server log
(``$CARDIAC_MI_LOG_FILE``), to admins only.
"""

from __future__ import annotations

import html
import json
import logging
import os
import threading
import time
from collections import deque
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

from fastapi import APIRouter, Depends, Form, HTTPException, Request
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, RedirectResponse, Response
from monailabel.config import settings
from monailabel.endpoints.user.auth import RBAC, User
from starlette.concurrency import run_in_threadpool

__all__ = [
    "MODE_ENV",
    "AUTH_DIR_ENV",
    "LOG_FILE_ENV",
    "COOKIE",
    "Authenticator",
    "LoginGate",
    "current_user",
    "install",
    "auth_mode",
]

logger = logging.getLogger(__name__)

MODE_ENV = "CARDIAC_MI_AUTH"
AUTH_DIR_ENV = "CARDIAC_MI_AUTH_DIR"
LOG_FILE_ENV = "CARDIAC_MI_LOG_FILE"
SESSION_ENV = "CARDIAC_MI_SESSION_MINUTES"
MODES = ("embedded", "oidc", "off")
COOKIE = "cardiac_mi_session"
RENEW_AFTER_S = 300
PUBLIC_PATHS = frozenset(
    {
        "/login",
        "/logout",
        "/auth/token",
        "/auth/",
        "/auth/realm",
        "/auth/realm/.well-known/openid-configuration",
        "/favicon.ico",
    }
)
PAGES = ("/ohif", "/docs")  # where a browser without a session is sent to the login page (and "/")
LOGIN_PAGE = Path(__file__).resolve().parent / "login.html"
NO_CREDENTIAL = (
    "authentication required: log in at /login (browser), or send 'Authorization: Bearer TOKEN' "
    "with a token from POST /auth/token (form fields username and password)"
)
NO_STORE = {"Cache-Control": "no-store"}


def auth_mode() -> str:
    """``$CARDIAC_MI_AUTH`` (embedded, oidc, off); off when MONAI Label's auth is off."""
    if not settings.MONAI_LABEL_AUTH_ENABLE:
        return "off"
    mode = os.environ.get(MODE_ENV, "oidc").strip().lower()
    return mode if mode in MODES else "oidc"


class Unauthenticated(Exception):
    """No usable credential; ``detail`` says why and what to do."""

    def __init__(self, detail: str):
        super().__init__(detail)
        self.detail = detail


def _session_minutes() -> float:
    from cardiac_mi.auth import SESSION_MINUTES

    try:
        value = float(os.environ.get(SESSION_ENV, "") or SESSION_MINUTES)
    except ValueError:
        value = SESSION_MINUTES
    return value if value > 0 else SESSION_MINUTES


def _cookie_token(headers: dict[str, str]) -> str | None:
    raw = headers.get("cookie")
    if not raw:
        return None
    jar = SimpleCookie()
    try:
        jar.load(raw)
    except Exception:  # a malformed Cookie header is no credential
        return None
    morsel = jar.get(COOKIE)
    return morsel.value if morsel is not None and morsel.value else None


def _bearer(headers: dict[str, str]) -> str | None:
    value = headers.get("authorization")
    if not value:
        return None
    scheme, _, token = value.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthenticated("the Authorization header must be 'Bearer TOKEN' (a token from POST /auth/token)")
    return token.strip()


class Authenticator:
    """Checks credentials in the mode of the server (see the module docstring)."""

    def __init__(self, mode: str, store=None):
        self.mode = mode
        self.store = store
        self._oidc_key: Any = None
        self._oidc_config: dict | None = None
        self._lock = threading.Lock()

    @classmethod
    def from_environment(cls) -> Authenticator:
        mode = auth_mode()
        store = None
        if mode == "embedded":
            from cardiac_mi.auth import AuthStore

            folder = os.environ.get(AUTH_DIR_ENV)
            if not folder:
                raise RuntimeError(f"${MODE_ENV}=embedded needs ${AUTH_DIR_ENV} (the state folder's auth/)")
            store = AuthStore(folder)
        return cls(mode, store)

    # ------------------------------------------------------------------ credentials
    def credential(self, headers: dict[str, str]) -> tuple[str, str]:
        """(token, "bearer" or "cookie"); Unauthenticated when there is none."""
        token = _bearer(headers)
        if token:
            return token, "bearer"
        token = _cookie_token(headers)
        if token:
            return token, "cookie"
        raise Unauthenticated(NO_CREDENTIAL)

    def check(self, token: str) -> dict[str, Any]:
        """``{"username", "roles" (MONAI Label's), "claims"}`` of a valid token (blocking in oidc mode: call it
        off the event loop); Unauthenticated otherwise."""
        import jwt

        try:
            if self.mode == "embedded":
                return self._check_embedded(token)
            return self._check_oidc(token)
        except jwt.ExpiredSignatureError:
            raise Unauthenticated(
                "the token has expired: log in again (browser: /login; scripts: POST /auth/token)"
            ) from None
        except jwt.InvalidTokenError as exc:
            raise Unauthenticated(
                f"the token is not valid ({exc}): log in again (browser: /login; scripts: POST /auth/token)"
            ) from None

    def _check_embedded(self, token: str) -> dict[str, Any]:
        from cardiac_mi.auth import AuthError, monailabel_roles

        claims = self.store.decode(token)
        name = claims.get("sub", "")
        try:
            account = self.store.account(name)
        except AuthError as exc:
            logger.error("cannot read the accounts: %s", exc)
            raise Unauthenticated("the server cannot read its accounts; see its log") from None
        if account is None:
            raise Unauthenticated(f"the account {name!r} no longer exists")
        return {
            "username": name,
            "roles": monailabel_roles(list(account.roles)),
            "ours": list(account.roles),
            "claims": claims,
        }

    # --------------------------------------------------------------- oidc (Keycloak)
    def _realm_key(self) -> Any:
        import requests
        from cryptography.hazmat.primitives.serialization import load_pem_public_key

        with self._lock:
            if self._oidc_key is None:
                realm = settings.MONAI_LABEL_AUTH_REALM_URI
                try:
                    answer = requests.get(realm, timeout=settings.MONAI_LABEL_AUTH_TIMEOUT)
                    answer.raise_for_status()
                    text = answer.json()["public_key"]
                    pem = f"-----BEGIN PUBLIC KEY-----\n{text}\n-----END PUBLIC KEY-----\n"
                    self._oidc_key = load_pem_public_key(pem.encode("ascii"))
                except (requests.RequestException, ValueError, KeyError, TypeError) as exc:
                    logger.error("cannot read the public key of the realm %s: %s", realm, exc)
                    raise Unauthenticated(
                        f"the login provider {realm} does not answer with its key; try again later"
                    ) from None
            return self._oidc_key

    def _check_oidc(self, token: str) -> dict[str, Any]:
        import jwt

        claims = jwt.decode(
            token,
            self._realm_key(),
            algorithms=["RS256", "RS384", "RS512", "PS256"],
            options={"verify_aud": False, "require": ["exp"]},
        )
        value: Any = claims
        for part in settings.MONAI_LABEL_AUTH_TOKEN_ROLES.split("#"):
            value = value.get(part) if isinstance(value, dict) else None
        roles = [r for r in (value or []) if isinstance(r, str)]
        return {
            "username": claims.get(settings.MONAI_LABEL_AUTH_TOKEN_USERNAME) or claims.get("sub", ""),
            "roles": roles,
            "ours": roles,
            "claims": claims,
            "email": claims.get(settings.MONAI_LABEL_AUTH_TOKEN_EMAIL),
            "name": claims.get(settings.MONAI_LABEL_AUTH_TOKEN_NAME),
        }

    def oidc_token_endpoint(self) -> str:
        import requests

        if self._oidc_config is None:
            url = f"{settings.MONAI_LABEL_AUTH_REALM_URI}/.well-known/openid-configuration"
            answer = requests.get(url, timeout=settings.MONAI_LABEL_AUTH_TIMEOUT)
            answer.raise_for_status()
            self._oidc_config = answer.json()
        return self._oidc_config["token_endpoint"]

    # ------------------------------------------------------------------ logging in
    def login(self, username: str, password: str, kind: str) -> tuple[str, int]:
        """(token, seconds valid) for a user name and password; Unauthenticated when they are wrong."""
        from cardiac_mi.auth import TOKEN_MINUTES

        if self.mode == "embedded":
            account = self.store.verify(username, password)
            if account is None:
                logger.warning("failed login for %r", username[:64])
                raise Unauthenticated("wrong user name or password")
            minutes = _session_minutes() if kind == "session" else TOKEN_MINUTES
            logger.info("%s logged in (%s)", account.name, kind)
            return self.store.issue(account, minutes, kind), int(minutes * 60)
        return self._oidc_login(username, password)

    def _oidc_login(self, username: str, password: str) -> tuple[str, int]:
        import requests

        data = {
            "client_id": settings.MONAI_LABEL_AUTH_CLIENT_ID,
            "username": username,
            "password": password,
            "grant_type": "password",
            "scope": "openid",
        }
        secret = os.environ.get("CARDIAC_MI_OIDC_CLIENT_SECRET")
        if secret:
            data["client_secret"] = secret
        try:
            answer = requests.post(self.oidc_token_endpoint(), data=data, timeout=30)
        except (requests.RequestException, ValueError, KeyError) as exc:
            logger.error("the login provider %s does not answer: %s", settings.MONAI_LABEL_AUTH_REALM_URI, exc)
            raise Unauthenticated("the login provider does not answer; try again later") from None
        if answer.status_code in (400, 401, 403):
            raise Unauthenticated("wrong user name or password")
        try:
            answer.raise_for_status()
            found = answer.json()
            return found["access_token"], int(found.get("expires_in", 300))
        except (requests.RequestException, ValueError, KeyError, TypeError):
            raise Unauthenticated("the login provider answered without a token") from None


_AUTH: dict[str, Authenticator] = {}


def authenticator() -> Authenticator:
    if "it" not in _AUTH:
        _AUTH["it"] = Authenticator.from_environment()
    return _AUTH["it"]


def _headers(scope) -> dict[str, str]:
    return {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}


async def _identify(scope) -> dict[str, Any]:
    """The checked identity of a request (cached in its scope); Unauthenticated otherwise."""
    found = scope.get("cardiac_mi.identity")
    if found is not None:
        return found
    auth = authenticator()
    token, source = auth.credential(_headers(scope))
    identity = auth.check(token) if auth.mode == "embedded" else await run_in_threadpool(auth.check, token)
    identity = {**identity, "source": source}
    scope["cardiac_mi.identity"] = identity
    return identity


async def current_user(request: Request) -> User:
    """MONAI Label's ``User`` of the request, in place of its ``get_current_user`` (see the module docstring)."""
    try:
        identity = await _identify(request.scope)
    except Unauthenticated as exc:
        raise HTTPException(401, exc.detail, headers={"WWW-Authenticate": "Bearer"}) from None
    return User(
        username=identity["username"], email=identity.get("email"), name=identity.get("name"), roles=identity["roles"]
    )


def _json(status: int, detail: str, extra: list[tuple[bytes, bytes]] = ()) -> tuple[dict, bytes]:
    body = json.dumps({"detail": detail}).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"cache-control", b"no-store"),
        *extra,
    ]
    return {"type": "http.response.start", "status": status, "headers": headers}, body


def session_cookie(token: str, secure: bool, clear: bool = False) -> str:
    parts = [f"{COOKIE}={'' if clear else token}", "Path=/", "HttpOnly", "SameSite=Strict"]
    if clear:
        parts.append("Max-Age=0")
    if secure:
        parts.append("Secure")
    return "; ".join(parts)


def _is_https(scope, headers: dict[str, str]) -> bool:
    return scope.get("scheme") in ("https", "wss") or headers.get("x-forwarded-proto", "").lower() == "https"


def _wants_page(scope, headers: dict[str, str]) -> bool:
    path = scope.get("path", "")
    return (
        scope.get("method") in ("GET", "HEAD")
        and "text/html" in headers.get("accept", "")
        and (path == "/" or path.startswith(PAGES))
    )


class LoginGate:
    """ASGI middleware: no valid credential, no entry (except :data:`PUBLIC_PATHS`); renews browser sessions."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] not in ("http", "websocket") or scope.get("path", "") in PUBLIC_PATHS or auth_mode() == "off":
            await self.app(scope, receive, send)
            return
        headers = _headers(scope)
        try:
            identity = await _identify(scope)
        except Unauthenticated as exc:
            await self._refuse(scope, send, headers, exc.detail)
            return
        renewed = self._renewed(identity)
        if renewed is None or scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        cookie = session_cookie(renewed, _is_https(scope, headers)).encode("latin-1")

        async def send_with_cookie(message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), (b"set-cookie", cookie)]}
            await send(message)

        await self.app(scope, receive, send_with_cookie)

    def _renewed(self, identity: dict[str, Any]) -> str | None:
        """A fresh session token when the session cookie's token is older than :data:`RENEW_AFTER_S`."""
        auth = authenticator()
        claims = identity.get("claims", {})
        if auth.mode != "embedded" or identity.get("source") != "cookie" or claims.get("typ") != "session":
            return None
        if time.time() - float(claims.get("iat", 0)) < RENEW_AFTER_S:
            return None
        from cardiac_mi.auth import Account

        account = Account(identity["username"], tuple(identity.get("ours", ())))
        return auth.store.issue(account, _session_minutes(), "session")

    async def _refuse(self, scope, send, headers: dict[str, str], detail: str) -> None:
        path = scope.get("path", "")
        logger.info("unauthenticated %s %s: %s", scope.get("method", "WS"), path[:300], detail)
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})
            return
        clear = (
            [(b"set-cookie", session_cookie("", _is_https(scope, headers), clear=True).encode())]
            if _cookie_token(headers)
            else []
        )
        if _wants_page(scope, headers):
            target = path + (f"?{scope['query_string'].decode('latin-1')}" if scope.get("query_string") else "")
            location = f"/login?next={quote(target, safe='')}"
            await send(
                {
                    "type": "http.response.start",
                    "status": 303,
                    "headers": [
                        (b"location", location.encode("latin-1")),
                        (b"content-length", b"0"),
                        (b"cache-control", b"no-store"),
                        *clear,
                    ],
                }
            )
            await send({"type": "http.response.body", "body": b""})
            return
        start, body = _json(401, detail, [(b"www-authenticate", b"Bearer"), *clear])
        await send(start)
        await send({"type": "http.response.body", "body": body})


# ---------------------------------------------------------------------------------------------- routes
router = APIRouter(include_in_schema=False)


def safe_next(target: str | None) -> str:
    """A path of this server to go to after the login (never another site): default ``/ohif/``."""
    if (
        not target
        or not target.startswith("/")
        or target.startswith("//")
        or "\\" in target
        or any(ord(c) < 32 for c in target)
        or urlsplit(target).netloc
    ):
        return "/ohif/"
    return target


def login_page(next_path: str = "/ohif/", message: str = "", status: int = 200) -> HTMLResponse:
    text = LOGIN_PAGE.read_text(encoding="utf-8")
    note = f'<p class="error" role="alert" id="message">{html.escape(message)}</p>' if message else ""
    text = text.replace("{{next}}", html.escape(safe_next(next_path), quote=True)).replace("{{message}}", note)
    return HTMLResponse(text, status_code=status, headers=NO_STORE)


@router.get("/login")
def get_login(next: str = "/ohif/") -> HTMLResponse:  # noqa: A002 - the query parameter's name
    return login_page(next)


@router.post("/login")
async def post_login(request: Request, username: str = Form(""), password: str = Form(""), next: str = Form("/ohif/")):  # noqa: A002
    auth = authenticator()
    if not username or not password:
        return login_page(next, "Enter your user name and password.", 401)
    try:
        token, _ = await run_in_threadpool(auth.login, username, password, "session")
    except Unauthenticated as exc:
        return login_page(next, exc.detail[:1].upper() + exc.detail[1:] + ".", 401)
    response = RedirectResponse(safe_next(next), status_code=303, headers=NO_STORE)
    response.headers.append("set-cookie", session_cookie(token, _is_https(request.scope, _headers(request.scope))))
    return response


@router.api_route("/logout", methods=["GET", "POST"])
def logout(request: Request) -> Response:
    response = RedirectResponse("/login", status_code=303, headers=NO_STORE)
    response.headers.append(
        "set-cookie", session_cookie("", _is_https(request.scope, _headers(request.scope)), clear=True)
    )
    return response


@router.post("/auth/token")
async def token(username: str = Form(""), password: str = Form("")) -> JSONResponse:
    """MONAI Label's token form: ``username`` and ``password`` give ``{"access_token", "token_type"}``."""
    if not username or not password:
        raise HTTPException(422, "give the form fields username and password")
    try:
        value, seconds = await run_in_threadpool(authenticator().login, username, password, "api")
    except Unauthenticated as exc:
        raise HTTPException(401, exc.detail, headers={"WWW-Authenticate": "Bearer"}) from None
    return JSONResponse({"access_token": value, "token_type": "bearer", "expires_in": seconds}, headers=NO_STORE)


@router.get("/auth/session")
async def session(request: Request, user: User = Depends(RBAC(settings.MONAI_LABEL_AUTH_ROLE_USER))) -> JSONResponse:
    """Who is logged in: the user name and the roles (ours in embedded mode, the provider's otherwise)."""
    identity = request.scope.get("cardiac_mi.identity") or {}
    return JSONResponse({"username": user.username, "roles": identity.get("ours", user.roles)}, headers=NO_STORE)


def _realm(request: Request) -> dict[str, Any]:
    auth = authenticator()
    if auth.mode != "embedded":
        raise HTTPException(404, f"this server uses an external login provider: {settings.MONAI_LABEL_AUTH_REALM_URI}")
    return {
        "realm": "cardiac-mi",
        "public_key": auth.store.public_key_b64(),
        "token-service": str(request.base_url).rstrip("/") + "/auth/token",
        "algorithm": "RS256",
    }


@router.get("/auth/realm")
def realm(request: Request) -> JSONResponse:
    """The embedded token key as a Keycloak realm publishes its own (``public_key``: base64 DER)."""
    return JSONResponse(_realm(request))


@router.get("/auth/realm/.well-known/openid-configuration")
def realm_configuration(request: Request) -> JSONResponse:
    found = _realm(request)
    return JSONResponse(
        {
            "issuer": "cardiac-mi",
            "token_endpoint": found["token-service"],
            "grant_types_supported": ["password"],
            "id_token_signing_alg_values_supported": ["RS256"],
        }
    )


def log_file() -> Path:
    given = os.environ.get(LOG_FILE_ENV)
    return Path(given) if given else Path(settings.MONAI_LABEL_APP_DIR) / "logs" / "app.log"


logs_router = APIRouter(include_in_schema=False)


@logs_router.get("/logs/")
def logs(lines: int = 300, user: User = Depends(RBAC(settings.MONAI_LABEL_AUTH_ROLE_ADMIN))) -> Response:
    """The last ``lines`` lines of this server's log (its state folder's, not the install tree's)."""
    path = log_file()
    if not 0 < lines <= 100_000:
        raise HTTPException(422, f"lines: {lines} is not between 1 and 100000")
    try:
        with open(path, encoding="utf-8", errors="replace") as source:
            tail = deque(source, lines)
    except FileNotFoundError:
        raise HTTPException(404, "this server has written no log yet") from None
    return PlainTextResponse("".join(tail), headers={"Cache-Control": "no-store"})


def install(app) -> str:
    """Log in with :func:`current_user` in place of MONAI Label's, put the login routes in front and the
    :class:`LoginGate` behind the checks of :mod:`.security`; returns the mode."""
    from fastapi.middleware import Middleware
    from monailabel.endpoints.user.auth import get_current_user

    from cardiac_mi.viewer.panel import PANEL_PREFIX

    mode = auth_mode()
    before = len(app.router.routes)
    app.include_router(logs_router)
    app.include_router(logs_router, prefix=PANEL_PREFIX)
    if mode != "off":
        app.include_router(router)
    added = app.router.routes[before:]
    del app.router.routes[before:]
    app.router.routes[:] = added + list(app.router.routes)
    if hasattr(app.router, "_mark_routes_changed"):
        app.router._mark_routes_changed()
    if mode == "off":
        logger.info("authentication is off: everyone has every role")
        return mode
    authenticator()  # a missing setting is an error at start, not at the first request
    app.dependency_overrides[get_current_user] = current_user
    middleware = [m for m in app.user_middleware if m.cls is not LoginGate]
    # after the Host, Origin, size and CORS checks of .security (a refused preflight never needs a login)
    from starlette.middleware.cors import CORSMiddleware

    at = next((i + 1 for i, m in enumerate(middleware) if m.cls is CORSMiddleware), 0)
    middleware.insert(at, Middleware(LoginGate))
    app.user_middleware[:] = middleware
    app.middleware_stack = None
    logger.info(
        "authentication: %s (%s)",
        mode,
        os.environ.get(AUTH_DIR_ENV) if mode == "embedded" else settings.MONAI_LABEL_AUTH_REALM_URI,
    )
    return mode
