"""The clinical report stored in a DICOMweb server: :func:`lgemri.report.make_report` with a STOW-RS store.

``lgemri`` builds the report and its DICOM objects (Encapsulated PDF, TID 1500 SR) offline; this module
sends them, through the one DICOMweb client (:class:`cardiac_mi.store.DicomStore`: time-outs, the
archive's gate, basic auth). Every failure raises :class:`InputError` naming the URL: unreachable
server, rejected credentials, refused instances.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pydicom
from pydicom.dataset import Dataset

from cardiac_mi.store import DicomStore
from lgemri.errors import InputError

__all__ = ["make_report", "store_dicom", "STORE_TIMEOUT_S"]

logger = logging.getLogger(__name__)

STORE_TIMEOUT_S = 30.0


def store_dicom(
    instances: Sequence[Dataset | str | os.PathLike],
    url: str,
    *,
    username: str | None = None,
    password: str | None = None,
    timeout: float = STORE_TIMEOUT_S,
) -> list[str]:
    """STOW-RS ``instances`` (datasets or DICOM files) to the DICOMweb root ``url``.

    An instance the server holds already counts as stored.

    Args:
        instances: the objects to store.
        url: the DICOMweb root, e.g. ``http://localhost:8042/dicom-web`` for Orthanc.
        username, password: HTTP basic-auth credentials, if the server needs them.
        timeout: seconds to wait for the server's answer.

    Returns:
        The SOPInstanceUIDs stored.

    Raises:
        InputError: a file is not DICOM, the URL is not http(s), the server is unreachable,
            rejects the credentials, or does not store an instance.
    """
    if not url.startswith(("http://", "https://")):
        raise InputError(f"{url}: the DICOMweb URL must start with http:// or https://")
    if not instances:
        return []
    if username is not None or password is not None:  # one of them alone is sent with the other empty
        username, password = username or "", password or ""
    store = DicomStore(url, username, password, timeout=timeout)
    with tempfile.TemporaryDirectory(prefix="cardiac_mi_stow_") as tmp:
        paths, uids = [], []
        for number, item in enumerate(instances):
            if isinstance(item, Dataset):
                path = Path(tmp) / f"{number:03d}.dcm"
                item.save_as(path, write_like_original=False)
                ds = item
            else:
                path = Path(item)
                try:
                    ds = pydicom.dcmread(path, stop_before_pixels=True)
                except Exception as exc:  # pydicom raises many kinds for bad files
                    raise InputError(f"{item}: not a readable DICOM file ({exc})") from exc
            paths.append(path)
            uids.append(str(ds.SOPInstanceUID))
        try:
            result = store.stow(paths)
        finally:
            store.session.close()
    if result.refused:
        reasons = ", ".join(f"{r.path.name} ({r.reason})" for r in result.refused)
        raise InputError(f"{url}: the server did not store {reasons}")
    logger.info("stored %d instance(s) to %s", len(uids), url)
    return uids


def make_report(
    image_path: str | os.PathLike,
    label_path: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    store_url: str | None = None,
    username: str | None = None,
    password: str | None = None,
    timeout: float = STORE_TIMEOUT_S,
    **options: Any,
) -> dict[str, Path]:
    """:func:`lgemri.report.make_report`, its DICOM PDF and SR then stored in ``store_url`` (when given).

    Args:
        image_path, label_path, out_dir, options: as :func:`lgemri.report.api.make_report`.
        store_url: DICOMweb root to store the DICOM report to, e.g. ``http://localhost:8042/dicom-web``.
        username, password: basic-auth credentials for ``store_url``.
        timeout: seconds to wait for the server's answer.

    Raises:
        InputError: bad inputs, or a failed store (the report's files are written all the same).
    """
    from lgemri.report.api import make_report as build_and_write

    store = None
    if store_url:

        def store(paths: Sequence[Path]) -> tuple[str, list[str]]:
            return store_url, store_dicom(paths, store_url, username=username, password=password, timeout=timeout)

    return build_and_write(image_path, label_path, out_dir, store=store, **options)
