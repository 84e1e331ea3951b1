"""Tests for lgemri.emidec on small EMIDEC-shaped cases written by the fixtures."""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from lgemri.emidec import (
    MANIFEST_FIELDS,
    find_cases,
    load_case,
    parse_slice_name,
    prepare_dataset,
    read_clinical,
    slice_name,
    split_cases,
)
from lgemri.errors import InputError
from lgemri.volume import Volume, write_nifti

SHAPE = (160, 180, 7)
SPACING = (1.6, 1.6, 10.0)
# case id -> (infarct, no-reflow, labelled)
CASES = {
    "Case_N001": (False, False, True),
    "Case_N002": (False, False, True),
    "Case_N003": (False, False, True),
    "Case_P001": (True, True, True),
    "Case_P002": (True, False, True),
    "Case_P003": (True, True, True),
    "Case_P004": (True, False, False),  # a test case: no Contours
}
CLINICAL_P001 = "GBS: N\nSEX: F\nAGE: 53\n\nTOBACCO: Y\nDIABETES: N\nKILLIP: 1\nFEVG: 60\nNTProBNP: 50\n"


def oblique_affine(shift_mm: float = 0.0) -> np.ndarray:
    a, b = np.deg2rad(20.0), np.deg2rad(35.0)
    rx = np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])
    rz = np.array([[np.cos(b), -np.sin(b), 0], [np.sin(b), np.cos(b), 0], [0, 0, 1]])
    affine = np.eye(4)
    affine[:3, :3] = rz @ rx @ np.diag(SPACING)
    affine[:3, 3] = (-130.0 + shift_mm, 95.0, 20.0)
    return affine


def make_label(centre, infarct: bool, no_reflow: bool, shape=SHAPE) -> np.ndarray:
    """LV on slices 1-5: cavity disc, myocardial ring, infarct sector on 2-5, no-reflow on 3-4."""
    ii, jj = np.meshgrid(np.arange(shape[0]), np.arange(shape[1]), indexing="ij")
    label = np.zeros(shape, np.uint8)
    for k in range(1, shape[2] - 1):
        di, dj = ii - centre[0] - 0.8 * k, jj - centre[1] + 0.6 * k
        r, angle = np.hypot(di, dj), np.arctan2(dj, di)
        sl = label[..., k]
        sl[r < 19] = 2
        sl[r < 12] = 1
        if infarct and 2 <= k <= 5:
            sl[(r >= 12) & (r < 19) & (angle > -0.5) & (angle < 0.9)] = 3
        if no_reflow and 3 <= k <= 4:
            sl[(r >= 14) & (r < 17) & (angle > -0.2) & (angle < 0.5)] = 4
    return label


def make_image(label: np.ndarray, seed: int) -> np.ndarray:
    """A float64 LGE-like image: dark myocardium ring, bright blood and infarct."""
    intensity = np.array([80.0, 400.0, 60.0, 700.0, 50.0])
    rng = np.random.default_rng(seed)
    return intensity[label] + rng.normal(0.0, 5.0, label.shape)


def write_case(root: Path, case_id: str, image, label=None, affine=None, label_affine=None):
    affine = oblique_affine() if affine is None else affine
    write_nifti(Volume(np.asarray(image, np.float64), affine), root / case_id / "Images" / f"{case_id}.nii.gz")
    if label is not None:
        label_affine = affine if label_affine is None else label_affine
        write_nifti(
            Volume(np.asarray(label, np.float64), label_affine), root / case_id / "Contours" / f"{case_id}.nii.gz"
        )


@pytest.fixture(scope="module")
def emidec(tmp_path_factory) -> tuple[Path, dict[str, np.ndarray]]:
    """An EMIDEC root with 7 cases (6 labelled) and the true labels."""
    root = tmp_path_factory.mktemp("emidec")
    truth = {}
    for n, (case_id, (infarct, no_reflow, labelled)) in enumerate(CASES.items()):
        label = make_label((70.0 + 3 * n, 95.0 - 2 * n), infarct, no_reflow)
        truth[case_id] = label
        write_case(root, case_id, make_image(label, n), label if labelled else None)
    (root / "Case P001.txt").write_text(CLINICAL_P001)
    (root / "Case_P002" / "Case P002.txt").write_text("SEX: M\nAGE: 71\nFEVG: 45\n")
    (root / "notes").mkdir()
    (root / "Case_X001").mkdir()
    return root, truth


@pytest.fixture(scope="module")
def prepared(emidec, tmp_path_factory):
    root, _ = emidec
    out = tmp_path_factory.mktemp("prepared")
    manifest = prepare_dataset(root, out, spacing=1.0, roi_size=96, seed=3)
    return out, manifest


# -- layout and loading ---------------------------------------------------------------------------


def test_find_cases_lists_case_folders_with_images(emidec):
    root, _ = emidec
    assert find_cases(root) == sorted(CASES)


def test_find_cases_missing_or_empty_root(tmp_path):
    with pytest.raises(InputError, match=str(tmp_path / "nowhere")):
        find_cases(tmp_path / "nowhere")
    with pytest.raises(InputError, match=str(tmp_path)):
        find_cases(tmp_path)


def test_load_case_float64_storage_gives_uint8_truth(emidec):
    root, truth = emidec
    case = load_case(root, "Case_P001")
    assert nib.load(str(case.label_path)).get_data_dtype() == np.float64
    assert case.group == "P" and case.case_id == "Case_P001"
    assert case.label.array.dtype == np.uint8
    np.testing.assert_array_equal(case.label.array, truth["Case_P001"])
    assert case.image.array.dtype == np.float64 and case.image.shape == SHAPE
    np.testing.assert_allclose(case.image.spacing, SPACING, atol=1e-5)
    np.testing.assert_allclose(case.label.affine, case.image.affine)


def test_clinical_files_in_root_and_case_folder(emidec):
    root, _ = emidec
    p001 = load_case(root, "Case_P001").clinical
    assert p001["SEX"] == "F" and p001["AGE"] == "53" and p001["NTProBNP"] == "50"
    assert len(p001) == 8
    assert load_case(root, "Case_P002").clinical == {"SEX": "M", "AGE": "71", "FEVG": "45"}
    assert load_case(root, "Case_N001").clinical == {}


def test_malformed_clinical_line_names_file_and_line(tmp_path):
    path = tmp_path / "Case P009.txt"
    path.write_text("SEX: F\n\nAGE 53\n")
    with pytest.raises(InputError, match="line 3") as err:
        read_clinical(path)
    assert str(path) in str(err.value)


def test_unlabelled_case_loads_without_label_unless_required(emidec):
    root, _ = emidec
    assert load_case(root, "Case_P004", require_label=False).label is None
    missing = root / "Case_P004" / "Contours" / "Case_P004.nii.gz"
    with pytest.raises(InputError, match=str(missing)):
        load_case(root, "Case_P004")


def test_missing_root_and_image(tmp_path):
    with pytest.raises(InputError, match=str(tmp_path / "nowhere")):
        load_case(tmp_path / "nowhere", "Case_N001")
    (tmp_path / "Case_N007" / "Contours").mkdir(parents=True)
    with pytest.raises(InputError, match=str(tmp_path / "Case_N007" / "Images")):
        load_case(tmp_path, "Case_N007")


def _bad_case(tmp_path, label, label_affine=None) -> tuple[Path, Path]:
    good = make_label((80.0, 90.0), True, True)
    write_case(tmp_path, "Case_P009", make_image(good, 0), label, label_affine=label_affine)
    case_dir = tmp_path / "Case_P009"
    return case_dir / "Images" / "Case_P009.nii.gz", case_dir / "Contours" / "Case_P009.nii.gz"


def test_shape_mismatch_names_both_files(tmp_path):
    image_path, label_path = _bad_case(tmp_path, np.zeros((160, 180, 6)))
    with pytest.raises(InputError) as err:
        load_case(tmp_path, "Case_P009")
    message = str(err.value)
    assert str(label_path) in message and str(image_path) in message
    assert "(160, 180, 6)" in message and "(160, 180, 7)" in message


def test_affine_mismatch_names_both_files(tmp_path):
    label = make_label((80.0, 90.0), True, True)
    image_path, label_path = _bad_case(tmp_path, label, label_affine=oblique_affine(0.5))
    with pytest.raises(InputError, match="0.5") as err:
        load_case(tmp_path, "Case_P009")
    assert str(label_path) in str(err.value) and str(image_path) in str(err.value)


def test_non_integer_label_value(tmp_path):
    label = make_label((80.0, 90.0), True, True).astype(np.float64)
    label[50, 60, 3] = 1.5
    _, label_path = _bad_case(tmp_path, label)
    with pytest.raises(InputError, match="1.5") as err:
        load_case(tmp_path, "Case_P009")
    assert str(label_path) in str(err.value)


def test_label_within_tolerance_is_accepted(tmp_path):
    truth = make_label((80.0, 90.0), True, True)
    _bad_case(tmp_path, truth + 2e-4)
    np.testing.assert_array_equal(load_case(tmp_path, "Case_P009").label.array, truth)


def test_out_of_range_label_value(tmp_path):
    label = make_label((80.0, 90.0), True, True)
    label[5, 5, 0] = 7
    _, label_path = _bad_case(tmp_path, label)
    with pytest.raises(InputError, match="found 7") as err:
        load_case(tmp_path, "Case_P009")
    assert str(label_path) in str(err.value)


# -- slice names ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "suffix", "infarct", "no_reflow"),
    [
        ((0, 1, 2), "NoInf_NoRef", False, None),
        ((0, 1, 2, 3), "Inf_N", True, False),
        ((0, 2, 3, 4), "Inf_Y", True, True),
        ((0, 2, 4), "Inf_Y", True, True),
    ],
)
def test_slice_name_states_and_round_trip(values, suffix, infarct, no_reflow):
    label2d = np.array(values, np.uint8).reshape(1, -1)
    name = slice_name("Case_P012", 3, label2d)
    assert name == f"EMIDEC_Case_P012_slice_3_{suffix}"
    assert parse_slice_name(name) == {
        "case_id": "Case_P012",
        "group": "P",
        "slice": 3,
        "infarct": infarct,
        "no_reflow": no_reflow,
    }


def test_parse_accepts_simulated_case_ids():
    fields = parse_slice_name("EMIDEC_Case_PSim0001_slice_12_Inf_N")
    assert fields["case_id"] == "Case_PSim0001" and fields["group"] == "P"
    assert fields["slice"] == 12


@pytest.mark.parametrize(
    "name",
    [
        "EMIDEC_Case_P012_slice_3_Inf",
        "EMIDEC_Case_X012_slice_3_Inf_Y",
        "Case_P012_slice_3_Inf_Y",
        "EMIDEC_Case_P012_slice_x_Inf_Y",
        "EMIDEC_Case_P012_slice_3_NoInf_Y",
        "EMIDEC_Case_P012_slice_3_Inf_NoRef",
        "EMIDEC_Case_P012_slice_3_Inf_Y.npy",
    ],
)
def test_malformed_slice_name(name):
    with pytest.raises(InputError, match=name.replace(".", r"\.")):
        parse_slice_name(name)


# -- split ----------------------------------------------------------------------------------------


def _cohort() -> list[tuple[str, str]]:
    return (
        [(f"Case_N{i:03d}", "normal") for i in range(20)]
        + [(f"Case_P{i:03d}", "infarct") for i in range(13)]
        + [(f"Case_P{i:03d}", "no_reflow") for i in range(100, 103)]
    )


def test_split_is_deterministic_stratified_and_disjoint():
    cohort = _cohort()
    split = split_cases(cohort, seed=7)
    assert split == split_cases(list(reversed(cohort)), seed=7)
    assert split != split_cases(cohort, seed=8)
    assert set(split) == {c for c, _ in cohort}  # every case exactly once
    assert set(split.values()) == {"train", "val", "test"}
    for category, expected in [("normal", (14, 3, 3)), ("infarct", (9, 2, 2)), ("no_reflow", (1, 1, 1))]:
        ids = [c for c, cat in cohort if cat == category]
        counts = tuple(sum(split[c] == s for c in ids) for s in ("train", "val", "test"))
        assert counts == expected, category


def test_split_without_validation_fraction():
    split = split_cases(_cohort(), fractions=(0.8, 0.0, 0.2))
    assert "val" not in split.values()


@pytest.mark.parametrize("fractions", [(0.7, 0.2, 0.2), (0.5, 0.5), (1.2, -0.1, -0.1), (float("nan"), 0.5, 0.5)])
def test_bad_fractions(fractions, emidec, tmp_path):
    with pytest.raises(InputError, match="fractions"):
        split_cases(_cohort(), fractions=fractions)
    with pytest.raises(InputError, match="fractions"):
        prepare_dataset(emidec[0], tmp_path / "out", fractions=fractions)
    assert not (tmp_path / "out").exists()


# -- prepare_dataset ------------------------------------------------------------------------------


def read_manifest(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        assert tuple(reader.fieldnames) == MANIFEST_FIELDS
        return list(reader)


def test_prepare_writes_slices_crops_and_manifest(prepared, emidec):
    out, manifest = prepared
    _, truth = emidec
    assert manifest == out / "manifest.csv"
    rows = read_manifest(manifest)
    labelled = [c for c, (_, _, has_label) in CASES.items() if has_label]
    assert len(rows) == len(labelled) * SHAPE[2]
    assert {r["case_id"] for r in rows} == set(labelled)
    for kind in ("slices", "roi"):
        for part in ("images", "labels"):
            files = {p.stem for p in (out / kind / part).glob("*.npy")}
            assert files == {r["name"] for r in rows}, (kind, part)
    for row in rows:
        fields = parse_slice_name(row["name"])
        assert fields["case_id"] == row["case_id"] and fields["slice"] == int(row["slice"])
        assert fields["group"] == row["group"]
        assert int(row["infarct"]) == fields["infarct"] == (int(row["infarct_pixels"]) > 0)
        assert int(row["no_reflow"]) == bool(fields["no_reflow"])
        assert int(row["no_reflow"]) == (int(row["no_reflow_pixels"]) > 0)
        image = np.load(out / "slices" / "images" / f"{row['name']}.npy")
        label = np.load(out / "slices" / "labels" / f"{row['name']}.npy")
        assert image.dtype == np.float32 and label.dtype == np.uint8
        assert image.shape == label.shape == (256, 288)
        assert (int(row["shape_i"]), int(row["shape_j"])) == label.shape
        assert int(row["lv_pixels"]) == int((label > 0).sum())
        assert float(row["spacing_mm"]) == 1.0
        assert float(row["slice_spacing_mm"]) == pytest.approx(10.0, abs=1e-4)
        roi_label = np.load(out / "roi" / "labels" / f"{row['name']}.npy")
        roi_image = np.load(out / "roi" / "images" / f"{row['name']}.npy")
        assert roi_label.shape == roi_image.shape == (96, 96)
        assert roi_image.dtype == np.float32 and roi_label.dtype == np.uint8
        i0, j0, i1, j1 = (int(row[f"roi_{a}"]) for a in ("i0", "j0", "i1", "j1"))
        np.testing.assert_array_equal(roi_label, label[i0:i1, j0:j1])
        assert int((roi_label > 0).sum()) == int(row["lv_pixels"])  # the whole LV is inside
    # Slice-level labels come from the true (unresampled) slices.
    for row in rows:
        true_slice = truth[row["case_id"]][..., int(row["slice"])]
        assert row["name"] == slice_name(row["case_id"], int(row["slice"]), true_slice)


def test_prepare_categories_split_and_cases_json(prepared):
    out, manifest = prepared
    cases = json.loads((out / "cases.json").read_text())
    assert sorted(cases) == [c for c, (_, _, has_label) in CASES.items() if has_label]
    expected = {"Case_N001": "normal", "Case_P001": "no_reflow", "Case_P002": "infarct"}
    for case_id, category in expected.items():
        assert cases[case_id]["category"] == category
    assert cases["Case_P001"]["clinical"]["AGE"] == "53"
    info = cases["Case_N002"]
    assert info["original_shape"] == list(SHAPE) and info["resampled_shape"] == [256, 288, 7]
    assert info["n_slices"] == 7 and len(info["roi_box"]) == 4 and len(info["lv_centre_ij"]) == 2
    np.testing.assert_allclose(info["original_spacing_mm"], SPACING, atol=1e-5)
    for row in read_manifest(manifest):
        assert row["split"] == cases[row["case_id"]]["split"]
        assert row["category"] == cases[row["case_id"]]["category"]
    normals = [cases[f"Case_N00{i}"]["split"] for i in (1, 2, 3)]
    assert sorted(normals) == ["test", "train", "val"]  # three normals: one in each split


def test_prepare_leaves_no_temporary_files(prepared):
    out, _ = prepared
    leftovers = [p for p in out.rglob("*") if ".tmp" in p.name or p.name.startswith(".")]
    assert leftovers == []


def test_prepare_skips_unlabelled_cases_with_a_warning(emidec, tmp_path, caplog):
    root, _ = emidec
    with caplog.at_level(logging.WARNING, logger="lgemri.emidec"):
        prepare_dataset(root, tmp_path / "out", roi_size=96)
    assert any("Case_P004" in r.getMessage() for r in caplog.records)
    assert not list((tmp_path / "out" / "slices" / "labels").glob("*Case_P004*"))


def test_prepare_warns_when_the_crop_cuts_the_lv(emidec, tmp_path, caplog):
    root, _ = emidec
    with caplog.at_level(logging.WARNING, logger="lgemri.emidec"):
        prepare_dataset(root, tmp_path / "out", roi_size=24)
    assert any("cuts off LV" in r.getMessage() for r in caplog.records)


def test_prepare_without_labelled_cases(tmp_path):
    label = make_label((80.0, 90.0), False, False)
    write_case(tmp_path / "root", "Case_N001", make_image(label, 0))
    with pytest.raises(InputError, match="no EMIDEC case with a label"):
        prepare_dataset(tmp_path / "root", tmp_path / "out")
