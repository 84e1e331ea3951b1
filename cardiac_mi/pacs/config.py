"""The PACS connection's settings: where the PACS is, who we are, TLS, and the checks of AE titles and ports."""

from __future__ import annotations

import re
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from pydantic import BeforeValidator, Field, model_validator

from cardiac_mi.orthanc import AE_TITLE
from lgemri.config import Checked, Positive
from lgemri.errors import InputError

__all__ = ["PacsError", "Tls", "PacsSettings", "check_aet", "check_port"]

DEFAULT_PORT = 104
DEFAULT_TIMEOUT = 30.0
DEFAULT_MAX_STUDIES = 100
LEVELS = ("STUDY", "SERIES")
METHODS = ("get", "move")

ENVIRONMENT = {
    "CARDIAC_MI_PACS_HOST": "the PACS host name or address (--host)",
    "CARDIAC_MI_PACS_PORT": f"the PACS DICOM port (--port, default {DEFAULT_PORT})",
    "CARDIAC_MI_PACS_AET": "the PACS AE title, the called AE (--pacs-aet)",
    "CARDIAC_MI_AET": f"our AE title (--aet, default {AE_TITLE})",
    "CARDIAC_MI_PACS_TLS_CA": "CA certificate(s) that sign the peer's certificate (--tls-ca)",
    "CARDIAC_MI_PACS_TLS_CERT": "our certificate, PEM (--tls-cert)",
    "CARDIAC_MI_PACS_TLS_KEY": "the private key of our certificate, PEM (--tls-key)",
    "CARDIAC_MI_LISTEN_PORT": "the port of `pacs listen` (--listen-port)",
}

_AET_RE = re.compile(r"^[\x20-\x5b\x5d-\x7e]{1,16}$")  # printable ASCII without backslash
UID_RE = re.compile(r"^[0-9]+(\.[0-9]+)*$")


class PacsError(InputError):
    """The PACS cannot be reached, refuses us, or answers with a failure; the message says why and what to do."""


def check_aet(value: str, what: str) -> str:
    text = str(value).strip()
    if not _AET_RE.match(text):
        raise InputError(f"{what} {value!r} is not an AE title: 1 to 16 printable ASCII characters, no backslash")
    return text


def check_port(value: Any, what: str, *, allow_zero: bool = False) -> int:
    try:
        port = int(value)
    except (TypeError, ValueError):
        raise InputError(f"{what} {value!r} is not a TCP port number") from None
    low = 0 if allow_zero else 1
    if not low <= port <= 65535:
        raise InputError(f"{what} {port} is not a TCP port ({low}-65535)")
    return port


@dataclass(frozen=True)
class Tls(Checked):
    """TLS material (PEM files) for DICOM over TLS.

    As a client (echo, find, retrieve): ``ca`` verifies the PACS's certificate (default: the system's
    trusted CAs); ``cert`` and ``key`` are our client certificate, for PACSes that require one. As a
    server (listen, C-MOVE receive port): ``cert`` and ``key`` are required; with ``ca`` the peer must
    present a certificate signed by it.
    """

    ca: Path | None = None
    cert: Path | None = None
    key: Path | None = None

    def __post_init__(self) -> None:
        self.validate()

    @model_validator(mode="after")
    def _files(self) -> Tls:
        if (self.cert is None) != (self.key is None):
            raise InputError("give both --tls-cert and --tls-key (our certificate and its private key), or neither")
        for name, path in (("--tls-ca", self.ca), ("--tls-cert", self.cert), ("--tls-key", self.key)):
            if path is not None and not Path(path).is_file():
                raise InputError(f"{name} {path}: no such file")
        return self

    def _load(self, context: ssl.SSLContext) -> ssl.SSLContext:
        try:
            if self.ca is not None:
                context.load_verify_locations(cafile=str(self.ca))
            if self.cert is not None:
                context.load_cert_chain(str(self.cert), str(self.key))
        except ssl.SSLError as exc:
            raise InputError(
                f"cannot load the TLS files ({exc.reason or exc}): expected PEM certificates and key"
            ) from None
        except OSError as exc:
            raise InputError(f"cannot read the TLS files ({exc.strerror or exc})") from None
        return context

    def client_context(self) -> ssl.SSLContext:
        """An SSL context that verifies the PACS (by ``ca`` or the system's CAs) and offers our certificate."""
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
        return self._load(context)

    def server_context(self) -> ssl.SSLContext:
        """An SSL context for a listener: our certificate; the peer's is required when ``ca`` is given."""
        if self.cert is None:
            raise InputError("a TLS listener needs --tls-cert and --tls-key (its certificate and private key)")
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.verify_mode = ssl.CERT_REQUIRED if self.ca is not None else ssl.CERT_NONE
        return self._load(context)


def _host(value: Any) -> str:
    if not value or not str(value).strip():
        raise InputError("no PACS host: give --host or $CARDIAC_MI_PACS_HOST")
    return str(value).strip()


@dataclass(frozen=True)
class PacsSettings(Checked):
    """Where the PACS is and who we are (checked when built, :mod:`lgemri.config`).

    Args:
        host: the PACS host name or address.
        port: its DICOM port.
        called_aet: the PACS's AE title.
        calling_aet: our AE title, as the PACS knows it (``CARDIACMI``).
        tls: TLS material; None for plain DICOM.
        timeout: seconds to wait for the connection, the association and each DIMSE message.
    """

    host: Annotated[str, BeforeValidator(_host)]
    port: Annotated[int, BeforeValidator(lambda v: check_port(v, "PACS port"))]
    called_aet: Annotated[str, BeforeValidator(lambda v: check_aet(v, "PACS AE title"))]
    calling_aet: Annotated[str, BeforeValidator(lambda v: check_aet(v, "our AE title"))] = AE_TITLE
    tls: Tls | None = None
    timeout: Annotated[Positive, Field(title="timeout (seconds)")] = DEFAULT_TIMEOUT

    def __post_init__(self) -> None:
        self.validate()

    def __str__(self) -> str:
        return f"{self.called_aet}@{self.host}:{self.port}{' (TLS)' if self.tls else ''}"
