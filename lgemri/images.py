"""Read an image from whatever a user points at: a NIfTI file or a folder with one DICOM series."""

from __future__ import annotations

import os
from pathlib import Path

from .dicom import read_dicom_series
from .errors import InputError
from .volume import Volume, read_nifti

__all__ = ["read_image", "is_nifti"]


def is_nifti(path: str | os.PathLike) -> bool:
    return Path(path).name.lower().endswith((".nii", ".nii.gz"))


def read_image(path: str | os.PathLike, series_uid: str | None = None) -> Volume:
    """Read ``path``: a ``.nii``/``.nii.gz`` file, or a folder holding one DICOM series."""
    path = Path(path)
    if path.is_dir():
        return read_dicom_series(path, series_uid).volume
    if is_nifti(path):
        return read_nifti(path)
    if not path.exists():
        raise InputError(f"{path}: no such file or folder")
    raise InputError(f"{path}: expected a NIfTI file (.nii, .nii.gz) or a folder of DICOM files")
