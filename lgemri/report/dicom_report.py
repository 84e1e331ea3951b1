"""The report as DICOM objects in the image's study, so that any PACS viewer shows it.

Two objects, both in one new series each of the image's study (a new study when the image is
NIfTI):

* :func:`encapsulated_pdf`: Encapsulated PDF Storage (``1.2.840.10008.5.1.4.1.1.104.1``) holding
  the one-page PDF. Patient and study attributes are copied from the image series; the image
  instances are listed in SourceInstanceSequence.
* :func:`measurement_sr`: Comprehensive 3D SR (TID 1500 Imaging Measurement Report, via
  highdicom) with the LV myocardial mass and volume, infarct and no-reflow volume and % of the LV,
  and per AHA segment the infarct % and the mean and maximum transmural extent. Standard codes
  are used where they exist (SNOMED CT anatomy and findings, LOINC LV mass, UCUM units); the
  other concepts use the private coding scheme :data:`CODING_SCHEME` ("99" designators are
  reserved for local codes by DICOM PS3.16).
"""

from __future__ import annotations

import dataclasses
import datetime
import logging
import os
from pathlib import Path

import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sr.codedict import codes
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, ExplicitVRLittleEndian, generate_uid

from .. import __version__
from ..atomic import atomic_path
from ..dicom import TYPE2_PATIENT_STUDY, DicomSeries
from ..errors import InputError

__all__ = [
    "ENCAPSULATED_PDF_STORAGE",
    "CODING_SCHEME",
    "StudyInfo",
    "encapsulated_pdf",
    "measurement_sr",
    "write_dicom",
]

logger = logging.getLogger(__name__)

ENCAPSULATED_PDF_STORAGE = "1.2.840.10008.5.1.4.1.1.104.1"
CODING_SCHEME = "99CARDIACMI"
PDF_SERIES_NUMBER = 901
SR_SERIES_NUMBER = 902
MANUFACTURER = "cardiac_mi"

_PATIENT_STUDY = (
    "PatientName",
    "PatientID",
    "IssuerOfPatientID",
    "PatientBirthDate",
    "PatientSex",
    "PatientAge",
    "StudyInstanceUID",
    "StudyDate",
    "StudyTime",
    "StudyID",
    "AccessionNumber",
    "ReferringPhysicianName",
    "StudyDescription",
)


@dataclasses.dataclass
class StudyInfo:
    """Who and which study the report belongs to, and the image instances it was made from.

    Attributes:
        source: ``"dicom"`` when copied from a DICOM series, ``"nifti"`` for a new study.
        attributes: patient and general-study attributes by keyword (StudyInstanceUID always).
        series_uid: the image series (None for NIfTI).
        frame_of_reference_uid: the image's frame of reference ("" when unknown).
        images: the image instances' headers (empty for NIfTI).
    """

    source: str
    attributes: dict[str, object]
    series_uid: str | None = None
    frame_of_reference_uid: str = ""
    images: list[Dataset] = dataclasses.field(default_factory=list)

    @property
    def study_uid(self) -> str:
        return str(self.attributes["StudyInstanceUID"])

    @classmethod
    def from_series(cls, series: DicomSeries) -> StudyInfo:
        """Copy the patient and study of a DICOM image series."""
        first = series.datasets[0]
        attributes = {kw: first[kw].value for kw in _PATIENT_STUDY if kw in first}
        if not attributes.get("StudyInstanceUID"):
            raise InputError(f"{series.files[0]}: the image has no StudyInstanceUID")
        attributes["SpecificCharacterSet"] = first.get("SpecificCharacterSet", "ISO_IR 100")
        return cls("dicom", attributes, series.series_uid, series.frame_of_reference_uid, list(series.datasets))

    @classmethod
    def new(cls, patient_id: str, patient_name: str | None = None) -> StudyInfo:
        """A new study for an image without one (NIfTI); the date is today."""
        now = datetime.datetime.now()
        attributes = {
            "PatientName": patient_name or f"{patient_id}^",  # family name only
            "PatientID": patient_id,
            "StudyInstanceUID": generate_uid(),
            "StudyDate": now.strftime("%Y%m%d"),
            "StudyTime": now.strftime("%H%M%S"),
        }
        return cls("nifti", attributes)


def _character_set(study: StudyInfo, *texts: str) -> str:
    given = study.attributes.get("SpecificCharacterSet")
    if given:
        return given
    values = [str(v) for v in study.attributes.values()] + list(texts)
    return "ISO_IR 100" if all(v.isascii() for v in values) else "ISO_IR 192"


def encapsulated_pdf(
    pdf: bytes,
    study: StudyInfo,
    *,
    title: str = "LGE infarct quantification report",
    series_uid: str | None = None,
    sop_instance_uid: str | None = None,
    created: datetime.datetime | None = None,
) -> Dataset:
    """An Encapsulated PDF Storage instance of ``pdf`` in ``study``.

    Raises:
        InputError: ``pdf`` does not start with the PDF signature.
    """
    if not pdf.startswith(b"%PDF"):
        raise InputError("the report to encapsulate is not a PDF (no %PDF signature)")
    created = created or datetime.datetime.now()
    sop_instance_uid = sop_instance_uid or generate_uid()
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = ENCAPSULATED_PDF_STORAGE
    ds.file_meta.MediaStorageSOPInstanceUID = sop_instance_uid
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    ds.is_little_endian, ds.is_implicit_VR = True, False

    ds.SpecificCharacterSet = _character_set(study, title)
    ds.SOPClassUID = ENCAPSULATED_PDF_STORAGE
    ds.SOPInstanceUID = sop_instance_uid
    for keyword in TYPE2_PATIENT_STUDY:  # Type 2: present, possibly empty
        setattr(ds, keyword, "")
    for keyword, value in study.attributes.items():
        if keyword != "SpecificCharacterSet":
            setattr(ds, keyword, value)
    # Encapsulated Document Series, General Equipment, SC Equipment
    ds.Modality = "DOC"
    ds.SeriesInstanceUID = series_uid or generate_uid()
    ds.SeriesNumber = PDF_SERIES_NUMBER
    ds.SeriesDescription = "LGE infarct report (PDF)"
    ds.Manufacturer = MANUFACTURER
    ds.SoftwareVersions = __version__
    ds.ConversionType = "WSD"
    # Encapsulated Document
    ds.InstanceNumber = 1
    ds.ContentDate = created.strftime("%Y%m%d")
    ds.ContentTime = created.strftime("%H%M%S")
    ds.AcquisitionDateTime = created.strftime("%Y%m%d%H%M%S")
    ds.BurnedInAnnotation = "YES"
    ds.RecognizableVisualFeatures = "NO"
    ds.DocumentTitle = title
    concept = Dataset()
    concept.CodeValue = codes.DCM.ImagingMeasurementReport.value
    concept.CodingSchemeDesignator = "DCM"
    concept.CodeMeaning = codes.DCM.ImagingMeasurementReport.meaning
    ds.ConceptNameCodeSequence = [concept]
    if study.images:
        sources = []
        for image in study.images:
            item = Dataset()
            item.ReferencedSOPClassUID = image.SOPClassUID
            item.ReferencedSOPInstanceUID = image.SOPInstanceUID
            sources.append(item)
        ds.SourceInstanceSequence = sources
    ds.MIMETypeOfEncapsulatedDocument = "application/pdf"
    ds.EncapsulatedDocumentLength = len(pdf)
    ds.EncapsulatedDocument = pdf + (b"\x00" if len(pdf) % 2 else b"")
    return ds


def write_dicom(ds: Dataset, path: str | os.PathLike) -> Path:
    """Write ``ds`` as a DICOM Part 10 file atomically; returns the path."""
    path = Path(path)
    with atomic_path(path) as tmp:
        pydicom.dcmwrite(tmp, ds, write_like_original=False)
    return path


def _private(value: str, meaning: str):
    from highdicom.sr import CodedConcept

    return CodedConcept(value, CODING_SCHEME, meaning)


def _segment_sites() -> dict[int, object]:
    names = {
        1: "LeftVentricleBasalAnteriorSegment",
        2: "LeftVentricleBasalAnteroseptalSegment",
        3: "LeftVentricleBasalInferoseptalSegment",
        4: "LeftVentricleBasalInferiorSegment",
        5: "LeftVentricleBasalInferolateralSegment",
        6: "LeftVentricleBasalAnterolateralSegment",
        7: "LeftVentricleMidAnteriorSegment",
        8: "LeftVentricleMidAnteroseptalSegment",
        9: "LeftVentricleMidInferoseptalSegment",
        10: "LeftVentricleMidInferiorSegment",
        11: "LeftVentricleMidInferolateralSegment",
        12: "LeftVentricleMidAnterolateralSegment",
        13: "LeftVentricleApicalAnteriorSegment",
        14: "LeftVentricleApicalSeptalSegment",
        15: "LeftVentricleApicalInferiorSegment",
        16: "LeftVentricleApicalLateralSegment",
        17: "LeftVentricleApex",
    }
    return {segment: getattr(codes.SCT, name) for segment, name in names.items()}


def measurement_sr(
    quantification: dict,
    study: StudyInfo,
    evidence: list[Dataset],
    *,
    series_uid: str | None = None,
    sop_instance_uid: str | None = None,
):
    """A Comprehensive 3D SR (TID 1500) with the study's measurements.

    Args:
        quantification: the result of :func:`lgemri.quantification.quantify`.
        study: the study (for the device observer's context only; patient and study attributes
            come from ``evidence[0]``).
        evidence: instances the measurements rest on, first one in the study (e.g. the
            encapsulated PDF, then the image headers). The images of ``study`` are listed as
            source images (Current Requested Procedure Evidence); other evidence goes to
            Pertinent Other Evidence.

    Returns:
        A ``highdicom.sr.Comprehensive3DSR`` (a pydicom Dataset).
    """
    from highdicom.sr import (
        CodedConcept,
        Comprehensive3DSR,
        DeviceObserverIdentifyingAttributes,
        FindingSite,
        Measurement,
        MeasurementReport,
        MeasurementsAndQualitativeEvaluations,
        ObservationContext,
        ObserverContext,
        SourceImageForMeasurementGroup,
        TrackingIdentifier,
    )

    if not evidence:
        raise InputError("the measurement SR needs at least one evidence instance of the study")
    gram = CodedConcept("g", "UCUM", "gram")
    millilitre = CodedConcept("ml", "UCUM", "milliliter")
    percent = CodedConcept("%", "UCUM", "percent")
    volume = CodedConcept.from_code(codes.SCT.Volume)
    lv_site = FindingSite(CodedConcept.from_code(codes.SCT.LeftVentricleMyocardium))
    infarction = CodedConcept.from_code(codes.SCT.MyocardialInfarction)
    mvo = _private("MVO", "Microvascular obstruction (no-reflow)")
    mass = _private("MASS", "Mass")
    percent_lv = _private("PCT_LV", "Percent of left ventricular myocardium")

    def m(name, value, unit):
        return Measurement(name=name, value=float(value), unit=unit)

    groups = []
    lv = quantification["lv"]
    groups.append(
        MeasurementsAndQualitativeEvaluations(
            tracking_identifier=TrackingIdentifier(identifier="LV myocardium"),
            finding_sites=[lv_site],
            measurements=[
                m(CodedConcept.from_code(codes.LN.LeftVentricleMass), lv["myocardium_mass_g"], gram),
                m(volume, lv["myocardium_volume_ml"], millilitre),
            ],
            # The image slices, once: groups without source images derive from all images listed.
            source_images=[SourceImageForMeasurementGroup.from_source_image(image) for image in study.images] or None,
        )
    )
    amounts = (("infarct", infarction, "Infarct (labels 3+4)"), ("no_reflow", mvo, "No-reflow (label 4)"))
    for key, finding, label in amounts:
        amount = quantification[key]
        groups.append(
            MeasurementsAndQualitativeEvaluations(
                tracking_identifier=TrackingIdentifier(identifier=label),
                finding_type=finding,
                finding_sites=[lv_site],
                measurements=[
                    m(volume, amount["volume_ml"], millilitre),
                    m(mass, amount["mass_g"], gram),
                    m(percent_lv, amount["percent_lv"], percent),
                ],
            )
        )
    sites = _segment_sites()
    segment_infarct = _private("SEG_INF_PCT", "Infarct percent of segment myocardium")
    mean_extent = _private("TM_MEAN", "Mean transmural extent of infarct")
    max_extent = _private("TM_MAX", "Maximum transmural extent of infarct")
    for row in quantification["segments"]:
        if not row["present"]:
            continue
        groups.append(
            MeasurementsAndQualitativeEvaluations(
                tracking_identifier=TrackingIdentifier(identifier=f"AHA segment {row['segment']}"),
                finding_type=infarction,
                finding_sites=[FindingSite(CodedConcept.from_code(sites[row["segment"]]))],
                measurements=[
                    m(segment_infarct, row["infarct_percent"], percent),
                    m(mean_extent, row["transmurality_mean_percent"], percent),
                    m(max_extent, row["transmurality_max_percent"], percent),
                ],
            )
        )
    device = DeviceObserverIdentifyingAttributes(
        uid=generate_uid(entropy_srcs=["cardiac_mi", __version__]),
        name="cardiac_mi quantification",
        manufacturer_name=MANUFACTURER,
        model_name=f"lgemri {__version__}",
    )
    context = ObservationContext(
        observer_person_context=None,
        observer_device_context=ObserverContext(observer_type=codes.DCM.Device, observer_identifying_attributes=device),
    )
    report = MeasurementReport(
        observation_context=context,
        procedure_reported=CodedConcept.from_code(codes.SCT.CardiacMRI),
        imaging_measurements=groups,
    )
    return Comprehensive3DSR(
        evidence=evidence,
        content=report,
        series_instance_uid=series_uid or generate_uid(),
        series_number=SR_SERIES_NUMBER,
        sop_instance_uid=sop_instance_uid or generate_uid(),
        instance_number=1,
        manufacturer=MANUFACTURER,
        series_description="LGE infarct measurements (SR)",
    )
