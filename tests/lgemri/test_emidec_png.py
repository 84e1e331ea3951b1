"""The EMIDEC PNG importer: layout, orientation, recovered pixel size, bad input, prepare."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lgemri.emidec import load_case, prepare_dataset
from lgemri.emidec_png import (
    PNG_SIZE,
    degrade_like_png,
    find_png_cases,
    is_png_layout,
    load_png_case,
    recover_spacing,
)
from lgemri.errors import InputError
from lgemri.volume import Volume, read_nifti

REAL = Path(__file__).resolve().parents[3] / "shared" / "data" / "emidec-png"


def _write_png_case(root: Path, case_id: str, images: np.ndarray, labels: np.ndarray) -> None:
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "labels").mkdir(parents=True, exist_ok=True)
    for k in range(images.shape[2]):
        Image.fromarray(images[..., k]).save(root / "images" / f"{case_id}_slice{k:03d}.png")
        Image.fromarray(labels[..., k]).save(root / "labels" / f"{case_id}_slice{k:03d}.png")


@pytest.fixture(scope="module")
def png_root(phantom_dir, tmp_path_factory) -> Path:
    """The three phantom cases degraded exactly like the EMIDEC PNG copies."""
    root = tmp_path_factory.mktemp("emidec-png")
    for case_dir in sorted((phantom_dir / "emidec").glob("Case_*")):
        case = load_case(phantom_dir / "emidec", case_dir.name)
        _write_png_case(root, case.case_id, *degrade_like_png(case.image, case.label))
    return root


def test_layout_is_detected_and_cases_found(png_root, phantom_dir):
    assert is_png_layout(png_root)
    assert not is_png_layout(phantom_dir / "emidec")
    assert find_png_cases(png_root) == ["Case_N003", "Case_P001", "Case_P002"]


def test_slices_come_back_in_nifti_orientation(png_root, phantom_dir):
    truth = load_case(phantom_dir / "emidec", "Case_P001")
    case = load_png_case(png_root, "Case_P001")
    assert case.image.shape == (PNG_SIZE, PNG_SIZE, truth.image.shape[2])
    # nearest-neighbour resize of the truth, in the NIfTI orientation (no 180 degree turn left)
    ni, nj, _ = truth.label.shape
    ii = np.minimum((np.arange(PNG_SIZE) + 0.5) * ni / PNG_SIZE, ni - 1).astype(int)
    jj = np.minimum((np.arange(PNG_SIZE) + 0.5) * nj / PNG_SIZE, nj - 1).astype(int)
    expected = truth.label.array[np.ix_(ii, jj)]
    assert np.mean(case.label.array == expected) > 0.99
    assert case.image.array.max() == 255  # 8-bit by the volume's maximum


def test_recovered_pixel_size_is_close_to_the_truth(png_root, phantom_dir):
    for case_id in find_png_cases(png_root):
        truth = load_case(phantom_dir / "emidec", case_id)
        ni, nj, _ = truth.image.shape
        true = np.array([truth.image.spacing[0] * ni, truth.image.spacing[1] * nj]) / PNG_SIZE
        got = np.array(load_png_case(png_root, case_id).image.spacing[:2])
        # the stretch (ratio of the two sizes) within 10 %, the scale within 25 %
        assert abs((got[0] / got[1]) / (true[0] / true[1]) - 1) < 0.10, case_id
        assert abs(np.sqrt(got.prod() / true.prod()) - 1) < 0.25, case_id


def test_a_stretched_round_lv_gives_the_stretch_back():
    ii, jj = np.mgrid[:PNG_SIZE, :PNG_SIZE]
    label = np.zeros((PNG_SIZE, PNG_SIZE, 4), np.uint8)
    # a disc of 60 mm drawn at 1.5 x 1.0 mm pixels: 40 pixels across i, 60 across j
    label[((ii - 128) / 20.0) ** 2 + ((jj - 128) / 30.0) ** 2 <= 1.0] = 2
    s_i, s_j = recover_spacing(label, reference_mm=60.0)
    assert s_i / s_j == pytest.approx(1.5, rel=0.02)
    assert np.sqrt(s_i * s_j) == pytest.approx(np.sqrt(1.5), rel=0.03)


def test_prepare_writes_the_same_folder_as_for_nifti(png_root, tmp_path):
    out = tmp_path / "prep"
    prepare_dataset(png_root, out)
    with (out / "manifest.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert {r["case_id"] for r in rows} == {"Case_N003", "Case_P001", "Case_P002"}
    for row in rows:
        assert np.load(out / "roi" / "images" / f"{row['name']}.npy").shape == (128, 128)
        assert row["name"].startswith(f"EMIDEC_{row['case_id']}_slice_")
    cases = json.loads((out / "cases.json").read_text())
    assert all(row["split"] == cases[row["case_id"]]["split"] for row in rows)  # split by case
    assert all(c["layout"] == "png" for c in cases.values())
    # each case also as NIfTI at the recovered geometry, image and label on one grid
    image = read_nifti(out / "nifti" / "Case_P001" / "Images" / "Case_P001.nii.gz")
    label = read_nifti(out / "nifti" / "Case_P001" / "Contours" / "Case_P001.nii.gz")
    assert image.same_grid(label)
    assert np.allclose(image.spacing[:2], cases["Case_P001"]["original_spacing_mm"][:2], atol=1e-4)


def _copy(png_root: Path, tmp_path: Path) -> Path:
    root = tmp_path / "bad"
    shutil.copytree(png_root, root)
    return root


def test_missing_label_file_is_named(png_root, tmp_path):
    root = _copy(png_root, tmp_path)
    (root / "labels" / "Case_P001_slice002.png").unlink()
    with pytest.raises(InputError, match=r"labels/Case_P001_slice002\.png: label file not found"):
        load_png_case(root, "Case_P001")


def test_label_of_another_size_is_named(png_root, tmp_path):
    root = _copy(png_root, tmp_path)
    Image.fromarray(np.zeros((200, 256), np.uint8)).save(root / "labels" / "Case_P001_slice001.png")
    with pytest.raises(InputError, match=r"Case_P001_slice001\.png: label size \(200, 256\) differs"):
        load_png_case(root, "Case_P001")


def test_label_value_outside_the_classes_is_named(png_root, tmp_path):
    root = _copy(png_root, tmp_path)
    bad = np.zeros((PNG_SIZE, PNG_SIZE), np.uint8)
    bad[5, 5] = 7
    Image.fromarray(bad).save(root / "labels" / "Case_P002_slice000.png")
    with pytest.raises(InputError, match=r"Case_P002_slice000\.png: label values must lie in 0\.\.4, found 7"):
        load_png_case(root, "Case_P002")


def test_slices_of_one_case_with_different_sizes_are_named(png_root, tmp_path):
    root = _copy(png_root, tmp_path)
    for folder in ("images", "labels"):
        Image.fromarray(np.zeros((240, 240), np.uint8)).save(root / folder / "Case_N003_slice001.png")
    with pytest.raises(
        InputError, match=r"images/Case_N003_slice001\.png: size \(240, 240\) differs from the case's first slice"
    ):
        load_png_case(root, "Case_N003")


def test_a_gap_in_the_slice_numbers_is_named(png_root, tmp_path):
    root = _copy(png_root, tmp_path)
    for folder in ("images", "labels"):
        (root / folder / "Case_P001_slice001.png").unlink()
    with pytest.raises(InputError, match=r"Case_P001 has no slice 001"):
        load_png_case(root, "Case_P001")


def test_degrade_rotates_and_scales_like_the_png_copies():
    arr = np.zeros((64, 48, 1), np.float32)
    arr[0, 0, 0] = 4095.0  # the first voxel, the volume's maximum
    label = np.zeros((64, 48, 1), np.uint8)
    images, labels = degrade_like_png(Volume(arr, np.eye(4)), Volume(label, np.eye(4)))
    assert images.shape == (PNG_SIZE, PNG_SIZE, 1) and images.dtype == np.uint8
    assert images[-1, -1, 0] == images.max() > 0  # rotated by 180 degrees
    assert images[0, 0, 0] == 0


@pytest.mark.skipif(not REAL.is_dir(), reason=f"the real EMIDEC PNG data are not at {REAL}")
def test_the_real_data_import_with_a_plausible_pixel_size():
    cases = find_png_cases(REAL)
    assert len(cases) == 83
    case = load_png_case(REAL, cases[0])
    assert 0.4 < case.image.spacing[0] < 2.5 and 0.4 < case.image.spacing[1] < 2.5
