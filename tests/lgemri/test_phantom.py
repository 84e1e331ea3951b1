"""Tests for the physics-informed LGE phantom (lgemri.phantom): determinism, EMIDEC shape,
label semantics, LGE contrast, ground truth, DICOM output and the EMIDEC pipeline on it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
from pydicom.uid import MRImageStorage
from scipy import ndimage

from lgemri import aha
from lgemri.dicom import read_dicom_series
from lgemri.emidec import load_case, parse_slice_name, prepare_dataset
from lgemri.errors import InputError
from lgemri.labels import CAVITY, INFARCT, MYOCARDIUM, NO_REFLOW
from lgemri.phantom import make_case, write_phantom
from lgemri.volume import read_nifti

SEED = 11  # the seed of the session fixtures (tests/conftest.py)
CROSS = ndimage.generate_binary_structure(2, 1)  # 4-connectivity in a slice
CROSS_INPLANE = CROSS[:, :, np.newaxis]  # erodes within each slice, never across slices


def pathological(cases):
    return [c for c in cases if c.case_id.startswith("Case_P")]


def relative_files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


# -- determinism --------------------------------------------------------------------------------


def test_make_case_is_deterministic(phantom_cases):
    again = make_case(3, SEED)
    first = phantom_cases[2]
    assert again.case_id == first.case_id == "Case_N003"
    assert np.array_equal(again.image.array, first.image.array)
    assert np.array_equal(again.label.array, first.label.array)
    assert np.array_equal(again.image.affine, first.image.affine)
    assert np.array_equal(again.label.affine, first.label.affine)
    assert again.truth == first.truth


def test_another_seed_gives_another_case(phantom_cases):
    other = make_case(1, SEED + 1)
    first = phantom_cases[0]
    assert other.case_id == first.case_id
    assert other.image.shape != first.image.shape or not np.array_equal(other.image.array, first.image.array)
    assert other.truth != first.truth


def test_write_phantom_is_byte_identical_and_independent_of_case_count(tmp_path, phantom_dir):
    a, b = tmp_path / "a", tmp_path / "b"
    write_phantom(a, 2, SEED)
    write_phantom(b, 2, SEED)
    files = relative_files(a)
    assert files == relative_files(b)
    assert "phantom.json" in files
    assert any(f.endswith(".nii.gz") for f in files) and any(f.endswith(".dcm") for f in files)
    for name in files:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name

    # Cases 1 and 2 are the same whether 2 or 3 cases are asked for (phantom_dir holds 3).
    three = relative_files(phantom_dir)
    assert set(files) - {"phantom.json"} < set(three)
    assert any("Case_N003" in f for f in three) and not any("Case_N003" in f for f in files)
    for name in files:
        if name != "phantom.json":
            assert (a / name).read_bytes() == (phantom_dir / name).read_bytes(), name
    index2 = json.loads((a / "phantom.json").read_text())
    index3 = json.loads((phantom_dir / "phantom.json").read_text())
    assert index2["seed"] == index3["seed"] == SEED
    assert index3["cases"][:2] == index2["cases"]
    assert [c["case_id"] for c in index3["cases"]] == ["Case_P001", "Case_P002", "Case_N003"]


# -- EMIDEC shape -------------------------------------------------------------------------------


def test_cases_have_emidec_geometry(phantom_cases):
    for case in phantom_cases:
        ni, nj, nk = case.image.shape
        assert case.label.shape == case.image.shape, case.case_id
        assert case.image.array.dtype == np.int16 and case.label.array.dtype == np.uint8
        assert 5 <= nk <= 13, case.case_id
        assert 140 <= ni <= 300 and 140 <= nj <= 300, case.case_id
        dx, dy, dz = case.image.spacing
        assert dx == pytest.approx(dy, abs=1e-6), case.case_id
        assert 1.2 <= dx <= 2.0, case.case_id
        assert 8.0 <= dz <= 13.0, case.case_id
        assert np.allclose(case.image.affine, case.label.affine)


def test_every_third_case_is_normal(phantom_cases):
    assert len(phantom_cases) == 9
    for number, case in enumerate(phantom_cases, start=1):
        normal = number % 3 == 0
        assert case.case_id == f"Case_{'N' if normal else 'P'}{number:03d}"
        assert case.truth["group"] == ("N" if normal else "P")
        has_scar = bool(np.isin(case.label.array, (INFARCT, NO_REFLOW)).any())
        assert has_scar != normal, case.case_id
        if normal:
            assert case.truth["territory"] is None and case.truth["infarct_voxels"] == 0
    normals = sum(c.case_id.startswith("Case_N") for c in phantom_cases)
    assert normals == 3  # a third of 9


# -- label semantics ----------------------------------------------------------------------------


def test_labels_are_emidec_classes(phantom_cases):
    for case in phantom_cases:
        values = set(np.unique(case.label.array).tolist())
        assert values <= {0, 1, 2, 3, 4}, case.case_id
        assert {0, 1, 2} <= values, case.case_id


def test_infarct_and_no_reflow_lie_in_the_lv_wall(phantom_cases):
    for case in phantom_cases:
        label = case.label.array
        for k in range(label.shape[2]):
            s = label[:, :, k]
            scar = np.isin(s, (INFARCT, NO_REFLOW))
            filled = ndimage.binary_fill_holes(s > 0)
            assert not (scar & ~filled).any(), (case.case_id, k)
            assert not (scar & (s == CAVITY)).any(), (case.case_id, k)


def test_no_reflow_is_surrounded_by_infarct(phantom_cases):
    """Each no-reflow component of a slice borders infarct (3): no-reflow is an infarct's core."""
    checked = 0
    for case in phantom_cases:
        label = case.label.array
        for k in range(label.shape[2]):
            s = label[:, :, k]
            parts, n = ndimage.label(s == NO_REFLOW, CROSS)
            for m in range(1, n + 1):
                border = ndimage.binary_dilation(parts == m, CROSS)
                assert (border & (s == INFARCT)).any(), (case.case_id, k, m)
                checked += 1
    assert checked > 0


def test_infarct_grows_from_the_subendocardium(phantom_cases):
    """Each infarct component ({3, 4}) of a slice with a cavity borders the cavity."""
    checked = 0
    for case in phantom_cases:
        label = case.label.array
        for k in range(label.shape[2]):
            s = label[:, :, k]
            cavity = s == CAVITY
            if not cavity.any():  # apex cap: no cavity to start from
                continue
            parts, n = ndimage.label(np.isin(s, (INFARCT, NO_REFLOW)), CROSS)
            for m in range(1, n + 1):
                border = ndimage.binary_dilation(parts == m, CROSS)
                assert (border & cavity).any(), (case.case_id, k, m, int((parts == m).sum()))
                checked += 1
    assert checked > 0


def test_cavity_is_enclosed_by_myocardium(phantom_cases):
    for case in phantom_cases:
        label = case.label.array
        cavity_slices = 0
        for k in range(label.shape[2]):
            s = label[:, :, k]
            cavity = s == CAVITY
            if not cavity.any():
                continue
            cavity_slices += 1
            next_to_background = ndimage.binary_dilation(s == 0, CROSS)
            assert not (cavity & next_to_background).any(), (case.case_id, k)
        assert cavity_slices >= 3, case.case_id


# -- LGE contrast -------------------------------------------------------------------------------


def class_means(case) -> dict[int, float]:
    """Mean image value per label class over the class eroded by one pixel in-plane."""
    image, label = case.image.array.astype(np.float64), case.label.array
    means = {}
    for value in (CAVITY, MYOCARDIUM, INFARCT, NO_REFLOW):
        mask = label == value
        if not mask.any():
            continue
        core = ndimage.binary_erosion(mask, CROSS_INPLANE, iterations=1)
        means[value] = float(image[core if core.any() else mask].mean())
    return means


def test_lge_contrast(phantom_cases):
    cases = pathological(phantom_cases)
    assert len(cases) == 6
    brighter_than_blood = 0
    for case in cases:
        means = class_means(case)
        assert means[INFARCT] > means[MYOCARDIUM], (case.case_id, means)
        assert means[CAVITY] > means[MYOCARDIUM], (case.case_id, means)
        if NO_REFLOW in means:
            assert means[NO_REFLOW] < means[INFARCT], (case.case_id, means)
        brighter_than_blood += means[INFARCT] > means[CAVITY]
    assert brighter_than_blood >= 2 / 3 * len(cases)


def test_normal_cases_have_dark_myocardium(phantom_cases):
    for case in phantom_cases:
        if case.case_id.startswith("Case_N"):
            means = class_means(case)
            assert means[CAVITY] > means[MYOCARDIUM], (case.case_id, means)


def test_image_values_are_12_bit(phantom_cases):
    for case in phantom_cases:
        assert case.image.array.min() >= 0 and case.image.array.max() <= 4095, case.case_id
        assert case.image.array.max() > 0


# -- variety ------------------------------------------------------------------------------------


def test_cases_vary(phantom_cases):
    misnull = [c.truth["misnull"] for c in phantom_cases]
    snr = [c.truth["snr_blood"] for c in phantom_cases]
    shapes = [c.image.shape for c in phantom_cases]
    assert len(set(misnull)) == len(phantom_cases)
    assert max(misnull) - min(misnull) > 0.05
    assert any(abs(m) > 0.07 for m in misnull)  # at least one noticeably mis-nulled scan
    assert len(set(snr)) == len(phantom_cases) and max(snr) - min(snr) > 5
    assert len({s[:2] for s in shapes}) > 1 and len({s[2] for s in shapes}) > 1
    assert len({c.truth["pixel_mm"] for c in phantom_cases}) > 1


def test_territory_can_be_forced():
    case = make_case(1, 5, territory="RCA")
    assert case.truth["territory"] == "RCA"
    segments = {int(k): v for k, v in case.truth["infarct_segments"].items()}
    assert segments
    rca = sum(v for k, v in segments.items() if k in aha.TERRITORIES["RCA"])
    assert set(aha.TERRITORIES["RCA"]) == {3, 4, 9, 10, 15}
    assert rca / sum(segments.values()) > 0.5, segments


def test_unknown_territory_is_an_input_error():
    with pytest.raises(InputError, match="territory"):
        make_case(1, 5, territory="XYZ")


# -- ground truth -------------------------------------------------------------------------------


def test_truth_matches_the_label(phantom_cases):
    for case in phantom_cases:
        label, truth = case.label.array, case.truth
        myo = int(np.isin(label, (MYOCARDIUM, INFARCT, NO_REFLOW)).sum())
        scar = int(np.isin(label, (INFARCT, NO_REFLOW)).sum())
        assert truth["shape"] == list(case.label.shape) == list(case.image.shape)
        assert truth["myocardium_voxels"] == myo
        assert truth["infarct_voxels"] == scar
        assert truth["no_reflow_voxels"] == int((label == NO_REFLOW).sum())
        assert truth["infarct_percent_lv"] == pytest.approx(100.0 * scar / myo, abs=1e-3)
        assert truth["pixel_mm"] == pytest.approx(case.image.spacing[0], abs=1e-6)
        assert truth["slice_spacing_mm"] == pytest.approx(case.image.spacing[2], abs=1e-6)
        assert truth["slice_thickness_mm"] <= truth["slice_spacing_mm"]
        assert (truth["infarct_percent_lv"] > 0) == case.case_id.startswith("Case_P")
        json.dumps(truth)  # JSON-ready


# -- DICOM --------------------------------------------------------------------------------------


def test_dicom_series_files(phantom_dir):
    truth = json.loads((phantom_dir / "phantom.json").read_text())["cases"][0]
    files = sorted((phantom_dir / "dicom" / "Case_P001").glob("*.dcm"))
    assert len(files) == truth["shape"][2]
    for path in files:
        ds = pydicom.dcmread(path)
        assert ds.SOPClassUID == MRImageStorage
        assert ds.Modality == "MR"
        assert ds.get("InversionTime") not in (None, "")
        assert float(ds.InversionTime) == pytest.approx(truth["inversion_time_ms"])
        assert float(ds.SliceThickness) <= float(ds.SpacingBetweenSlices)
        assert float(ds.SpacingBetweenSlices) == pytest.approx(truth["slice_spacing_mm"], abs=1e-4)


def test_dicom_matches_the_emidec_nifti(phantom_dir):
    for cid in ("Case_P001", "Case_P002", "Case_N003"):
        series = read_dicom_series(phantom_dir / "dicom" / cid)
        nifti = read_nifti(phantom_dir / "emidec" / cid / "Images" / f"{cid}.nii.gz")
        assert series.modality == "MR"
        assert np.array_equal(series.volume.array, nifti.array), cid
        assert np.abs(series.volume.affine - nifti.affine).max() < 1e-4, cid
        iop = np.array([float(v) for v in series.datasets[0].ImageOrientationPatient])
        assert np.abs(iop).max() < 0.99, (cid, iop)  # oblique: no axis-aligned direction
        assert np.count_nonzero(np.abs(iop) > 1e-3) >= 5, (cid, iop)


def test_nifti_matches_the_case(phantom_dir, phantom_cases):
    case = phantom_cases[0]
    image = read_nifti(phantom_dir / "emidec" / "Case_P001" / "Images" / "Case_P001.nii.gz")
    label = read_nifti(phantom_dir / "emidec" / "Case_P001" / "Contours" / "Case_P001.nii.gz")
    assert np.array_equal(image.array, case.image.array)
    assert np.array_equal(label.array, case.label.array)
    assert np.allclose(image.affine, case.image.affine, atol=1e-4)


# -- the EMIDEC pipeline on phantom cases -------------------------------------------------------


def test_load_case_reads_float64_phantom(tmp_path, phantom_dir, phantom_cases):
    root = tmp_path / "emidec"
    shutil.copytree(phantom_dir / "emidec" / "Case_P001", root / "Case_P001")
    for sub in ("Images", "Contours"):
        path = root / "Case_P001" / sub / "Case_P001.nii.gz"
        img = nib.load(str(path))
        data = np.asanyarray(img.dataobj).astype(np.float64)
        out = nib.Nifti1Image(data, img.affine)
        out.set_qform(img.affine, code=1)
        out.set_sform(img.affine, code=1)
        nib.save(out, str(path))
        assert nib.load(str(path)).get_data_dtype() == np.float64
    case = load_case(root, "Case_P001")
    truth = phantom_cases[0]
    assert case.group == "P"
    assert case.label.array.dtype == np.uint8
    assert np.array_equal(case.label.array, truth.label.array)
    assert np.array_equal(case.image.array, truth.image.array.astype(np.float64))
    assert np.allclose(case.label.affine, truth.label.affine, atol=1e-4)


def test_prepare_dataset_on_phantom(tmp_path, phantom_dir):
    out = tmp_path / "prepared"
    manifest = prepare_dataset(phantom_dir / "emidec", out, fractions=(0.5, 0.5, 0.0))
    assert manifest == out / "manifest.csv" and manifest.is_file()
    names = sorted(p.stem for p in (out / "slices" / "labels").glob("*.npy"))
    index = json.loads((phantom_dir / "phantom.json").read_text())
    assert len(names) == sum(c["shape"][2] for c in index["cases"])
    seen_flags = set()
    for name in names:
        fields = parse_slice_name(name)
        full = np.load(out / "slices" / "labels" / f"{name}.npy")
        roi = np.load(out / "roi" / "labels" / f"{name}.npy")
        has_scar = bool(np.isin(full, (INFARCT, NO_REFLOW)).any())
        assert fields["infarct"] == has_scar, name
        if has_scar:
            assert fields["no_reflow"] == bool((full == NO_REFLOW).any()), name
        else:
            assert fields["no_reflow"] is None, name
        if fields["group"] == "N":
            assert not has_scar, name
        assert roi.shape == (128, 128)
        assert int((roi > 0).sum()) == int((full > 0).sum()), name
        roi_image = np.load(out / "roi" / "images" / f"{name}.npy")
        assert roi_image.shape == (128, 128) and roi_image.dtype == np.float32
        seen_flags.add((fields["infarct"], fields["no_reflow"]))
    # Case_P001 has no-reflow, Case_P002 infarct without it, Case_N003 neither.
    assert seen_flags == {(False, None), (True, True), (True, False)}


# -- bad input ----------------------------------------------------------------------------------


def test_bad_arguments_are_input_errors(tmp_path):
    with pytest.raises(InputError, match="cases"):
        write_phantom(tmp_path / "zero", 0, 1)
    with pytest.raises(InputError, match="format"):
        write_phantom(tmp_path / "png", 1, 1, formats=("emidec", "png"))
    with pytest.raises(InputError):
        make_case(0, 1)
    assert not (tmp_path / "zero").exists() and not (tmp_path / "png").exists()
