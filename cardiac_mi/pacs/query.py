"""What to look for on the PACS (``Query``), what it answers (``Match``), and the C-FIND identifiers."""

from __future__ import annotations

import contextlib
import datetime as _dt
import re
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from cardiac_mi.pacs.config import UID_RE
from lgemri.errors import InputError

if TYPE_CHECKING:
    from pydicom.dataset import Dataset

__all__ = ["Query", "Match", "normalize_date"]

_MODALITY_RE = re.compile(r"^[A-Z0-9_]{1,16}$")
_DATE_RE = re.compile(r"^(?P<start>\d{8})?(?P<dash>-)?(?P<end>\d{8})?$")
_ISO_RANGE_RE = re.compile(r"^(?P<start>\d{4}-\d{2}-\d{2})?(?P<dots>\.\.)?(?P<end>\d{4}-\d{2}-\d{2})?$")


def _check_date(text: str, original: str) -> str:
    try:
        _dt.datetime.strptime(text, "%Y%m%d")
    except ValueError:
        raise InputError(f"date {original!r}: {text} is not a calendar date (YYYYMMDD)") from None
    return text


def normalize_date(text: str) -> str:
    """A DICOM date or date range from ``YYYYMMDD``, ``A-B``, ``A-``, ``-B`` or ISO ``YYYY-MM-DD[..YYYY-MM-DD]``.

    Raises:
        InputError: not one of those forms, not a calendar date, or a range that ends before it starts.
    """
    raw = text.strip()
    iso = _ISO_RANGE_RE.match(raw) if "-" in raw and len(raw.replace("..", "")) in (10, 20) else None
    if iso and (iso["start"] or iso["end"]) and (iso["dots"] or not (iso["start"] and iso["end"])):
        start = iso["start"].replace("-", "") if iso["start"] else ""
        end = iso["end"].replace("-", "") if iso["end"] else ""
        dash = "-" if iso["dots"] else ""
    else:
        match = _DATE_RE.match(raw)
        if not match or not (match["start"] or match["end"]) or (match["start"] and match["end"] and not match["dash"]):
            raise InputError(
                f"date {text!r}: expected YYYYMMDD, a range YYYYMMDD-YYYYMMDD, an open range YYYYMMDD- or "
                "-YYYYMMDD, or ISO YYYY-MM-DD[..YYYY-MM-DD]"
            )
        start, end, dash = match["start"] or "", match["end"] or "", match["dash"] or ""
    if start:
        _check_date(start, text)
    if end:
        _check_date(end, text)
    if start and end and end < start:
        raise InputError(f"date range {text!r} ends before it starts")
    return f"{start}{dash}{end}"


@dataclass(frozen=True)
class Query:
    """What to look for on the PACS. Empty fields match everything; DICOM wildcards (``*``, ``?``) work in
    the patient ID and name.

    Args:
        patient_id: PatientID.
        patient_name: PatientName (DICOM person name, e.g. ``DOE^JANE`` or ``DOE*``).
        study_uids: StudyInstanceUIDs (any of them).
        accession: AccessionNumber.
        date: StudyDate: ``YYYYMMDD``, a range ``A-B``, ``A-``, ``-B`` (see ``normalize_date``).
        modality: at STUDY level ModalitiesInStudy; at SERIES level the series' Modality.
    """

    patient_id: str | None = None
    patient_name: str | None = None
    study_uids: tuple[str, ...] = ()
    accession: str | None = None
    date: str | None = None
    modality: str | None = None

    def __post_init__(self) -> None:
        for name in ("patient_id", "patient_name", "accession"):
            value = getattr(self, name)
            if value is not None:
                value = str(value).strip()
                if "\\" in value or len(value) > 64:
                    raise InputError(f"{name.replace('_', ' ')} {value!r}: at most 64 characters, no backslash")
                object.__setattr__(self, name, value or None)
        uids = tuple(str(uid).strip() for uid in self.study_uids)
        for uid in uids:
            if not UID_RE.match(uid) or len(uid) > 64:
                raise InputError(f"study UID {uid!r} is not a DICOM UID (digits and dots, at most 64 characters)")
        object.__setattr__(self, "study_uids", uids)
        if self.date is not None:
            object.__setattr__(self, "date", normalize_date(self.date) if str(self.date).strip() else None)
        if self.modality is not None:
            modality = str(self.modality).strip().upper()
            if not _MODALITY_RE.match(modality):
                raise InputError(f"modality {self.modality!r} is not a DICOM modality code (e.g. MR, CT, SEG, SR)")
            object.__setattr__(self, "modality", modality)

    @property
    def empty(self) -> bool:
        return not any((self.patient_id, self.patient_name, self.study_uids, self.accession, self.date, self.modality))

    def __str__(self) -> str:
        parts = [
            f"patient ID {self.patient_id}" if self.patient_id else "",
            f"patient name {self.patient_name}" if self.patient_name else "",
            f"study {', '.join(self.study_uids)}" if self.study_uids else "",
            f"accession {self.accession}" if self.accession else "",
            f"date {self.date}" if self.date else "",
            f"modality {self.modality}" if self.modality else "",
        ]
        return ", ".join(part for part in parts if part) or "everything"


@dataclass(frozen=True)
class Match:
    """One C-FIND match: a study, or a series (``series_uid`` set) with its study's fields."""

    level: str
    study_uid: str
    patient_id: str
    patient_name: str
    study_date: str
    study_description: str
    accession: str
    modalities: tuple[str, ...]
    series: int | None
    instances: int | None
    series_uid: str | None = None
    series_number: int | None = None
    series_description: str = ""

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["modalities"] = list(self.modalities)
        return data


def ds_text(ds: Dataset, keyword: str) -> str:
    from pydicom.multival import MultiValue

    value = ds.get(keyword)
    if value is None:
        return ""
    if isinstance(value, (MultiValue, list, tuple)):
        return "\\".join(str(v).strip() for v in value)
    return str(value).strip()


def ds_int(ds: Dataset, keyword: str) -> int | None:
    with contextlib.suppress(TypeError, ValueError):
        value = ds.get(keyword)
        if value not in (None, ""):
            return int(value)
    return None


def _modalities(ds: Dataset, keyword: str) -> tuple[str, ...]:
    value = ds.get(keyword)
    if value in (None, ""):
        return ()
    items = [value] if isinstance(value, str) else list(value)
    return tuple(sorted({str(v).strip() for v in items if str(v).strip()}))


def study_match(ds: Dataset) -> Match:
    return Match(
        level="STUDY",
        study_uid=ds_text(ds, "StudyInstanceUID"),
        patient_id=ds_text(ds, "PatientID"),
        patient_name=ds_text(ds, "PatientName"),
        study_date=ds_text(ds, "StudyDate"),
        study_description=ds_text(ds, "StudyDescription"),
        accession=ds_text(ds, "AccessionNumber"),
        modalities=_modalities(ds, "ModalitiesInStudy"),
        series=ds_int(ds, "NumberOfStudyRelatedSeries"),
        instances=ds_int(ds, "NumberOfStudyRelatedInstances"),
    )


def series_match(study: Match, ds: Dataset) -> Match:
    modality = ds_text(ds, "Modality")
    return Match(
        level="SERIES",
        study_uid=study.study_uid,
        patient_id=study.patient_id,
        patient_name=study.patient_name,
        study_date=study.study_date,
        study_description=study.study_description,
        accession=study.accession,
        modalities=(modality,) if modality else (),
        series=None,
        instances=ds_int(ds, "NumberOfSeriesRelatedInstances"),
        series_uid=ds_text(ds, "SeriesInstanceUID"),
        series_number=ds_int(ds, "SeriesNumber"),
        series_description=ds_text(ds, "SeriesDescription"),
    )


def study_identifier(query: Query) -> Dataset:
    from pydicom.dataset import Dataset

    ds = Dataset()
    ds.QueryRetrieveLevel = "STUDY"
    ds.StudyInstanceUID = "\\".join(query.study_uids)
    ds.PatientID = query.patient_id or ""
    ds.PatientName = query.patient_name or ""
    ds.StudyDate = query.date or ""
    ds.StudyTime = ""
    ds.AccessionNumber = query.accession or ""
    ds.StudyDescription = ""
    ds.ModalitiesInStudy = query.modality or ""
    ds.NumberOfStudyRelatedSeries = ""
    ds.NumberOfStudyRelatedInstances = ""
    return ds


def series_identifier(study_uid: str, modality: str | None) -> Dataset:
    from pydicom.dataset import Dataset

    ds = Dataset()
    ds.QueryRetrieveLevel = "SERIES"
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = ""
    ds.Modality = modality or ""
    ds.SeriesNumber = ""
    ds.SeriesDescription = ""
    ds.NumberOfSeriesRelatedInstances = ""
    return ds


def image_identifier(study_uid: str, series_uid: str | None) -> Dataset:
    from pydicom.dataset import Dataset

    ds = Dataset()
    ds.QueryRetrieveLevel = "IMAGE"
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid or ""
    ds.SOPInstanceUID = ""
    return ds
