"""The PACS code's only calls to the product's store (DICOMweb): send spooled files, count what a study holds.

Everything else in :mod:`cardiac_mi.pacs` reaches the store through these names, so the store's client can
be changed here alone:

- ``stow_sender(store)``: the spool's send function (see :mod:`cardiac_mi.outbox`): files stored, or that the
  store already had, are sent; files it refuses are refused with its reason; the rest stays pending. The
  ``Delivery.detail`` is the store's ``StowResult``.
- ``instance_uids(store, study_uid)``: the SOPInstanceUIDs the store holds in a study (QIDO-RS).
- ``ArchiveError``: what the store raises when it cannot be reached (spooled files then stay).
- ``StowResult``: the store's upload report (``+``, ``total``, ``refused``, ``summary()``); ``nothing_sent()``
  is the empty one.

``cardiac_mi.store`` (pydicom, requests) is imported when first needed, so that building the ``cardiac-mi``
parser stays fast.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cardiac_mi.outbox import Delivery

if TYPE_CHECKING:
    from cardiac_mi.store import DicomStore, StowResult

__all__ = ["stow_sender", "instance_uids", "nothing_sent"]  # and ArchiveError, StowResult (loaded when first used)


def stow_sender(store: DicomStore) -> Callable[[list[Path]], Delivery]:
    """The send function that STOWs a batch of spooled files to ``store``."""

    def send(paths: list[Path]) -> Delivery:
        result = store.stow(paths)
        refused = {item.path: item.reason for item in result.refused}
        return Delivery(sent=result.stored + result.skipped, refused=refused, detail=result)

    return send


def instance_uids(store: DicomStore, study_uid: str) -> set[str]:
    """The SOPInstanceUIDs ``store`` holds in study ``study_uid`` (empty when it has no such study)."""
    return store.instance_uids(study_uid)


def nothing_sent() -> StowResult:
    from cardiac_mi.store import StowResult

    return StowResult()


def __getattr__(name: str) -> Any:
    if name == "ArchiveError":
        from cardiac_mi.store import DicomStoreError

        return DicomStoreError
    if name == "StowResult":
        from cardiac_mi.store import StowResult

        return StowResult
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
