"""EMIDEC labels to and from DICOM Segmentation (SEG) objects for a DICOM image series.

Writing makes a BINARY highdicom ``Segmentation`` with four segments, SegmentNumber = EMIDEC class
(1 LV cavity, 2 healthy myocardium, 3 infarct, 4 no-reflow), always all four (a class absent from
the label is a segment without frames; empty frames are omitted). It references every image of
the series and takes its Study, Frame of Reference and Patient from them.

Segment codes (SNOMED CT, scheme "SCT", plus one private code):

=============  ====================================  =========================================
class          SegmentedPropertyCategory             SegmentedPropertyType
=============  ====================================  =========================================
1 lv_cavity    91723000 Anatomical Structure         87878005 Left ventricle (the whole LV
                                                     structure; SNOMED has no well-established
                                                     "LV cavity" code, the label names it)
2 myocardium   91723000 Anatomical Structure         74281007 Myocardium
3 infarct      49755003 Morphologically Altered Str. 55641003 Infarct
4 no_reflow    49755003 Morphologically Altered Str. 99CARDIACMI MVO Microvascular obstruction
=============  ====================================  =========================================

``99CARDIACMI`` is a private coding scheme (DICOM private designators start with "99"), declared
in the SEG's CodingSchemeIdentificationSequence. Recommended display colours are the preview's
``OUTLINE_COLOURS`` converted from sRGB to CIELab (D50, as DICOM's PCS-Lab).

Reading maps each segment to a class by its SegmentedPropertyType (the codes above, and
49848007 "Left ventricle myocardium" for the myocardium), else by its SegmentLabel / description
(names as OHIF and others write them), else, for a segment without a real name (no label, or
"Segment N"), by SegmentNumber 1-4; a named segment that is none of these is an error. Frames are placed on the series
grid by the SOPInstanceUID they were derived from, else by ImagePositionPatient.

Algorithm type: AUTOMATIC (a model's output, with an algorithm identification) or MANUAL (drawn
or corrected by a clinician). A series' label is the most recent MANUAL SEG; see
:func:`latest_final_seg`.
"""

from __future__ import annotations

import datetime as _dt
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes
from pydicom.sr.coding import Code
from pydicom.uid import generate_uid

from .atomic import atomic_path
from .dicom import TYPE2_PATIENT_STUDY, DicomSeries
from .errors import InputError
from .labels import CAVITY, INFARCT, LABEL_NAMES, MYOCARDIUM, NO_REFLOW, as_label
from .preview import OUTLINE_COLOURS
from .volume import Volume

__all__ = [
    "SEGMENTS",
    "SegmentSpec",
    "SEGMENTATION_STORAGE",
    "PRIVATE_SCHEME",
    "write_seg",
    "read_seg",
    "seg_datetime",
    "is_manual_seg",
    "latest_final_seg",
    "TYPE2_PATIENT_STUDY",
]

SEGMENTATION_STORAGE = "1.2.840.10008.5.1.4.1.1.66.4"
PRIVATE_SCHEME = "99CARDIACMI"
_PRIVATE_SCHEME_NAME = "cardiac_mi private codes"
_POSITION_TOL = 1e-2  # mm, matching a frame to a slice by ImagePositionPatient
_AFFINE_TOL = 1e-2  # mm, a label Volume's affine against the series'

ANATOMICAL_STRUCTURE = Code("91723000", "SCT", "Anatomical Structure")
MORPHOLOGICALLY_ALTERED_STRUCTURE = Code("49755003", "SCT", "Morphologically Altered Structure")
LEFT_VENTRICLE = Code("87878005", "SCT", "Left ventricle")
MYOCARDIUM_CODE = Code("74281007", "SCT", "Myocardium")
INFARCT_CODE = Code("55641003", "SCT", "Infarct")
MVO_CODE = Code("MVO", PRIVATE_SCHEME, "Microvascular obstruction")

# Type 1 attributes a SEG takes from its images: without them there is no SEG to write
_TYPE1_SOURCE = ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "SOPClassUID", "FrameOfReferenceUID")


def _srgb_to_cielab(hex_colour: str) -> tuple[float, float, float]:
    """CIELab (D50 white, as DICOM's PCS-Lab) of an sRGB ``#rrggbb`` colour."""
    rgb = np.array([int(hex_colour[i : i + 2], 16) / 255.0 for i in (1, 3, 5)])
    linear = np.where(rgb <= 0.04045, rgb / 12.92, ((rgb + 0.055) / 1.055) ** 2.4)
    # sRGB -> XYZ, Bradford-adapted to D50
    m = np.array(
        [
            [0.4360747, 0.3850649, 0.1430804],
            [0.2225045, 0.7168786, 0.0606169],
            [0.0139322, 0.0971045, 0.7141733],
        ]
    )
    xyz = m @ linear / np.array([0.96422, 1.0, 0.82521])
    eps, kappa = 216 / 24389, 24389 / 27
    f = np.where(xyz > eps, np.cbrt(xyz), (kappa * xyz + 16) / 116)
    return float(116 * f[1] - 16), float(500 * (f[0] - f[1])), float(200 * (f[1] - f[2]))


@dataclass(frozen=True)
class SegmentSpec:
    """How one EMIDEC class is described in a SEG."""

    label: int
    name: str
    category: Code
    type: Code
    colour: str  # sRGB hex, the preview's outline colour

    @property
    def cielab(self) -> tuple[float, float, float]:
        return _srgb_to_cielab(self.colour)


SEGMENTS: dict[int, SegmentSpec] = {
    CAVITY: SegmentSpec(CAVITY, LABEL_NAMES[CAVITY], ANATOMICAL_STRUCTURE, LEFT_VENTRICLE, OUTLINE_COLOURS[CAVITY]),
    MYOCARDIUM: SegmentSpec(
        MYOCARDIUM, LABEL_NAMES[MYOCARDIUM], ANATOMICAL_STRUCTURE, MYOCARDIUM_CODE, OUTLINE_COLOURS[MYOCARDIUM]
    ),
    INFARCT: SegmentSpec(
        INFARCT, LABEL_NAMES[INFARCT], MORPHOLOGICALLY_ALTERED_STRUCTURE, INFARCT_CODE, OUTLINE_COLOURS[INFARCT]
    ),
    NO_REFLOW: SegmentSpec(
        NO_REFLOW, LABEL_NAMES[NO_REFLOW], MORPHOLOGICALLY_ALTERED_STRUCTURE, MVO_CODE, OUTLINE_COLOURS[NO_REFLOW]
    ),
}

# (scheme, code value) -> class, for reading
_TYPE_CODES: dict[tuple[str, str], int] = {
    **{(spec.type.scheme_designator, spec.type.value): label for label, spec in SEGMENTS.items()},
    ("SCT", "49848007"): MYOCARDIUM,  # Left ventricle myocardium
}
# lower-case names -> class; spaces, dashes and underscores are treated alike
_NAMES: dict[str, int] = {
    "lv_cavity": CAVITY,
    "cavity": CAVITY,
    "left_ventricle": CAVITY,
    "left_ventricle_cavity": CAVITY,
    "left_ventricular_cavity": CAVITY,
    "lv_blood_pool": CAVITY,
    "blood_pool": CAVITY,
    "lv": CAVITY,
    "myocardium": MYOCARDIUM,
    "healthy_myocardium": MYOCARDIUM,
    "lv_myocardium": MYOCARDIUM,
    "left_ventricle_myocardium": MYOCARDIUM,
    "myo": MYOCARDIUM,
    "infarct": INFARCT,
    "infarction": INFARCT,
    "scar": INFARCT,
    "myocardial_infarction": INFARCT,
    "no_reflow": NO_REFLOW,
    "noreflow": NO_REFLOW,
    "mvo": NO_REFLOW,
    "microvascular_obstruction": NO_REFLOW,
}


def _normalise_name(text: str) -> str:
    return "_".join(text.strip().lower().replace("-", " ").replace("_", " ").split())


def write_seg(
    label: Volume | np.ndarray,
    series: DicomSeries,
    path: str | os.PathLike,
    *,
    manual: bool,
    series_description: str | None = None,
    content_creator: str | None = None,
    series_number: int = 100,
    algorithm_version: str = "1.0",
    algorithm_name: str = "cardiac_mi",
    content_datetime: _dt.datetime | None = None,
    series_uid: str | None = None,
    sop_instance_uid: str | None = None,
) -> Path:
    """Write an EMIDEC label as a DICOM SEG of ``series``; returns ``path``.

    Args:
        label: The label on the series grid ([i, j, k] as ``series.volume.array``), values 0-4.
            A :class:`Volume` must also have the series' affine.
        series: The image series the label segments (its files are read fully).
        path: The SEG file to write (atomically).
        manual: True for a clinician-drawn or -corrected (final) label: SegmentAlgorithmType
            MANUAL; False for a model's output: AUTOMATIC with an algorithm identification.
        series_description: SeriesDescription; defaults to "LGE segmentation (manual)" or
            "(automatic)".
        content_creator: ContentCreatorName (DICOM person name), e.g. the reader's.
        series_number: SeriesNumber of the SEG series.
        algorithm_version: AlgorithmVersion for AUTOMATIC segments.
        algorithm_name: AlgorithmName for AUTOMATIC segments.
        content_datetime: ContentDate/Time (and SeriesDate/Time); now when None.
        series_uid: SeriesInstanceUID of the SEG; generated when None.
        sop_instance_uid: SOPInstanceUID of the SEG; generated when None.

    Raises:
        InputError: The label's shape (or affine) differs from the series', or its values are
            not 0-4.
    """
    path = Path(path)
    where = f"label for {path.name}"
    if isinstance(label, Volume):
        if label.shape == series.volume.shape and not label.same_grid(series.volume, atol=_AFFINE_TOL):
            raise InputError(
                f"{where}: the label's affine does not match series {series.series_uid}'s "
                f"(label {np.round(label.affine, 3).tolist()}, series "
                f"{np.round(series.volume.affine, 3).tolist()})"
            )
        array = label.array
    else:
        array = np.asarray(label)
    if tuple(array.shape) != tuple(series.volume.shape):
        raise InputError(
            f"{where}: label shape {tuple(array.shape)} does not match series "
            f"{series.series_uid} shape {tuple(series.volume.shape)}"
        )
    array = as_label(array, where)

    sources = [_with_type2(pydicom.dcmread(f), f) for f in series.files]
    # frame k is the image of slice k: rows along j, columns along i
    pixels = np.ascontiguousarray(np.transpose(array, (2, 1, 0)))

    algorithm = None
    if not manual:
        algorithm = hd.AlgorithmIdentificationSequence(
            name=algorithm_name, family=codes.DCM.ArtificialIntelligence, version=algorithm_version
        )
    descriptions = []
    for number, spec in SEGMENTS.items():
        description = hd.seg.SegmentDescription(
            segment_number=number,
            segment_label=spec.name,
            segmented_property_category=spec.category,
            segmented_property_type=spec.type,
            algorithm_type=(
                hd.seg.SegmentAlgorithmTypeValues.MANUAL if manual else hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC
            ),
            algorithm_identification=algorithm,
        )
        description.RecommendedDisplayCIELabValue = list(hd.color.CIELabColor(*spec.cielab).value)
        descriptions.append(description)

    if series_description is None:
        series_description = f"LGE segmentation ({'manual' if manual else 'automatic'})"
    seg = hd.seg.Segmentation(
        source_images=sources,
        pixel_array=pixels,
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=descriptions,
        series_instance_uid=series_uid or generate_uid(),
        series_number=series_number,
        sop_instance_uid=sop_instance_uid or generate_uid(),
        instance_number=1,
        manufacturer="cardiac_mi",
        manufacturer_model_name="cardiac_mi" if manual else algorithm_name,
        software_versions=algorithm_version,
        device_serial_number="0",
        content_description=series_description[:64],
        content_label="MANUAL" if manual else "AUTOMATIC",
        content_creator_name=_person_name(content_creator),
        omit_empty_frames=True,
    )
    seg.SeriesDescription = series_description
    when = content_datetime or _dt.datetime.now()
    seg.ContentDate = seg.SeriesDate = when.strftime("%Y%m%d")
    seg.ContentTime = seg.SeriesTime = when.strftime("%H%M%S.%f")
    scheme = Dataset()
    scheme.CodingSchemeDesignator = PRIVATE_SCHEME
    scheme.CodingSchemeName = _PRIVATE_SCHEME_NAME
    scheme.CodingSchemeResponsibleOrganization = "cardiac_mi"
    seg.CodingSchemeIdentificationSequence = [scheme]
    with atomic_path(path) as tmp:
        seg.save_as(tmp)
    return path


def _with_type2(ds: Dataset, path: str | os.PathLike) -> Dataset:
    """``ds`` with each missing Type 2 patient/study attribute added empty (in memory, the file is untouched).

    Raises:
        InputError: A Type 1 attribute the SEG needs is missing or empty.
    """
    for keyword in _TYPE1_SOURCE:
        if not str(ds.get(keyword, "") or "").strip():
            raise InputError(f"{Path(path).name}: the image has no {keyword}; a DICOM SEG of it cannot be written")
    for keyword in TYPE2_PATIENT_STUDY:
        if keyword not in ds:
            setattr(ds, keyword, "")
    return ds


def _person_name(name: str | None) -> str | None:
    """A user name as a DICOM person name: one word is a family name (a trailing ``^`` says so)."""
    if not name or not name.strip():
        return None
    name = name.strip()
    return name if "^" in name else f"{name}^"


def read_seg(path: str | os.PathLike, series: DicomSeries) -> np.ndarray:
    """Read a DICOM SEG of ``series`` as a uint8 EMIDEC label [i, j, k] on the series grid.

    Where segments overlap the higher class wins (no-reflow over infarct over myocardium over
    cavity). FRACTIONAL SEGs are thresholded at half their maximum value.

    Raises:
        InputError: The file is not a readable SEG, references another series, has a segment
            that maps to no EMIDEC class (or two segments mapping to one class), or a frame that
            falls on no slice of the series.
    """
    path = Path(path)
    try:
        ds = pydicom.dcmread(path)
    except Exception as exc:  # pydicom raises many kinds for damaged files
        raise InputError(f"{path}: unreadable DICOM file ({exc})") from exc
    if str(ds.get("SOPClassUID", "")) != SEGMENTATION_STORAGE:
        raise InputError(f"{path}: not a DICOM Segmentation (SOP class {ds.get('SOPClassUID', '?')})")

    referenced = {str(item.get("SeriesInstanceUID", "")) for item in ds.get("ReferencedSeriesSequence", [])}
    if referenced and series.series_uid not in referenced:
        raise InputError(f"{path}: the SEG references series {', '.join(sorted(referenced))}, not {series.series_uid}")

    classes = _segment_classes(ds, path)
    shape = series.volume.shape
    out = np.zeros(shape, dtype=np.uint8)
    if "PixelData" not in ds or int(ds.get("NumberOfFrames", 0) or 0) == 0:
        return out
    try:
        frames = ds.pixel_array
    except Exception as exc:  # truncated or inconsistent PixelData: the handlers raise many kinds
        raise InputError(f"{path}: the SEG's pixel data cannot be decoded ({exc})") from None
    if frames.ndim == 2:
        frames = frames[np.newaxis]
    if str(ds.get("SegmentationType", "BINARY")).upper() == "FRACTIONAL":
        masks = frames >= float(ds.get("MaximumFractionalValue", 255)) / 2
    else:
        masks = frames > 0
    if masks.shape[1:] != (shape[1], shape[0]):
        raise InputError(
            f"{path}: frames of {masks.shape[1]}x{masks.shape[2]} pixels do not match series "
            f"{series.series_uid} images of {shape[1]}x{shape[0]}"
        )

    sop_to_k = {str(d.SOPInstanceUID): k for k, d in enumerate(series.datasets)}
    positions = np.array([[float(x) for x in d.ImagePositionPatient] for d in series.datasets])
    shared = ds.get("SharedFunctionalGroupsSequence", [None])[0]
    per_frame = ds.get("PerFrameFunctionalGroupsSequence", [])
    if len(per_frame) != len(masks):
        raise InputError(f"{path}: {len(masks)} frames but {len(per_frame)} per-frame descriptions")
    for n, (item, mask) in enumerate(zip(per_frame, masks)):
        number = _frame_attr(item, shared, "SegmentIdentificationSequence", "ReferencedSegmentNumber")
        if number is None or int(number) not in classes:
            raise InputError(f"{path}: frame {n + 1} belongs to no described segment ({number})")
        k = _frame_slice(item, shared, sop_to_k, positions)
        if k is None:
            raise InputError(f"{path}: frame {n + 1} matches no image of series {series.series_uid}")
        value = classes[int(number)]
        plane = out[:, :, k]
        np.maximum(plane, np.where(mask.T, value, 0).astype(np.uint8), out=plane)
    return out


def _segment_classes(ds: Dataset, path: Path) -> dict[int, int]:
    """SegmentNumber -> EMIDEC class for each segment of ``ds``."""
    classes: dict[int, int] = {}
    unknown = []
    for item in ds.get("SegmentSequence", []):
        number = int(item.SegmentNumber)
        value = None
        for code in item.get("SegmentedPropertyTypeCodeSequence", []):
            value = _TYPE_CODES.get((str(code.get("CodingSchemeDesignator", "")), str(code.get("CodeValue", ""))))
        if value is None:
            for text in (item.get("SegmentLabel", ""), item.get("SegmentDescription", "")):
                value = _NAMES.get(_normalise_name(str(text)))
                if value is not None:
                    break
        if value is None and number in SEGMENTS and _unnamed(item):
            value = number
        if value is None:
            unknown.append(f"{number} {str(item.get('SegmentLabel', '')) or '(no label)'!r}")
            continue
        classes[number] = value
    if unknown:
        raise InputError(f"{path}: segments that map to no EMIDEC class: {', '.join(unknown)}")
    taken: dict[int, int] = {}
    for number, value in classes.items():
        if value in taken:
            raise InputError(f"{path}: segments {taken[value]} and {number} both map to {LABEL_NAMES[value]}")
        taken[value] = number
    if not classes:
        raise InputError(f"{path}: the SEG describes no segments")
    return classes


def _unnamed(item: Dataset) -> bool:
    """True when a segment has no real name: no label, or one like "Segment 2" or "2"."""
    for text in (item.get("SegmentLabel", ""), item.get("SegmentDescription", "")):
        name = _normalise_name(str(text or "")).removeprefix("segment").strip("_")
        if name and not name.isdigit():
            return False
    return True


def _frame_attr(item: Dataset, shared: Dataset | None, sequence: str, keyword: str):
    for group in (item, shared):
        if group is not None and sequence in group and len(group[sequence].value):
            value = group[sequence].value[0].get(keyword)
            if value is not None:
                return value
    return None


def _frame_slice(item: Dataset, shared: Dataset | None, sop_to_k: dict[str, int], positions: np.ndarray) -> int | None:
    """The slice index of a SEG frame: by source SOPInstanceUID, else by position."""
    for derivation in item.get("DerivationImageSequence", []):
        for source in derivation.get("SourceImageSequence", []):
            k = sop_to_k.get(str(source.get("ReferencedSOPInstanceUID", "")))
            if k is not None:
                return k
    position = _frame_attr(item, shared, "PlanePositionSequence", "ImagePositionPatient")
    if position is None:
        return None
    distances = np.linalg.norm(positions - np.array([float(x) for x in position]), axis=1)
    k = int(np.argmin(distances))
    return k if distances[k] <= _POSITION_TOL else None


def _parse_datetime(date: str, time: str) -> _dt.datetime | None:
    date = date.strip()
    if len(date) != 8 or not date.isdigit():
        return None
    time = (time.strip().replace(":", "") or "000000").split(".")
    whole = (time[0] + "000000")[:6]
    fraction = (time[1] if len(time) > 1 else "") + "000000"
    try:
        return _dt.datetime.strptime(date + whole + fraction[:6], "%Y%m%d%H%M%S%f")
    except ValueError:
        return None


def seg_datetime(ds: Dataset) -> _dt.datetime | None:
    """When a SEG was made: ContentDate/ContentTime, else SeriesDate/SeriesTime, else None."""
    for date, time in (("ContentDate", "ContentTime"), ("SeriesDate", "SeriesTime")):
        when = _parse_datetime(str(ds.get(date, "") or ""), str(ds.get(time, "") or ""))
        if when is not None:
            return when
    return None


def is_manual_seg(ds: Dataset) -> bool:
    """True for a final SEG: every segment's SegmentAlgorithmType is MANUAL."""
    types = [str(item.get("SegmentAlgorithmType", "")).upper() for item in ds.get("SegmentSequence", [])]
    return bool(types) and all(t == "MANUAL" for t in types)


def latest_final_seg(
    datasets: Iterable[Dataset], *, series_uid: str | None = None, allow_automatic: bool = True
) -> Dataset | None:
    """The SEG that is the label of an image series, or None.

    The rule: the most recent MANUAL SEG (by ContentDate/ContentTime, SeriesDate/SeriesTime when
    absent; undated ones count as oldest); an AUTOMATIC (or SEMIAUTOMATIC, or mixed) SEG only when
    there is no MANUAL one and ``allow_automatic``. Non-SEG datasets are ignored, and so are
    SEGs not referencing ``series_uid`` when it is given. Ties go to the later dataset.
    """
    candidates = []
    for order, ds in enumerate(datasets):
        if str(ds.get("SOPClassUID", "")) != SEGMENTATION_STORAGE and str(ds.get("Modality", "")) != "SEG":
            continue
        if series_uid is not None:
            referenced = {str(r.get("SeriesInstanceUID", "")) for r in ds.get("ReferencedSeriesSequence", [])}
            if series_uid not in referenced:
                continue
        when = seg_datetime(ds) or _dt.datetime.min
        candidates.append((is_manual_seg(ds), when, order, ds))
    if not candidates:
        return None
    manual = [c for c in candidates if c[0]]
    pool = manual or (candidates if allow_automatic else [])
    if not pool:
        return None
    return max(pool, key=lambda c: (c[1], c[2]))[3]
