"""Issue 16, points 8 and 10: series with impossible geometry, and series of another modality, are input errors.

Zero pixel spacing or a zero orientation vector gave a singular affine and a 500 (server) or a traceback
(CLI) later on; now reading the series names the file and the attribute. ``require_modality`` refuses a
CT series (headers only, before any work starts).
"""

from __future__ import annotations

from pathlib import Path

import pydicom
import pytest

from lgemri.dicom import read_dicom_series, require_modality
from lgemri.errors import InputError

ROOT = Path(__file__).resolve().parents[2]
SERIES_DIR = ROOT / "sample-data" / "dicom" / "Case_P001"


def edited_series(folder: Path, **values) -> Path:
    """A copy of the sample series with ``values`` set on every instance."""
    folder.mkdir(parents=True, exist_ok=True)
    for path in sorted(SERIES_DIR.glob("*.dcm")):
        ds = pydicom.dcmread(path)
        for keyword, value in values.items():
            setattr(ds, keyword, value)
        ds.save_as(folder / path.name)
    return folder


BAD_GEOMETRY = {
    "zero pixel spacing": ({"PixelSpacing": [0, 0]}, "PixelSpacing"),
    "one zero pixel spacing": ({"PixelSpacing": [1.5, 0]}, "PixelSpacing"),
    "negative pixel spacing": ({"PixelSpacing": [-1.5, 1.5]}, "PixelSpacing"),
    "zero orientation": ({"ImageOrientationPatient": [0, 0, 0, 0, 0, 0]}, "ImageOrientationPatient"),
    "zero column direction": ({"ImageOrientationPatient": [1, 0, 0, 0, 0, 0]}, "ImageOrientationPatient"),
    "parallel directions": ({"ImageOrientationPatient": [1, 0, 0, 1, 0, 0]}, "ImageOrientationPatient"),
    "oblique directions": ({"ImageOrientationPatient": [1, 0, 0, 0.5, 0.5, 0]}, "ImageOrientationPatient"),
}


@pytest.mark.parametrize("case", BAD_GEOMETRY, ids=list(BAD_GEOMETRY))
def test_bad_geometry_is_an_input_error(case, tmp_path):
    values, keyword = BAD_GEOMETRY[case]
    folder = edited_series(tmp_path / "series", **values)
    with pytest.raises(InputError, match=keyword) as caught:
        read_dicom_series(folder)
    assert "invalid geometry" in str(caught.value) and str(folder) in str(caught.value)


def test_non_numeric_spacing_is_an_input_error(tmp_path):
    folder = tmp_path / "series"
    folder.mkdir()
    for path in sorted(SERIES_DIR.glob("*.dcm")):
        ds = pydicom.dcmread(path)
        ds["PixelSpacing"].VR = "LO"  # a value no reader can turn into numbers
        ds.PixelSpacing = ["abc", "def"]
        ds.save_as(folder / path.name)
    with pytest.raises(InputError, match="PixelSpacing"):
        read_dicom_series(folder)


def test_unit_vectors_with_rounding_still_read(tmp_path):
    """Orientation written with six decimals (as anonymisers do) is not refused."""
    ds = pydicom.dcmread(sorted(SERIES_DIR.glob("*.dcm"))[0], stop_before_pixels=True)
    rounded = [round(float(v), 4) for v in ds.ImageOrientationPatient]
    series = read_dicom_series(edited_series(tmp_path / "series", ImageOrientationPatient=rounded))
    assert series.volume.shape == read_dicom_series(SERIES_DIR).volume.shape


def test_require_modality_mr():
    assert require_modality(SERIES_DIR) == "MR"


@pytest.mark.parametrize("modality", ["CT", ""])
def test_require_modality_refuses_others(modality, tmp_path):
    folder = edited_series(tmp_path / "series", Modality=modality)
    with pytest.raises(InputError, match="MR") as caught:
        require_modality(folder)
    assert (modality or "modality-less") in str(caught.value)


def test_require_modality_needs_images(tmp_path):
    with pytest.raises(InputError, match="no DICOM images"):
        require_modality(tmp_path)
