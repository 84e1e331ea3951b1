"""DICOM MR series to and from :class:`~lgemri.volume.Volume`, keeping the geometry exactly.

A series is a folder of single-frame MR images, one file per slice. Reading sorts the slices
along the slice normal and builds the voxel-to-patient affine from ImagePositionPatient,
ImageOrientationPatient and PixelSpacing; writing does the reverse, one ``IM_0001.dcm`` ...
per slice in ``k`` order. A volume written and read back has the same array and affine, also
when its affine is left-handed (``k`` runs against the slice normal): InstanceNumber keeps the
slice order.

DICOM patient coordinates are LPS, NIfTI's (and ``Volume.affine``'s) are RAS; the conversion is
``LPS_TO_RAS``. The image array layout is ``array[i, j, k] = pixel_array_k[j, i]``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.errors import InvalidDicomError
from pydicom.uid import (
    PYDICOM_IMPLEMENTATION_UID,
    ExplicitVRLittleEndian,
    MRImageStorage,
    generate_uid,
)
from pydicom.valuerep import format_number_as_ds

from .atomic import atomic_dir
from .errors import InputError
from .volume import LPS_TO_RAS, Volume, read_nifti, write_nifti

__all__ = [
    "DicomSeries",
    "read_dicom_series",
    "write_dicom_series",
    "dicom_to_nifti",
    "nifti_to_dicom",
    "SEGMENTED_MODALITIES",
    "require_modality",
]

logger = logging.getLogger(__name__)

_GEOMETRY_TOL = 1e-4  # equal orientation / pixel spacing across slices; orthogonality on writing
_SPACING_TOL = 0.05  # mm: largest deviation of a slice step from the mean step
_SAME_POSITION_TOL = 1e-3  # mm along the slice normal
_DEFER_SIZE = "16 KB"  # header reads leave pixel data (and other large values) on disk
_DIRECTORY_STORAGE = "1.2.840.10008.1.3.10"  # DICOMDIR
_NON_IMAGE_SOP_CLASSES = {"1.2.840.10008.5.1.4.1.1.66.4": "Segmentation"}  # have PixelData
_ORTHOGONAL_TOL = 1e-2  # |cos| of the angle between the row and column directions
SEGMENTED_MODALITIES = ("MR",)  # what the models were made for: LGE is an MR acquisition
_REQUIRED_GEOMETRY = {
    "Rows": None,
    "Columns": None,
    "PixelSpacing": 2,
    "ImageOrientationPatient": 6,
    "ImagePositionPatient": 3,
}

# Type 2 attributes of the Patient and General Study modules that a SEG or report copies from its images:
# they must be present but may be empty, and anonymised images from real sites often lack them
TYPE2_PATIENT_STUDY = (
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientSex",
    "StudyDate",
    "StudyTime",
    "ReferringPhysicianName",
    "StudyID",
    "AccessionNumber",
)


@dataclass
class DicomSeries:
    """A DICOM series read into a volume, with its identifiers and per-slice headers.

    Attributes:
        volume: The image volume (RAS affine).
        study_uid: StudyInstanceUID.
        series_uid: SeriesInstanceUID.
        frame_of_reference_uid: FrameOfReferenceUID ("" when absent).
        patient_id: PatientID.
        patient_name: PatientName as a string.
        modality: Modality.
        series_description: SeriesDescription.
        files: The slice files in ``k`` order.
        datasets: The slice headers in ``k`` order; their pixel data was left on disk.
    """

    volume: Volume
    study_uid: str
    series_uid: str
    frame_of_reference_uid: str
    patient_id: str
    patient_name: str
    modality: str
    series_description: str
    files: list[Path]
    datasets: list[Dataset]


def read_dicom_series(
    source: str | os.PathLike | Sequence[str | os.PathLike], series_uid: str | None = None
) -> DicomSeries:
    """Read one DICOM image series from a folder (not recursive) or from a list of files.

    Files that are not DICOM, DICOMDIR and non-image objects (SR, SEG, ...) are skipped. Slices
    are sorted along the slice normal; when InstanceNumber is strictly decreasing along it the
    order is reversed, so that ``k`` follows InstanceNumber. Pixel values get RescaleSlope and
    RescaleIntercept applied; the array is int16 (int32 when needed) when no slice is rescaled,
    else float32.

    Args:
        source: A folder, or a list of file paths.
        series_uid: The SeriesInstanceUID to read; needed when the files hold several series.

    Returns:
        The series with its volume, identifiers, files and headers in slice order.

    Raises:
        InputError: The folder is missing, holds no images or an unreadable DICOM file, or
            holds several series and no ``series_uid`` was given; ``series_uid`` is absent; or
            the slices do not form one regular grid (missing or inconsistent geometry,
            duplicate positions, non-uniform spacing, multi-frame images, corrupt pixel data).
    """
    where, paths = _list_files(source)
    images: dict[str, list[tuple[Path, Dataset]]] = {}
    ignored = []
    for path in paths:
        ds = _read_header(path)
        if ds is None:
            continue
        sop_class = str(ds.get("SOPClassUID", ""))
        if "PixelData" not in ds or sop_class in _NON_IMAGE_SOP_CLASSES:
            logger.debug("%s: not an image (SOP class %s), ignored", path, sop_class or "unknown")
            ignored.append(f"{path.name} ({ds.get('Modality', '?')})")
            continue
        images.setdefault(str(ds.get("SeriesInstanceUID", "")), []).append((path, ds))

    if not images:
        found = f"; only non-image objects: {', '.join(ignored)}" if ignored else ""
        raise InputError(f"{where}: empty series: no DICOM images found{found}")
    if series_uid is None:
        if len(images) > 1:
            raise InputError(
                f"{where}: mixed series in one folder: {_describe_series(images)}; pass series_uid to choose one"
            )
        series_uid = next(iter(images))
    elif series_uid not in images:
        raise InputError(f"{where}: series {series_uid} is not there; found {_describe_series(images)}")

    members = _sort_slices(images[series_uid], where)
    volume = Volume(_read_pixels(members), _affine(members, where))
    first = members[0][1]
    logger.debug("%s: read series %s, shape %s", where, series_uid, volume.shape)
    return DicomSeries(
        volume=volume,
        study_uid=str(first.get("StudyInstanceUID", "")),
        series_uid=series_uid,
        frame_of_reference_uid=str(first.get("FrameOfReferenceUID", "")),
        patient_id=str(first.get("PatientID", "")),
        patient_name=str(first.get("PatientName", "")),
        modality=str(first.get("Modality", "")),
        series_description=str(first.get("SeriesDescription", "")),
        files=[path for path, _ in members],
        datasets=[ds for _, ds in members],
    )


def require_modality(
    source: str | os.PathLike | Sequence[str | os.PathLike],
    series_uid: str | None = None,
    allowed: Sequence[str] = SEGMENTED_MODALITIES,
) -> str:
    """The Modality of the image series in ``source`` (headers only); an error unless it is ``allowed``.

    Meant to run before any work on a series starts (loading models, reading pixels).

    Raises:
        InputError: The folder holds no images, several series and no ``series_uid``, or a series of
            another modality (a CT series, say) or with no Modality.
    """
    where, paths = _list_files(source)
    found: dict[str, Dataset] = {}
    for path in paths:
        ds = _read_header(path)
        if ds is None or "PixelData" not in ds or str(ds.get("SOPClassUID", "")) in _NON_IMAGE_SOP_CLASSES:
            continue
        found.setdefault(str(ds.get("SeriesInstanceUID", "")), ds)
    if not found:
        raise InputError(f"{where}: empty series: no DICOM images found")
    if series_uid is None and len(found) > 1:
        raise InputError(f"{where}: mixed series in one folder ({len(found)} series); pass series_uid to choose one")
    uid = series_uid if series_uid is not None else next(iter(found))
    if uid not in found:
        raise InputError(f"{where}: series {uid} is not there")
    first = found[uid]
    modality = str(first.get("Modality", "") or "").strip().upper()
    if modality not in allowed:
        description = str(first.get("SeriesDescription", "") or "") or "no description"
        raise InputError(
            f"{where}: series {uid} is a {modality or 'modality-less'} series ({description!r}); "
            f"cardiac_mi segments {', '.join(allowed)} (LGE) series only"
        )
    return modality


def write_dicom_series(
    volume: Volume,
    folder: str | os.PathLike,
    *,
    patient_id: str,
    patient_name: str,
    study_uid: str | None = None,
    series_uid: str | None = None,
    frame_of_reference_uid: str | None = None,
    series_description: str = "",
    series_number: int = 1,
    study_description: str = "",
    study_date: str = "20250101",
    study_time: str = "120000",
    extra: dict[str, Any] | None = None,
    uid_entropy: str | None = None,
) -> list[Path]:
    """Write ``volume`` as an MR Image Storage series, one file per slice, replacing ``folder``.

    Files are ``IM_0001.dcm`` ... in ``k`` order (InstanceNumber ``k + 1``), Explicit VR Little
    Endian. The whole series is written to a temporary folder that then replaces ``folder``, so
    a failure leaves no half-written series (and whatever ``folder`` held before is gone).

    Pixel data: integer arrays within 0..65535 are stored unchanged as uint16, integer arrays
    within int16 as int16. Anything else (floats) is mapped linearly onto uint16 0..65535 with
    RescaleSlope ``(max - min) / 65535`` and RescaleIntercept ``min``: this is lossy, by at most
    about ``slope / 2`` per voxel.

    Args:
        volume: The volume to write.
        folder: The series folder to create or replace.
        patient_id: PatientID.
        patient_name: PatientName (DICOM person name, e.g. ``"Doe^Jane"``).
        study_uid: StudyInstanceUID; generated when None.
        series_uid: SeriesInstanceUID; generated when None.
        frame_of_reference_uid: FrameOfReferenceUID; generated when None.
        series_description: SeriesDescription.
        series_number: SeriesNumber.
        study_description: StudyDescription.
        study_date: StudyDate, also used as SeriesDate and ContentDate (YYYYMMDD).
        study_time: StudyTime, also used as SeriesTime and ContentTime (HHMMSS).
        extra: DICOM keyword -> value, set last on every slice (overrides the defaults, e.g.
            SliceThickness, InversionTime, MagneticFieldStrength). Numbers for DS attributes
            are formatted to fit 16 characters.
        uid_entropy: When given, the generated UIDs derive from it, so the same inputs give
            byte-identical files; when None they are random.

    Returns:
        The written files in ``k`` order.

    Raises:
        InputError: The affine's first two axes are not orthogonal, a voxel spacing is zero,
            the slice axis lies in the image plane, the array has non-finite values, or
            ``extra`` holds an unknown keyword.
    """
    folder = Path(folder)
    extra = dict(extra or {})
    unknown = [keyword for keyword in extra if tag_for_keyword(keyword) is None]
    if unknown:
        raise InputError(f"{folder}: unknown DICOM keywords in extra: {', '.join(unknown)}")

    axes = (LPS_TO_RAS @ volume.affine)[:3]
    spacing = np.linalg.norm(axes[:, :3], axis=0)
    if np.any(spacing == 0):
        raise InputError(f"{folder}: cannot write DICOM: zero voxel spacing {spacing.tolist()}")
    r, c, step, origin = axes[:, 0] / spacing[0], axes[:, 1] / spacing[1], axes[:, 2], axes[:, 3]
    if abs(r @ c) > _GEOMETRY_TOL:
        raise InputError(
            f"{folder}: cannot write DICOM: the affine's row and column axes are not orthogonal (cosine {r @ c:.6f})"
        )
    normal = np.cross(r, c)
    if abs(step @ normal) / spacing[2] < _GEOMETRY_TOL:
        raise InputError(f"{folder}: cannot write DICOM: the slice axis lies in the image plane")

    def uid(*role: str) -> str:
        return generate_uid(entropy_srcs=[uid_entropy, *role]) if uid_entropy is not None else generate_uid()

    study_uid = study_uid or uid("study")
    series_uid = series_uid or uid("series")
    frame_of_reference_uid = frame_of_reference_uid or uid("frame_of_reference")

    stored, pixel_representation, slope, intercept = _encode_pixels(volume.array, folder)
    low, high = np.percentile(stored, [1, 99.5]) * slope + intercept
    texts = [patient_name, patient_id, series_description, study_description]
    texts += [value for value in extra.values() if isinstance(value, str)]
    n_slices = volume.shape[2]
    common = {
        "SpecificCharacterSet": "ISO_IR 100" if all(t.isascii() for t in texts) else "ISO_IR 192",
        "ImageType": ["ORIGINAL", "PRIMARY", "M", "ND"],
        "SOPClassUID": MRImageStorage,
        "StudyDate": study_date,
        "SeriesDate": study_date,
        "ContentDate": study_date,
        "StudyTime": study_time,
        "SeriesTime": study_time,
        "ContentTime": study_time,
        "AccessionNumber": "",
        "Modality": "MR",
        "Manufacturer": "cardiac_mi",
        "ReferringPhysicianName": "",
        "StudyDescription": study_description,
        "SeriesDescription": series_description,
        "PatientName": patient_name,
        "PatientID": patient_id,
        "PatientBirthDate": "",
        "PatientSex": "O",
        "BodyPartExamined": "HEART",
        "ScanningSequence": "GR",
        "SequenceVariant": "SP",
        "ScanOptions": "",
        "MRAcquisitionType": "2D",
        "SliceThickness": _ds(spacing[2]),
        "RepetitionTime": "8.0",
        "EchoTime": "3.0",
        "EchoTrainLength": 1,
        "SpacingBetweenSlices": _ds(spacing[2]),
        "StudyInstanceUID": study_uid,
        "SeriesInstanceUID": series_uid,
        "StudyID": "1",
        "SeriesNumber": series_number,
        "AcquisitionNumber": 1,
        "ImageOrientationPatient": [_ds(round(x, 10)) for x in (*r, *c)],
        "FrameOfReferenceUID": frame_of_reference_uid,
        "ImagesInAcquisition": n_slices,
        "PositionReferenceIndicator": "",
        "SamplesPerPixel": 1,
        "PhotometricInterpretation": "MONOCHROME2",
        "Rows": volume.shape[1],
        "Columns": volume.shape[0],
        "PixelSpacing": [_ds(spacing[1]), _ds(spacing[0])],
        "BitsAllocated": 16,
        "BitsStored": 16,
        "HighBit": 15,
        "PixelRepresentation": pixel_representation,
        "WindowCenter": _ds((low + high) / 2),
        "WindowWidth": _ds(max(high - low, 1.0)),
        "RescaleIntercept": _ds(intercept),
        "RescaleSlope": _ds(slope),
        "RescaleType": "US",
    }
    extra = {keyword: _format_value(keyword, value) for keyword, value in extra.items()}

    names = [f"IM_{k + 1:04d}.dcm" for k in range(n_slices)]
    with atomic_dir(folder) as tmp:
        for k, name in enumerate(names):
            sop_uid = uid("sop", series_uid, str(k + 1))
            position = origin + k * step
            ds = Dataset()
            ds.file_meta = FileMetaDataset()
            ds.file_meta.MediaStorageSOPClassUID = MRImageStorage
            ds.file_meta.MediaStorageSOPInstanceUID = sop_uid
            ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
            ds.file_meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
            ds.is_little_endian, ds.is_implicit_VR = True, False
            slice_values = {
                "SOPInstanceUID": sop_uid,
                "InstanceNumber": k + 1,
                "ImagePositionPatient": [_ds(x) for x in position],
                "SliceLocation": _ds(position @ normal),
            }
            for keyword, value in {**common, **slice_values, **extra}.items():
                setattr(ds, keyword, value)
            ds.add_new("PixelData", "OW", np.ascontiguousarray(stored[:, :, k].T).tobytes())
            pydicom.dcmwrite(tmp / name, ds, write_like_original=False)
    logger.debug("%s: wrote %d slices of series %s", folder, n_slices, series_uid)
    return [folder / name for name in names]


def dicom_to_nifti(folder: str | os.PathLike, out_path: str | os.PathLike, series_uid: str | None = None) -> Path:
    """Convert a DICOM series (see :func:`read_dicom_series`) to a NIfTI file; returns its path."""
    return write_nifti(read_dicom_series(folder, series_uid).volume, out_path)


def nifti_to_dicom(nifti_path: str | os.PathLike, folder: str | os.PathLike, **kwargs: Any) -> list[Path]:
    """Convert a NIfTI file to a DICOM series (see :func:`write_dicom_series`).

    ``patient_id`` defaults to the file name without ``.nii``/``.nii.gz``, ``patient_name`` to
    the patient ID. Returns the written files in slice order.
    """
    nifti_path = Path(nifti_path)
    kwargs.setdefault("patient_id", nifti_path.name.removesuffix(".gz").removesuffix(".nii"))
    kwargs.setdefault("patient_name", kwargs["patient_id"])
    return write_dicom_series(read_nifti(nifti_path), folder, **kwargs)


def _list_files(source: str | os.PathLike | Sequence[str | os.PathLike]) -> tuple[str, list[Path]]:
    """The name to use in messages and the files to look at."""
    if isinstance(source, (str, os.PathLike)):
        folder = Path(source)
        if not folder.is_dir():
            raise InputError(f"{folder}: no such folder")
        return str(folder), sorted(p for p in folder.iterdir() if p.is_file())
    paths = [Path(p) for p in source]
    for path in paths:
        if not path.is_file():
            raise InputError(f"{path}: no such file")
    where = os.path.commonpath([str(p.parent) for p in paths]) if paths else "(no files)"
    return where, paths


def _read_header(path: Path) -> Dataset | None:
    """The header of a DICOM file (large values stay on disk), or None for files to skip."""
    if path.name.upper() == "DICOMDIR":
        logger.debug("%s: DICOMDIR, ignored", path)
        return None
    try:
        ds = pydicom.dcmread(path, defer_size=_DEFER_SIZE)
    except InvalidDicomError:
        logger.debug("%s: not a DICOM file, skipped", path)
        return None
    except Exception as exc:  # pydicom raises many kinds for damaged files
        raise InputError(f"{path}: unreadable DICOM file ({exc})") from exc
    if str(getattr(ds.file_meta, "MediaStorageSOPClassUID", "")) == _DIRECTORY_STORAGE:
        logger.debug("%s: DICOMDIR, ignored", path)
        return None
    return ds


def _describe_series(images: dict[str, list[tuple[Path, Dataset]]]) -> str:
    return "; ".join(
        f"{uid} ({str(members[0][1].get('SeriesDescription', '')) or 'no description'!r}, {len(members)} images)"
        for uid, members in sorted(images.items())
    )


def _floats(ds: Dataset, keyword: str) -> np.ndarray:
    try:
        return np.array([float(v) for v in np.atleast_1d(ds[keyword].value)])
    except (TypeError, ValueError):
        raise InputError(f"{keyword} {str(ds[keyword].value)[:80]!r} is not a list of numbers") from None


def _check_geometry(path: Path, ds: Dataset) -> None:
    """Pixel spacing positive, orientation two non-zero perpendicular directions, position finite."""
    try:
        spacing = _floats(ds, "PixelSpacing")
        iop = _floats(ds, "ImageOrientationPatient")
        position = _floats(ds, "ImagePositionPatient")
    except InputError as exc:
        raise InputError(f"{path}: invalid geometry: {exc}") from None
    if not np.all(np.isfinite(spacing)) or np.any(spacing <= 0):
        raise InputError(f"{path}: invalid geometry: PixelSpacing {spacing.tolist()} must be two positive sizes in mm")
    row, col = iop[:3], iop[3:]
    norms = np.linalg.norm(row), np.linalg.norm(col)
    if not np.all(np.isfinite(iop)) or min(norms) < 1e-6 or abs(row @ col) / (norms[0] * norms[1]) > _ORTHOGONAL_TOL:
        raise InputError(
            f"{path}: invalid geometry: ImageOrientationPatient {iop.tolist()} must hold two non-zero, "
            "perpendicular direction vectors"
        )
    if not np.all(np.isfinite(position)):
        raise InputError(f"{path}: invalid geometry: ImagePositionPatient {position.tolist()} is not finite")


def _sort_slices(members: list[tuple[Path, Dataset]], where: str) -> list[tuple[Path, Dataset]]:
    """Check that the slices form one stack and return them in ``k`` order."""
    for path, ds in members:
        if int(ds.get("NumberOfFrames") or 1) > 1:
            raise InputError(f"{path}: multi-frame images are not supported (NumberOfFrames={ds.NumberOfFrames})")
        for keyword, size in _REQUIRED_GEOMETRY.items():
            try:
                valid = ds.get(keyword) not in (None, "") and not (size and len(_floats(ds, keyword)) != size)
            except InputError:
                valid = False
            if not valid:
                raise InputError(f"{path}: missing geometry: no valid {keyword}")
        _check_geometry(path, ds)
    first_path, first = members[0]
    for path, ds in members[1:]:
        for keyword in ("Rows", "Columns", "PixelSpacing", "ImageOrientationPatient"):
            if not np.allclose(_floats(ds, keyword), _floats(first, keyword), atol=_GEOMETRY_TOL):
                raise InputError(
                    f"{where}: inconsistent {keyword} across slices: {first_path.name} has "
                    f"{_floats(first, keyword).tolist()}, {path.name} has "
                    f"{_floats(ds, keyword).tolist()}"
                )

    normal = np.cross(*_directions(first))
    positions = np.array([_floats(ds, "ImagePositionPatient") @ normal for _, ds in members])
    order = np.argsort(positions, kind="stable")
    for a, b in zip(order[:-1], order[1:]):
        if positions[b] - positions[a] < _SAME_POSITION_TOL:
            raise InputError(
                f"{where}: two slices at the same position ({positions[a]:.3f} mm along the "
                f"slice normal): {members[a][0].name} and {members[b][0].name}"
            )
    numbers = [members[i][1].get("InstanceNumber") for i in order]
    numbered = len(numbers) > 1 and all(isinstance(n, int) for n in numbers)
    if numbered and np.all(np.diff(numbers) < 0):
        order = order[::-1]
    return [members[i] for i in order]


def _directions(ds: Dataset) -> tuple[np.ndarray, np.ndarray]:
    """The unit row and column directions (LPS) from ImageOrientationPatient."""
    iop = _floats(ds, "ImageOrientationPatient")
    return iop[:3] / np.linalg.norm(iop[:3]), iop[3:] / np.linalg.norm(iop[3:])


def _affine(members: list[tuple[Path, Dataset]], where: str) -> np.ndarray:
    """The RAS affine of slices already in ``k`` order."""
    first = members[0][1]
    r, c = _directions(first)
    row_spacing, col_spacing = _floats(first, "PixelSpacing")
    positions = np.array([_floats(ds, "ImagePositionPatient") for _, ds in members])
    if len(members) > 1:
        step = (positions[-1] - positions[0]) / (len(members) - 1)
        if np.any(np.linalg.norm(np.diff(positions, axis=0) - step, axis=1) > _SPACING_TOL):
            along = ", ".join(f"{p:.3f}" for p in positions @ np.cross(r, c))
            raise InputError(f"{where}: non-uniform slice spacing: slice positions along the normal are {along} mm")
    else:
        thickness = first.get("SpacingBetweenSlices") or first.get("SliceThickness")
        if not thickness:
            logger.warning("%s: single slice without slice thickness, assuming 1 mm", where)
        step = np.cross(r, c) * float(thickness or 1.0)
    affine_lps = np.eye(4)
    affine_lps[:3, 0] = r * col_spacing
    affine_lps[:3, 1] = c * row_spacing
    affine_lps[:3, 2] = step
    affine_lps[:3, 3] = positions[0]
    return LPS_TO_RAS @ affine_lps


def _read_pixels(members: list[tuple[Path, Dataset]]) -> np.ndarray:
    """The ``[i, j, k]`` array of slices in ``k`` order, rescaled."""
    frames, scales = [], []
    for path, header in members:
        try:
            frame = pydicom.dcmread(path).pixel_array
        except Exception as exc:  # the pixel handlers raise many kinds
            raise InputError(f"{path}: corrupt pixel data ({exc})") from exc
        if frame.shape != (header.Rows, header.Columns):
            raise InputError(f"{path}: corrupt pixel data (shape {frame.shape})")
        frames.append(frame.T)
        scales.append(
            tuple(
                float(header.get(keyword) or default)
                for keyword, default in (("RescaleSlope", 1.0), ("RescaleIntercept", 0.0))
            )
        )
    if all(scale == (1.0, 0.0) for scale in scales):
        data = np.stack(frames, axis=-1)
        low, high = data.min(), data.max()
        for dtype in (np.int16, np.int32):
            if np.iinfo(dtype).min <= low and high <= np.iinfo(dtype).max:
                return data.astype(dtype)
        return data.astype(np.int64)
    return np.stack([frame * slope + intercept for frame, (slope, intercept) in zip(frames, scales)], axis=-1).astype(
        np.float32
    )


def _encode_pixels(array: np.ndarray, folder: Path) -> tuple[np.ndarray, int, float, float]:
    """Stored values, PixelRepresentation, RescaleSlope and RescaleIntercept for ``array``."""
    if array.dtype.kind in "biu":
        low, high = int(array.min()), int(array.max())
        if 0 <= low and high <= 65535:
            return array.astype(np.uint16), 0, 1.0, 0.0
        if -32768 <= low and high <= 32767:
            return array.astype(np.int16), 1, 1.0, 0.0
    values = array.astype(np.float64)
    if not np.all(np.isfinite(values)):
        raise InputError(f"{folder}: cannot write DICOM: the volume has NaN or infinite values")
    low, high = values.min(), values.max()
    # Quantise with the slope and intercept as written (16-character DS), not the exact ones.
    slope = float(_ds((high - low) / 65535)) if high > low else 1.0
    intercept = float(_ds(low))
    stored = np.clip(np.rint((values - intercept) / slope), 0, 65535).astype(np.uint16)
    return stored, 0, slope, intercept


def _ds(value: float) -> str:
    """A decimal string of at most 16 characters keeping as much precision as fits."""
    text = format_number_as_ds(float(value) + 0.0)  # + 0.0 turns -0.0 into 0.0
    if len(text) > 16:  # pydicom 2.4 overflows when rounding carries: 9.999999999999998
        text = format_number_as_ds(float(text))
    return text


def _format_value(keyword: str, value: Any) -> Any:
    """``value`` with numbers for DS attributes formatted to fit 16 characters."""
    if dictionary_VR(keyword) != "DS" or isinstance(value, str):
        return value
    if np.ndim(value) == 0:
        return _ds(value)
    return [v if isinstance(v, str) else _ds(v) for v in value]
