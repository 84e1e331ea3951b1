"""C-GET and C-MOVE into the product's store, each retrieval verified against the PACS's own list of instances."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cardiac_mi.pacs import archive
from cardiac_mi.pacs.association import associate, c_find, lost, peer_ended, require, status_text
from cardiac_mi.pacs.config import DEFAULT_MAX_STUDIES, METHODS, PacsError, PacsSettings, check_aet
from cardiac_mi.pacs.echo_find import find_series, find_studies
from cardiac_mi.pacs.listener import Listener
from cardiac_mi.pacs.query import Match, Query, ds_int, ds_text, image_identifier
from cardiac_mi.pacs.spool import Spool, store_handler
from lgemri.errors import InputError

if TYPE_CHECKING:
    from pydicom.dataset import Dataset

    from cardiac_mi.store import DicomStore

__all__ = ["Retrieved", "RetrieveReport", "retrieve"]

logger = logging.getLogger(__name__)

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
        ds_int(status, k) or 0
        for k in ("NumberOfCompletedSuboperations", "NumberOfFailedSuboperations", "NumberOfWarningSuboperations")
    )  # type: ignore[return-value]


def _run_retrieval(
    settings: PacsSettings, assoc: Any, responses: Iterator[tuple[Dataset, Any]], item: Retrieved, service: str
) -> None:
    final = None
    for status, _identifier in responses:
        if not status:
            raise PacsError(lost(settings, assoc, service))
        code = int(status.Status)
        if code == 0xFF00:
            continue
        final = status
        break
    if final is None:
        raise PacsError(lost(settings, assoc, service))
    item.completed, item.failed, item.warning = _sub_operations(final)
    code = int(final.Status)
    if code in (0x0000, 0xB000):  # success, or some sub-operations failed/warned (counted)
        return
    if code == 0xA801:
        raise PacsError(
            f"{settings}: C-MOVE destination unknown: the PACS does not know the AE title it should send to; "
            "add it (with its host and port) to the PACS's DICOM nodes (see docs/pacs.md)"
        )
    item.error = status_text(service, final)
    if code == 0xC000 and service == "C-MOVE" and item.completed == 0:
        item.error += ": the PACS could not send to the destination AE; check that it knows that AE's host and port"


def _verify(store: DicomStore, items: list[Retrieved], expected: dict[int, set[str] | None]) -> None:
    holds: dict[str, set[str]] = {}
    for index, item in enumerate(items):
        if item.study_uid not in holds:
            holds[item.study_uid] = archive.instance_uids(store, item.study_uid)
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
        ArchiveError: the store cannot be reached (spooled instances stay in the spool; ``cardiac_mi.pacs.archive``).
    """
    from pynetdicom import DEFAULT_TRANSFER_SYNTAXES, build_role, evt
    from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelFind as FIND
    from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelGet as GET
    from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelMove as MOVE

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
            move_destination = check_aet(move_destination, "move destination")
    if max_studies < 1:
        raise InputError(f"max studies {max_studies} must be at least 1")

    uses_spool = method == "get" or receive_port is not None
    stowed = archive.nothing_sent()
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
        handlers = [(evt.EVT_C_STORE, store_handler(spool))]
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
        assoc = stack.enter_context(associate(settings, contexts, roles=roles, handlers=handlers))
        require(settings, assoc, FIND)
        if method == "get":
            require(settings, assoc, GET, "use --method move")
        else:
            require(settings, assoc, MOVE, "use --method get")
        studies = find_studies(settings, assoc, query)
        if not studies:
            raise PacsError(f"no study on {settings} matches {query}")
        if len(studies) > max_studies:
            raise InputError(
                f"{len(studies)} studies match {query}, more than --max-studies {max_studies}: "
                "narrow the query or raise the limit"
            )
        targets = find_series(settings, assoc, studies, query.modality) if query.modality else studies
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
                images = c_find(settings, assoc, image_identifier(target.study_uid, target.series_uid))
                expected[index] = {ds_text(ds, "SOPInstanceUID") for ds in images if ds_text(ds, "SOPInstanceUID")}
                item.expected = len(expected[index])
            except PacsError as exc:
                if not assoc.is_established or peer_ended(assoc):
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
