"""Tests for lgemri.quantification (infarct size, transmurality, AHA segments) and lgemri.classical."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest

from lgemri.classical import classical_infarct_size, threshold_masks
from lgemri.errors import InputError
from lgemri.labels import CAVITY, INFARCT, MYOCARDIUM, NO_REFLOW
from lgemri.phantom import make_case
from lgemri.quantification import (
    MYOCARDIUM_DENSITY_G_PER_ML,
    quantify,
    ray_transmurality,
    transmurality_bin,
)
from lgemri.volume import Volume, read_nifti

SAMPLE = Path(__file__).resolve().parents[2] / "sample-data"
RV = 120.0  # anterior RV insertion, degrees counter-clockwise from image right
SPACING = (1.5, 1.5, 8.0)


def ring(
    n_slices: int = 1,
    sector: tuple[float, float] | None = None,
    *,
    size: int = 48,
    spacing: tuple[float, float, float] = SPACING,
    r_endo: float = 15.0,
    r_epi: float = 24.0,
    sector_slices: tuple[int, ...] | None = None,
) -> Volume:
    """A stack of LV rings (cavity inside ``r_endo`` mm, wall to ``r_epi`` mm) with an optional
    transmural infarct between angles ``sector`` (degrees, counter-clockwise from image right,
    anterior up) on ``sector_slices`` (default all)."""
    i, j = np.meshgrid(np.arange(size), np.arange(size), indexing="ij")
    c = (size - 1) / 2.0
    x, y = (i - c) * spacing[0], -(j - c) * spacing[1]
    r = np.hypot(x, y)
    angle = np.mod(np.degrees(np.arctan2(y, x)), 360.0)
    slice2d = np.zeros((size, size), dtype=np.uint8)
    slice2d[r < r_endo] = CAVITY
    wall = (r >= r_endo) & (r < r_epi)
    slice2d[wall] = MYOCARDIUM
    label = np.repeat(slice2d[:, :, np.newaxis], n_slices, axis=2)
    if sector is not None:
        a0, a1 = sector
        in_sector = wall & (np.mod(angle - a0, 360.0) < np.mod(a1 - a0, 360.0))
        for k in sector_slices if sector_slices is not None else range(n_slices):
            label[:, :, k][in_sector] = INFARCT
    return Volume(label, np.diag([*spacing, 1.0]))


def segment(q: dict, number: int) -> dict:
    return q["segments"][number - 1]


# -- synthetic geometry ---------------------------------------------------------------------------


def test_ring_with_90_degree_transmural_infarct_on_one_slice():
    # One slice is a mid slice; with the RV insertion at 120 degrees, 120-180 is segment 8
    # (mid anteroseptal) and 180-240 segment 9 (mid inferoseptal): the 90-degree infarct fills
    # segment 8 and half of segment 9.
    q = quantify(None, ring(1, (120.0, 210.0)), rv_insertion_deg=RV)
    assert q["infarct"]["percent_lv"] == pytest.approx(25.0, abs=1.5)
    assert q["infarcted_segments"] == [8, 9]
    s8, s9 = segment(q, 8), segment(q, 9)
    assert s8["transmurality_mean_percent"] >= 90.0
    assert s8["transmurality_max_percent"] == 100.0
    assert s8["transmurality_bin"] == "76-100" and s8["viable"] is False
    assert s9["transmurality_mean_percent"] == pytest.approx(50.0, abs=8.0)
    assert s9["transmurality_max_percent"] == 100.0
    for other in (10, 11, 12):
        row = segment(q, other)
        assert row["transmurality_max_percent"] == 0.0 and row["transmurality_bin"] == "0" and row["viable"] is True
    # Segment 7 borders the infarct at 120 degrees: pixelated edges touch its first ray only.
    assert segment(q, 7)["transmurality_mean_percent"] < 3.0 and segment(q, 7)["infarcted"] is False
    assert not any(segment(q, s)["present"] for s in (*range(1, 7), *range(13, 18)))
    assert q["classification"]["label"] == "pathological"
    assert q["transmurality"]["max_percent"] == 100.0
    assert any("one slice" in w for w in q["warnings"])
    # Wall thickness along the chords: 9 mm.
    assert s8["wall_thickness_mm"] == pytest.approx(9.0, abs=1.0)


def test_ring_stack_infarct_in_the_apical_septal_segment():
    # Three slices: basal, mid, apical. The apical ring has 90-degree segments starting 15
    # degrees past the insertion: 135-225 is exactly segment 14 (apical septal).
    q = quantify(None, ring(3, (135.0, 225.0)), rv_insertion_deg=RV)
    assert [s["level"] for s in q["slices"]] == ["basal", "mid", "apical"]
    assert segment(q, 14)["transmurality_mean_percent"] >= 90.0
    assert segment(q, 14)["infarct_percent"] >= 90.0
    for s in (13, 15, 16):
        assert segment(q, s)["infarct_percent"] <= 2.0
    for s in (2, 3, 8, 9):  # three quarters of each 60-degree segment
        assert segment(q, s)["transmurality_mean_percent"] == pytest.approx(75.0, abs=8.0)
    assert set(q["infarcted_segments"]) == {2, 3, 8, 9, 14}
    assert q["infarct"]["percent_lv"] == pytest.approx(25.0, abs=1.5)
    assert segment(q, 17)["present"] is False and segment(q, 17)["viable"] is None
    assert q["territories"]["LAD"]["infarcted_segments"] == [2, 8, 14]
    assert q["territories"]["LCX"]["infarct_percent"] == 0.0


def test_ray_transmurality_of_a_half_thickness_infarct():
    label = ring(1).array[:, :, 0].copy()
    i, j = np.nonzero(label == MYOCARDIUM)
    c = (label.shape[0] - 1) / 2.0
    r = np.hypot((i - c) * 1.5, (j - c) * 1.5)
    inner = r < 19.5  # the subendocardial half of a 15-24 mm wall
    label[i[inner], j[inner]] = INFARCT
    angle, extent, wall = ray_transmurality(label, (1.5, 1.5), 3.0)
    assert angle.size == 120
    assert np.median(extent) == pytest.approx(50.0, abs=12.0)
    assert np.median(wall) == pytest.approx(9.0, abs=1.0)


def test_mass_is_voxel_count_times_voxel_volume_times_density():
    vol = ring(2, (0.0, 60.0), spacing=(1.25, 1.5, 10.0))
    label = vol.array.copy()
    label[(label == INFARCT) & (np.arange(label.shape[0])[:, None, None] % 2 == 0)] = NO_REFLOW
    theta = np.radians(30.0)  # a rotated affine: spacing comes from the column norms
    rotation = np.array([[np.cos(theta), -np.sin(theta), 0], [np.sin(theta), np.cos(theta), 0], [0, 0, 1]])
    affine = np.eye(4)
    affine[:3, :3] = rotation @ np.diag([1.25, 1.5, 10.0])
    q = quantify(None, Volume(label, affine))
    voxel_ml = 1.25 * 1.5 * 10.0 / 1000.0
    n_myo = int(np.isin(label, (2, 3, 4)).sum())
    n_scar = int(np.isin(label, (3, 4)).sum())
    n_mvo = int((label == 4).sum())
    assert q["lv"]["myocardium_voxels"] == n_myo
    assert q["lv"]["myocardium_volume_ml"] == pytest.approx(n_myo * voxel_ml, abs=1e-3)
    assert q["lv"]["myocardium_mass_g"] == pytest.approx(n_myo * voxel_ml * MYOCARDIUM_DENSITY_G_PER_ML, abs=1e-3)
    assert q["infarct"]["mass_g"] == pytest.approx(n_scar * voxel_ml * 1.05, abs=1e-3)
    assert q["infarct"]["percent_lv"] == pytest.approx(100.0 * n_scar / n_myo, abs=1e-3)
    assert q["no_reflow"]["percent_lv"] == pytest.approx(100.0 * n_mvo / n_myo, abs=1e-3)
    assert q["no_reflow"]["percent_infarct"] == pytest.approx(100.0 * n_mvo / n_scar, abs=1e-3)
    assert q["geometry"]["spacing_mm"] == [1.25, 1.5, 10.0]
    assert q["parameters"]["rv_insertion_source"] == "default"


def test_no_infarct_reports_none():
    q = quantify(None, ring(3))
    assert q["infarct"]["present"] is False and q["infarct"]["percent_lv"] == 0.0
    assert q["no_reflow"]["present"] is False and q["no_reflow"]["percent_infarct"] == 0.0
    assert q["classification"]["label"] == "normal"
    assert q["infarcted_segments"] == [] and q["nonviable_segments"] == []
    assert q["transmurality"]["mean_infarcted_rays_percent"] is None
    assert all(row["transmurality_bin"] == "0" for row in q["segments"] if row["present"])
    json.dumps(q)  # JSON-ready


def test_small_infarct_is_below_the_pathological_threshold():
    q = quantify(None, ring(3, (90.0, 93.0), sector_slices=(1,)))
    assert 0.0 < q["infarct"]["percent_lv"] < 1.0
    assert q["classification"]["label"] == "normal"
    lower = quantify(None, ring(3, (90.0, 93.0), sector_slices=(1,)), pathological_min_percent=0.1)
    assert lower["classification"]["label"] == "pathological"


def test_apex_first_stacks_flip_the_levels():
    label = ring(3, (60.0, 120.0), sector_slices=(0,))
    base = quantify(None, label, rv_insertion_deg=RV)
    apex = quantify(None, label, rv_insertion_deg=RV, base_first=False)
    assert base["infarcted_segments"] == [1]  # basal anterior
    assert apex["infarcted_segments"] == [13]  # apical anterior
    assert [s["k"] for s in apex["slices"]] == [0, 1, 2]
    assert [s["level"] for s in apex["slices"]] == ["apical", "mid", "basal"]
    assert base["parameters"]["slice_order_source"] == "default"  # equal rings: the anatomy cannot tell
    assert any("slice order is not clear" in w for w in base["warnings"])
    assert apex["parameters"]["slice_order_source"] == "given"


def test_the_narrow_end_of_the_lv_is_taken_as_the_apex():
    """Scanners stack short-axis slices either way: unless told, the order comes from the anatomy."""
    label = ring(6)
    label.array[:, :, 4:] = ring(6, (60.0, 120.0), r_endo=9.0, r_epi=16.0, sector_slices=(5,)).array[:, :, 4:]
    base_to_apex = quantify(None, label, rv_insertion_deg=RV)
    flipped = Volume(np.ascontiguousarray(label.array[:, :, ::-1]), label.affine)
    apex_to_base = quantify(None, flipped, rv_insertion_deg=RV)
    assert base_to_apex["parameters"]["base_first"] is True
    assert apex_to_base["parameters"]["base_first"] is False
    assert {q["parameters"]["slice_order_source"] for q in (base_to_apex, apex_to_base)} == {"anatomy"}
    assert base_to_apex["infarcted_segments"] == apex_to_base["infarcted_segments"]
    assert base_to_apex["infarcted_segments"] == [13]  # apical anterior, wherever slice 0 is
    assert [s["level"] for s in apex_to_base["slices"]] == [s["level"] for s in base_to_apex["slices"]][::-1]
    told = quantify(None, flipped, rv_insertion_deg=RV, base_first=True)  # what the caller says wins
    assert told["parameters"]["slice_order_source"] == "given"
    assert told["infarcted_segments"] == [1]  # basal anterior


def test_viability_threshold_is_configurable():
    label = ring(1, (120.0, 210.0))
    assert segment(quantify(None, label, rv_insertion_deg=RV), 9)["viable"] is True  # ~50 %
    assert segment(quantify(None, label, rv_insertion_deg=RV, viability_threshold=25.0), 9)["viable"] is False


@pytest.mark.parametrize(
    ("percent", "expected"),
    [
        (None, None),
        (0.0, "0"),
        (0.4, "1-25"),
        (25.0, "1-25"),
        (25.1, "26-50"),
        (50.0, "26-50"),
        (75.0, "51-75"),
        (75.5, "76-100"),
        (100.0, "76-100"),
    ],
)
def test_transmurality_bins(percent, expected):
    assert transmurality_bin(percent) == expected


# -- bad input ------------------------------------------------------------------------------------


def test_no_myocardium_is_a_clear_error():
    label = np.zeros((16, 16, 2), dtype=np.uint8)
    label[4:8, 4:8, :] = CAVITY
    with pytest.raises(InputError, match="no myocardium"):
        quantify(None, Volume(label, np.eye(4)))


@pytest.mark.parametrize(
    ("array", "message"),
    [
        (np.full((8, 8, 1), 7, dtype=np.uint8), "EMIDEC"),
        (np.full((8, 8, 1), 2.5, dtype=np.float32), "non-integer"),
        (np.full((8, 8, 1), -1, dtype=np.int16), "EMIDEC"),
    ],
)
def test_labels_outside_the_emidec_classes_are_rejected(array, message):
    with pytest.raises(InputError, match=message):
        quantify(None, Volume(array, np.eye(4)))


def test_missing_geometry_is_named():
    label = ring(1)
    with pytest.raises(InputError, match="missing geometry"):
        quantify(None, Volume(label.array, np.diag([1.5, 0.0, 8.0, 1.0])))
    q = quantify(None, Volume(label.array, np.eye(4)))  # identity affine: works, with a warning
    assert any("no geometry" in w for w in q["warnings"])


def test_image_and_label_must_match():
    label = ring(2)
    with pytest.raises(InputError, match="shape"):
        quantify(Volume(np.zeros((10, 10, 2)), label.affine), label)


def test_float_labels_with_integer_values_are_accepted():
    label = ring(1, (0.0, 90.0))
    q = quantify(None, Volume(label.array.astype(np.float32), label.affine))
    assert q["infarct"]["percent_lv"] == pytest.approx(25.0, abs=1.5)


# -- classical methods ----------------------------------------------------------------------------


def _image_for(label: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    image = rng.normal(100.0, 5.0, label.shape)
    image[label == CAVITY] = 380.0
    image[np.isin(label, (INFARCT, NO_REFLOW))] = rng.normal(400.0, 10.0, int(np.isin(label, (3, 4)).sum()))
    return image


def test_classical_methods_find_a_bright_infarct():
    label = ring(3, (120.0, 210.0))
    image = _image_for(label.array, np.random.default_rng(0))
    result = classical_infarct_size(image, label.array, SPACING, RV)
    truth = 100.0 * (label.array == INFARCT).sum() / np.isin(label.array, (2, 3)).sum()
    by_name = {m["name"]: m for m in result["methods"]}
    assert set(by_name) == {"2SD", "3SD", "5SD", "FWHM"}
    for name in ("3SD", "5SD", "FWHM"):
        assert by_name[name]["percent_lv"] == pytest.approx(truth, abs=1.0)
    assert by_name["2SD"]["percent_lv"] == pytest.approx(truth, abs=3.0)  # + noise above 2 SD
    assert by_name["FWHM"]["threshold"] > 150.0
    assert len(result["remote"]["slices"]) == 3
    assert result["remote"]["slices"][0]["mean"] == pytest.approx(100.0, abs=3.0)


def test_classical_methods_on_a_normal_myocardium():
    label = ring(2)
    image = np.random.default_rng(1).normal(100.0, 5.0, label.shape)
    masks, info = threshold_masks(image, label.array, SPACING[:2], RV)
    assert masks["5SD"].sum() == 0
    assert masks["FWHM"].sum() == 0 and info["fwhm_threshold"] is None
    assert masks["2SD"].mean() < 0.05


def test_quantify_puts_the_label_next_to_the_classical_methods():
    label = ring(3, (0.0, 90.0))
    image = Volume(_image_for(label.array, np.random.default_rng(2)), label.affine)
    q = quantify(image, label, rv_insertion_deg=RV)
    names = [m["name"] for m in q["classical"]["methods"]]
    assert names == ["label", "2SD", "3SD", "5SD", "FWHM"]
    assert q["classical"]["methods"][0]["percent_lv"] == q["infarct"]["percent_lv"]
    assert quantify(None, label)["classical"] is None


def test_quantify_is_fast():
    label = ring(10, (30.0, 150.0), size=160, spacing=(1.4, 1.4, 10.0), r_endo=25.0, r_epi=35.0)
    image = Volume(_image_for(label.array, np.random.default_rng(3)), label.affine)
    quantify(image, label)  # warm-up
    tick = time.perf_counter()
    quantify(image, label)
    assert time.perf_counter() - tick < 1.0  # ~0.05 s alone; generous for a shared CPU


# -- targets on phantom truth ---------------------------------------------------------------------


def _agreement(q: dict, truth_segments: set[int]) -> float:
    ours = set(q["infarcted_segments"])
    return sum((s in ours) == (s in truth_segments) for s in range(1, 18)) / 17.0


def _sample_cases():
    index = json.loads((SAMPLE / "phantom.json").read_text())
    return [case for case in index["cases"]]


@pytest.mark.parametrize("truth", _sample_cases(), ids=lambda t: t["case_id"])
def test_targets_on_the_sample_studies(truth):
    cid = truth["case_id"]
    image = read_nifti(SAMPLE / "emidec" / cid / "Images" / f"{cid}.nii.gz")
    label = read_nifti(SAMPLE / "emidec" / cid / "Contours" / f"{cid}.nii.gz")
    q = quantify(image, label, rv_insertion_deg=truth["rv_insertion_deg"])
    assert abs(q["infarct"]["percent_lv"] - truth["infarct_percent_lv"]) <= 2.0
    assert abs(q["no_reflow"]["percent_lv"] - truth["no_reflow_percent_lv"]) <= 2.0
    assert _agreement(q, {int(s) for s in truth["infarct_segments"]}) >= 0.9
    assert q["classification"]["label"] == ("pathological" if truth["group"] == "P" else "normal")


@pytest.mark.parametrize("number", [1, 2, 3, 4])
def test_targets_on_generated_phantoms(number):
    case = make_case(number, seed=23)
    truth = case.truth
    q = quantify(case.image, case.label, rv_insertion_deg=truth["rv_insertion_deg"])
    truth_segments = {int(s) for s in truth["infarct_segments"]}
    assert abs(q["infarct"]["percent_lv"] - truth["infarct_percent_lv"]) <= 2.0
    assert _agreement(q, truth_segments) >= 0.9
    # The radial-chord transmurality agrees too: segments with a mean extent >= 5 %.
    chords = {row["segment"] for row in q["segments"] if (row["transmurality_mean_percent"] or 0.0) >= 5.0}
    assert sum((s in chords) == (s in truth_segments) for s in range(1, 18)) / 17.0 >= 0.9
    assert q["classification"]["label"] == ("pathological" if truth["group"] == "P" else "normal")
