"""One association with the PACS per operation: every way it fails becomes a ``PacsError`` naming the cause."""

from __future__ import annotations

import contextlib
import logging
import socket
import ssl
import weakref
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from cardiac_mi.pacs.config import PacsError, PacsSettings
from cardiac_mi.pacs.query import ds_text

if TYPE_CHECKING:
    from pydicom.dataset import Dataset

logger = logging.getLogger(__name__)


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
def associate(
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


def require(settings: PacsSettings, assoc: Any, uid: str, hint: str = "") -> None:
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


def peer_ended(assoc: Any) -> bool:
    peer_end = _PEER_ENDS.get(assoc)
    return peer_end is not None and peer_end.how is not None


_PEER_ENDS: weakref.WeakKeyDictionary[Any, _PeerEnd] = weakref.WeakKeyDictionary()


def lost(settings: PacsSettings, assoc: Any, what: str) -> str:
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


def status_text(service: str, status: Dataset) -> str:
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
    comment = ds_text(status, "ErrorComment")
    return f"{service} failed with status 0x{code:04X} ({text}{': ' + comment if comment else ''})"


def c_find(settings: PacsSettings, assoc: Any, identifier: Dataset) -> list[Dataset]:
    from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelFind as FIND

    matches = []
    for status, found in assoc.send_c_find(identifier, FIND):
        if not status:
            raise PacsError(lost(settings, assoc, "C-FIND"))
        code = int(status.Status)
        if code in (0xFF00, 0xFF01):
            if found is not None:
                matches.append(found)
            continue
        if code == 0x0000:
            break
        raise PacsError(f"{settings}: {status_text('C-FIND', status)}")
    return matches
