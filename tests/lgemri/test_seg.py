"""Tests for lgemri.seg: EMIDEC labels <-> DICOM SEG of an image series."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pydicom
import pytest

from lgemri.dicom import read_dicom_series, write_dicom_series
from lgemri.errors import InputError
from lgemri.seg import (
    PRIVATE_SCHEME,
    SEGMENTATION_STORAGE,
    SEGMENTS,
    is_manual_seg,
    latest_final_seg,
    read_seg,
    seg_datetime,
    write_seg,
)
from lgemri.volume import Volume, read_nifti

ROOT = Path(__file__).resolve().parents[2]
SERIES_DIR = ROOT / "sample-data" / "dicom" / "Case_P001"
LABEL_PATH = ROOT / "sample-data" / "emidec" / "Case_P001" / "Contours" / "Case_P001.nii.gz"
WHEN = dt.datetime(2025, 3, 4, 10, 20, 30)


@pytest.fixture(scope="module")
def series():
    return read_dicom_series(SERIES_DIR)


@pytest.fixture(scope="module")
def label():
    return read_nifti(LABEL_PATH)


@pytest.fixture(scope="module")
def seg_path(tmp_path_factory, series, label):
    path = tmp_path_factory.mktemp("seg") / "seg.dcm"
    return write_seg(label, series, path, manual=False, content_datetime=WHEN, algorithm_version="2.1")


def test_written_seg_header(seg_path, series):
    ds = pydicom.dcmread(seg_path)
    assert ds.Modality == "SEG"
    assert ds.SOPClassUID == SEGMENTATION_STORAGE
    assert ds.SegmentationType == "BINARY"
    assert ds.StudyInstanceUID == series.study_uid
    assert ds.FrameOfReferenceUID == series.frame_of_reference_uid
    assert ds.PatientID == series.patient_id
    assert ds.SeriesInstanceUID != series.series_uid
    assert (ds.ContentDate, ds.ContentTime[:6]) == ("20250304", "102030")
    referenced = ds.ReferencedSeriesSequence
    assert [r.SeriesInstanceUID for r in referenced] == [series.series_uid]
    assert {i.ReferencedSOPInstanceUID for i in referenced[0].ReferencedInstanceSequence} == {
        d.SOPInstanceUID for d in series.datasets
    }
    assert [s.SegmentNumber for s in ds.SegmentSequence] == [1, 2, 3, 4]
    for item in ds.SegmentSequence:
        spec = SEGMENTS[item.SegmentNumber]
        assert item.SegmentLabel == spec.name
        category = item.SegmentedPropertyCategoryCodeSequence[0]
        kind = item.SegmentedPropertyTypeCodeSequence[0]
        assert (category.CodingSchemeDesignator, category.CodeValue) == (
            spec.category.scheme_designator,
            spec.category.value,
        )
        assert (kind.CodingSchemeDesignator, kind.CodeValue) == (spec.type.scheme_designator, spec.type.value)
        assert item.SegmentAlgorithmType == "AUTOMATIC"
        assert item.SegmentationAlgorithmIdentificationSequence[0].AlgorithmVersion == "2.1"
        assert len(item.RecommendedDisplayCIELabValue) == 3
    types = [s.SegmentedPropertyTypeCodeSequence[0] for s in ds.SegmentSequence]
    codes = {(code.CodingSchemeDesignator, code.CodeValue) for code in types}
    assert codes == {("SCT", "87878005"), ("SCT", "74281007"), ("SCT", "55641003"), (PRIVATE_SCHEME, "MVO")}
    assert ds.CodingSchemeIdentificationSequence[0].CodingSchemeDesignator == PRIVATE_SCHEME
    assert not is_manual_seg(ds)


def test_round_trip(seg_path, series, label):
    back = read_seg(seg_path, series)
    assert back.dtype == np.uint8
    assert back.shape == label.shape
    np.testing.assert_array_equal(back, label.array)


def test_manual_seg_from_array(tmp_path, series, label):
    array = label.array.copy()
    array[array == 4] = 3  # no no-reflow: an empty segment
    path = write_seg(array, series, tmp_path / "m.dcm", manual=True, content_creator="Doe^Jane")
    ds = pydicom.dcmread(path)
    assert is_manual_seg(ds)
    assert all("SegmentationAlgorithmIdentificationSequence" not in s for s in ds.SegmentSequence)
    assert str(ds.ContentCreatorName) == "Doe^Jane"
    np.testing.assert_array_equal(read_seg(path, series), array)


def test_generic_codes_map_by_name(tmp_path, series, label):
    """OHIF-like SEG: generic Tissue codes, segments named, numbered in another order."""
    ds = pydicom.dcmread(write_seg(label, series, tmp_path / "x.dcm", manual=True))
    names = {1: "Left Ventricle Cavity", 2: "Myocardium", 3: "Infarct", 4: "MVO"}
    for item in ds.SegmentSequence:
        item.SegmentLabel = names[item.SegmentNumber]
        for sequence in ("SegmentedPropertyCategoryCodeSequence", "SegmentedPropertyTypeCodeSequence"):
            code = item[sequence].value[0]
            code.CodeValue, code.CodingSchemeDesignator, code.CodeMeaning = "85756007", "SCT", "Tissue"
    # renumber: segment n becomes 5 - n, in the descriptions and in every frame
    for item in ds.SegmentSequence:
        item.SegmentNumber = 5 - item.SegmentNumber
    for frame in ds.PerFrameFunctionalGroupsSequence:
        ident = frame.SegmentIdentificationSequence[0]
        ident.ReferencedSegmentNumber = 5 - ident.ReferencedSegmentNumber
    ds.save_as(tmp_path / "ohif.dcm")
    np.testing.assert_array_equal(read_seg(tmp_path / "ohif.dcm", series), label.array)

    ds.SegmentSequence[0].SegmentLabel = "Right ventricle"
    ds.save_as(tmp_path / "unknown.dcm")
    with pytest.raises(InputError, match="Right ventricle"):
        read_seg(tmp_path / "unknown.dcm", series)


def test_frames_placed_by_position(tmp_path, seg_path, series, label):
    ds = pydicom.dcmread(seg_path)
    for frame in ds.PerFrameFunctionalGroupsSequence:
        del frame.DerivationImageSequence
    ds.save_as(tmp_path / "nosource.dcm")
    np.testing.assert_array_equal(read_seg(tmp_path / "nosource.dcm", series), label.array)


def test_wrong_shape(tmp_path, series, label):
    with pytest.raises(InputError, match=r"\(229, 208, 6\).*\(229, 208, 7\)"):
        write_seg(label.array[:, :, :6], series, tmp_path / "bad.dcm", manual=True)
    shifted = Volume(label.array, label.affine + np.array([[0, 0, 0, 5.0]] * 3 + [[0, 0, 0, 0]]))
    with pytest.raises(InputError, match="affine"):
        write_seg(shifted, series, tmp_path / "bad.dcm", manual=True)
    assert not (tmp_path / "bad.dcm").exists()


def test_seg_of_another_series(tmp_path, seg_path, series):
    other_dir = tmp_path / "other"
    write_dicom_series(
        series.volume,
        other_dir,
        patient_id=series.patient_id,
        patient_name=series.patient_name,
        study_uid=series.study_uid,
        frame_of_reference_uid=series.frame_of_reference_uid,
        uid_entropy="other",
    )
    other = read_dicom_series(other_dir)
    with pytest.raises(InputError, match=f"references series {series.series_uid}, not {other.series_uid}"):
        read_seg(seg_path, other)


def test_latest_final_seg(tmp_path, series, label):
    auto_new = write_seg(label, series, tmp_path / "a.dcm", manual=False, content_datetime=dt.datetime(2025, 5, 1, 9))
    manual_old = write_seg(label, series, tmp_path / "b.dcm", manual=True, content_datetime=dt.datetime(2025, 3, 1, 9))
    manual_new = write_seg(label, series, tmp_path / "c.dcm", manual=True, content_datetime=dt.datetime(2025, 4, 1, 9))
    datasets = [pydicom.dcmread(p) for p in (manual_new, auto_new, manual_old)]
    assert seg_datetime(datasets[0]) == dt.datetime(2025, 4, 1, 9)
    for order in (datasets, datasets[::-1]):
        chosen = latest_final_seg(order)
        assert chosen.SOPInstanceUID == datasets[0].SOPInstanceUID
    assert latest_final_seg(order, series_uid="1.2.3") is None
    assert latest_final_seg([datasets[1]]).SOPInstanceUID == datasets[1].SOPInstanceUID
    assert latest_final_seg([datasets[1]], allow_automatic=False) is None

    # SeriesDate/Time stands in for missing ContentDate/Time
    undated = datasets[2]
    del undated.ContentDate, undated.ContentTime
    undated.SeriesDate, undated.SeriesTime = "20250601", "080000"
    assert latest_final_seg(datasets).SOPInstanceUID == undated.SOPInstanceUID


def test_unnamed_segments_map_by_number(tmp_path, seg_path, series, label):
    ds = pydicom.dcmread(seg_path)
    for item in ds.SegmentSequence:
        item.SegmentLabel = f"Segment {item.SegmentNumber}"
        code = item.SegmentedPropertyTypeCodeSequence[0]
        code.CodeValue, code.CodingSchemeDesignator, code.CodeMeaning = "85756007", "SCT", "Tissue"
    ds.save_as(tmp_path / "numbered.dcm")
    np.testing.assert_array_equal(read_seg(tmp_path / "numbered.dcm", series), label.array)
