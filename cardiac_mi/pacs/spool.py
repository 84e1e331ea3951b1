"""The PACS spool: retrieved or received instances wait there (a ``cardiac_mi.outbox.Outbox``) until the store has them."""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cardiac_mi.outbox import Outbox, Sender
from cardiac_mi.pacs import archive
from cardiac_mi.pacs.config import UID_RE

if TYPE_CHECKING:
    from cardiac_mi.store import DicomStore, StowResult

__all__ = ["Spool"]

logger = logging.getLogger(__name__)


def _safe_name(uid: str) -> str:
    return uid if UID_RE.match(uid) and len(uid) <= 64 else re.sub(r"[^0-9A-Za-z.]+", "_", uid)[:64] or "unknown"


class Spool:
    """The folder where retrieved or received instances wait until the store has them.

    ``incoming/<StudyUID>/<SOPInstanceUID>.dcm``: waiting to be sent; ``refused/<StudyUID>/``: refused by
    the store, each with ``<file>.reason.txt``. Writing is write-then-rename with fsync (of the file and its
    folder), so a file in ``incoming/`` is always whole; ``flush`` removes a file only when the store confirmed
    it. ``outbox`` is the :class:`cardiac_mi.outbox.Outbox` underneath (its ``entries()`` list all three states).
    """

    def __init__(self, folder: str | os.PathLike) -> None:
        self.folder = Path(folder)
        self.incoming = self.folder / "incoming"
        self.refused = self.folder / "refused"
        # all pending files in one STOW-RS call (the store batches it); folders are created when first written
        self.outbox = Outbox(self.incoming, refused=self.refused, pattern="*/*.dcm", name=f"PACS spool {self.folder}")

    def __repr__(self) -> str:
        return f"Spool({str(self.folder)!r})"

    def write(self, data: bytes, study_uid: str, sop_uid: str) -> Path:
        """Store one encoded DICOM file (preamble and file meta included) durably; returns its path."""
        return self.outbox.put(f"{_safe_name(study_uid)}/{_safe_name(sop_uid)}.dcm", data)

    def receive(self, event: Any) -> Path:
        """Write the dataset of a pynetdicom C-STORE event (as received, not re-encoded)."""
        sop_uid = str(event.request.AffectedSOPInstanceUID)
        study_uid = str(event.dataset.get("StudyInstanceUID") or "unknown")
        return self.write(bytes(event.encoded_dataset()), study_uid, sop_uid)

    def pending(self) -> list[Path]:
        """The files waiting in ``incoming/``, in name order (temporary files of writes in progress excluded)."""
        return self.outbox.pending()

    def flush(self, store: DicomStore, send: Sender | None = None) -> StowResult:
        """Send the pending files to ``store``; delete those it took, move those it refused to ``refused/``.

        ``send``: the send function to use instead of ``archive.stow_sender(store)`` (the listener's counts it).

        Raises:
            ArchiveError: the store cannot be reached (the files stay for the next flush).
        """
        files = self.pending()
        if files:
            logger.info("sending %d spooled files to %s", len(files), store.url)
        flushed = self.outbox.flush(send=send or archive.stow_sender(store))
        result = archive.nothing_sent()
        for detail in flushed.details:
            result = result + detail
        return result


def store_handler(spool: Spool) -> Callable[[Any], int]:
    """A pynetdicom C-STORE handler that writes to ``spool`` before it answers success."""

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
