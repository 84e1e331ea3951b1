"""A 3D image or label volume with its place in the patient, and NIfTI reading and writing.

Array convention (the NIfTI one): ``array[i, j, k]`` with ``i`` along the image rows (DICOM's
row direction, left to right on screen), ``j`` down the columns and ``k`` across slices. The
``affine`` maps voxel indices to patient coordinates in millimetres, RAS+ as NIfTI stores it.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import nibabel as nib
import numpy as np

from .atomic import atomic_path
from .errors import InputError

__all__ = ["Volume", "read_nifti", "write_nifti", "LPS_TO_RAS"]

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


@dataclasses.dataclass
class Volume:
    """An image or label array with its voxel-to-patient (RAS, mm) affine."""

    array: np.ndarray
    affine: np.ndarray

    def __post_init__(self) -> None:
        self.affine = np.asarray(self.affine, dtype=np.float64)
        if self.array.ndim != 3:
            raise InputError(f"expected a 3D volume, got an array of shape {self.array.shape}")
        if self.affine.shape != (4, 4):
            raise InputError(f"expected a 4x4 affine, got shape {self.affine.shape}")

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.array.shape)  # type: ignore[return-value]

    @property
    def spacing(self) -> np.ndarray:
        """Voxel size in mm along i, j, k."""
        return np.linalg.norm(self.affine[:3, :3], axis=0)

    @property
    def direction(self) -> np.ndarray:
        """Unit vectors (columns) of the i, j, k axes in RAS."""
        return self.affine[:3, :3] / self.spacing

    @property
    def origin(self) -> np.ndarray:
        """RAS position of voxel (0, 0, 0)."""
        return self.affine[:3, 3].copy()

    def same_grid(self, other: Volume, atol: float = 1e-3) -> bool:
        """True when both volumes have the same shape and voxel-to-patient mapping."""
        return self.shape == other.shape and np.allclose(self.affine, other.affine, atol=atol)


def read_nifti(path: str | os.PathLike) -> Volume:
    """Read a NIfTI file; the array keeps its stored dtype after scaling."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    try:
        img = nib.load(str(path))
        array = np.asanyarray(img.dataobj)
    except Exception as exc:  # nibabel raises many kinds for corrupt files
        raise InputError(f"{path}: not a readable NIfTI file ({exc})") from exc
    if array.ndim == 4 and array.shape[3] == 1:
        array = array[..., 0]
    if array.ndim == 2:
        array = array[..., np.newaxis]
    if array.ndim != 3:
        raise InputError(f"{path}: expected a 3D volume, found shape {array.shape}")
    if array.size == 0:
        raise InputError(f"{path}: the volume is empty (shape {array.shape})")
    return Volume(np.asarray(array), img.affine)


def write_nifti(volume: Volume, path: str | os.PathLike) -> Path:
    """Write ``volume`` to ``path`` (``.nii`` or ``.nii.gz``) atomically; returns the path."""
    path = Path(path)
    img = nib.Nifti1Image(volume.array, volume.affine)
    img.header.set_xyzt_units("mm")
    img.set_qform(volume.affine, code=1)
    img.set_sform(volume.affine, code=1)
    with atomic_path(path) as tmp:
        nib.save(img, str(tmp))
    return path
