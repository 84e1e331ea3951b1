"""Store DICOM report objects to a DICOMweb server (STOW-RS), e.g. Orthanc's ``/dicom-web``.

Credentials are HTTP basic auth; :func:`store_dicom` takes them as arguments and the command
line falls back to ``$CARDIAC_MI_DICOMWEB_USER`` and ``$CARDIAC_MI_DICOMWEB_PASSWORD`` so that
passwords need not appear on a command line. Every failure raises :class:`InputError` naming
the URL: unreachable server, rejected credentials, refused instances.
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Sequence
from pathlib import Path

import pydicom
from pydicom.dataset import Dataset

from ..errors import InputError

__all__ = ["store_dicom", "USER_ENV", "PASSWORD_ENV", "URL_ENV"]

logger = logging.getLogger(__name__)

URL_ENV = "CARDIAC_MI_DICOMWEB_URL"
USER_ENV = "CARDIAC_MI_DICOMWEB_USER"
PASSWORD_ENV = "CARDIAC_MI_DICOMWEB_PASSWORD"


def _session(username: str | None, password: str | None, timeout: float):
    import requests

    session = requests.Session()
    if username is not None or password is not None:
        session.auth = (username or "", password or "")
    session.request = functools.partial(session.request, timeout=timeout)  # dicomweb-client sets none
    return session


def store_dicom(
    instances: Sequence[Dataset | str | os.PathLike],
    url: str,
    *,
    username: str | None = None,
    password: str | None = None,
    timeout: float = 30.0,
) -> list[str]:
    """STOW-RS ``instances`` (datasets or DICOM files) to the DICOMweb service at ``url``.

    Args:
        instances: the objects to store.
        url: the DICOMweb root, e.g. ``http://localhost:8042/dicom-web`` for Orthanc.
        username, password: HTTP basic-auth credentials, if the server needs them.
        timeout: seconds to wait for the server to connect and to answer.

    Returns:
        The SOPInstanceUIDs stored.

    Raises:
        InputError: a file is not DICOM, the URL is not http(s), the server is unreachable,
            rejects the credentials, or fails to store an instance.
    """
    import requests
    from dicomweb_client.api import DICOMwebClient

    if not url.startswith(("http://", "https://")):
        raise InputError(f"{url}: the DICOMweb URL must start with http:// or https://")
    datasets = []
    for item in instances:
        if isinstance(item, Dataset):
            datasets.append(item)
            continue
        try:
            datasets.append(pydicom.dcmread(Path(item)))
        except Exception as exc:  # pydicom raises many kinds for bad files
            raise InputError(f"{item}: not a readable DICOM file ({exc})") from exc
    if not datasets:
        return []
    client = DICOMwebClient(url, session=_session(username, password, timeout))
    client.set_http_retry_params(retry=False)
    try:
        response = client.store_instances(datasets)
    except requests.exceptions.ConnectionError as exc:
        raise InputError(f"{url}: DICOMweb server unreachable (connection failed: {_reason(exc)})") from exc
    except requests.exceptions.Timeout as exc:
        raise InputError(f"{url}: DICOMweb server did not answer within {timeout:g} s") from exc
    except requests.exceptions.HTTPError as exc:
        status = exc.response.status_code if exc.response is not None else "?"
        if status in (401, 403):
            raise InputError(
                f"{url}: the DICOMweb server refused the credentials (HTTP {status}); check --user/--password"
            ) from exc
        raise InputError(f"{url}: STOW-RS failed with HTTP {status}") from exc
    except requests.exceptions.RequestException as exc:
        raise InputError(f"{url}: STOW-RS failed ({exc})") from exc
    failed = getattr(response, "FailedSOPSequence", None) if response is not None else None
    if failed:
        reasons = ", ".join(
            f"{item.get('ReferencedSOPInstanceUID', '?')} (reason {item.get('FailureReason', '?')})" for item in failed
        )
        raise InputError(f"{url}: the server did not store {reasons}")
    uids = [str(ds.SOPInstanceUID) for ds in datasets]
    logger.info("stored %d instance(s) to %s", len(uids), url)
    return uids


def _reason(exc: Exception) -> str:
    text = str(exc.args[0]) if exc.args else str(exc)
    for marker in ("Connection refused", "Name or service not known", "timed out", "No route to host"):
        if marker in text:
            return marker.lower()
    return text[:200]
