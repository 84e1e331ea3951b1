"""Accounts, roles and signed tokens of ``cardiac-mi serve`` (the embedded authentication).

Everything lives in ``STATE/auth/`` (0700), each file 0600 and written atomically (temporary file, then
rename):

- ``users.json``: the accounts, ``{"users": {NAME: {"roles": [...], "password": "scrypt$..."}}}``. A
  password is kept only as its scrypt hash (``hashlib.scrypt``, n=2**14, r=8, p=1, a 16-byte random salt),
  compared in constant time;
- ``admin-password``: the password generated for the account ``admin`` at the first start of the state
  folder (``serve`` logs it once, with this path); removed when that password is changed;
- ``token-key.pem``: the RSA private key (2048 bits) that signs the tokens (RS256 JWTs);
  ``token-key.pub.pem``: its public key, also served at ``/auth/realm`` as a Keycloak realm serves its own.

Roles (:data:`ROLES`) and what they allow, as MONAI Label's role names in the token
(``realm_access.roles``, the claim MONAI Label reads from a Keycloak token):

- ``reviewer``: view studies and results, run the model (MONAI Label's *user* and *reviewer* roles);
- ``annotator``: also save labels, upload studies, store reports (its *annotator* role);
- ``admin``: also train, publish and roll back models, upload, replace and delete models, read the logs
  (its *admin* role).

A token holds the user name (``preferred_username``), the roles and its expiry. The server
(:mod:`cardiac_mi.viewer.login`) also reads the account at every request (``users.json``, cached by its
time stamp), so removing an account or changing its roles takes effect at the next request.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import json
import logging
import os
import re
import secrets
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lgemri.errors import InputError

__all__ = [
    "ROLES",
    "AuthError",
    "AuthStore",
    "Account",
    "hash_password",
    "check_password",
    "monailabel_roles",
    "TOKEN_MINUTES",
    "SESSION_MINUTES",
    "ISSUER",
]

logger = logging.getLogger(__name__)

ROLES = ("admin", "annotator", "reviewer")
ISSUER = "cardiac-mi"
TOKEN_MINUTES = 60  # a token of POST /auth/token
SESSION_MINUTES = 480  # a browser session, renewed while it is used (see cardiac_mi.viewer.login)
MIN_PASSWORD = 8
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}")
_SCRYPT = {"n": 1 << 14, "r": 8, "p": 1}
_ALGORITHM = "RS256"


class AuthError(InputError):
    """A bad account name, role or password, or an unknown account (a clear message, exit 2 in the CLI)."""


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def hash_password(password: str) -> str:
    """``scrypt$N$R$P$SALT$HASH`` (base64) of ``password``."""
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode("utf-8"), salt=salt, dklen=32, maxmem=64 << 20, **_SCRYPT)
    return f"scrypt${_SCRYPT['n']}${_SCRYPT['r']}${_SCRYPT['p']}${_b64(salt)}${_b64(digest)}"


def check_password(password: str, stored: str) -> bool:
    """Whether ``password`` matches the hash ``stored`` (False for a malformed hash)."""
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        expected = base64.b64decode(digest)
        got = hashlib.scrypt(
            password.encode("utf-8"),
            salt=base64.b64decode(salt),
            n=int(n),
            r=int(r),
            p=int(p),
            dklen=len(expected),
            maxmem=64 << 20,
        )
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got, expected)


def monailabel_roles(roles: list[str]) -> list[str]:
    """MONAI Label's role names for our ``roles`` (what its RBAC checks)."""
    from monailabel.config import settings

    found = [settings.MONAI_LABEL_AUTH_ROLE_USER]
    if "reviewer" in roles or "admin" in roles:
        found.append(settings.MONAI_LABEL_AUTH_ROLE_REVIEWER)
    if "annotator" in roles or "admin" in roles:
        found.append(settings.MONAI_LABEL_AUTH_ROLE_ANNOTATOR)
    if "admin" in roles:
        found.append(settings.MONAI_LABEL_AUTH_ROLE_ADMIN)
    return found


def check_name(name: str) -> str:
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
        raise AuthError(
            f"user name {name!r}: expected 1 to 64 letters, digits, '.', '_', '@' or '-' "
            "(starting with a letter or digit)"
        )
    return name


def check_roles(roles: Any) -> list[str]:
    """The roles of ``roles`` (a list, or a comma-separated string), checked, in :data:`ROLES` order."""
    if isinstance(roles, str):
        roles = [r.strip() for r in roles.split(",")]
    given = [r for r in (roles or []) if r]
    unknown = [r for r in given if r not in ROLES]
    if unknown or not given:
        raise AuthError(f"roles {','.join(given) or '(none)'}: expected one or more of {', '.join(ROLES)}")
    return [r for r in ROLES if r in given]


def check_new_password(password: str) -> str:
    if not isinstance(password, str) or len(password) < MIN_PASSWORD:
        raise AuthError(f"the password must have at least {MIN_PASSWORD} characters")
    if password != password.strip() or any(ord(c) < 32 for c in password):
        raise AuthError("the password must not start or end with a space or hold control characters")
    return password


def generate_password() -> str:
    """A random password that never starts with '-' (a command line would read it as an option)."""
    while (password := secrets.token_urlsafe(18)).startswith("-"):
        pass
    return password


def _write_private(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically, the file 0600 whatever the umask."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)  # mkstemp: 0600
    try:
        with os.fdopen(fd, "wb") as sink:
            sink.write(data)
            sink.flush()
            os.fsync(sink.fileno())
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


@dataclass(frozen=True)
class Account:
    name: str
    roles: tuple[str, ...]


class AuthStore:
    """The accounts and the token key of one state folder (``STATE/auth``; see the module docstring)."""

    def __init__(self, folder: str | os.PathLike):
        self.folder = Path(folder)
        self.users_path = self.folder / "users.json"
        self.admin_password_path = self.folder / "admin-password"
        self.key_path = self.folder / "token-key.pem"
        self.public_key_path = self.folder / "token-key.pub.pem"
        self._lock = threading.Lock()
        self._cache: tuple[float, dict] | None = None
        self._private = None
        self._public = None

    @classmethod
    def of_state(cls, state: str | os.PathLike) -> AuthStore:
        return cls(Path(state) / "auth")

    # ------------------------------------------------------------------ set-up
    def ensure(self) -> str | None:
        """Create the folder, the key pair and, when there is no account file, the account ``admin`` with a
        generated password (also written to ``admin-password``). Returns that password when it was made now."""
        self.folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.folder.chmod(0o700)
        if not self.key_path.exists():
            self._make_key()
        if self.users_path.exists():
            self._read()  # a damaged file is an error now, not at the first login
            return None
        password = generate_password()
        _write_private(self.admin_password_path, (password + "\n").encode())
        self._write({"admin": {"roles": ["admin"], "password": hash_password(password)}})
        logger.info("created the account 'admin' (password in %s)", self.admin_password_path)
        return password

    def _make_key(self) -> None:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import rsa

        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        private = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        public = key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        _write_private(self.key_path, private)
        _write_private(self.public_key_path, public)
        logger.info("created the token signing key %s", self.key_path)

    # ------------------------------------------------------------------ accounts
    def _read(self) -> dict[str, dict]:
        try:
            stamp = self.users_path.stat().st_mtime_ns
        except FileNotFoundError:
            raise AuthError(
                f"{self.users_path}: no account file; start `cardiac-mi serve` once with this state "
                "folder, or add an account with `cardiac-mi users add`"
            ) from None
        if self._cache is not None and self._cache[0] == stamp:
            return self._cache[1]
        try:
            data = json.loads(self.users_path.read_text(encoding="utf-8"))
            users = data["users"]
            if not isinstance(users, dict) or not all(isinstance(v, dict) for v in users.values()):
                raise TypeError
        except (OSError, ValueError, KeyError, TypeError):
            raise AuthError(f"{self.users_path}: not an account file of cardiac-mi") from None
        self._cache = (stamp, users)
        return users

    def _write(self, users: dict[str, dict]) -> None:
        text = json.dumps({"users": users}, indent=2, sort_keys=True) + "\n"
        _write_private(self.users_path, text.encode("utf-8"))
        self._cache = None

    def _users_or_empty(self) -> dict[str, dict]:
        return dict(self._read()) if self.users_path.exists() else {}

    def accounts(self) -> list[Account]:
        return [Account(name, tuple(v.get("roles", ()))) for name, v in sorted(self._read().items())]

    def account(self, name: str) -> Account | None:
        entry = self._read().get(name) if self.users_path.exists() else None
        return Account(name, tuple(entry.get("roles", ()))) if entry else None

    def add(self, name: str, roles: Any, password: str) -> Account:
        check_name(name)
        roles = check_roles(roles)
        check_new_password(password)
        with self._lock:
            users = self._users_or_empty()
            if name in users:
                raise AuthError(f"the account {name!r} exists already (change it with `users passwd` or `users roles`)")
            users[name] = {"roles": roles, "password": hash_password(password)}
            self._write(users)
        logger.debug("account %s added with roles %s", name, ", ".join(roles))
        return Account(name, tuple(roles))

    def _existing(self, users: dict[str, dict], name: str) -> dict:
        if name not in users:
            known = ", ".join(sorted(users)) or "none"
            raise AuthError(f"no account {name!r} (accounts: {known})")
        return users[name]

    def _admins_left(self, users: dict[str, dict], without: str) -> bool:
        return any("admin" in v.get("roles", ()) for k, v in users.items() if k != without)

    def remove(self, name: str) -> None:
        with self._lock:
            users = self._users_or_empty()
            entry = self._existing(users, name)
            if "admin" in entry.get("roles", ()) and not self._admins_left(users, name):
                raise AuthError(f"{name!r} is the last admin account; give another account the role admin first")
            del users[name]
            self._write(users)
        if name == "admin":
            self.admin_password_path.unlink(missing_ok=True)
        logger.debug("account %s removed", name)

    def set_password(self, name: str, password: str) -> None:
        check_new_password(password)
        with self._lock:
            users = self._users_or_empty()
            self._existing(users, name)["password"] = hash_password(password)
            self._write(users)
        if name == "admin":
            self.admin_password_path.unlink(missing_ok=True)  # it no longer holds the password
        logger.debug("password of %s changed", name)

    def set_roles(self, name: str, roles: Any) -> Account:
        roles = check_roles(roles)
        with self._lock:
            users = self._users_or_empty()
            entry = self._existing(users, name)
            if "admin" not in roles and "admin" in entry.get("roles", ()) and not self._admins_left(users, name):
                raise AuthError(f"{name!r} is the last admin account; it keeps the role admin")
            entry["roles"] = roles
            self._write(users)
        logger.debug("roles of %s: %s", name, ", ".join(roles))
        return Account(name, tuple(roles))

    def verify(self, name: str, password: str) -> Account | None:
        """The account when ``password`` is its password, else None (the same time is spent for an unknown
        name, so the answer does not tell which names exist)."""
        entry = self._read().get(name) if isinstance(name, str) else None
        stored = entry.get("password", "") if entry else hash_password("not a password of anyone")
        ok = check_password(password or "", stored)
        return Account(name, tuple(entry.get("roles", ()))) if ok and entry else None

    # ------------------------------------------------------------------ tokens
    def private_key(self):
        if self._private is None:
            from cryptography.hazmat.primitives import serialization

            try:
                self._private = serialization.load_pem_private_key(self.key_path.read_bytes(), password=None)
            except (OSError, ValueError) as exc:
                raise AuthError(f"{self.key_path}: cannot read the token signing key ({exc})") from None
        return self._private

    def public_key_pem(self) -> str:
        return self.public_key_path.read_text(encoding="ascii")

    def public_key_b64(self) -> str:
        """The public key as a Keycloak realm gives it (``public_key``: base64 DER, no PEM lines)."""
        lines = self.public_key_pem().strip().splitlines()
        return "".join(line for line in lines if not line.startswith("-----"))

    def issue(
        self, account: Account, minutes: float = TOKEN_MINUTES, kind: str = "api", now: float | None = None
    ) -> str:
        """A signed token (RS256 JWT) for ``account``, valid ``minutes`` from ``now``."""
        import jwt

        now = time.time() if now is None else now
        roles = list(account.roles)
        claims = {
            "iss": ISSUER,
            "sub": account.name,
            "preferred_username": account.name,
            "name": account.name,
            "iat": int(now),
            "exp": int(now + minutes * 60),
            "typ": kind,
            "cardiac_mi_roles": roles,
            "realm_access": {"roles": monailabel_roles(roles)},
            "jti": secrets.token_hex(8),
        }
        return jwt.encode(claims, self.private_key(), algorithm=_ALGORITHM)

    def decode(self, token: str) -> dict[str, Any]:
        """The claims of ``token``; raises ``jwt.InvalidTokenError`` (``ExpiredSignatureError`` when expired)."""
        import jwt

        if self._public is None:
            self._public = self.private_key().public_key()
        return jwt.decode(
            token,
            self._public,
            algorithms=[_ALGORITHM],
            issuer=ISSUER,
            options={"require": ["exp", "iat", "sub"], "verify_aud": False},
        )
