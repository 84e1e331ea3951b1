"""Issue 16, point 8: SEGs (and reports) for images lacking Type 2 patient/study attributes; damaged SEGs.

Anonymised studies from real sites often lack PatientBirthDate, AccessionNumber and the like. These are
Type 2 (present, may be empty): the SEG of such a series must carry them empty, attribute by attribute,
and read back as it was written. Type 1 attributes the SEG needs (StudyInstanceUID, FrameOfReferenceUID)
are an input error naming the attribute. A SEG whose PixelData is cut short is an input error too.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest

from lgemri.dicom import read_dicom_series
from lgemri.errors import InputError
from lgemri.seg import TYPE2_PATIENT_STUDY, read_seg, write_seg
from lgemri.volume import read_nifti

ROOT = Path(__file__).resolve().parents[2]
SERIES_DIR = ROOT / "sample-data" / "dicom" / "Case_P001"
LABEL_PATH = ROOT / "sample-data" / "emidec" / "Case_P001" / "Contours" / "Case_P001.nii.gz"


def series_without(folder: Path, *keywords: str) -> Path:
    """A copy of the sample series with ``keywords`` deleted from every instance."""
    folder.mkdir(parents=True, exist_ok=True)
    for path in sorted(SERIES_DIR.glob("*.dcm")):
        ds = pydicom.dcmread(path)
        for keyword in keywords:
            if keyword in ds:
                delattr(ds, keyword)
        ds.save_as(folder / path.name)
    return folder


@pytest.fixture(scope="module")
def label() -> np.ndarray:
    return np.asarray(read_nifti(LABEL_PATH).array).astype(np.uint8)


def test_sample_series_has_every_type2_attribute():
    """The cases below remove something that is there."""
    ds = pydicom.dcmread(sorted(SERIES_DIR.glob("*.dcm"))[0], stop_before_pixels=True)
    assert all(keyword in ds for keyword in TYPE2_PATIENT_STUDY)


@pytest.mark.parametrize("keyword", TYPE2_PATIENT_STUDY)
def test_seg_written_for_series_without(keyword, tmp_path, label):
    folder = series_without(tmp_path / "series", keyword)
    series = read_dicom_series(folder)
    assert keyword not in series.datasets[0]
    path = write_seg(label, series, tmp_path / "seg.dcm", manual=True, content_creator="reader")
    seg = pydicom.dcmread(path)
    assert keyword in seg and str(seg[keyword].value or "") == ""  # present, empty
    assert seg.StudyInstanceUID == series.study_uid
    np.testing.assert_array_equal(read_seg(path, series), label)
    # the image files were not changed
    assert keyword not in pydicom.dcmread(series.files[0], stop_before_pixels=True)


def test_seg_written_for_series_without_all_of_them(tmp_path, label):
    series = read_dicom_series(series_without(tmp_path / "series", *TYPE2_PATIENT_STUDY))
    path = write_seg(label, series, tmp_path / "seg.dcm", manual=False)
    seg = pydicom.dcmread(path)
    assert all(str(seg.get(keyword, None) or "") == "" and keyword in seg for keyword in TYPE2_PATIENT_STUDY)
    np.testing.assert_array_equal(read_seg(path, series), label)


def test_present_type2_values_are_copied(tmp_path, label):
    series = read_dicom_series(SERIES_DIR)
    seg = pydicom.dcmread(write_seg(label, series, tmp_path / "seg.dcm", manual=True))
    source = series.datasets[0]
    for keyword in ("PatientID", "PatientName", "StudyDate"):
        assert str(seg[keyword].value) == str(source[keyword].value)


@pytest.mark.parametrize("keyword", ["StudyInstanceUID", "FrameOfReferenceUID"])
def test_missing_type1_attribute_is_an_input_error(keyword, tmp_path, label):
    series = read_dicom_series(series_without(tmp_path / "series", keyword))
    with pytest.raises(InputError, match=keyword):
        write_seg(label, series, tmp_path / "seg.dcm", manual=True)
    assert not (tmp_path / "seg.dcm").exists()


@pytest.mark.parametrize("keyword", TYPE2_PATIENT_STUDY)
def test_report_written_for_series_without(keyword, tmp_path):
    from lgemri.report import make_report

    folder = series_without(tmp_path / "series", keyword)
    paths = make_report(folder, LABEL_PATH, tmp_path / "report")
    for name in ("dicom", "sr"):
        ds = pydicom.dcmread(paths[name])
        assert keyword in ds and str(ds[keyword].value or "") == ""


def truncated_seg(tmp_path: Path, label: np.ndarray, keep: float) -> Path:
    series = read_dicom_series(SERIES_DIR)
    path = write_seg(label, series, tmp_path / "seg.dcm", manual=True)
    ds = pydicom.dcmread(path)
    ds.PixelData = ds.PixelData[: int(len(ds.PixelData) * keep)]
    out = tmp_path / "truncated.dcm"
    ds.save_as(out)
    return out


@pytest.mark.parametrize("keep", [0.5, 0.01])
def test_truncated_pixel_data_is_an_input_error(keep, tmp_path, label):
    path = truncated_seg(tmp_path, label, keep)
    with pytest.raises(InputError, match="pixel data"):
        read_seg(path, read_dicom_series(SERIES_DIR))


def test_seg_cut_short_on_disk_is_an_input_error(tmp_path, label):
    series = read_dicom_series(SERIES_DIR)
    path = write_seg(label, series, tmp_path / "seg.dcm", manual=True)
    data = path.read_bytes()
    cut = tmp_path / "cut.dcm"
    cut.write_bytes(data[: len(data) - 2000])
    with pytest.raises(InputError):
        read_seg(cut, series)
