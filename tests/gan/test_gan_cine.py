"""Tests for the cine (bSSFP-like) phantom, the CycleGAN's domain A (lgemri.phantom.cine)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from lgemri.errors import InputError
from lgemri.phantom import make_case
from lgemri.phantom.anatomy import Tissue
from lgemri.phantom.cine import CineContrast, cine_signal_table, make_cine_case, write_cine_phantom
from lgemri.volume import read_nifti

SEED = 11


@pytest.fixture(scope="module")
def pair():
    return make_cine_case(2, SEED), make_case(2, SEED)


def test_cine_has_the_lge_cases_anatomy(pair):
    cine, lge = pair
    assert cine.case_id == lge.case_id
    np.testing.assert_array_equal(cine.label.array, lge.label.array)
    np.testing.assert_allclose(cine.image.affine, lge.image.affine)
    assert cine.image.shape == lge.image.shape and cine.image.array.dtype == np.int16
    assert cine.truth["contrast"] == "cine" and cine.truth["infarct_voxels"] == lge.truth["infarct_voxels"]
    assert not np.array_equal(cine.image.array, lge.image.array)


def test_cine_contrast_shows_anatomy_not_scar(pair):
    cine, lge = pair
    label = cine.label.array

    def mean(case, cls):
        return float(case.image.array[label == cls].mean())

    assert mean(cine, 1) > 1.8 * mean(cine, 2)  # bright blood, grey myocardium
    assert lge.truth["infarct_voxels"] > 0
    # LGE: infarct far brighter than remote myocardium; cine: about the same
    assert mean(lge, 3) > 2.0 * mean(lge, 2)
    assert mean(cine, 3) < 1.3 * mean(cine, 2)


def test_signal_table_ordering():
    cine = CineContrast(60.0, 3.2, 50.0, 500.0, 0.0, 1.0, 1.0, 1.5)
    s = cine_signal_table(cine)
    assert s[Tissue.BLOOD] > s[Tissue.MYOCARDIUM] > s[Tissue.LUNG] > s[Tissue.AIR] == 0.0
    assert s[Tissue.FAT] > s[Tissue.MYOCARDIUM] and s[Tissue.INFARCT] == pytest.approx(s[Tissue.MYOCARDIUM])


def test_write_cine_phantom(tmp_path):
    index = write_cine_phantom(tmp_path, 1, SEED)
    data = json.loads(index.read_text())
    assert data["contrast"] == "cine" and data["cases"][0]["case_id"] == "Case_P001"
    image = read_nifti(tmp_path / "emidec" / "Case_P001" / "Images" / "Case_P001.nii.gz")
    label = read_nifti(tmp_path / "emidec" / "Case_P001" / "Contours" / "Case_P001.nii.gz")
    assert image.shape == label.shape
    with pytest.raises(InputError, match="at least 1"):
        write_cine_phantom(tmp_path, 0, SEED)
    with pytest.raises(InputError, match="emidec, dicom"):
        write_cine_phantom(tmp_path, 1, SEED, formats=("png",))
