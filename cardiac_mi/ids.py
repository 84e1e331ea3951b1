"""What a request value must look like before it becomes part of a file path or of a URL to the archive.

The server builds paths and archive URLs from values a client sends (``?image=``, ``?tag=``, the UIDs of
an uploaded SEG, the path of a DICOMweb request). Each is checked against one strict pattern here first;
a value that does not match is refused (HTTP 422 naming the parameter, or 404 for a proxied path),
never cleaned up and used.

- A DICOM UID: digits separated by single dots, at most 64 characters (PS3.5 9.1; leading zeros in a
  component are tolerated, as archives hold such UIDs). Image ids of the DICOMweb datastore are series UIDs.
- A label tag: 1 to 64 ASCII letters, digits, ``_`` or ``-`` (MONAI Label's ``final``, ``original``).
- A local image id (MONAI Label's own folder datastore, not used by ``cardiac-mi serve``): a file stem of
  letters, digits, ``_``, ``-`` and single dots, at most 128 characters.
- A torch device: ``cpu``, ``cuda`` (the GPU when there is one, else the CPU, as MONAI Label reads it) or
  ``cuda:N`` for a GPU this machine has.
"""

from __future__ import annotations

import re

__all__ = [
    "UID_MAX_LENGTH",
    "is_uid",
    "is_tag",
    "is_local_image_id",
    "uid_problem",
    "tag_problem",
    "device_problem",
    "shown",
]

UID_MAX_LENGTH = 64
_UID = re.compile(r"[0-9]+(?:\.[0-9]+)*")
_TAG = re.compile(r"[A-Za-z0-9_-]{1,64}")
_LOCAL_ID = re.compile(r"[A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]+)*")
_DEVICE = re.compile(r"(cpu|cuda)(?::([0-9]{1,3}))?")


def shown(value: object, limit: int = 80) -> str:
    """``value`` as it appears in an error message: repr, cut at ``limit`` characters."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def is_uid(value: object) -> bool:
    return isinstance(value, str) and len(value) <= UID_MAX_LENGTH and _UID.fullmatch(value) is not None


def is_tag(value: object) -> bool:
    return isinstance(value, str) and _TAG.fullmatch(value) is not None


def is_local_image_id(value: object) -> bool:
    return isinstance(value, str) and len(value) <= 128 and _LOCAL_ID.fullmatch(value) is not None


def uid_problem(value: object, name: str) -> str | None:
    """None when ``value`` is a DICOM UID, else the message naming ``name``."""
    if is_uid(value):
        return None
    return f"{name}: {shown(value)} is not a DICOM UID (digits separated by dots, at most {UID_MAX_LENGTH} characters)"


def tag_problem(value: object, name: str = "tag") -> str | None:
    """None when ``value`` is a label tag, else the message naming ``name``."""
    if is_tag(value):
        return None
    return f"{name}: {shown(value)} is not a label tag (1 to 64 letters, digits, '_' or '-')"


def device_problem(value: object, name: str = "device", gpus: int | None = None) -> str | None:
    """None when ``value`` is a torch device this machine has (``gpus``: its CUDA GPUs, counted when None),
    else the message naming ``name``."""
    match = _DEVICE.fullmatch(value.strip().lower()) if isinstance(value, str) else None
    if match is None:
        return f"{name}: {shown(value)} is not a device (expected cpu, cuda or cuda:N)"
    kind, index = match.groups()
    if kind == "cpu" and index is not None:
        return f"{name}: {shown(value)} is not a device (expected cpu, cuda or cuda:N)"
    if kind == "cuda" and index is not None:
        if gpus is None:
            import torch

            gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if int(index) >= gpus:
            have = f"GPUs cuda:0 to cuda:{gpus - 1}" if gpus > 1 else "one GPU, cuda:0" if gpus == 1 else "no CUDA GPU"
            return f"{name}: {shown(value)} is not available: this machine has {have}"
    return None
