"""A DIMSE PACS connection (pynetdicom): C-ECHO, C-FIND, C-GET / C-MOVE into the product's store, a C-STORE listener.

The product's store is DICOMweb (the embedded Orthanc or any DICOMweb server, ``cardiac_mi.store``). A
DIMSE PACS is reached with four settings, ``PacsSettings``: its host, port and AE title, and our own AE
title, optionally over TLS::

    pacs = PacsSettings("pacs.example.org", 11112, "PACS", calling_aet="CARDIACMI")
    echo(pacs)
    for match in find(pacs, Query(patient_id="12345", date="20240101-20241231")):
        print(match.study_uid, match.modalities)
    report = retrieve(pacs, store, Query(study_uids=("1.2.3",)), spool=Spool("state/pacs-spool"))

Design:

- **One association per operation.** ``_associate`` asks for the presentation contexts the operation
  needs and turns every way it can fail into a ``PacsError`` that names the cause: unknown host,
  connection refused or timed out, TLS handshake failures, an association rejected (with the PACS's
  reason: called or calling AE title not recognised), no accepted service. pynetdicom reports connection
  and TLS failures only through its log, so a handler on the ``pynetdicom`` logger collects them for
  the message.
- **Retrieval goes through a spool.** C-GET (the default: the PACS sends the instances back over our
  own association, so no listening port is needed) and the C-STORE listener write every instance to
  ``SPOOL/incoming/<StudyUID>/<SOPInstanceUID>.dcm`` (write-then-rename, fsync) before they answer
  success, then send the spool to the store by STOW-RS. A file leaves the spool only once the store
  confirmed it (or already had it); files the store refuses move to ``SPOOL/refused/`` with a
  ``.reason.txt``. When the store is down the files stay, and the next ``retrieve``, ``listen`` or
  ``flush`` sends them: no study is lost.
- **C-MOVE** asks the PACS to send to a destination AE that the PACS knows by host and port: the
  product's own Orthanc (its DICOM port; nothing is spooled) or, with ``receive_port``, a listener we
  run for the duration of the move (spooled like C-GET).
- **Every retrieval is verified.** Before fetching, an IMAGE-level C-FIND lists the SOP instances the
  PACS holds for each study or series; afterwards a QIDO-RS query of the store counts how many of them
  it holds. The report gives both, with the PACS's sub-operation counts.
- Queries use the Study Root information model. Series-level matches are found study by study (a
  SERIES-level C-FIND below each matching study), as the hierarchical model requires.

pynetdicom and pydicom are imported inside the functions that use them, so that building the
``cardiac-mi`` parser stays fast.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as _dt
import errno
import json
import logging
import os
import re
import socket
import ssl
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cardiac_mi.orthanc import AE_TITLE
from lgemri.atomic import atomic_path
from lgemri.errors import InputError

if TYPE_CHECKING:
    from pydicom.dataset import Dataset

    from cardiac_mi.store import DicomStore, StowResult

__all__ = [
    "PacsError",
    "Tls",
    "PacsSettings",
    "Query",
    "Match",
    "Retrieved",
    "RetrieveReport",
    "Spool",
    "Listener",
    "echo",
    "find",
    "retrieve",
    "normalize_date",
    "register",
]

logger = logging.getLogger(__name__)

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
_UID_RE = re.compile(r"^[0-9]+(\.[0-9]+)*$")
_MODALITY_RE = re.compile(r"^[A-Z0-9_]{1,16}$")
_DATE_RE = re.compile(r"^(?P<start>\d{8})?(?P<dash>-)?(?P<end>\d{8})?$")
_ISO_RANGE_RE = re.compile(r"^(?P<start>\d{4}-\d{2}-\d{2})?(?P<dots>\.\.)?(?P<end>\d{4}-\d{2}-\d{2})?$")

# Storage SOP classes a retrieval of cardiac MR studies meets first; the rest of pynetdicom's list fills
# the presentation contexts left (an association may ask for 128 at most).
_PREFERRED_STORAGE = (
    "MRImageStorage",
    "EnhancedMRImageStorage",
    "EnhancedMRColorImageStorage",
    "MRSpectroscopyStorage",
    "SegmentationStorage",
    "CTImageStorage",
    "EnhancedCTImageStorage",
    "SecondaryCaptureImageStorage",
    "MultiFrameGrayscaleByteSecondaryCaptureImageStorage",
    "MultiFrameGrayscaleWordSecondaryCaptureImageStorage",
    "MultiFrameTrueColorSecondaryCaptureImageStorage",
    "EncapsulatedPDFStorage",
    "BasicTextSRStorage",
    "EnhancedSRStorage",
    "ComprehensiveSRStorage",
    "Comprehensive3DSRStorage",
    "KeyObjectSelectionDocumentStorage",
    "GrayscaleSoftcopyPresentationStateStorage",
    "ParametricMapStorage",
    "RawDataStorage",
)
_STORAGE_TRANSFER_SYNTAXES = (
    "1.2.840.10008.1.2",  # Implicit VR Little Endian
    "1.2.840.10008.1.2.1",  # Explicit VR Little Endian
    "1.2.840.10008.1.2.1.99",  # Deflated Explicit VR Little Endian
    "1.2.840.10008.1.2.2",  # Explicit VR Big Endian (retired, still sent by old modalities)
    "1.2.840.10008.1.2.4.50",  # JPEG Baseline
    "1.2.840.10008.1.2.4.51",  # JPEG Extended
    "1.2.840.10008.1.2.4.57",  # JPEG Lossless
    "1.2.840.10008.1.2.4.70",  # JPEG Lossless SV1
    "1.2.840.10008.1.2.4.80",  # JPEG-LS Lossless
    "1.2.840.10008.1.2.4.81",  # JPEG-LS Near-Lossless
    "1.2.840.10008.1.2.4.90",  # JPEG 2000 Lossless
    "1.2.840.10008.1.2.4.91",  # JPEG 2000
    "1.2.840.10008.1.2.5",  # RLE Lossless
)


class PacsError(InputError):
    """The PACS cannot be reached, refuses us, or answers with a failure; the message says why and what to do."""


# --------------------------------------------------------------------------------------------- settings


def _check_aet(value: str, what: str) -> str:
    text = str(value).strip()
    if not _AET_RE.match(text):
        raise InputError(f"{what} {value!r} is not an AE title: 1 to 16 printable ASCII characters, no backslash")
    return text


def _check_port(value: Any, what: str, *, allow_zero: bool = False) -> int:
    try:
        port = int(value)
    except (TypeError, ValueError):
        raise InputError(f"{what} {value!r} is not a TCP port number") from None
    low = 0 if allow_zero else 1
    if not low <= port <= 65535:
        raise InputError(f"{what} {port} is not a TCP port ({low}-65535)")
    return port


@dataclass(frozen=True)
class Tls:
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
        if (self.cert is None) != (self.key is None):
            raise InputError("give both --tls-cert and --tls-key (our certificate and its private key), or neither")
        for name, path in (("--tls-ca", self.ca), ("--tls-cert", self.cert), ("--tls-key", self.key)):
            if path is not None and not Path(path).is_file():
                raise InputError(f"{name} {path}: no such file")

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


@dataclass(frozen=True)
class PacsSettings:
    """Where the PACS is and who we are.

    Args:
        host: the PACS host name or address.
        port: its DICOM port.
        called_aet: the PACS's AE title.
        calling_aet: our AE title, as the PACS knows it (``CARDIACMI``).
        tls: TLS material; None for plain DICOM.
        timeout: seconds to wait for the connection, the association and each DIMSE message.
    """

    host: str
    port: int
    called_aet: str
    calling_aet: str = AE_TITLE
    tls: Tls | None = None
    timeout: float = DEFAULT_TIMEOUT

    def __post_init__(self) -> None:
        if not self.host or not str(self.host).strip():
            raise InputError("no PACS host: give --host or $CARDIAC_MI_PACS_HOST")
        object.__setattr__(self, "host", str(self.host).strip())
        object.__setattr__(self, "port", _check_port(self.port, "PACS port"))
        object.__setattr__(self, "called_aet", _check_aet(self.called_aet, "PACS AE title"))
        object.__setattr__(self, "calling_aet", _check_aet(self.calling_aet, "our AE title"))
        if not self.timeout > 0:
            raise InputError(f"timeout {self.timeout} must be a positive number of seconds")

    def __str__(self) -> str:
        return f"{self.called_aet}@{self.host}:{self.port}{' (TLS)' if self.tls else ''}"


# --------------------------------------------------------------------------------------------- queries


def _check_date(text: str, original: str) -> str:
    try:
        _dt.datetime.strptime(text, "%Y%m%d")
    except ValueError:
        raise InputError(f"date {original!r}: {text} is not a calendar date (YYYYMMDD)") from None
    return text


def normalize_date(text: str) -> str:
    """A DICOM date or date range from ``YYYYMMDD``, ``A-B``, ``A-``, ``-B`` or ISO ``YYYY-MM-DD[..YYYY-MM-DD]``.

    Raises:
        InputError: not one of those forms, not a calendar date, or a range that ends before it starts.
    """
    raw = text.strip()
    iso = _ISO_RANGE_RE.match(raw) if "-" in raw and len(raw.replace("..", "")) in (10, 20) else None
    if iso and (iso["start"] or iso["end"]) and (iso["dots"] or not (iso["start"] and iso["end"])):
        start = iso["start"].replace("-", "") if iso["start"] else ""
        end = iso["end"].replace("-", "") if iso["end"] else ""
        dash = "-" if iso["dots"] else ""
    else:
        match = _DATE_RE.match(raw)
        if not match or not (match["start"] or match["end"]) or (match["start"] and match["end"] and not match["dash"]):
            raise InputError(
                f"date {text!r}: expected YYYYMMDD, a range YYYYMMDD-YYYYMMDD, an open range YYYYMMDD- or "
                "-YYYYMMDD, or ISO YYYY-MM-DD[..YYYY-MM-DD]"
            )
        start, end, dash = match["start"] or "", match["end"] or "", match["dash"] or ""
    if start:
        _check_date(start, text)
    if end:
        _check_date(end, text)
    if start and end and end < start:
        raise InputError(f"date range {text!r} ends before it starts")
    return f"{start}{dash}{end}"


@dataclass(frozen=True)
class Query:
    """What to look for on the PACS. Empty fields match everything; DICOM wildcards (``*``, ``?``) work in
    the patient ID and name.

    Args:
        patient_id: PatientID.
        patient_name: PatientName (DICOM person name, e.g. ``DOE^JANE`` or ``DOE*``).
        study_uids: StudyInstanceUIDs (any of them).
        accession: AccessionNumber.
        date: StudyDate: ``YYYYMMDD``, a range ``A-B``, ``A-``, ``-B`` (see ``normalize_date``).
        modality: at STUDY level ModalitiesInStudy; at SERIES level the series' Modality.
    """

    patient_id: str | None = None
    patient_name: str | None = None
    study_uids: tuple[str, ...] = ()
    accession: str | None = None
    date: str | None = None
    modality: str | None = None

    def __post_init__(self) -> None:
        for name in ("patient_id", "patient_name", "accession"):
            value = getattr(self, name)
            if value is not None:
                value = str(value).strip()
                if "\\" in value or len(value) > 64:
                    raise InputError(f"{name.replace('_', ' ')} {value!r}: at most 64 characters, no backslash")
                object.__setattr__(self, name, value or None)
        uids = tuple(str(uid).strip() for uid in self.study_uids)
        for uid in uids:
            if not _UID_RE.match(uid) or len(uid) > 64:
                raise InputError(f"study UID {uid!r} is not a DICOM UID (digits and dots, at most 64 characters)")
        object.__setattr__(self, "study_uids", uids)
        if self.date is not None:
            object.__setattr__(self, "date", normalize_date(self.date) if str(self.date).strip() else None)
        if self.modality is not None:
            modality = str(self.modality).strip().upper()
            if not _MODALITY_RE.match(modality):
                raise InputError(f"modality {self.modality!r} is not a DICOM modality code (e.g. MR, CT, SEG, SR)")
            object.__setattr__(self, "modality", modality)

    @property
    def empty(self) -> bool:
        return not any((self.patient_id, self.patient_name, self.study_uids, self.accession, self.date, self.modality))

    def __str__(self) -> str:
        parts = [
            f"patient ID {self.patient_id}" if self.patient_id else "",
            f"patient name {self.patient_name}" if self.patient_name else "",
            f"study {', '.join(self.study_uids)}" if self.study_uids else "",
            f"accession {self.accession}" if self.accession else "",
            f"date {self.date}" if self.date else "",
            f"modality {self.modality}" if self.modality else "",
        ]
        return ", ".join(part for part in parts if part) or "everything"


@dataclass(frozen=True)
class Match:
    """One C-FIND match: a study, or a series (``series_uid`` set) with its study's fields."""

    level: str
    study_uid: str
    patient_id: str
    patient_name: str
    study_date: str
    study_description: str
    accession: str
    modalities: tuple[str, ...]
    series: int | None
    instances: int | None
    series_uid: str | None = None
    series_number: int | None = None
    series_description: str = ""

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["modalities"] = list(self.modalities)
        return data


def _text(ds: Dataset, keyword: str) -> str:
    from pydicom.multival import MultiValue

    value = ds.get(keyword)
    if value is None:
        return ""
    if isinstance(value, (MultiValue, list, tuple)):
        return "\\".join(str(v).strip() for v in value)
    return str(value).strip()


def _int(ds: Dataset, keyword: str) -> int | None:
    with contextlib.suppress(TypeError, ValueError):
        value = ds.get(keyword)
        if value not in (None, ""):
            return int(value)
    return None


def _modalities(ds: Dataset, keyword: str) -> tuple[str, ...]:
    value = ds.get(keyword)
    if value in (None, ""):
        return ()
    items = [value] if isinstance(value, str) else list(value)
    return tuple(sorted({str(v).strip() for v in items if str(v).strip()}))


def _study_match(ds: Dataset) -> Match:
    return Match(
        level="STUDY",
        study_uid=_text(ds, "StudyInstanceUID"),
        patient_id=_text(ds, "PatientID"),
        patient_name=_text(ds, "PatientName"),
        study_date=_text(ds, "StudyDate"),
        study_description=_text(ds, "StudyDescription"),
        accession=_text(ds, "AccessionNumber"),
        modalities=_modalities(ds, "ModalitiesInStudy"),
        series=_int(ds, "NumberOfStudyRelatedSeries"),
        instances=_int(ds, "NumberOfStudyRelatedInstances"),
    )


def _series_match(study: Match, ds: Dataset) -> Match:
    modality = _text(ds, "Modality")
    return Match(
        level="SERIES",
        study_uid=study.study_uid,
        patient_id=study.patient_id,
        patient_name=study.patient_name,
        study_date=study.study_date,
        study_description=study.study_description,
        accession=study.accession,
        modalities=(modality,) if modality else (),
        series=None,
        instances=_int(ds, "NumberOfSeriesRelatedInstances"),
        series_uid=_text(ds, "SeriesInstanceUID"),
        series_number=_int(ds, "SeriesNumber"),
        series_description=_text(ds, "SeriesDescription"),
    )


def _study_identifier(query: Query) -> Dataset:
    from pydicom.dataset import Dataset

    ds = Dataset()
    ds.QueryRetrieveLevel = "STUDY"
    ds.StudyInstanceUID = "\\".join(query.study_uids)
    ds.PatientID = query.patient_id or ""
    ds.PatientName = query.patient_name or ""
    ds.StudyDate = query.date or ""
    ds.StudyTime = ""
    ds.AccessionNumber = query.accession or ""
    ds.StudyDescription = ""
    ds.ModalitiesInStudy = query.modality or ""
    ds.NumberOfStudyRelatedSeries = ""
    ds.NumberOfStudyRelatedInstances = ""
    return ds


def _series_identifier(study_uid: str, modality: str | None) -> Dataset:
    from pydicom.dataset import Dataset

    ds = Dataset()
    ds.QueryRetrieveLevel = "SERIES"
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = ""
    ds.Modality = modality or ""
    ds.SeriesNumber = ""
    ds.SeriesDescription = ""
    ds.NumberOfSeriesRelatedInstances = ""
    return ds


def _image_identifier(study_uid: str, series_uid: str | None) -> Dataset:
    from pydicom.dataset import Dataset

    ds = Dataset()
    ds.QueryRetrieveLevel = "IMAGE"
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid or ""
    ds.SOPInstanceUID = ""
    return ds


# --------------------------------------------------------------------------------------------- association


class _PynetdicomLog(logging.Handler):
    """Collects pynetdicom's warnings and errors (and their exceptions) while an association starts."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []
        self.exceptions: list[BaseException] = []

    def emit(self, record: logging.LogRecord) -> None:
        with contextlib.suppress(Exception):
            self.messages.append(record.getMessage())
            if record.exc_info and record.exc_info[1] is not None:
                self.exceptions.append(record.exc_info[1])

    def __enter__(self) -> _PynetdicomLog:
        logging.getLogger("pynetdicom").addHandler(self)
        return self

    def __exit__(self, *exc_info: object) -> None:
        logging.getLogger("pynetdicom").removeHandler(self)


def _tls_problem(exc: BaseException, settings: PacsSettings) -> str:
    if isinstance(exc, ssl.SSLCertVerificationError):
        return (
            f"the PACS's TLS certificate is not trusted ({exc.verify_message}): give the CA that signed it "
            "with --tls-ca, and check that the certificate names the host you connect to"
        )
    text = str(getattr(exc, "reason", None) or exc)
    lowered = str(exc).lower()
    if "certificate required" in lowered or "peer did not return a certificate" in lowered:
        return "the PACS requires a client certificate: give ours with --tls-cert and --tls-key"
    if "unknown ca" in lowered or "bad certificate" in lowered or "certificate unknown" in lowered:
        return f"the PACS does not trust our client certificate ({text}): have it trust the CA that signed --tls-cert"
    if "wrong version number" in lowered or "unexpected eof" in lowered or "record layer" in lowered:
        return f"TLS handshake failed ({text}): does the PACS speak DICOM over TLS on port {settings.port}?"
    return f"TLS handshake failed ({text})"


def _connection_problem(settings: PacsSettings, log: _PynetdicomLog) -> str | None:
    where = f"{settings.host}:{settings.port}"
    for exc in log.exceptions:
        if isinstance(exc, ssl.SSLError):
            return f"{where}: {_tls_problem(exc, settings)}"
    for message in log.messages:
        if "TCP Initialisation Error" not in message:
            continue
        detail = message.split("TCP Initialisation Error:", 1)[1].strip()
        lowered = detail.lower()
        if "refused" in lowered:
            return (
                f"nothing accepts DICOM connections at {where} (connection refused): check --port and that "
                "the PACS's DICOM server runs"
            )
        if "timed out" in lowered:
            return (
                f"no answer from {where} within {settings.timeout:g} s (connection timed out): check the host "
                "and port, and that no firewall drops DICOM traffic"
            )
        if "unreachable" in lowered or "no route" in lowered:
            return f"cannot reach {where} ({detail}): check the host and the network route"
        if "ssl" in lowered or "certificate" in lowered:
            return f"{where}: TLS handshake failed ({detail})"
        if settings.tls is not None and ("reset" in lowered or "eof" in lowered or "broken pipe" in lowered):
            return (
                f"{where} closed the connection during the TLS handshake ({detail}): does the PACS speak "
                "DICOM over TLS on this port?"
            )
        return f"cannot connect to {where} ({detail})"
    return None


def _late_rejection(assoc: Any) -> Any:
    """The A-ASSOCIATE-RJ that pynetdicom left unread, if any.

    A PACS that rejects an association closes the connection right after its A-ASSOCIATE-RJ. When
    pynetdicom (2.1) notices the closed connection before its ACSE reads the answer, it reports an
    abort and the rejection stays in the DUL's queue; reading it gives the PACS's real reason.
    """
    from pynetdicom.pdu_primitives import A_ASSOCIATE

    pending = getattr(getattr(assoc, "dul", None), "to_user_queue", None)
    with contextlib.suppress(Exception):
        while pending is not None and not pending.empty():
            item = pending.get_nowait()
            if isinstance(item, A_ASSOCIATE) and item.result in (0x01, 0x02):
                return item
    return None


def _rejection(settings: PacsSettings, primitive: Any) -> str:
    result = getattr(primitive, "result_str", "Rejected")
    source = getattr(primitive, "source_str", "")
    reason = getattr(primitive, "reason_str", "no reason given")
    text = f"{settings} rejected the association ({result.lower()} by the {source.lower()}: {reason})"
    lowered = reason.lower()
    if "called ae" in lowered:
        return (
            f"{text}: the PACS does not answer to AE title {settings.called_aet!r}; check --pacs-aet "
            "(or $CARDIAC_MI_PACS_AET)"
        )
    if "calling ae" in lowered:
        return (
            f"{text}: the PACS does not know our AE title {settings.calling_aet!r}; add it to the PACS's "
            "list of DICOM nodes (see docs/pacs.md) or set --aet"
        )
    if "transient" in result.lower():
        return f"{text}: the PACS is busy, try again later"
    return (
        f"{text}: check that the PACS knows our AE title {settings.calling_aet!r} and this host, and that "
        f"{settings.called_aet!r} is its AE title"
    )


@contextlib.contextmanager
def _associate(
    settings: PacsSettings,
    contexts: Sequence[tuple[str, Sequence[str]]],
    *,
    roles: Sequence[Any] = (),
    handlers: Sequence[tuple[Any, Callable[..., Any]]] = (),
) -> Iterator[Any]:
    """An established association with ``settings``' PACS (released on exit); ``PacsError`` if it fails."""
    from pynetdicom import AE

    try:
        socket.getaddrinfo(settings.host, settings.port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise PacsError(f"unknown PACS host {settings.host!r} ({exc.strerror}): check --host") from None
    tls_args = None
    if settings.tls is not None:
        tls_args = (settings.tls.client_context(), settings.host)
    peer_end = _PeerEnd()
    ae = AE(ae_title=settings.calling_aet)
    ae.connection_timeout = settings.timeout
    ae.acse_timeout = settings.timeout
    ae.dimse_timeout = settings.timeout
    ae.network_timeout = max(settings.timeout, 60.0)
    for abstract, syntaxes in contexts:
        ae.add_requested_context(abstract, list(syntaxes))
    with _PynetdicomLog() as log:
        assoc = ae.associate(
            settings.host,
            settings.port,
            ae_title=settings.called_aet,
            ext_neg=list(roles) or None,
            evt_handlers=[*handlers, *peer_end.handlers()],
            tls_args=tls_args,
        )
    if not assoc.is_established:
        if assoc.is_rejected:
            raise PacsError(_rejection(settings, assoc.acceptor.primitive))
        rejected = _late_rejection(assoc)
        if rejected is not None:
            raise PacsError(_rejection(settings, rejected))
        problem = _connection_problem(settings, log)
        if problem is None:
            if any("No accepted presentation contexts" in m for m in log.messages):
                problem = (
                    f"{settings} accepted none of the services we asked for "
                    f"({', '.join(_service_name(uid) for uid, _ in contexts[:3])}): the PACS does not offer them"
                    " to us"
                )
            elif any("ACSE timeout" in m for m in log.messages):
                problem = f"{settings} did not answer the association request within {settings.timeout:g} s"
            elif settings.tls is None:
                problem = (
                    f"{settings} closed the connection during the association request (does it expect "
                    "DICOM over TLS on this port? then give --tls-ca)"
                )
            else:
                problem = f"{settings} closed the connection during the association request"
        raise PacsError(problem)
    logger.debug("associated with %s as %s", settings, settings.calling_aet)
    _PEER_ENDS[assoc] = peer_end
    try:
        yield assoc
    finally:
        if assoc.is_established:
            assoc.release()


def _require(settings: PacsSettings, assoc: Any, uid: str, hint: str = "") -> None:
    """Raise ``PacsError`` unless the PACS accepted the service ``uid`` on this association."""
    if not any(cx.abstract_syntax == uid for cx in assoc.accepted_contexts):
        raise PacsError(f"{settings} does not offer {_service_name(uid)} to us{': ' + hint if hint else ''}")


def _service_name(uid: str) -> str:
    from pydicom.uid import UID

    return UID(uid).name


class _PeerEnd:
    """Records whether the PACS itself ended an association, and how.

    When a DIMSE request gets no answer, pynetdicom (2.1) returns an empty status in two cases: its DIMSE
    timeout ran out (it then aborts the association itself), or the peer ended the association (A-ABORT,
    A-RELEASE-RQ, or the connection closed). Wall-clock time cannot tell them apart on a loaded machine:
    pynetdicom's reactor thread can take the wake-up that the peer's A-ABORT puts on the DIMSE queue, and
    the request then waits out the whole timeout although the PACS refused at once. So the DUL's own
    events are watched instead: they fire in the DUL thread, before the request is woken, whatever the load.
    On an A-ABORT or a closed connection they also put one more wake-up on the DIMSE queue, so that the
    waiting request returns at once even when the reactor took pynetdicom's own.
    """

    def __init__(self) -> None:
        self.how: str | None = None

    def handlers(self) -> list[tuple[Any, Callable[[Any], None]]]:
        from pynetdicom import evt

        return [(evt.EVT_PDU_RECV, self._on_pdu), (evt.EVT_CONN_CLOSE, self._on_close)]

    @staticmethod
    def _ours(assoc: Any) -> bool:
        # after our own A-ABORT (a DIMSE timeout) or release, pynetdicom has already marked the association;
        # a peer's A-ABORT is marked only after these events, so it is never taken for ours
        return bool(assoc.is_aborted or assoc.is_released)

    def _on_pdu(self, event: Any) -> None:
        from pynetdicom.pdu import A_ABORT_RQ, A_RELEASE_RQ

        if self.how is not None or self._ours(event.assoc):
            return
        if isinstance(event.pdu, A_ABORT_RQ):
            self._ended(event.assoc, "it sent an A-ABORT")
        elif isinstance(event.pdu, A_RELEASE_RQ):
            # not woken: pynetdicom's reactor answers the release itself once the request gives up
            self.how = "it asked to release the association"

    def _on_close(self, event: Any) -> None:
        if self.how is None and not self._ours(event.assoc):
            self._ended(event.assoc, "it closed the connection")

    def _ended(self, assoc: Any, how: str) -> None:
        self.how = how
        with contextlib.suppress(Exception):  # no request waiting: the association is over anyway
            assoc.dimse.msg_queue.put((None, None))


def _peer_ended(assoc: Any) -> bool:
    peer_end = _PEER_ENDS.get(assoc)
    return peer_end is not None and peer_end.how is not None


_PEER_ENDS: weakref.WeakKeyDictionary[Any, _PeerEnd] = weakref.WeakKeyDictionary()


def _lost(settings: PacsSettings, assoc: Any, what: str) -> str:
    """Why a DIMSE request on ``assoc`` got no answer: the PACS ended the association, or it never answered.

    Decided by what the PACS sent (see ``_PeerEnd``), never by the time waited.
    """
    peer_end = _PEER_ENDS.get(assoc)
    how = peer_end.how if peer_end is not None else None
    if how is None:
        return f"{settings} did not answer our {what} within {settings.timeout:g} s"
    logger.debug("%s ended the association during our %s: %s", settings, what, how)
    return (
        f"{settings} ended the association instead of answering our {what} ({how}): the PACS may not allow "
        f"AE {settings.calling_aet!r} to do this; add our AE title to its DICOM nodes with {what} allowed "
        "(see docs/pacs.md)"
    )


def _status_text(service: str, status: Dataset) -> str:
    from pynetdicom.status import code_to_category

    code = int(status.Status)
    described = {
        0xA700: "out of resources",
        0xA701: "out of resources: unable to calculate the number of matches",
        0xA702: "out of resources: unable to perform sub-operations",
        0xA801: "move destination unknown",
        0xA900: "identifier does not match SOP class",
        0xAA00: "none of the frames requested were found",
        0xC000: "unable to process",
        0x0122: "SOP class not supported",
        0x0124: "not authorized",
        0xFE00: "cancelled",
    }
    text = described.get(code) or code_to_category(code).lower()
    comment = _text(status, "ErrorComment")
    return f"{service} failed with status 0x{code:04X} ({text}{': ' + comment if comment else ''})"


def _c_find(settings: PacsSettings, assoc: Any, identifier: Dataset) -> list[Dataset]:
    from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelFind as FIND

    matches = []
    for status, found in assoc.send_c_find(identifier, FIND):
        if not status:
            raise PacsError(_lost(settings, assoc, "C-FIND"))
        code = int(status.Status)
        if code in (0xFF00, 0xFF01):
            if found is not None:
                matches.append(found)
            continue
        if code == 0x0000:
            break
        raise PacsError(f"{settings}: {_status_text('C-FIND', status)}")
    return matches


# --------------------------------------------------------------------------------------------- echo, find


def echo(settings: PacsSettings) -> float:
    """C-ECHO the PACS; returns the round trip in seconds (association included).

    Raises:
        PacsError: the PACS cannot be reached, rejects the association or answers with a failure.
    """
    from pynetdicom import DEFAULT_TRANSFER_SYNTAXES
    from pynetdicom.sop_class import Verification

    tick = time.perf_counter()
    with _associate(settings, [(Verification, DEFAULT_TRANSFER_SYNTAXES)]) as assoc:
        _require(settings, assoc, Verification)
        status = assoc.send_c_echo()
        if not status:
            raise PacsError(_lost(settings, assoc, "C-ECHO"))
        if int(status.Status) != 0x0000:
            raise PacsError(f"{settings}: {_status_text('C-ECHO', status)}")
    return time.perf_counter() - tick


def _find_studies(settings: PacsSettings, assoc: Any, query: Query) -> list[Match]:
    found = (_study_match(ds) for ds in _c_find(settings, assoc, _study_identifier(query)))
    return sorted(found, key=lambda m: (m.study_date, m.patient_id, m.study_uid))


def _find_series(settings: PacsSettings, assoc: Any, studies: list[Match], modality: str | None) -> list[Match]:
    series: list[Match] = []
    for study in studies:
        found = [
            _series_match(study, ds) for ds in _c_find(settings, assoc, _series_identifier(study.study_uid, modality))
        ]
        if modality:  # a PACS may ignore the filter: keep only what matches
            found = [m for m in found if modality in m.modalities]
        series += sorted(
            found, key=lambda m: (m.series_number if m.series_number is not None else 1 << 30, m.series_uid or "")
        )
    return series


def _check_level(level: str) -> str:
    value = str(level).upper()
    if value not in LEVELS:
        raise InputError(f"query level {level!r}: choose one of {', '.join(v.lower() for v in LEVELS)}")
    return value


def find(settings: PacsSettings, query: Query, level: str = "STUDY") -> list[Match]:
    """C-FIND (Study Root) the studies or series matching ``query``; an empty list when nothing matches.

    Args:
        settings: the PACS.
        query: the filters.
        level: ``STUDY`` or ``SERIES`` (series of the matching studies, with ``query.modality`` applied to
            each series).

    Raises:
        PacsError: connection, association or C-FIND failure.
    """
    from pynetdicom import DEFAULT_TRANSFER_SYNTAXES
    from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelFind as FIND

    level = _check_level(level)
    with _associate(settings, [(FIND, DEFAULT_TRANSFER_SYNTAXES)]) as assoc:
        _require(settings, assoc, FIND)
        studies = _find_studies(settings, assoc, query)
        return studies if level == "STUDY" else _find_series(settings, assoc, studies, query.modality)


# --------------------------------------------------------------------------------------------- spool


def _safe_name(uid: str) -> str:
    return uid if _UID_RE.match(uid) and len(uid) <= 64 else re.sub(r"[^0-9A-Za-z.]+", "_", uid)[:64] or "unknown"


class Spool:
    """The folder where retrieved or received instances wait until the store has them.

    ``incoming/<StudyUID>/<SOPInstanceUID>.dcm``: waiting to be sent; ``refused/<StudyUID>/``: refused by
    the store, each with ``<file>.reason.txt``. Writing is write-then-rename with fsync, so a file in
    ``incoming/`` is always whole; ``flush`` removes a file only when the store confirmed it.
    """

    def __init__(self, folder: str | os.PathLike) -> None:
        self.folder = Path(folder)
        self.incoming = self.folder / "incoming"
        self.refused = self.folder / "refused"
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"Spool({str(self.folder)!r})"

    def _private(self, folder: Path) -> Path:
        """Create ``folder`` (and the spool) readable by us only: the spool holds patient data."""
        self.folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        current = self.folder
        for part in folder.relative_to(self.folder).parts:
            current = current / part
            current.mkdir(exist_ok=True, mode=0o700)
        return folder

    def write(self, data: bytes, study_uid: str, sop_uid: str) -> Path:
        """Store one encoded DICOM file (preamble and file meta included) durably; returns its path."""
        folder = self.incoming / _safe_name(study_uid)
        path = folder / f"{_safe_name(sop_uid)}.dcm"
        for attempt in range(3):
            try:
                self._private(folder)
                with atomic_path(path) as tmp:
                    with open(tmp, "wb") as handle:
                        handle.write(data)
                        handle.flush()
                        os.fsync(handle.fileno())
                return path
            except FileNotFoundError:
                # a flush removed the study's folder (empty) between mkdir and write: make it again
                if attempt == 2:
                    raise
        return path

    def receive(self, event: Any) -> Path:
        """Write the dataset of a pynetdicom C-STORE event (as received, not re-encoded)."""
        sop_uid = str(event.request.AffectedSOPInstanceUID)
        study_uid = str(event.dataset.get("StudyInstanceUID") or "unknown")
        return self.write(bytes(event.encoded_dataset()), study_uid, sop_uid)

    def pending(self) -> list[Path]:
        """The files waiting in ``incoming/``, in name order (temporary files of writes in progress excluded)."""
        if not self.incoming.is_dir():
            return []
        return sorted(p for p in self.incoming.glob("*/*.dcm") if not p.name.startswith("."))

    def flush(self, store: DicomStore) -> StowResult:
        """Send the pending files to ``store``; delete those it took, move those it refused to ``refused/``.

        Raises:
            DicomStoreError: the store cannot be reached (the files stay for the next flush).
        """
        from cardiac_mi.store import StowResult

        with self._lock:
            files = self.pending()
            if not files:
                return StowResult()
            logger.info("sending %d spooled files to %s", len(files), store.url)
            result = store.stow(files)
            for path in result.stored + result.skipped:
                path.unlink(missing_ok=True)
            for refused in result.refused:
                target = self._private(self.refused / refused.path.parent.name) / refused.path.name
                os.replace(refused.path, target)
                (target.parent / f"{target.name}.reason.txt").write_text(refused.reason + "\n", encoding="utf-8")
                logger.warning("%s refused %s: %s (kept in %s)", store.url, refused.path.name, refused.reason, target)
            for folder in {path.parent for path in files}:
                with contextlib.suppress(OSError):
                    folder.rmdir()  # only when empty
            return result


# --------------------------------------------------------------------------------------------- retrieve


@dataclass
class Retrieved:
    """One study (or series) asked for, and what became of it.

    Attributes:
        expected: SOP instances the PACS lists for it (IMAGE-level C-FIND); None when the PACS does not say.
        completed, failed, warning: the PACS's sub-operation counts of the C-GET / C-MOVE.
        in_store: how many of the expected instances the store holds afterwards (QIDO-RS).
    """

    study_uid: str
    series_uid: str | None
    patient_id: str
    study_date: str
    description: str
    expected: int | None = None
    completed: int = 0
    failed: int = 0
    warning: int = 0
    in_store: int | None = None
    error: str = ""

    @property
    def ok(self) -> bool:
        return not self.error and self.failed == 0 and (self.expected is None or self.in_store == self.expected)

    def __str__(self) -> str:
        what = f"series {self.series_uid}" if self.series_uid else f"study {self.study_uid}"
        who = f" ({self.patient_id}, {self.study_date}{', ' + self.description if self.description else ''})"
        stored = (
            f"{self.in_store} of {self.expected} instances in the store"
            if self.expected is not None
            else f"{self.in_store} instances of the study in the store"
        )
        sent = f"PACS: {self.completed} sent, {self.failed} failed" + (
            f", {self.warning} warnings" if self.warning else ""
        )
        return f"{what}{who}: {stored} ({sent}){'; ' + self.error if self.error else ''}"


@dataclass
class RetrieveReport:
    """What a ``retrieve`` did: one ``Retrieved`` per C-GET / C-MOVE, and what the spool sent to the store."""

    method: str
    destination: str
    items: list[Retrieved] = field(default_factory=list)
    stow: Any = None  # StowResult of the spool's flushes (C-GET, receive port)
    spool: Path | None = None

    @property
    def ok(self) -> bool:
        return all(item.ok for item in self.items) and (self.stow is None or not self.stow.refused)

    def summary(self) -> str:
        done = sum(item.ok for item in self.items)
        kind = "series" if any(item.series_uid for item in self.items) else "studies"
        text = f"{done} of {len(self.items)} {kind} complete in the store by C-{self.method.upper()}"
        if self.stow is not None:
            text += f"; spool: {self.stow.summary()}"
        return text


def _storage_contexts(limit: int) -> list[tuple[str, tuple[str, ...]]]:
    from pydicom.uid import UID
    from pynetdicom import StoragePresentationContexts, sop_class

    uids: list[str] = []
    for name in _PREFERRED_STORAGE:
        uid = getattr(sop_class, name, None)
        if uid is not None and uid not in uids:
            uids.append(str(uid))
    for context in StoragePresentationContexts:
        if len(uids) >= limit:
            break
        if context.abstract_syntax not in uids:
            uids.append(str(context.abstract_syntax))
    return [(str(UID(uid)), _STORAGE_TRANSFER_SYNTAXES) for uid in uids[:limit]]


def _sub_operations(status: Dataset) -> tuple[int, int, int]:
    return tuple(
        _int(status, k) or 0
        for k in ("NumberOfCompletedSuboperations", "NumberOfFailedSuboperations", "NumberOfWarningSuboperations")
    )  # type: ignore[return-value]


def _run_retrieval(
    settings: PacsSettings, assoc: Any, responses: Iterator[tuple[Dataset, Any]], item: Retrieved, service: str
) -> None:
    final = None
    for status, _identifier in responses:
        if not status:
            raise PacsError(_lost(settings, assoc, service))
        code = int(status.Status)
        if code == 0xFF00:
            continue
        final = status
        break
    if final is None:
        raise PacsError(_lost(settings, assoc, service))
    item.completed, item.failed, item.warning = _sub_operations(final)
    code = int(final.Status)
    if code in (0x0000, 0xB000):  # success, or some sub-operations failed/warned (counted)
        return
    if code == 0xA801:
        raise PacsError(
            f"{settings}: C-MOVE destination unknown: the PACS does not know the AE title it should send to; "
            "add it (with its host and port) to the PACS's DICOM nodes (see docs/pacs.md)"
        )
    item.error = _status_text(service, final)
    if code == 0xC000 and service == "C-MOVE" and item.completed == 0:
        item.error += ": the PACS could not send to the destination AE; check that it knows that AE's host and port"


def _verify(store: DicomStore, items: list[Retrieved], expected: dict[int, set[str] | None]) -> None:
    holds: dict[str, set[str]] = {}
    for index, item in enumerate(items):
        if item.study_uid not in holds:
            holds[item.study_uid] = store.instance_uids(item.study_uid)
        uids = expected.get(index)
        item.in_store = len(uids & holds[item.study_uid]) if uids is not None else len(holds[item.study_uid])


def retrieve(
    settings: PacsSettings,
    store: DicomStore,
    query: Query,
    *,
    spool: Spool,
    method: str = "get",
    move_destination: str | None = None,
    receive_port: int | None = None,
    bind: str = "127.0.0.1",
    max_studies: int = DEFAULT_MAX_STUDIES,
) -> RetrieveReport:
    """Fetch the studies matching ``query`` (only the series of ``query.modality`` when given) into ``store``.

    Args:
        settings: the PACS.
        store: the product's DICOMweb store.
        query: what to fetch; an empty query is refused (it would fetch the whole PACS).
        spool: where instances wait until the store has them; files left there by earlier runs are sent
            first, whatever the method.
        method: ``get`` (C-GET: instances come back over our association) or ``move`` (C-MOVE).
        move_destination: for ``move``, the AE title the PACS sends to (it must know its host and port),
            typically the product Orthanc's. Not with ``receive_port``.
        receive_port: for ``move``, run a C-STORE listener on this port as ``settings.calling_aet`` while
            the move runs, and send what it receives through the spool.
        bind: the address of that listener.
        max_studies: refuse queries matching more studies than this.

    Returns:
        The report; ``report.ok`` is False when an instance is missing from the store or was refused.

    Raises:
        PacsError: connection, association, query or retrieval failure, or no study matches.
        DicomStoreError: the store cannot be reached (spooled instances stay in the spool).
    """
    from pynetdicom import DEFAULT_TRANSFER_SYNTAXES, build_role, evt
    from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelFind as FIND
    from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelGet as GET
    from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelMove as MOVE

    from cardiac_mi.store import StowResult

    method = str(method).lower()
    if method not in METHODS:
        raise InputError(f"retrieve method {method!r}: choose get (C-GET) or move (C-MOVE)")
    if query.empty:
        raise InputError(
            "give what to retrieve (study UID, patient, date, accession or modality): "
            "retrieve will not fetch the whole PACS"
        )
    if method == "get" and (move_destination or receive_port is not None):
        raise InputError("a move destination or receive port only applies to --method move")
    if method == "move":
        if receive_port is not None and move_destination:
            raise InputError("give either a move destination or a receive port, not both")
        if receive_port is None and not move_destination:
            raise InputError(
                "C-MOVE needs a destination: the AE title the PACS sends to (--move-dest) or a port "
                "where we receive (--receive-port)"
            )
        if move_destination:
            move_destination = _check_aet(move_destination, "move destination")
    if max_studies < 1:
        raise InputError(f"max studies {max_studies} must be at least 1")

    uses_spool = method == "get" or receive_port is not None
    stowed = StowResult()
    if spool.pending():
        logger.info("%d files left in %s from an earlier run: sending them first", len(spool.pending()), spool.folder)
        stowed = stowed + spool.flush(store)

    contexts: list[tuple[str, Sequence[str]]] = [(FIND, DEFAULT_TRANSFER_SYNTAXES)]
    roles: list[Any] = []
    handlers: list[tuple[Any, Callable[..., Any]]] = []
    if method == "get":
        storage = _storage_contexts(128 - 2)
        contexts.append((GET, DEFAULT_TRANSFER_SYNTAXES))
        contexts += storage
        roles = [build_role(uid, scp_role=True) for uid, _ in storage]
        handlers = [(evt.EVT_C_STORE, _store_handler(spool))]
    else:
        contexts.append((MOVE, DEFAULT_TRANSFER_SYNTAXES))

    listener = None
    destination = move_destination or ""
    if receive_port is not None:
        tls = settings.tls if settings.tls is not None and settings.tls.cert is not None else None
        listener = Listener(None, spool, port=receive_port, aet=settings.calling_aet, bind=bind, tls=tls, forward=False)
        destination = settings.calling_aet
    report = RetrieveReport(method=method, destination=destination or "us (C-GET)", spool=spool.folder)
    expected: dict[int, set[str] | None] = {}
    with contextlib.ExitStack() as stack:
        if listener is not None:
            stack.enter_context(listener)
        assoc = stack.enter_context(_associate(settings, contexts, roles=roles, handlers=handlers))
        _require(settings, assoc, FIND)
        if method == "get":
            _require(settings, assoc, GET, "use --method move")
        else:
            _require(settings, assoc, MOVE, "use --method get")
        studies = _find_studies(settings, assoc, query)
        if not studies:
            raise PacsError(f"no study on {settings} matches {query}")
        if len(studies) > max_studies:
            raise InputError(
                f"{len(studies)} studies match {query}, more than --max-studies {max_studies}: "
                "narrow the query or raise the limit"
            )
        targets = _find_series(settings, assoc, studies, query.modality) if query.modality else studies
        if not targets:
            raise PacsError(f"no {query.modality} series on {settings} in the {len(studies)} studies matching {query}")
        for index, target in enumerate(targets):
            item = Retrieved(
                target.study_uid,
                target.series_uid,
                target.patient_id,
                target.study_date,
                target.series_description or target.study_description,
            )
            report.items.append(item)
            try:
                images = _c_find(settings, assoc, _image_identifier(target.study_uid, target.series_uid))
                expected[index] = {_text(ds, "SOPInstanceUID") for ds in images if _text(ds, "SOPInstanceUID")}
                item.expected = len(expected[index])
            except PacsError as exc:
                if not assoc.is_established or _peer_ended(assoc):
                    raise
                logger.warning("%s: cannot list the instances to expect (%s); counting what arrives", settings, exc)
                expected[index] = None
            identifier = _retrieve_identifier(target)
            if method == "get":
                responses = assoc.send_c_get(identifier, GET)
            else:
                responses = assoc.send_c_move(identifier, destination, MOVE)
            _run_retrieval(settings, assoc, responses, item, f"C-{method.upper()}")
            logger.info(
                "C-%s %s: the PACS sent %d, %d failed",
                method.upper(),
                target.series_uid or target.study_uid,
                item.completed,
                item.failed,
            )
            if uses_spool:
                stowed = stowed + spool.flush(store)
    report.stow = stowed if uses_spool or stowed.total else None
    _verify(store, report.items, expected)
    return report


def _retrieve_identifier(target: Match) -> Dataset:
    from pydicom.dataset import Dataset

    ds = Dataset()
    ds.QueryRetrieveLevel = target.level
    ds.StudyInstanceUID = target.study_uid
    if target.series_uid:
        ds.SeriesInstanceUID = target.series_uid
    return ds


def _store_handler(spool: Spool) -> Callable[[Any], int]:
    def on_store(event: Any) -> int:
        try:
            path = spool.receive(event)
        except OSError as exc:
            logger.error("cannot write to spool %s: %s", spool.folder, exc)
            return 0xA700  # out of resources
        except Exception as exc:  # noqa: BLE001 - a damaged dataset must not end the association
            logger.error("cannot read an incoming instance: %s", exc)
            return 0xC210  # cannot understand
        logger.debug("received %s", path.name)
        return 0x0000

    return on_store


# --------------------------------------------------------------------------------------------- listener


class Listener:
    """A C-STORE SCP that spools what it receives and forwards it to the store after each association.

    Args:
        store: the product's DICOMweb store; None with ``forward=False``.
        spool: where instances wait until the store has them.
        port: the TCP port (0 picks a free one; ``port`` tells which after ``start``).
        aet: our AE title; associations addressed to another one are rejected.
        bind: the address to listen on (``0.0.0.0`` for every interface).
        tls: our certificate and key (and the CA of the senders' certificates) for DICOM over TLS.
        allowed_aets: calling AE titles allowed to send; empty allows any.
        forward: send the spool to ``store`` when an association ends (and every ``retry_interval``
            seconds while files wait).
        retry_interval: seconds between attempts while the store is unreachable.
    """

    def __init__(
        self,
        store: DicomStore | None,
        spool: Spool,
        *,
        port: int,
        aet: str = AE_TITLE,
        bind: str = "127.0.0.1",
        tls: Tls | None = None,
        allowed_aets: Sequence[str] = (),
        forward: bool = True,
        retry_interval: float = 30.0,
    ) -> None:
        if forward and store is None:
            raise InputError("a forwarding listener needs a store")
        self.store = store
        self.spool = spool
        self.port = _check_port(port, "listen port", allow_zero=True)
        self.aet = _check_aet(aet, "our AE title")
        self.bind = bind
        self.tls = tls
        self.allowed_aets = [_check_aet(a, "allowed AE title") for a in allowed_aets]
        self.forward = forward
        self.retry_interval = retry_interval
        self.received = 0
        self.forwarded: StowResult | None = None
        self.last_error: str | None = None
        self._server: Any = None
        self._handler = _store_handler(spool)
        self._thread: threading.Thread | None = None
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._count_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"Listener({self.aet}@{self.bind}:{self.port})"

    def _on_store(self, event: Any) -> int:
        status = self._handler(event)
        if status == 0x0000:
            with self._count_lock:
                self.received += 1
        return status

    def _on_end(self, event: Any) -> None:
        self._wake.set()

    def start(self) -> Listener:
        """Listen (in background threads) until ``stop``; raise ``PacsError`` when the port is taken."""
        from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, AllStoragePresentationContexts, evt
        from pynetdicom.sop_class import Verification

        from cardiac_mi.store import StowResult

        ssl_context = self.tls.server_context() if self.tls is not None else None
        ae = AE(ae_title=self.aet)
        ae.require_called_aet = True
        if self.allowed_aets:
            ae.require_calling_aet = self.allowed_aets
        ae.add_supported_context(Verification)
        for context in AllStoragePresentationContexts:
            ae.add_supported_context(context.abstract_syntax, ALL_TRANSFER_SYNTAXES)
        handlers = [
            (evt.EVT_C_STORE, self._on_store),
            (evt.EVT_RELEASED, self._on_end),
            (evt.EVT_ABORTED, self._on_end),
        ]
        try:
            self._server = ae.start_server(
                (self.bind, self.port), block=False, evt_handlers=handlers, ssl_context=ssl_context
            )
        except OSError as exc:
            if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                problem = (
                    "the port is already in use"
                    if exc.errno == errno.EADDRINUSE
                    else "permission denied (ports below 1024 need privileges)"
                )
                raise PacsError(f"cannot listen on {self.bind}:{self.port}: {problem}; choose another port") from None
            raise PacsError(f"cannot listen on {self.bind}:{self.port} ({exc.strerror or exc})") from None
        self.port = self._server.server_address[1]
        self.forwarded = StowResult()
        if self.forward:
            self._thread = threading.Thread(target=self._forward_loop, name="pacs-forward", daemon=True)
            self._thread.start()
        logger.info(
            "listening for C-STORE to AE %s on %s:%d%s", self.aet, self.bind, self.port, " (TLS)" if ssl_context else ""
        )
        return self

    def flush(self) -> StowResult | None:
        """Send what the spool holds to the store now; None when the store cannot be reached (logged)."""
        from cardiac_mi.store import DicomStoreError

        assert self.store is not None
        try:
            result = self.spool.flush(self.store)
        except DicomStoreError as exc:
            left = len(self.spool.pending())
            self.last_error = str(exc)
            logger.warning(
                "%s; %d files wait in %s (retrying every %g s)", exc, left, self.spool.incoming, self.retry_interval
            )
            return None
        self.last_error = None
        if result.total:
            logger.info("forwarded to %s: %s", self.store.url, result.summary())
            self.forwarded = self.forwarded + result if self.forwarded is not None else result
        return result

    def _forward_loop(self) -> None:
        while not self._stopping.is_set():
            self._wake.wait(self.retry_interval)
            self._wake.clear()
            if self._stopping.is_set():
                break
            try:
                self.flush()
            except Exception:  # noqa: BLE001 - the forwarder must outlive one bad batch
                logger.exception("forwarding the spool failed")

    def stop(self) -> None:
        """Stop listening, then send what is left in the spool (files stay there if the store is down)."""
        if self._server is not None:
            self._server.shutdown()
            self._server = None
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
            self.flush()

    def serve_forever(self) -> None:
        """Block until interrupted (Ctrl-C or SIGTERM), then stop."""
        import signal

        previous = signal.getsignal(signal.SIGTERM)
        signal.signal(signal.SIGTERM, lambda *_: self._stopping.set())
        try:
            while not self._stopping.wait(1.0):
                pass
        except KeyboardInterrupt:
            pass
        finally:
            signal.signal(signal.SIGTERM, previous)
            self.stop()

    def __enter__(self) -> Listener:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


# --------------------------------------------------------------------------------------------- command line


def _env(name: str) -> str | None:
    value = os.environ.get(name)
    return value if value not in (None, "") else None


def _tls_from_args(args: argparse.Namespace) -> Tls | None:
    paths = {
        name: getattr(args, f"tls_{name}") or _env(f"CARDIAC_MI_PACS_TLS_{name.upper()}")
        for name in ("ca", "cert", "key")
    }
    if not any(paths.values()):
        return None
    return Tls(**{name: Path(value) if value else None for name, value in paths.items()})


def settings_from_args(args: argparse.Namespace) -> PacsSettings:
    """The ``PacsSettings`` of the connection flags, falling back to the environment."""
    host = args.host or _env("CARDIAC_MI_PACS_HOST")
    if not host:
        raise InputError("no PACS host: give --host or set $CARDIAC_MI_PACS_HOST")
    called = args.pacs_aet or _env("CARDIAC_MI_PACS_AET")
    if not called:
        raise InputError("no PACS AE title: give --pacs-aet or set $CARDIAC_MI_PACS_AET")
    port = args.port if args.port is not None else _env("CARDIAC_MI_PACS_PORT") or DEFAULT_PORT
    return PacsSettings(
        host=host,
        port=_check_port(port, "PACS port (--port or $CARDIAC_MI_PACS_PORT)"),
        called_aet=called,
        calling_aet=args.aet or _env("CARDIAC_MI_AET") or AE_TITLE,
        tls=_tls_from_args(args),
        timeout=args.timeout,
    )


def _query_from_args(args: argparse.Namespace) -> Query:
    return Query(
        patient_id=args.patient_id,
        patient_name=args.patient_name,
        study_uids=tuple(args.study or ()),
        accession=args.accession,
        date=args.date,
        modality=args.modality,
    )


def _quiet_pynetdicom(args: argparse.Namespace) -> None:
    """pynetdicom logs every association step; the command reports failures itself (``-v`` shows them)."""
    if not getattr(args, "verbose", False):
        logging.getLogger("pynetdicom").propagate = False


def _spool_from_args(args: argparse.Namespace) -> Spool:
    from cardiac_mi.orthanc import default_state_dir

    return Spool(args.spool or (args.state or default_state_dir()) / "pacs-spool")


def cmd_echo(args: argparse.Namespace) -> None:
    _quiet_pynetdicom(args)
    settings = settings_from_args(args)
    seconds = echo(settings)
    logger.info("C-ECHO %s as %s: success in %.0f ms", settings, settings.calling_aet, seconds * 1000)


def _table(matches: list[Match]) -> str:
    series_level = any(m.level == "SERIES" for m in matches)
    head = [
        "date",
        "patient ID",
        "patient name",
        "modality" if series_level else "modalities",
        "series" if not series_level else "number",
        "instances",
        "description",
        "series UID" if series_level else "study UID",
    ]
    rows = [
        [
            m.study_date,
            m.patient_id,
            m.patient_name,
            ",".join(m.modalities),
            str(m.series_number if series_level else m.series)
            if (m.series_number if series_level else m.series) is not None
            else "",
            str(m.instances) if m.instances is not None else "",
            (m.series_description if series_level else m.study_description)[:40],
            (m.series_uid if series_level else m.study_uid) or "",
        ]
        for m in matches
    ]
    widths = [max(len(row[i]) for row in [head, *rows]) for i in range(len(head))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in [head, *rows])


def cmd_find(args: argparse.Namespace) -> None:
    _quiet_pynetdicom(args)
    settings = settings_from_args(args)
    query = _query_from_args(args)
    matches = find(settings, query, args.level)
    if args.json:
        print(json.dumps([m.as_dict() for m in matches], indent=2))
    elif matches:
        print(_table(matches))
    series = args.level.upper() == "SERIES"
    if matches:
        what = "series" if series else "study" if len(matches) == 1 else "studies"
        logger.info("%d %s on %s match%s %s", len(matches), what, settings, "es" if len(matches) == 1 else "", query)
    else:
        logger.warning("no %s on %s matches %s", "series" if series else "study", settings, query)


def _move_destination(args: argparse.Namespace) -> str | None:
    """--move-dest, or the embedded Orthanc's AE title when it runs with a DICOM port."""
    if args.method != "move" or args.receive_port is not None or args.move_dest:
        return args.move_dest
    if args.studies:
        raise InputError(
            "C-MOVE into a --studies server needs --move-dest (its AE title as the PACS knows it) or --receive-port"
        )
    from cardiac_mi.orthanc import default_state_dir, running_orthanc

    state = args.state or default_state_dir()
    orthanc = running_orthanc(state)
    if orthanc is None:
        raise InputError(
            f"the embedded Orthanc of state folder {state} is not running: start it with "
            f"`cardiac-mi serve --state {state} --orthanc-dicom-port PORT`"
        )
    if not orthanc.dicom_port:
        raise InputError(
            f"the embedded Orthanc of {state} runs without a DICOM port, so the PACS cannot C-MOVE "
            "into it: restart it with `cardiac-mi serve --orthanc-dicom-port PORT`, use --method get, "
            "or --receive-port"
        )
    logger.info(
        "C-MOVE destination: the embedded Orthanc, AE %s on DICOM port %d (the PACS must know it)",
        orthanc.aet,
        orthanc.dicom_port,
    )
    return orthanc.aet


def cmd_retrieve(args: argparse.Namespace) -> None:
    from cardiac_mi.store import DicomStoreError
    from cardiac_mi.upload import store_from_args

    _quiet_pynetdicom(args)
    settings = settings_from_args(args)
    query = _query_from_args(args)
    destination = _move_destination(args)
    store = store_from_args(args)
    store.ping()
    spool = _spool_from_args(args)
    try:
        report = retrieve(
            settings,
            store,
            query,
            spool=spool,
            method=args.method,
            move_destination=destination,
            receive_port=args.receive_port,
            bind=args.bind,
            max_studies=args.max_studies,
        )
    except DicomStoreError as exc:
        left = len(spool.pending())
        raise PacsError(
            f"{exc}; {left} retrieved files wait in {spool.incoming}: send them with "
            "`cardiac-mi pacs flush` (same store flags) when the store is back"
        ) from None
    for item in report.items:
        logger.info("%s", item)
    logger.info("%s: %s", store.url, report.summary())
    if not report.ok:
        problems = [str(item) for item in report.items if not item.ok]
        if report.stow is not None and report.stow.refused:
            problems.append(f"{len(report.stow.refused)} files refused by the store, kept in {spool.refused}")
        raise PacsError("retrieve incomplete: " + "; ".join(problems))


def cmd_listen(args: argparse.Namespace) -> None:
    from cardiac_mi.upload import store_from_args

    _quiet_pynetdicom(args)
    port = args.listen_port if args.listen_port is not None else _env("CARDIAC_MI_LISTEN_PORT")
    if port is None:
        raise InputError("give the port to listen on: --listen-port or $CARDIAC_MI_LISTEN_PORT")
    store = store_from_args(args)
    store.ping()
    spool = _spool_from_args(args)
    listener = Listener(
        store,
        spool,
        port=_check_port(port, "listen port", allow_zero=True),
        aet=args.aet or _env("CARDIAC_MI_AET") or AE_TITLE,
        bind=args.bind,
        tls=_tls_from_args(args),
        allowed_aets=args.allow_aet or (),
        retry_interval=args.retry,
    )
    if spool.pending():
        logger.info("%d files left in %s from an earlier run: sending them first", len(spool.pending()), spool.folder)
    listener.start()
    listener.flush()
    if args.bind in ("127.0.0.1", "localhost", "::1"):
        logger.info("only this machine can send: give --bind 0.0.0.0 (or this host's address) for a remote PACS")
    logger.info("forwarding to %s; Ctrl-C stops", store.url)
    listener.serve_forever()
    logger.info(
        "stopped: %d instances received; %s",
        listener.received,
        listener.forwarded.summary() if listener.forwarded is not None else "nothing forwarded",
    )
    left = spool.pending()
    if left:
        raise PacsError(
            f"{len(left)} received files could not be sent to {store.url} and wait in {spool.incoming}: "
            "run `cardiac-mi pacs flush` when the store is back"
        )


def cmd_flush(args: argparse.Namespace) -> None:
    from cardiac_mi.upload import store_from_args

    store = store_from_args(args)
    store.ping()
    spool = _spool_from_args(args)
    result = spool.flush(store)
    logger.info("%s: %s", store.url, result.summary() if result.total else f"nothing waits in {spool.incoming}")
    if result.refused:
        raise PacsError(f"{len(result.refused)} files were refused by the store (kept in {spool.refused})")


def _add_connection(p: argparse.ArgumentParser) -> None:
    group = p.add_argument_group("PACS connection")
    group.add_argument("--host", help="PACS host name or address (default $CARDIAC_MI_PACS_HOST)")
    group.add_argument("--port", type=int, help=f"PACS DICOM port (default $CARDIAC_MI_PACS_PORT or {DEFAULT_PORT})")
    group.add_argument(
        "--pacs-aet", metavar="AET", help="the PACS's AE title, the called AE (default $CARDIAC_MI_PACS_AET)"
    )
    group.add_argument(
        "--aet", metavar="AET", help=f"our AE title, as the PACS knows it (default $CARDIAC_MI_AET or {AE_TITLE})"
    )
    group.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT,
        help=f"seconds to wait for the connection and each answer (default {DEFAULT_TIMEOUT:g})",
    )
    _add_tls(group)


def _add_tls(group: Any) -> None:
    group.add_argument(
        "--tls-ca",
        type=Path,
        metavar="PEM",
        help="DICOM over TLS: CA certificate(s) of the peer (default $CARDIAC_MI_PACS_TLS_CA)",
    )
    group.add_argument(
        "--tls-cert",
        type=Path,
        metavar="PEM",
        help="DICOM over TLS: our certificate (default $CARDIAC_MI_PACS_TLS_CERT)",
    )
    group.add_argument(
        "--tls-key", type=Path, metavar="PEM", help="DICOM over TLS: our private key (default $CARDIAC_MI_PACS_TLS_KEY)"
    )


def _add_query(p: argparse.ArgumentParser) -> None:
    group = p.add_argument_group("query (all given filters must match)")
    group.add_argument("--patient-id", help="PatientID (wildcards * and ? allowed)")
    group.add_argument("--patient-name", help="PatientName, e.g. DOE^JANE or DOE*")
    group.add_argument("--study", action="append", metavar="UID", help="StudyInstanceUID (repeat for several)")
    group.add_argument("--accession", help="AccessionNumber")
    group.add_argument(
        "--date", help="StudyDate: YYYYMMDD, YYYYMMDD-YYYYMMDD, YYYYMMDD-, -YYYYMMDD or YYYY-MM-DD..YYYY-MM-DD"
    )
    group.add_argument("--modality", help="MR, CT, SEG, ...: studies that hold it; retrieve fetches only those series")


def _add_store(p: argparse.ArgumentParser) -> None:
    from cardiac_mi.upload import add_store_arguments

    group = p.add_argument_group("the product's store (DICOMweb)")
    add_store_arguments(group)
    group.add_argument(
        "--spool",
        type=Path,
        metavar="DIR",
        help="where instances wait until the store has them (default STATE/pacs-spool)",
    )


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``pacs echo|find|retrieve|listen|flush``."""
    description = "connect to a DIMSE PACS: C-ECHO, C-FIND, C-GET/C-MOVE into the product's store, C-STORE listener"
    epilog = (
        "environment (used when the option is not given):\n"
        + "\n".join(f"  {name:26s} {text}" for name, text in ENVIRONMENT.items())
        + "\nguide: docs/pacs.md"
    )
    formatter = argparse.RawDescriptionHelpFormatter
    p = subparsers.add_parser(
        "pacs", help=description, description=description, epilog=epilog, formatter_class=formatter
    )
    actions = p.add_subparsers(dest="pacs_command", required=True, metavar="ACTION")

    def action(name: str, func: Callable[[argparse.Namespace], None], text: str) -> argparse.ArgumentParser:
        q = actions.add_parser(name, help=text, description=text, epilog=epilog, formatter_class=formatter)
        q.set_defaults(func=func)
        return q

    q = action("echo", cmd_echo, "C-ECHO the PACS: checks the network, AE titles and TLS")
    _add_connection(q)

    q = action("find", cmd_find, "C-FIND studies or series on the PACS")
    _add_connection(q)
    _add_query(q)
    q.add_argument("--level", type=str.upper, choices=LEVELS, default="STUDY", help="STUDY (default) or SERIES")
    q.add_argument("--json", action="store_true", help="print the matches as JSON")

    q = action(
        "retrieve",
        cmd_retrieve,
        "fetch matching studies (or series of --modality) from the PACS into the product's store, through the spool",
    )
    _add_connection(q)
    _add_query(q)
    q.add_argument(
        "--method",
        choices=METHODS,
        default="get",
        help="get: C-GET, no listening port needed (default); move: C-MOVE to --move-dest or --receive-port",
    )
    q.add_argument(
        "--move-dest",
        metavar="AET",
        help="C-MOVE destination AE title the PACS knows (default: the embedded Orthanc's AE)",
    )
    q.add_argument(
        "--receive-port",
        type=int,
        metavar="PORT",
        help="C-MOVE to us: listen on PORT as --aet while the move runs (the PACS must know that AE)",
    )
    q.add_argument("--bind", default="127.0.0.1", help="address of --receive-port (default 127.0.0.1)")
    q.add_argument(
        "--max-studies",
        type=int,
        default=DEFAULT_MAX_STUDIES,
        help=f"refuse queries matching more studies (default {DEFAULT_MAX_STUDIES})",
    )
    _add_store(q)

    q = action("listen", cmd_listen, "C-STORE listener: receive studies and forward them to the product's store")
    q.add_argument("--listen-port", type=int, metavar="PORT", help="port (default $CARDIAC_MI_LISTEN_PORT)")
    q.add_argument(
        "--bind", default="127.0.0.1", help="address to listen on (default 127.0.0.1; 0.0.0.0 for every interface)"
    )
    q.add_argument("--aet", metavar="AET", help=f"our AE title (default $CARDIAC_MI_AET or {AE_TITLE})")
    q.add_argument(
        "--allow-aet", action="append", metavar="AET", help="accept only these calling AE titles (repeat; default: any)"
    )
    q.add_argument(
        "--retry", type=float, default=30.0, help="seconds between attempts while the store is down (default 30)"
    )
    _add_tls(q.add_argument_group("DICOM over TLS (our certificate; --tls-ca requires the senders' certificates)"))
    _add_store(q)

    q = action("flush", cmd_flush, "send what waits in the spool to the product's store")
    _add_store(q)
    return p
