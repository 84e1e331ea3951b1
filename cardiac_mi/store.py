"""The one DICOMweb client of cardiac_mi: search (QIDO-RS), retrieve (WADO-RS) and store (STOW-RS).

``DicomStore`` speaks DICOMweb with plain HTTP (``requests``) to the embedded Orthanc or any other
server; upload, the datastore, the viewer's save, report storing and the PACS retrieval all use it.
Searches answer :class:`Summary` (one type for a study or a series match); retrievals answer pydicom
datasets (WADO-RS series and instances) or DICOM JSON (metadata). A STOW-RS upload gives every file
its own answer::

    store = DicomStore("http://127.0.0.1:8042/dicom-web", "user", "password")
    result = upload(["sample-data/dicom"], store)
    print(result.summary())

Each file ends in exactly one of three lists of the ``StowResult``:

- ``stored``: the server confirmed it (ReferencedSOPSequence of the STOW-RS answer);
- ``skipped``: the server already had an instance with its SOPInstanceUID (found by a QIDO-RS query per
  study before sending, since Orthanc confirms a duplicate as if it had stored it), or an earlier file
  of the same upload had it;
- ``refused``: with the reason. Files are checked before they are sent: not DICOM, unreadable, truncated,
  missing UIDs; the server's own refusals (FailedSOPSequence) are reported with their failure reason.

Connection and authentication problems stop the upload with a ``DicomStoreError`` naming the URL;
its ``status`` is the HTTP status the server answered (None when it did not answer: ``reached`` is then
False, and ``down`` says that the archive's gate refused without asking).

Every request to an archive goes through an :class:`ArchiveSession`: it has time-outs (a connection in
``CONNECT_TIMEOUT_S``, an answer in ``$CARDIAC_MI_ARCHIVE_TIMEOUT`` seconds, default 10), and once an
archive has not answered, the :class:`ArchiveGate` of its address refuses further requests at once
(:class:`ArchiveDown`) until a background probe sees it answer again. So a hung archive (an Orthanc
stopped with SIGSTOP, say) costs one time-out, not one per request, and the datastore, the viewer's
proxy and the save answer 503 at once while it lasts.
"""

from __future__ import annotations

import io
import logging
import os
import threading
import time
import uuid
import weakref
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pydicom
import requests
from pydicom.dataelem import RawDataElement
from pydicom.errors import InvalidDicomError
from pydicom.uid import UID

from cardiac_mi.orthanc import describe_error
from lgemri.errors import InputError

__all__ = [
    "DicomStore",
    "DicomStoreError",
    "Refused",
    "StowResult",
    "Summary",
    "split_multipart",
    "upload",
    "iter_files",
    "ArchiveDown",
    "ArchiveGate",
    "ArchiveSession",
    "archive_gate",
    "archive_timeout",
    "CONNECT_TIMEOUT_S",
    "HEARTBEAT_S",
    "ARCHIVE_TIMEOUT_ENV",
]

logger = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 5.0
ARCHIVE_TIMEOUT_ENV = "CARDIAC_MI_ARCHIVE_TIMEOUT"
DEFAULT_ARCHIVE_TIMEOUT_S = 10.0
PROBE_INTERVAL_S = 1.0
HEARTBEAT_S = 2.0

DICOMDIR_CLASS = "1.2.840.10008.1.3.10"
UNDEFINED_LENGTH = 0xFFFFFFFF

# PS3.4 C-STORE / PS3.18 STOW-RS failure reasons (0008,1197); the first digits name a family.
FAILURE_REASONS = {
    0x0110: "processing failure",
    0x0111: "duplicate SOP instance",
    0x0117: "invalid SOP instance",
    0x0122: "SOP class not supported",
    0x0124: "not authorized",
    0x0131: "duplicate invocation",
    0x0211: "unrecognized operation",
    0xC122: "transfer syntax not supported",
}
FAILURE_FAMILIES = {0xA7: "out of resources", 0xA9: "data set does not match SOP class", 0xC0: "cannot understand"}


class DicomStoreError(InputError):
    """The DICOMweb server cannot be reached, refuses the credentials or does not speak DICOMweb.

    Attributes:
        status: the HTTP status of the server's answer, or None when it did not answer.
        reached: False when the server did not answer (refused, timed out, or its gate is closed).
        down: the archive's gate refused the request without asking (:class:`ArchiveDown`).
    """

    def __init__(self, message: str, *, status: int | None = None, reached: bool = True, down: bool = False):
        super().__init__(message)
        self.status = status
        self.reached = reached
        self.down = down


@dataclass(frozen=True)
class Refused:
    """A file that was not stored, and why."""

    path: Path
    reason: str

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"


@dataclass
class StowResult:
    """What happened to each file of an upload; ``studies`` holds the StudyInstanceUIDs now on the server."""

    stored: list[Path] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)
    refused: list[Refused] = field(default_factory=list)
    studies: set[str] = field(default_factory=set)

    @property
    def total(self) -> int:
        return len(self.stored) + len(self.skipped) + len(self.refused)

    @property
    def ok(self) -> bool:
        """True when no file was refused."""
        return not self.refused

    def __add__(self, other: StowResult) -> StowResult:
        return StowResult(
            self.stored + other.stored,
            self.skipped + other.skipped,
            self.refused + other.refused,
            self.studies | other.studies,
        )

    def summary(self) -> str:
        studies = f"{len(self.studies)} stud{'y' if len(self.studies) == 1 else 'ies'}"
        return f"{len(self.stored)} stored, {len(self.skipped)} already there, {len(self.refused)} refused ({studies})"


@dataclass(frozen=True)
class Summary:
    """One QIDO-RS match, a study or a series (``series_uid`` empty for a study); ``raw`` is its DICOM JSON.

    ``description`` is the SeriesDescription of a series, the StudyDescription of a study; ``modality``
    a series' Modality, ``modalities`` a study's ModalitiesInStudy; ``series`` and ``instances`` the
    counts the server gives (NumberOfStudyRelatedSeries, NumberOf{Study,Series}RelatedInstances).
    """

    study_uid: str
    series_uid: str = ""
    patient_id: str = ""
    patient_name: str = ""
    date: str = ""
    description: str = ""
    modality: str = ""
    modalities: tuple[str, ...] = ()
    series: int | None = None
    instances: int | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def uid(self) -> str:
        """The UID of the match's own level: the series' for a series, the study's for a study."""
        return self.series_uid or self.study_uid

    @property
    def study_date(self) -> str:
        return self.date

    @classmethod
    def from_json(cls, item: dict[str, Any]) -> Summary:
        def values(tag: str) -> list[Any]:
            found = item.get(tag)
            return list(found.get("Value", [])) if isinstance(found, dict) else []

        def text(tag: str) -> str:
            found = values(tag)
            if not found or found[0] is None:
                return ""
            value = found[0]
            return str(value.get("Alphabetic", "")) if isinstance(value, dict) else str(value)

        def number(tag: str) -> int | None:
            found = values(tag)
            try:
                return int(found[0]) if found else None
            except (TypeError, ValueError):
                return None

        series_uid = text("0020000E")
        return cls(
            study_uid=text("0020000D"),
            series_uid=series_uid,
            patient_id=text("00100020"),
            patient_name=text("00100010"),
            date=text("00080020"),
            description=text("0008103E") if series_uid else text("00081030"),
            modality=text("00080060"),
            modalities=tuple(str(v) for v in values("00080061")),
            series=number("00201206"),
            instances=number("00201209") if series_uid else number("00201208"),
            raw=item,
        )

    def info(self) -> dict[str, Any]:
        """The series' attributes as the datastore's image info."""
        return {
            "StudyInstanceUID": self.study_uid,
            "SeriesInstanceUID": self.series_uid,
            "Modality": self.modality,
            "SeriesDescription": self.description,
            "PatientID": self.patient_id,
            "StudyDate": self.date,
        }


@dataclass
class _Instance:
    path: Path
    data: bytes
    sop_uid: str
    study_uid: str


# --------------------------------------------------------------------------------------------- time-outs


def archive_timeout() -> float:
    """Seconds to wait for an archive's answer: ``$CARDIAC_MI_ARCHIVE_TIMEOUT``, default 10.

    It bounds the wait for the first byte of an answer and between bytes, not a whole transfer, so a
    large series that keeps arriving is never cut off.

    Raises:
        InputError: the variable is set to something that is not a positive number of seconds.
    """
    text = os.environ.get(ARCHIVE_TIMEOUT_ENV, "").strip()
    if not text:
        return DEFAULT_ARCHIVE_TIMEOUT_S
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0 < value < 3600:
        raise InputError(f"${ARCHIVE_TIMEOUT_ENV}={text!r}: expected seconds between 0 and 3600, e.g. 10")
    return value


class ArchiveDown(requests.ConnectionError):
    """Refused without asking the archive: it did not answer a moment ago and no probe has seen it since."""


class ArchiveGate:
    """Whether an archive (one scheme://host:port) answers; refuses requests at once while it does not.

    ``failed`` (a request got no answer) closes the gate and starts a probe thread that asks
    ``GET /`` every ``PROBE_INTERVAL_S`` seconds without credentials (any HTTP answer, even 401 or 404,
    shows that the server is back); ``answered`` opens it and calls the ``listeners`` (the datastore's
    outbox flushes then). :meth:`watch` keeps that thread running while the archive answers too, so
    that a hang is found within a heartbeat, before a clinician's request runs into it.
    """

    def __init__(self, origin: str, probe_interval: float = PROBE_INTERVAL_S) -> None:
        self.origin = origin
        self.probe_interval = probe_interval
        self.down_since: float | None = None
        self.reason = ""
        self._lock = threading.Lock()
        self._probe: threading.Thread | None = None
        self._listeners: list[weakref.ReferenceType] = []
        self._heartbeat: float | None = None  # seconds between checks while the archive answers (watch)

    def __repr__(self) -> str:
        state = "up" if self.down_since is None else f"down for {time.monotonic() - self.down_since:.1f} s"
        return f"ArchiveGate({self.origin!r}, {state})"

    @property
    def down(self) -> bool:
        return self.down_since is not None

    def describe(self) -> str:
        """``not answering for N s (reason)``, or ``answering``."""
        since = self.down_since
        if since is None:
            return "answering"
        return f"not answering for {time.monotonic() - since:.0f} s ({self.reason})"

    def add_listener(self, callback: Callable[[], None]) -> None:
        """Call ``callback()`` whenever the archive answers again (held weakly when it is a bound method)."""
        ref = weakref.WeakMethod(callback) if hasattr(callback, "__self__") else (lambda: callback)
        with self._lock:
            self._listeners.append(ref)  # type: ignore[arg-type]

    def admit(self) -> None:
        """Return when a request may go out; raise :class:`ArchiveDown` while the archive does not answer."""
        since = self.down_since
        if since is not None:
            raise ArchiveDown(
                f"the archive at {self.origin} is not answering (for {time.monotonic() - since:.0f} s: "
                f"{self.reason}); not asked again until it answers a probe"
            )

    def failed(self, exc: BaseException) -> None:
        """A request got no answer (refused, timed out): close the gate and probe until the archive is back."""
        with self._lock:
            self.reason = describe_error(exc)
            if self.down_since is None:
                self.down_since = time.monotonic()
                logger.warning(
                    "the archive at %s does not answer (%s); requests to it answer 503 until it is back",
                    self.origin,
                    self.reason,
                )
            self._start_probe()

    def watch(self, heartbeat: float = HEARTBEAT_S) -> None:
        """Check the archive every ``heartbeat`` seconds from now on, also while it answers."""
        with self._lock:
            self._heartbeat = heartbeat
            self._start_probe()

    def _start_probe(self) -> None:  # with self._lock held
        if self._probe is None or not self._probe.is_alive():
            self._probe = threading.Thread(target=self._probe_loop, name=f"probe {self.origin}", daemon=True)
            self._probe.start()

    def answered(self) -> None:
        """The archive answered (any HTTP status): open the gate; tell the listeners if it was closed."""
        with self._lock:
            since, self.down_since = self.down_since, None
            listeners = list(self._listeners) if since is not None else []
        if since is None:
            return
        logger.info("the archive at %s answers again (after %.1f s)", self.origin, time.monotonic() - since)
        for ref in listeners:
            callback = ref()
            if callback is None:
                continue
            try:
                callback()
            except Exception:  # a listener must not stop the others
                logger.exception("archive listener failed")

    def _probe_loop(self) -> None:
        session = requests.Session()
        while self.down_since is not None or self._heartbeat is not None:
            down = self.down_since is not None
            time.sleep(self.probe_interval if down else self._heartbeat)
            wait = self.probe_interval * 5 if down else max(3.0, self._heartbeat)
            try:
                session.get(
                    f"{self.origin}/", timeout=(CONNECT_TIMEOUT_S, wait), stream=True, allow_redirects=False
                ).close()
            except requests.RequestException as exc:
                if self.down_since is None:
                    self.failed(exc)  # the heartbeat found it: close the gate
                self.reason = describe_error(exc)
                continue
            self.answered()
        session.close()


_gates: dict[str, ArchiveGate] = {}
_gates_lock = threading.Lock()


def archive_gate(url: str) -> ArchiveGate:
    """The process-wide gate of the archive that serves ``url`` (one per scheme://host:port)."""
    parts = urlsplit(url)
    origin = f"{parts.scheme}://{parts.netloc.rsplit('@', 1)[-1]}"
    with _gates_lock:
        gate = _gates.get(origin)
        if gate is None:
            gate = _gates[origin] = ArchiveGate(origin)
        return gate


class ArchiveSession(requests.Session):
    """A ``requests.Session`` for an archive: default time-outs, and its :class:`ArchiveGate` in front.

    Args:
        timeout: ``(connect, answer)`` seconds for requests that give none;
            default ``(CONNECT_TIMEOUT_S, archive_timeout())``.
    """

    def __init__(self, timeout: float | tuple[float, float] | None = None) -> None:
        super().__init__()
        self.timeout = timeout if timeout is not None else (CONNECT_TIMEOUT_S, archive_timeout())

    def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        if kwargs.get("timeout") is None:
            kwargs["timeout"] = self.timeout
        gate = archive_gate(url)
        gate.admit()
        try:
            try:
                response = super().request(method, url, *args, **kwargs)
            except requests.ConnectionError as exc:
                if method.upper() not in ("GET", "HEAD") or not _dropped(exc):
                    raise
                # a pooled keep-alive connection that the archive closed as it was reused (Orthanc closes
                # idle ones after a second): a GET is asked again once, on a new connection
                logger.debug("%s %s: connection dropped (%s); asking again", method, url, exc)
                response = super().request(method, url, *args, **kwargs)
        except (requests.ConnectionError, requests.Timeout) as exc:
            gate.failed(exc)
            raise
        gate.answered()
        return response


def _dropped(exc: requests.ConnectionError) -> bool:
    """Whether a connection error is an open connection closed by the peer (not a refused or timed-out one)."""
    if isinstance(exc, requests.Timeout):
        return False
    text = repr(exc)
    return any(
        marker in text for marker in ("RemoteDisconnected", "Connection aborted", "Connection reset", "BadStatusLine")
    )


# --------------------------------------------------------------------------------------------- local checks


def _describe(tag: Any) -> str:
    from pydicom.datadict import keyword_for_tag

    return keyword_for_tag(tag) or str(tag)


def _truncation(ds: pydicom.Dataset) -> str | None:
    """Why ``ds`` looks cut short, or None. pydicom reads a truncated file without complaint."""
    for tag in ds.keys():
        elem = ds.get_item(tag)
        if isinstance(elem, RawDataElement) and elem.length != UNDEFINED_LENGTH:
            have = len(elem.value or b"")
            if have < elem.length:
                return f"truncated file: {_describe(tag)} has {have} of its {elem.length} bytes"
    if "Rows" in ds and not any(k in ds for k in ("PixelData", "FloatPixelData", "DoubleFloatPixelData")):
        return "truncated file: image attributes but no pixel data"
    syntax = ds.file_meta.get("TransferSyntaxUID")
    if "PixelData" in ds and syntax is not None and not UID(syntax).is_compressed:
        try:
            frames = int(ds.get("NumberOfFrames") or 1)
            bits = int(ds.BitsAllocated) * int(ds.Rows) * int(ds.Columns) * int(ds.get("SamplesPerPixel") or 1) * frames
        except (AttributeError, TypeError, ValueError):
            return None
        have = len(ds.get_item("PixelData").value or b"")
        if have < (bits + 7) // 8:
            return f"truncated file: pixel data has {have} bytes, {(bits + 7) // 8} expected"
    return None


def _inspect(path: Path) -> _Instance | Refused:
    """Read ``path`` and check that it is a whole DICOM Part 10 instance with the UIDs STOW-RS needs."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        return Refused(path, f"cannot read the file ({exc.strerror or exc})")
    if not data:
        return Refused(path, "empty file")
    try:
        ds = pydicom.dcmread(io.BytesIO(data))
    except InvalidDicomError:
        return Refused(path, "not a DICOM file (no 'DICM' marker after the 128-byte preamble)")
    except Exception as exc:  # noqa: BLE001 - pydicom raises many kinds on damaged files
        return Refused(path, f"unreadable DICOM file ({type(exc).__name__}: {exc})")
    try:
        if ds.file_meta.get("MediaStorageSOPClassUID") == DICOMDIR_CLASS:
            return Refused(path, "a DICOMDIR (an index of a DICOM medium), not an instance: upload the files it lists")
        if "TransferSyntaxUID" not in ds.file_meta:
            return Refused(path, "no TransferSyntaxUID in the file meta information")
        required = ("SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID")
        missing = [k for k in required if not ds.get(k)]
        if missing:
            truncated = _truncation(ds)
            return Refused(path, truncated or f"missing {', '.join(missing)}")
        truncated = _truncation(ds)
        if truncated:
            return Refused(path, truncated)
        return _Instance(path, data, str(ds.SOPInstanceUID), str(ds.StudyInstanceUID))
    except Exception as exc:  # noqa: BLE001 - damaged values surface only when read
        return Refused(path, f"unreadable DICOM file ({type(exc).__name__}: {exc})")


def split_multipart(content_type: str, body: bytes) -> list[bytes]:
    """The parts of a ``multipart/related`` body (RFC 2046), or ``[body]`` for a single ``application/dicom``.

    Raises:
        InputError: The content type is neither, or the body does not follow its boundary.
    """
    media = content_type.split(";")[0].strip().lower()
    if media == "application/dicom":
        return [body]
    if media != "multipart/related":
        raise InputError(
            f"expected multipart/related (STOW-RS) or application/dicom, got {media or 'no content type'!r}"
        )
    boundary = None
    for param in content_type.split(";")[1:]:
        key, _, value = param.strip().partition("=")
        if key.strip().lower() == "boundary":
            boundary = value.strip().strip('"')
    if not boundary:
        raise InputError("multipart/related without a boundary")
    delimiter = b"--" + boundary.encode("latin-1")
    chunks = body.split(delimiter)
    if len(chunks) < 3 or not chunks[-1].startswith(b"--"):
        raise InputError("the multipart body does not end with its closing boundary")
    parts = []
    for chunk in chunks[1:-1]:
        chunk = chunk[2:] if chunk.startswith(b"\r\n") else chunk
        head, separator, content = chunk.partition(b"\r\n\r\n")
        if not separator:
            raise InputError("a multipart part has no header/body separator")
        parts.append(content[:-2] if content.endswith(b"\r\n") else content)
    return parts


def _failure_reason(code: Any) -> str:
    try:
        value = int(code)
    except (TypeError, ValueError):
        return f"refused by the server (reason {code!r})"
    name = FAILURE_REASONS.get(value) or FAILURE_FAMILIES.get(value >> 8) or "failure"
    return f"refused by the server: {name} (0x{value:04X})"


def _first(item: dict[str, Any], tag: str) -> Any:
    found = item.get(tag, {}).get("Value") or [None]
    return found[0]


# --------------------------------------------------------------------------------------------- the store


class DicomStore:
    """A DICOMweb server: QIDO-RS searches, WADO-RS retrievals and STOW-RS uploads.

    Every request goes through an :class:`ArchiveSession` (time-outs, the archive's gate, a GET asked
    again once on a dropped keep-alive connection); no other retry.

    Args:
        url: the DICOMweb root, e.g. ``http://127.0.0.1:8042/dicom-web``.
        user, password: HTTP basic-auth credentials, if the server asks for them.
        timeout: seconds to wait for an answer (for its first byte, and between bytes).
        connect_timeout: seconds to wait for a connection (at most ``timeout``).
        batch_files, batch_bytes: the most files and bytes sent in one STOW-RS request.
    """

    def __init__(
        self,
        url: str,
        user: str | None = None,
        password: str | None = None,
        *,
        timeout: float = 120.0,
        connect_timeout: float = CONNECT_TIMEOUT_S,
        batch_files: int = 32,
        batch_bytes: int = 64 << 20,
    ) -> None:
        if not url.startswith(("http://", "https://")):
            raise InputError(f"{url!r} is not a DICOMweb URL: expected http://HOST:PORT/ROOT")
        if (user is None) != (password is None):
            raise InputError("give both a user and a password for the DICOMweb server, or neither")
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.connect_timeout = min(connect_timeout, timeout)
        self.batch_files = max(1, batch_files)
        self.batch_bytes = max(1, batch_bytes)
        self.session = ArchiveSession()
        self.session.auth = (user, password) if user is not None else None

    @classmethod
    def from_orthanc(cls, orthanc: Any, **kwargs: Any) -> DicomStore:
        """The store of an ``EmbeddedOrthanc`` (or ``RunningOrthanc``): its DICOMweb URL and credentials."""
        user, password = orthanc.auth if orthanc.auth else (None, None)
        return cls(orthanc.dicomweb_url, user, password, **kwargs)

    def __repr__(self) -> str:
        return f"DicomStore({self.url!r})"

    # ----------------------------------------------------------------------------------------- HTTP

    def _request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        url = f"{self.url}{path}"
        try:
            response = self.session.request(method, url, timeout=(self.connect_timeout, self.timeout), **kwargs)
        except requests.Timeout:
            raise DicomStoreError(
                f"DICOMweb server at {self.url} did not answer within {self.timeout:g} s", reached=False
            ) from None
        except requests.ConnectionError as exc:
            raise DicomStoreError(
                f"cannot reach DICOMweb server at {self.url} (unreachable: {describe_error(exc)})",
                reached=False,
                down=isinstance(exc, ArchiveDown),
            ) from None
        except requests.RequestException as exc:
            raise DicomStoreError(f"cannot talk to DICOMweb server at {self.url} ({exc})", reached=False) from None
        status = response.status_code
        if status in (401, 403):
            if self.session.auth:
                problem = "rejected the given user and password"
            else:
                problem = "asks for a user and password"
            raise DicomStoreError(
                f"DICOMweb server at {self.url} {problem} (HTTP {status}): check the credentials (--user, --password)",
                status=status,
            )
        return response

    def _json(self, path: str, params: dict[str, Any] | None = None, what: str = "QIDO-RS") -> list[dict[str, Any]]:
        """GET ``path`` as DICOM JSON: a list of objects (empty for HTTP 204)."""
        response = self._request("GET", path, params=params, headers={"Accept": "application/dicom+json"})
        if response.status_code == 204:
            return []
        if response.status_code != 200:
            detail = response.text[:200].strip()
            raise DicomStoreError(
                f"{what} {self.url}{path} answered HTTP {response.status_code}: {detail}", status=response.status_code
            )
        try:
            found = response.json()
        except ValueError:
            raise DicomStoreError(f"{what} {self.url}{path} did not answer DICOM JSON", status=200) from None
        return [item for item in found if isinstance(item, dict)] if isinstance(found, list) else []

    def ping(self) -> None:
        """Check that the server answers QIDO-RS; raise ``DicomStoreError`` saying what is wrong otherwise."""
        response = self._request("GET", "/studies", params={"limit": "1"}, headers={"Accept": "application/dicom+json"})
        problem = None
        if response.status_code not in (200, 204):
            problem = f"GET /studies answered HTTP {response.status_code}"
        elif response.status_code == 200:
            try:
                found = response.json()
            except ValueError:
                found = None
            if not isinstance(found, list) or not all(isinstance(item, dict) for item in found):
                problem = "GET /studies did not answer DICOM JSON"
        if problem:
            raise DicomStoreError(
                f"{self.url} does not look like a DICOMweb root: {problem}"
                " (expected a URL like http://HOST:PORT/dicom-web)"
            )

    # ----------------------------------------------------------------------------------------- QIDO-RS

    @staticmethod
    def _params(filters: dict[str, Any] | None, fields: Iterable[str] | None) -> dict[str, Any]:
        params: dict[str, Any] = dict(filters or {})
        if fields:
            params["includefield"] = list(fields)
        return params

    def studies(self, modality: str | None = None, **filters: str) -> list[Summary]:
        """The server's studies, optionally those with ``modality`` (ModalitiesInStudy) or other QIDO filters."""
        params: dict[str, Any] = dict(filters)
        if modality:
            params["ModalitiesInStudy"] = modality
        return self.search_studies(params, fields=["StudyDescription"])

    def search_studies(
        self, filters: dict[str, Any] | None = None, fields: Iterable[str] | None = None
    ) -> list[Summary]:
        """QIDO-RS ``/studies`` with ``filters`` (attribute keyword or tag -> value) and ``fields`` to include."""
        return [Summary.from_json(item) for item in self._json("/studies", self._params(filters, fields))]

    def search_series(
        self,
        filters: dict[str, Any] | None = None,
        fields: Iterable[str] | None = None,
        *,
        study_uid: str | None = None,
    ) -> list[Summary]:
        """QIDO-RS ``/series`` (or ``/studies/{study_uid}/series``) matching ``filters``."""
        path = f"/studies/{study_uid}/series" if study_uid else "/series"
        return [Summary.from_json(item) for item in self._json(path, self._params(filters, fields))]

    def search_instances(
        self,
        study_uid: str,
        series_uid: str | None = None,
        filters: dict[str, Any] | None = None,
        fields: Iterable[str] | None = None,
    ) -> list[dict[str, Any]]:
        """QIDO-RS instances of a study (or of one of its series), as DICOM JSON."""
        path = f"/studies/{study_uid}" + (f"/series/{series_uid}" if series_uid else "") + "/instances"
        return self._json(path, self._params(filters, fields))

    def instance_uids(self, study_uid: str) -> set[str]:
        """SOPInstanceUIDs the server holds in study ``study_uid`` (empty when it has no such study)."""
        try:
            found = self.search_instances(study_uid, fields=["00080018"])
        except DicomStoreError as exc:
            if exc.status in (None, 401, 403):
                raise
            logger.debug("cannot list study %s (HTTP %d); sending all its files", study_uid, exc.status)
            return set()
        return {str(uid) for uid in (_first(item, "00080018") for item in found) if uid}

    # ----------------------------------------------------------------------------------------- WADO-RS

    def retrieve_series(self, study_uid: str, series_uid: str) -> list[pydicom.Dataset]:
        """The instances of a series (WADO-RS, in their stored transfer syntax)."""
        return self._retrieve(f"/studies/{study_uid}/series/{series_uid}")

    def retrieve_instance(self, study_uid: str, series_uid: str, sop_uid: str) -> pydicom.Dataset:
        """One instance (WADO-RS)."""
        found = self._retrieve(f"/studies/{study_uid}/series/{series_uid}/instances/{sop_uid}")
        if len(found) != 1:
            raise DicomStoreError(f"WADO-RS {self.url}: instance {sop_uid} came as {len(found)} parts", status=200)
        return found[0]

    def retrieve_series_metadata(self, study_uid: str, series_uid: str) -> list[dict[str, Any]]:
        """The DICOM JSON metadata of a series' instances (WADO-RS ``.../metadata``, no bulk data)."""
        return self._json(f"/studies/{study_uid}/series/{series_uid}/metadata", what="WADO-RS")

    def _retrieve(self, path: str) -> list[pydicom.Dataset]:
        accept = 'multipart/related; type="application/dicom"; transfer-syntax=*'
        response = self._request("GET", path, headers={"Accept": accept})
        if response.status_code != 200:
            detail = response.text[:200].strip()
            raise DicomStoreError(
                f"WADO-RS {self.url}{path} answered HTTP {response.status_code}: {detail}", status=response.status_code
            )
        try:
            parts = split_multipart(response.headers.get("Content-Type", ""), response.content)
            return [pydicom.dcmread(io.BytesIO(part)) for part in parts]
        except Exception as exc:  # noqa: BLE001 - a damaged answer, whatever pydicom raises for it
            raise DicomStoreError(f"WADO-RS {self.url}{path}: unreadable answer ({exc})", status=200) from None

    # ----------------------------------------------------------------------------------------- STOW-RS

    def stow(self, paths: Iterable[str | os.PathLike]) -> StowResult:
        """Send DICOM files by STOW-RS in batches; each file is stored, skipped or refused (with a reason)."""
        result = StowResult()
        on_server: dict[str, set[str]] = {}
        batch: list[_Instance] = []
        size = 0
        for raw_path in paths:
            item = _inspect(Path(raw_path))
            if isinstance(item, Refused):
                result.refused.append(item)
                continue
            known = on_server.get(item.study_uid)
            if known is None:
                known = on_server[item.study_uid] = self.instance_uids(item.study_uid)
            if item.sop_uid in known:
                result.skipped.append(item.path)
                result.studies.add(item.study_uid)
                continue
            known.add(item.sop_uid)  # a later file with the same UID is a duplicate of this upload
            batch.append(item)
            size += len(item.data)
            if len(batch) >= self.batch_files or size >= self.batch_bytes:
                self._send(batch, result, on_server)
                batch, size = [], 0
        if batch:
            self._send(batch, result, on_server)
        return result

    def _send(self, batch: list[_Instance], result: StowResult, on_server: dict[str, set[str]]) -> None:
        boundary = uuid.uuid4().hex
        parts = []
        for item in batch:
            parts += [f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode(), item.data, b"\r\n"]
        parts.append(f"--{boundary}--\r\n".encode())
        headers = {
            "Content-Type": f'multipart/related; type="application/dicom"; boundary={boundary}',
            "Accept": "application/dicom+json",
        }
        response = self._request("POST", "/studies", data=b"".join(parts), headers=headers)
        status = response.status_code
        logger.debug("STOW-RS of %d files: HTTP %d", len(batch), status)
        if status == 413 and len(batch) > 1:
            half = len(batch) // 2
            self._send(batch[:half], result, on_server)
            self._send(batch[half:], result, on_server)
            return
        if status in (404, 405):
            raise DicomStoreError(f"{self.url} does not accept STOW-RS (POST /studies answered HTTP {status})")
        try:
            answer = response.json() if response.content else {}
        except ValueError:
            answer = {}
        if not isinstance(answer, dict):
            answer = {}
        if status == 200 and not response.content.strip():  # all stored; no Store Instances Response says so
            for item in batch:
                result.stored.append(item.path)
                result.studies.add(item.study_uid)
            return
        stored = {_first(item, "00081155") for item in answer.get("00081199", {}).get("Value", [])}
        failed = {_first(item, "00081155"): item for item in answer.get("00081198", {}).get("Value", [])}
        for item in batch:
            if item.sop_uid in stored:
                result.stored.append(item.path)
                result.studies.add(item.study_uid)
            elif item.sop_uid in failed:
                code = _first(failed[item.sop_uid], "00081197")
                if code == 0x0111:  # duplicate SOP instance: some servers say so instead of storing again
                    result.skipped.append(item.path)
                    result.studies.add(item.study_uid)
                    continue
                result.refused.append(Refused(item.path, _failure_reason(code)))
                on_server[item.study_uid].discard(item.sop_uid)
            else:
                detail = response.text[:200].strip() if not answer else ""
                reason = f"the server did not store it (HTTP {status}{': ' + detail if detail else ''})"
                result.refused.append(Refused(item.path, reason))
                on_server[item.study_uid].discard(item.sop_uid)


# --------------------------------------------------------------------------------------------- upload


def _hidden(path: Path, root: Path) -> bool:
    return any(part.startswith(".") for part in path.relative_to(root).parts)


def iter_files(paths: Iterable[str | os.PathLike]) -> Iterator[Path]:
    """The files named in ``paths``, with folders walked recursively in name order.

    Inside folders, hidden files and folders (``.name``) and ``DICOMDIR`` indexes are left out; files
    named directly are always kept. A path that does not exist raises ``InputError`` before anything
    is listed.
    """
    roots = [Path(p) for p in paths]
    for root in roots:
        if not root.exists():
            raise InputError(f"{root}: no such file or folder")
    for root in roots:
        if root.is_dir():
            for path in sorted(root.rglob("*")):
                if path.is_file() and not _hidden(path, root) and path.name.upper() != "DICOMDIR":
                    yield path
        else:
            yield root


def upload(paths_or_folders: Iterable[str | os.PathLike], store: DicomStore) -> StowResult:
    """Send every file under ``paths_or_folders`` (folders walked recursively) to ``store``."""
    roots = [Path(p) for p in paths_or_folders]
    files = list(iter_files(roots))
    if not files:
        raise InputError(f"no files to upload in {', '.join(str(p) for p in roots)}")
    result = store.stow(files)
    for refused in result.refused:
        logger.warning("refused %s", refused)
    return result
