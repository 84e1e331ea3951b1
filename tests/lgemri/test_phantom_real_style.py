"""Tests for the phantom's domain-randomised ``style="real"`` (lgemri.phantom.real): determinism,
the classic style untouched, lungs with signal, the LGE signature under the label, the documented
geometry, 8- and 12-bit values and zero-padded strips."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import ndimage

from cardiac_mi.cli import build_parser
from lgemri.errors import InputError
from lgemri.labels import CAVITY, INFARCT, MYOCARDIUM, NO_REFLOW
from lgemri.phantom import make_case, write_phantom
from lgemri.phantom.cases import draw_subject
from lgemri.phantom.real import RealTissue, make_real_case, sample_real_geometry

SEED = 31  # cases 1-5: 8- and 12-bit, PSIR-like and magnitude, no-reflow, padded strips; ~8 s in all
CASES = 5
CROSS = ndimage.generate_binary_structure(2, 1)[:, :, np.newaxis]  # in-plane 4-connectivity


@pytest.fixture(scope="module")
def real_cases():
    """Cases 1-5 of seed 31 in the real style, each with its centre-plane tissue codes."""
    return [make_real_case(n, SEED, keep_tissue=True) for n in range(1, CASES + 1)]


def core_mean(image: np.ndarray, mask: np.ndarray, iterations: int = 1) -> float | None:
    core = ndimage.binary_erosion(mask, CROSS, iterations=iterations)
    use = core if core.sum() >= 20 else mask
    return float(image[use].mean()) if use.any() else None


def padding_mask(case) -> np.ndarray:
    mask = np.zeros(case.image.shape, dtype=bool)
    for edge, width in case.truth["zero_padding_px"].items():
        axis, side = (0 if edge.startswith("i") else 1), edge.split("_")[1]
        index = [slice(None)] * 3
        index[axis] = slice(0, width) if side == "low" else slice(case.image.shape[axis] - width, None)
        mask[tuple(index)] = True
    return mask


# -- determinism and the classic style --------------------------------------------------------


def test_real_style_is_deterministic(real_cases):
    first, _ = real_cases[1]
    again = make_case(2, SEED, style="real")  # without the tissue maps: the same draws
    assert again.case_id == first.case_id == "Case_P002"
    assert np.array_equal(again.image.array, first.image.array)
    assert np.array_equal(again.label.array, first.label.array)
    assert np.array_equal(again.image.affine, first.image.affine)
    assert again.truth == first.truth


def test_write_phantom_real_is_byte_identical_and_independent_of_case_count(tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    write_phantom(one, 1, SEED, formats=("emidec",), style="real")
    write_phantom(two, 2, SEED, formats=("emidec",), style="real")
    for sub in ("Images", "Contours"):
        name = f"emidec/Case_P001/{sub}/Case_P001.nii.gz"
        assert (one / name).read_bytes() == (two / name).read_bytes(), name
    index = json.loads((two / "phantom.json").read_text())
    assert index["style"] == "real" and index["seed"] == SEED
    assert [c["case_id"] for c in index["cases"]] == ["Case_P001", "Case_P002"]
    assert index["cases"][0] == json.loads((one / "phantom.json").read_text())["cases"][0]


def test_styles_share_the_heart_and_classic_is_the_default(real_cases):
    classic = make_case(1, SEED)
    assert make_case(1, SEED, style="classic").truth == classic.truth
    real, _ = real_cases[0]
    assert "style" not in classic.truth and real.truth["style"] == "real"
    for key in ("lv_endo_diameter_base_mm", "lv_wall_base_mm", "lv_length_mm", "territory", "max_transmurality"):
        assert real.truth[key] == classic.truth[key], key


def test_unknown_style_is_an_input_error(tmp_path):
    with pytest.raises(InputError, match="style"):
        make_case(1, SEED, style="photo")
    with pytest.raises(InputError, match="style"):
        write_phantom(tmp_path / "cine", 1, SEED, contrast="cine", style="real")
    assert not (tmp_path / "cine").exists()
    parser = build_parser()
    assert parser.parse_args(["phantom", "--out", "x"]).style == "classic"
    assert parser.parse_args(["phantom", "--out", "x", "--style", "real"]).style == "real"
    with pytest.raises(SystemExit):
        parser.parse_args(["phantom", "--out", "x", "--style", "photo"])


# -- appearance -------------------------------------------------------------------------------


def test_lungs_are_mid_grey_not_black(real_cases):
    """The lungs' mean is clearly above the air outside the body (PSIR-like or magnitude)."""
    checked = 0
    for case, tissue in real_cases:
        image = case.image.array.astype(np.float64)
        codes = tissue.array
        inside = ~padding_mask(case)
        air = ndimage.binary_erosion((codes == RealTissue.AIR) & inside, CROSS, iterations=3)
        lung = ndimage.binary_erosion((codes == RealTissue.LUNG) & inside, CROSS, iterations=2)
        if air.sum() < 200 or lung.sum() < 200:
            continue
        air_mean, lung_mean = image[air].mean(), image[lung].mean()
        blood = core_mean(image, case.label.array == CAVITY)
        assert lung_mean - air_mean > 0.03 * (blood - air_mean), (case.case_id, lung_mean, air_mean, blood)
        checked += 1
    assert checked >= 2


def test_the_label_fits_the_lge_signature(real_cases):
    """Under the label: infarct brighter than healthy myocardium, no-reflow darker than infarct,
    the cavity brighter than healthy myocardium."""
    with_scar = 0
    for case, _ in real_cases:
        image, label = case.image.array.astype(np.float64), case.label.array
        means = {c: core_mean(image, label == c) for c in (CAVITY, MYOCARDIUM, INFARCT, NO_REFLOW)}
        assert means[CAVITY] > means[MYOCARDIUM], (case.case_id, means)
        if case.case_id.startswith("Case_P"):
            assert means[INFARCT] > means[MYOCARDIUM], (case.case_id, means)
            with_scar += 1
            if means[NO_REFLOW] is not None and (label == NO_REFLOW).sum() >= 20:
                assert means[NO_REFLOW] < means[INFARCT], (case.case_id, means)
        else:
            assert means[INFARCT] is None
    assert with_scar == 4


def test_values_are_8_or_12_bit(real_cases):
    bits = set()
    for case, _ in real_cases:
        array = case.image.array
        assert array.dtype == np.int16 and array.min() >= 0
        if case.truth["appearance"]["bits"] == 8:
            assert array.max() <= 255, case.case_id
        else:
            assert 255 < array.max() <= 4095, case.case_id
        bits.add(case.truth["appearance"]["bits"])
    assert bits == {8, 12}
    assert {c.truth["appearance"]["psir"] for c, _ in real_cases} == {True, False}


def test_zero_padded_strips_spare_the_label(real_cases):
    padded = 0
    for case, _ in real_cases:
        strips = padding_mask(case)
        if not strips.any():
            continue
        padded += 1
        assert not case.image.array[strips].any(), case.case_id
        assert not ndimage.binary_dilation(strips, CROSS, iterations=4)[case.label.array > 0].any(), case.case_id
    assert padded >= 3


# -- geometry ---------------------------------------------------------------------------------


def test_geometry_is_within_the_documented_ranges():
    """FOV 150-400 mm, pixels 0.7-2.0 mm, thickness 5-23 mm, over many draws (sampling only)."""
    thick = []
    for number in range(1, 121):
        _, rng, anatomy, _ = draw_subject(number, 7, None)
        g = sample_real_geometry(rng, anatomy)
        assert 0.7 <= g.pixel_mm <= 2.0
        for n in (g.rows, g.cols):
            assert 150.0 - 1e-6 <= n * g.pixel_mm <= 400.0 + 1e-6 and n <= 384
        assert 5.0 <= g.thickness_mm <= 23.0
        assert g.thickness_mm <= g.spacing_mm <= g.thickness_mm + 3.0 + 1e-6
        assert 4 <= g.slices <= 13
        thick.append(g.thickness_mm)
    assert min(thick) < 8.0 and max(thick) > 18.0


def test_rendered_cases_match_their_truth(real_cases):
    for case, tissue in real_cases:
        truth = case.truth
        assert case.label.shape == case.image.shape == tissue.shape
        assert np.allclose(case.image.affine, case.label.affine)
        assert truth["shape"] == list(case.image.shape)
        dx, dy, dz = case.image.spacing
        assert dx == pytest.approx(dy, abs=1e-6) == pytest.approx(truth["pixel_mm"], abs=1e-6)
        assert dz == pytest.approx(truth["slice_spacing_mm"], abs=1e-6)
        assert truth["fov_mm"] == [round(n * truth["pixel_mm"], 2) for n in case.image.shape[:2]]
        assert all(150.0 <= f <= 400.0 for f in truth["fov_mm"])
        assert set(np.unique(case.label.array).tolist()) <= {0, 1, 2, 3, 4}
        scar = int(np.isin(case.label.array, (INFARCT, NO_REFLOW)).sum())
        assert truth["infarct_voxels"] == scar and (scar > 0) == case.case_id.startswith("Case_P")
        json.dumps(truth)
