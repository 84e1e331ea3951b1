"""Tests for NIfTI geometry as ITK reads it (lgemri.volume.read_nifti).

Each file is written with nibabel the way a given tool writes it; the reader must give the grid
ITK (SimpleITK, nnU-Net) gives: spacing from ``pixdim``, direction and origin from the sform or
the qform in ITK's order.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest

from cardiac_mi.cli import main
from lgemri.dicom import read_dicom_series
from lgemri.errors import InputError
from lgemri.volume import Volume, read_nifti, write_nifti

EMIDEC_SPACING = (1.406, 1.406, 13.0)
SHAPE = (6, 7, 4)


def rotation(ax: float, ay: float, az: float) -> np.ndarray:
    """A rotation by ``ax``, ``ay``, ``az`` radians about x, y and z."""
    cx, sx, cy, sy, cz, sz = np.cos(ax), np.sin(ax), np.cos(ay), np.sin(ay), np.cos(az), np.sin(az)
    rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    return rz @ ry @ rx


def affine_of(direction: np.ndarray, spacing, origin) -> np.ndarray:
    affine = np.eye(4)
    affine[:3, :3] = np.asarray(direction, dtype=np.float64) * np.asarray(spacing, dtype=np.float64)
    affine[:3, 3] = origin
    return affine


OBLIQUE = affine_of(rotation(0.3, -0.5, 1.1), (1.25, 1.25, 8.0), (-40.5, 12.25, 70.0))
LPS_FLIP = np.diag([-1.0, -1.0, 1.0])


def data(dtype=np.float64) -> np.ndarray:
    return np.arange(np.prod(SHAPE), dtype=dtype).reshape(SHAPE)


def write_emidec_like(path: Path, direction=np.eye(3), origin=(10.0, -20.0, 30.0), pixdim=EMIDEC_SPACING) -> Path:
    """As EMIDEC distributes its cases: float64, unit-scaled sform (code 2), no qform, real pixdim."""
    unit_affine = affine_of(direction, (1.0, 1.0, 1.0), origin)
    img = nib.Nifti1Image(data(), unit_affine)
    img.set_sform(unit_affine, code=2)
    img.set_qform(None, code=0)
    img.header["pixdim"][1:4] = pixdim
    nib.save(img, str(path))
    header = nib.load(str(path)).header
    assert int(header["sform_code"]) == 2 and int(header["qform_code"]) == 0
    assert header.get_data_dtype() == np.float64
    return path


def warnings_of(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "lgemri.volume" and r.levelno >= logging.WARNING]


# -- EMIDEC's headers: pixdim wins over the unit-scaled sform -----------------------------------


@pytest.mark.parametrize(
    "direction",
    [np.eye(3), LPS_FLIP, rotation(0.0, 0.0, 0.2)],
    ids=["identity", "lps-flip", "rotated"],
)
def test_emidec_like_file_takes_spacing_from_pixdim(tmp_path, caplog, direction):
    path = write_emidec_like(tmp_path / "Case_P001.nii.gz", direction=direction)
    with caplog.at_level(logging.WARNING, logger="lgemri.volume"):
        volume = read_nifti(path)
    np.testing.assert_allclose(volume.spacing, EMIDEC_SPACING, rtol=1e-6)
    np.testing.assert_allclose(volume.direction, direction, atol=1e-6)
    np.testing.assert_allclose(volume.origin, (10.0, -20.0, 30.0), atol=1e-5)
    assert volume.array.dtype == np.float64 and np.array_equal(volume.array, data())
    messages = warnings_of(caplog)
    assert len(messages) == 1, messages
    assert "Case_P001.nii.gz" in messages[0]
    assert "sform column norms 1 x 1 x 1 mm differ from pixdim 1.406 x 1.406 x 13 mm" in messages[0]


# -- which transform ITK takes --------------------------------------------------------------------


def _write(path: Path, sform, scode: int, qform, qcode: int, pixdim=None) -> Path:
    img = nib.Nifti1Image(data(np.float32), None)
    img.set_qform(qform, code=qcode)  # also sets pixdim from the qform's zooms
    img.set_sform(sform, code=scode)
    if pixdim is not None:
        img.header["pixdim"][1:4] = pixdim
    nib.save(img, str(path))
    return path


UNIT_OBLIQUE = affine_of(rotation(0.3, -0.5, 1.1), (1.0, 1.0, 1.0), (-40.5, 12.25, 70.0))
OTHER_OBLIQUE = affine_of(rotation(-0.2, 0.4, 0.0), (1.25, 1.25, 8.0), (5.0, 6.0, 7.0))


@pytest.mark.parametrize(
    "sform, scode, qform, qcode, expected, warning",
    [
        # other tools (nibabel, ITK, dcm2niix): qform and sform both scanner-coded, consistent with pixdim
        (OBLIQUE, 1, OBLIQUE, 1, OBLIQUE, None),
        (OBLIQUE, 2, OBLIQUE, 1, OBLIQUE, None),
        # only a qform
        (None, 0, OBLIQUE, 1, OBLIQUE, None),
        # an aligned-coded sform that disagrees with a coded qform: ITK takes the qform (nibabel would not)
        (OTHER_OBLIQUE, 2, OBLIQUE, 1, OBLIQUE, "using the qform"),
        # a scanner-coded sform wins over a different qform
        (OTHER_OBLIQUE, 1, OBLIQUE, 1, OTHER_OBLIQUE, None),
    ],
    ids=["both-code-1", "sform-2-qform-1", "qform-only", "aligned-sform-loses", "scanner-sform-wins"],
)
def test_transform_precedence(tmp_path, caplog, sform, scode, qform, qcode, expected, warning):
    path = _write(tmp_path / "case.nii.gz", sform, scode, qform, qcode)
    with caplog.at_level(logging.WARNING, logger="lgemri.volume"):
        volume = read_nifti(path)
    np.testing.assert_allclose(volume.affine, expected, atol=1e-5)
    np.testing.assert_allclose(volume.spacing, (1.25, 1.25, 8.0), rtol=1e-6)  # pixdim, from the qform
    messages = warnings_of(caplog)
    if warning is None:
        assert messages == []
        assert np.array_equal(volume.affine, nib.load(str(path)).affine)  # exactly what nibabel reads
    else:
        assert len(messages) == 1 and warning in messages[0] and "case.nii.gz" in messages[0], messages


def test_scanner_sform_with_other_scales_keeps_its_direction_and_origin(tmp_path, caplog):
    """The scanner-sform case above: direction and origin from the sform, spacing from pixdim."""
    path = _write(tmp_path / "case.nii.gz", UNIT_OBLIQUE, 1, OBLIQUE, 1)
    with caplog.at_level(logging.WARNING, logger="lgemri.volume"):
        volume = read_nifti(path)
    np.testing.assert_allclose(volume.direction, UNIT_OBLIQUE[:3, :3], atol=1e-6)
    np.testing.assert_allclose(volume.origin, UNIT_OBLIQUE[:3, 3], atol=1e-5)
    np.testing.assert_allclose(volume.spacing, (1.25, 1.25, 8.0), rtol=1e-6)
    assert len(warnings_of(caplog)) == 1


def test_neither_code_uses_itk_default_geometry(tmp_path, caplog):
    img = nib.Nifti1Image(data(np.int16), None)
    img.header.set_zooms((1.5, 2.0, 3.0))
    path = tmp_path / "bare.nii"
    nib.save(img, str(path))
    header = nib.load(str(path)).header
    assert int(header["sform_code"]) == 0 and int(header["qform_code"]) == 0
    with caplog.at_level(logging.WARNING, logger="lgemri.volume"):
        volume = read_nifti(path)
    # ITK: identity direction in LPS, origin 0 -> in RAS x and y are flipped
    np.testing.assert_allclose(volume.affine, np.diag([-1.5, -2.0, 3.0, 1.0]), atol=1e-7)
    messages = warnings_of(caplog)
    assert len(messages) == 1 and "bare.nii" in messages[0] and "neither" in messages[0]


def test_skewed_sform_without_qform_is_orthonormalised(tmp_path, caplog):
    skewed = affine_of(np.eye(3), (1.25, 1.25, 8.0), (1.0, 2.0, 3.0))
    skewed[0, 1] = 0.1  # shear i into j
    path = _write(tmp_path / "skewed.nii.gz", skewed, 2, None, 0, pixdim=(1.25, 1.25, 8.0))
    with caplog.at_level(logging.WARNING, logger="lgemri.volume"):
        volume = read_nifti(path)
    np.testing.assert_allclose(volume.direction @ volume.direction.T, np.eye(3), atol=1e-9)
    np.testing.assert_allclose(volume.spacing, (1.25, 1.25, 8.0), rtol=1e-6)
    np.testing.assert_allclose(volume.origin, (1.0, 2.0, 3.0))
    assert any("not orthonormal" in m and "skewed.nii.gz" in m for m in warnings_of(caplog))


@pytest.mark.parametrize(
    "axis, value",
    [(1, 0.0), (2, 0.0), (3, 0.0), (3, np.nan), (1, np.inf)],
    ids=["i-zero", "j-zero", "k-zero", "k-nan", "i-inf"],
)
def test_unusable_pixdim_is_an_input_error(tmp_path, axis, value):
    path = tmp_path / "Case_N042.nii.gz"
    pixdim = list(EMIDEC_SPACING)
    pixdim[axis - 1] = value
    write_emidec_like(path, pixdim=pixdim)
    with pytest.raises(InputError, match=re.escape(str(path)) + rf".*pixdim\[{axis}\]"):
        read_nifti(path)


# -- files this product writes read back unchanged ---------------------------------------------


@pytest.mark.parametrize(
    "affine, dtype",
    [
        (affine_of(np.eye(3), (1.0, 1.0, 1.0), (0.0, 0.0, 0.0)), np.uint8),
        (affine_of(LPS_FLIP, EMIDEC_SPACING, (120.0, 95.5, -33.0)), np.float32),
        (OBLIQUE, np.int16),
        (affine_of(rotation(1.2, 0.1, -2.0), (0.7, 0.7, 10.0), (3.0, -4.0, 5.0)), np.float64),
    ],
    ids=["unit", "lps", "oblique", "oblique-thin"],
)
def test_write_then_read_is_unchanged(tmp_path, caplog, affine, dtype):
    original = Volume(data(dtype), affine)
    path = write_nifti(original, tmp_path / "round.nii.gz")
    with caplog.at_level(logging.WARNING, logger="lgemri.volume"):
        back = read_nifti(path)
    assert back.array.dtype == np.dtype(dtype) and np.array_equal(back.array, original.array)
    assert np.array_equal(back.affine, nib.load(str(path)).affine)  # exactly as nibabel read it before
    np.testing.assert_allclose(back.affine, affine, atol=1e-5)
    assert warnings_of(caplog) == []


# -- the CLI shares the reader ------------------------------------------------------------------


def test_convert_emidec_like_nifti_to_dicom_keeps_pixdim_spacing(tmp_path, restore_logging):
    src = write_emidec_like(tmp_path / "Case_P001.nii.gz", direction=LPS_FLIP)
    out = tmp_path / "dicom"
    assert main(["-q", "convert", "--input", str(src), "--out", str(out)]) == 0
    files = sorted(out.glob("*.dcm"))
    assert len(files) == SHAPE[2]
    first = pydicom.dcmread(str(files[0]))
    np.testing.assert_allclose([float(v) for v in first.PixelSpacing], [1.406, 1.406], rtol=1e-6)
    series = read_dicom_series(out)
    np.testing.assert_allclose(series.volume.spacing, EMIDEC_SPACING, rtol=1e-5)
