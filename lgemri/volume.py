"""A 3D image or label volume with its place in the patient, and NIfTI reading and writing.

Array convention (the NIfTI one): ``array[i, j, k]`` with ``i`` along the image rows (DICOM's
row direction, left to right on screen), ``j`` down the columns and ``k`` across slices. The
``affine`` maps voxel indices to patient coordinates in millimetres, RAS+ as NIfTI stores it.
:func:`read_nifti` gives a file the geometry ITK gives it (spacing from ``pixdim``, ITK's
sform/qform precedence), the one NIfTI reader of the product.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from pathlib import Path

import nibabel as nib
import numpy as np
from nibabel.openers import ImageOpener

from .atomic import atomic_path
from .errors import InputError

__all__ = ["Volume", "read_nifti", "write_nifti", "LPS_TO_RAS"]

logger = logging.getLogger(__name__)

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


_SCANNER_ANAT = 1  # NIFTI_XFORM_SCANNER_ANAT
_ORTHONORMAL_ATOL = 1e-4  # ITK: the normalised columns times their transpose is I within this
_SIMILAR_ATOL = 1e-4  # ITK: an sform and a qform that agree this closely describe one grid
_EXACT_RTOL = 1e-5  # column norms equal to pixdim up to float32 rounding: keep the transform
_WARN_RTOL = 1e-3  # column norms further than this from pixdim: say so
_MAX_CONDITION = 1e8  # unit columns worse conditioned than this are taken as singular
_ITK_DEFAULT_DIRECTION = np.diag([-1.0, -1.0, 1.0])  # ITK's identity direction (LPS), in RAS


def _mm(values: np.ndarray) -> str:
    """``1.406 x 1.406 x 13``: voxel sizes for a message."""
    return " x ".join(f"{float(v):.4g}" for v in values)


def _stored_pixdim(img: nib.Nifti1Image, path: Path) -> np.ndarray:
    """``pixdim[1:4]`` as the file stores it.

    nibabel's load replaces a zero ``pixdim`` by 1 (and a negative one by its absolute value),
    which would hide a broken header; when a 1 shows, the header is read again unchecked.
    """
    pixdim = np.asarray(img.header["pixdim"][1:4], dtype=np.float64)
    if np.any(pixdim == 1.0):
        holder = img.file_map.get("header") or img.file_map["image"]  # a .hdr/.img pair, or one .nii
        header_file = holder.filename or str(path)
        with ImageOpener(header_file) as fileobj:
            stored = type(img.header).from_fileobj(fileobj, check=False)
        pixdim = np.asarray(stored["pixdim"][1:4], dtype=np.float64)
    return pixdim


def _pixdim_spacing(header: nib.Nifti1Header, raw: np.ndarray, path: Path) -> tuple[np.ndarray, int]:
    """``|pixdim[1:4]|`` and how many of those axes the file uses (``dim[0]``, at most 3)."""
    used = min(max(int(header["dim"][0]), 1), 3)
    raw = np.array(raw, dtype=np.float64)
    for axis in range(used):
        if not np.isfinite(raw[axis]) or raw[axis] == 0:
            raise InputError(
                f"{path}: pixdim[{axis + 1}] is {raw[axis]:g}; the voxel size along axis {axis} "
                "must be a finite, non-zero number of mm"
            )
    return np.abs(raw), used


def _unit_columns(xform: np.ndarray) -> np.ndarray | None:
    """The 3x3 part of ``xform`` with unit columns; None when it is singular or not finite."""
    matrix = np.asarray(xform, dtype=np.float64)[:3, :3]
    norms = np.linalg.norm(matrix, axis=0)
    if not np.all(np.isfinite(norms)) or np.any(norms <= 0):
        return None
    unit = matrix / norms
    if not np.linalg.cond(unit) < _MAX_CONDITION:
        return None
    return unit


def _is_orthonormal(unit: np.ndarray | None) -> bool:
    return unit is not None and np.allclose(unit @ unit.T, np.eye(3), rtol=0, atol=_ORTHONORMAL_ATOL)


def _nearest_rotation(matrix: np.ndarray) -> np.ndarray:
    """The orthogonal polar factor ``U Vt`` of ``matrix`` (the closest orthogonal matrix)."""
    u, _, vt = np.linalg.svd(matrix)
    return u @ vt


def _same_grid(sform: np.ndarray, qform: np.ndarray) -> bool:
    """True when the sform and the qform agree in rotation, scales and offset (ITK's test)."""
    s, q = sform[:3, :3], qform[:3, :3]
    return (
        np.allclose(np.linalg.svd(s, compute_uv=False), np.linalg.svd(q, compute_uv=False), rtol=0, atol=_SIMILAR_ATOL)
        and np.allclose(_nearest_rotation(s), _nearest_rotation(q), rtol=0, atol=_SIMILAR_ATOL)
        and np.allclose(sform[:3, 3], qform[:3, 3], rtol=0, atol=_SIMILAR_ATOL)
    )


def _itk_transform(header: nib.Nifti1Header, path: Path) -> tuple[np.ndarray | None, str]:
    """The transform ITK takes direction and origin from: (sform, "sform"), (qform, "qform") or (None, "none")."""
    sform, scode = header.get_sform(coded=True)
    qform, qcode = header.get_qform(coded=True)
    scode, qcode = int(scode), int(qcode)
    if scode <= 0 and qcode <= 0:
        return None, "none"
    if scode > 0:
        unit = _unit_columns(sform)
        usable = _is_orthonormal(unit)
        if usable and (qcode <= 0 or scode == _SCANNER_ANAT or _same_grid(sform, qform)):
            return sform, "sform"
        if qcode > 0:
            why = "describes another grid than the qform" if usable else "is not orthonormal"
            logger.warning("%s: the sform (code %d) %s; using the qform (code %d) as ITK does", path, scode, why, qcode)
            return qform, "qform"
        if unit is None:
            raise InputError(
                f"{path}: the sform is singular and there is no qform, so the voxels have no place in the patient"
            )
        logger.warning(
            "%s: the sform is not orthonormal and there is no qform; using its nearest rotation "
            "(ITK reads such a file only with ITK_NIFTI_SFORM_PERMISSIVE)",
            path,
        )
        return sform, "sform"
    return qform, "qform"


def _itk_affine(header: nib.Nifti1Header, pixdim: np.ndarray, path: Path) -> np.ndarray:
    """The voxel-to-RAS affine ITK gives the file: pixdim spacing, direction and origin per :func:`read_nifti`."""
    spacing, used = _pixdim_spacing(header, pixdim, path)
    xform, name = _itk_transform(header, path)
    if xform is None:
        spacing[used:] = np.where(np.isfinite(spacing[used:]) & (spacing[used:] > 0), spacing[used:], 1.0)
        logger.warning(
            "%s: neither qform_code nor sform_code is set; using ITK's default geometry "
            "(pixdim %s mm, identity LPS direction, origin 0)",
            path,
            _mm(spacing),
        )
        affine = np.eye(4)
        affine[:3, :3] = _ITK_DEFAULT_DIRECTION * spacing
        return affine
    xform = np.asarray(xform, dtype=np.float64)
    unit = _unit_columns(xform)
    if unit is None:
        raise InputError(f"{path}: the {name} is singular, so the voxels have no place in the patient")
    norms = np.linalg.norm(xform[:3, :3], axis=0)
    spacing[used:] = norms[used:]  # an axis the header does not define keeps the transform's scale
    relative = np.abs(norms - spacing) / spacing
    if np.all(relative <= _EXACT_RTOL) and _is_orthonormal(unit):
        return xform
    if np.any(relative > _WARN_RTOL):
        logger.warning(
            "%s: %s column norms %s mm differ from pixdim %s mm; using pixdim as ITK does",
            path,
            name,
            _mm(norms),
            _mm(spacing),
        )
    affine = np.eye(4)
    affine[:3, :3] = _nearest_rotation(unit) * spacing
    affine[:3, 3] = xform[:3, 3]
    return affine


def read_nifti(path: str | os.PathLike) -> Volume:
    """Read a NIfTI file with the geometry ITK (SimpleITK, nnU-Net) gives it.

    The array keeps its stored dtype after scaling. The affine is built the way ITK's
    ``NiftiImageIO`` builds an image's geometry (``SetImageIOOrientationFromNIfTI`` in ITK
    5.x), so that this reader, ITK-based tools and every part of this product agree on where
    each voxel is:

    * **Spacing** is ``|pixdim[1:4]|`` on the axes the file defines (``dim[0]``), never the
      transform's column norms. A zero or non-finite ``pixdim`` there is an
      :class:`InputError` (ITK's nifti1_io silently takes a zero as 1 mm; a wrong voxel size
      would make every volume and distance wrong, so this reader refuses instead).
    * **Transform** (direction and origin), in ITK's order. ITK prefers the sform because it
      keeps the scanner's directions at full float32 precision, where the qform's quaternion
      loses some; unlike nibabel (any coded sform wins), it falls back to a coded qform when
      the sform is not a rigid scanner transform that agrees with it:

      1. Neither ``qform_code`` nor ``sform_code`` set: ITK's default, an identity direction
         in LPS (``diag(-1, -1, 1)`` in RAS) and origin 0. This is neither NIfTI's "method 1"
         nor nibabel's centred base affine; a warning says so.
      2. The **sform** when ``sform_code > 0`` and the sform is an invertible affine whose
         column-normalised 3×3 is orthonormal (``R Rᵀ = I`` within 1e-4), and moreover the
         qform is unset, or ``sform_code`` is 1 (scanner anatomical), or the sform and the
         qform are very similar (same rotation, singular values and offset within 1e-4).
      3. Otherwise the **qform** when ``qform_code > 0`` (a warning says why the sform lost).
         This differs from nibabel's ``img.affine``, which takes any coded sform.
      4. Otherwise (a skewed or singular sform, no qform) ITK refuses the file unless its
         opt-in ``ITK_NIFTI_SFORM_PERMISSIVE`` mode is on; this reader behaves like that mode
         and orthonormalises the sform (polar factor of its SVD), with a warning. A singular
         sform is an :class:`InputError`.

    * **Affine**: when the chosen transform's column norms match ``pixdim`` (relative
      difference ≤ 1e-5, float32 rounding) and its columns are orthonormal, it is returned
      unchanged, so files written by nibabel, ITK or :func:`write_nifti` read exactly as
      nibabel reads them. Otherwise the affine is rebuilt as the transform's (orthonormalised)
      unit columns scaled by ``pixdim``, with the transform's origin; a relative difference
      above 1e-3 on any axis (EMIDEC's unit-scaled sforms, for example) is logged as a
      warning naming the file and both spacings.

    ITK also rescales the spacing when ``xyzt_units`` says metres or microns; this reader
    takes ``pixdim`` as millimetres, as NIfTI transforms are in practice.

    Args:
        path: A ``.nii`` or ``.nii.gz`` file.

    Returns:
        The volume, its affine mapping voxel indices to RAS millimetres.

    Raises:
        InputError: The file is missing, unreadable, not 3D, empty, or its geometry is unusable
            (a zero or non-finite ``pixdim``, a singular transform).
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    try:
        img = nib.load(str(path))
        array = np.asanyarray(img.dataobj)
        pixdim = _stored_pixdim(img, path) if isinstance(img.header, nib.Nifti1Header) else None
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
    affine = img.affine if pixdim is None else _itk_affine(img.header, pixdim, path)
    return Volume(np.asarray(array), affine)


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
