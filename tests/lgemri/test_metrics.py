"""Tests for lgemri.metrics on shapes with known answers."""

from __future__ import annotations

import math

import numpy as np
import pytest

from lgemri.metrics import (
    CLASS_METRICS,
    EMIDEC_METRICS,
    boundary_f1,
    class_metrics,
    dice,
    emidec_metrics,
    hausdorff_distance,
    iou,
    sensitivity,
    specificity,
    volume_mm3,
)


def disc(shape, centre, radius):
    grid = np.indices(shape, dtype=float)
    return sum((g - c) ** 2 for g, c in zip(grid, centre)) <= radius**2


def lens_area(r: float, d: float) -> float:
    """Area of the intersection of two discs of radius r whose centres lie d apart."""
    return 2 * r**2 * math.acos(d / (2 * r)) - d / 2 * math.sqrt(4 * r**2 - d**2)


def cap_volume(r: float, d: float) -> float:
    """Volume of the intersection of two balls of radius r whose centres lie d apart."""
    return math.pi * (4 * r + d) * (2 * r - d) ** 2 / 12


def brute_surface(mask: np.ndarray) -> np.ndarray:
    """Surface voxel coordinates: a face neighbour is outside the mask or the array."""
    padded = np.pad(mask, 1)
    inner = np.ones_like(mask)
    for axis in range(mask.ndim):
        for step in (-1, 1):
            inner &= np.roll(padded, step, axis=axis)[tuple(slice(1, -1) for _ in range(mask.ndim))]
    return np.argwhere(mask & ~inner)


def brute_distances(a: np.ndarray, b: np.ndarray, spacing) -> np.ndarray:
    """Matrix of mm distances between the surface voxels of a (rows) and b (columns)."""
    pa, pb = brute_surface(a) * spacing, brute_surface(b) * spacing
    return np.sqrt(((pa[:, None, :] - pb[None, :, :]) ** 2).sum(-1))


def square_ring_label(shape=(40, 40, 4), outer=(8, 32), inner=(12, 28)) -> np.ndarray:
    """Cavity square inside a square myocardial wall on every slice."""
    label = np.zeros(shape, np.uint8)
    label[outer[0] : outer[1], outer[0] : outer[1], :] = 2
    label[inner[0] : inner[1], inner[0] : inner[1], :] = 1
    return label


# --- overlap ---------------------------------------------------------------------------------


def test_dice_and_iou_of_overlapping_boxes_exact():
    a = np.zeros((30, 30), bool)
    b = np.zeros((30, 30), bool)
    a[0:10, 0:10] = True  # 100
    b[5:15, 0:10] = True  # 100, overlap 50
    assert dice(a, b) == pytest.approx(2 * 50 / 200)
    assert iou(a, b) == pytest.approx(50 / 150)
    assert sensitivity(a, b) == pytest.approx(0.5)
    assert specificity(a, b) == pytest.approx((900 - 150) / 800)


def test_dice_of_two_discs_matches_lens_area():
    r, d = 40.0, 30.0
    a = disc((140, 110), (50, 55), r)
    b = disc((140, 110), (50 + d, 55), r)
    expected = lens_area(r, d) / (math.pi * r**2)  # 2|A∩B| / (|A| + |B|) with |A| = |B|
    assert dice(a, b) == pytest.approx(expected, rel=0.01)
    assert iou(a, b) == pytest.approx(lens_area(r, d) / (2 * math.pi * r**2 - lens_area(r, d)), rel=0.01)


def test_dice_of_two_spheres_matches_cap_volume():
    r, d = 14.0, 10.0
    a = disc((50, 40, 40), (18, 20, 20), r)
    b = disc((50, 40, 40), (18 + d, 20, 20), r)
    assert dice(a, b) == pytest.approx(cap_volume(r, d) / (4 / 3 * math.pi * r**3), rel=0.02)


def test_empty_mask_conventions():
    empty = np.zeros((5, 5), bool)
    full = np.ones((5, 5), bool)
    some = np.zeros((5, 5), bool)
    some[1:3, 1:3] = True
    assert dice(empty, empty) == 1.0 and iou(empty, empty) == 1.0
    assert dice(some, empty) == 0.0 and dice(empty, some) == 0.0 and iou(empty, some) == 0.0
    assert math.isnan(sensitivity(some, empty))
    assert sensitivity(empty, some) == 0.0
    assert math.isnan(specificity(some, full))
    assert specificity(empty, empty) == 1.0


def test_label_arrays_count_non_zero_as_foreground():
    a = np.array([[0, 2], [3, 0]])
    b = np.array([[0, 1], [0, 0]])
    assert dice(a, b) == pytest.approx(2 / 3)


def test_shape_mismatch_is_an_error():
    with pytest.raises(ValueError, match="shape"):
        dice(np.zeros((3, 3)), np.zeros((3, 4)))


def test_volume_mm3():
    mask = np.zeros((4, 4, 3), bool)
    mask[:2, :2, :] = True
    assert volume_mm3(mask, (1.5, 2.0, 10.0)) == pytest.approx(12 * 30.0)
    with pytest.raises(ValueError, match="spacing"):
        volume_mm3(mask, (1.0, 1.0))
    with pytest.raises(ValueError, match="spacing"):
        volume_mm3(mask, (1.0, 0.0, 1.0))


# --- distances -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "axis, shift, spacing",
    [(0, 3, (2.0, 0.5)), (1, 4, (2.0, 0.5)), (0, 1, (0.7, 1.3))],
)
def test_hausdorff_of_shifted_squares_is_the_shift_in_mm(axis, shift, spacing):
    a = np.zeros((40, 40), bool)
    a[10:25, 10:25] = True
    b = np.roll(a, shift, axis=axis)
    assert hausdorff_distance(a, b, spacing) == pytest.approx(shift * spacing[axis])
    assert hausdorff_distance(b, a, spacing) == pytest.approx(shift * spacing[axis])


def test_hausdorff_3d_shift_across_slices_uses_the_slice_spacing():
    a = np.zeros((20, 20, 6), bool)
    a[5:15, 5:15, 1:4] = True
    b = np.roll(a, 1, axis=2)
    assert hausdorff_distance(a, b, (1.25, 1.25, 10.0)) == pytest.approx(10.0)


def test_hausdorff_is_symmetric_and_sees_a_distant_speck():
    a = np.zeros((50, 50), bool)
    a[10:20, 10:20] = True
    b = a.copy()
    b[45, 15] = True  # 26 px below a's lower edge (row 19)
    assert hausdorff_distance(a, b, (1.0, 1.0)) == pytest.approx(26.0)
    assert hausdorff_distance(b, a, (1.0, 1.0)) == pytest.approx(26.0)


def test_hausdorff_empty_conventions():
    a = np.zeros((8, 8), bool)
    b = a.copy()
    b[2:4, 2:4] = True
    assert hausdorff_distance(a, a, (1, 1)) == 0.0
    assert hausdorff_distance(a, b, (1, 1)) == math.inf
    assert hausdorff_distance(b, a, (1, 1)) == math.inf
    assert hausdorff_distance(b, b, (1, 1)) == 0.0


def test_hausdorff_matches_brute_force_on_irregular_shapes():
    rng = np.random.default_rng(3)
    spacing = np.array([0.8, 1.7, 3.0])
    for _ in range(3):
        a = disc((16, 14, 6), rng.uniform(5, 9, 3), rng.uniform(3, 5)) | (rng.random((16, 14, 6)) < 0.02)
        b = disc((16, 14, 6), rng.uniform(5, 9, 3), rng.uniform(3, 5))
        distances = brute_distances(a, b, spacing)
        expected = max(distances.min(axis=1).max(), distances.min(axis=0).max())
        assert hausdorff_distance(a, b, spacing) == pytest.approx(expected)


# --- boundary F1 -----------------------------------------------------------------------------


def test_boundary_f1_identical_masks_is_one():
    a = disc((40, 40), (20, 18), 11)
    assert boundary_f1(a, a, (1.3, 1.3)) == 1.0
    vol = np.stack([a, a, np.zeros_like(a)], axis=-1)
    assert boundary_f1(vol, vol, (1.3, 1.3, 10.0)) == 1.0


def test_boundary_f1_within_tolerance_is_one_beyond_is_lower():
    a = np.zeros((40, 40), bool)
    a[10:30, 10:30] = True
    b = np.roll(a, 1, axis=0)
    assert boundary_f1(a, b, (1.0, 1.0), tolerance_mm=2.0) == 1.0
    # Shift 5 px: 38 of the 76 boundary pixels of each square lie within 2 px of the other's.
    b = np.roll(a, 5, axis=0)
    assert boundary_f1(a, b, (1.0, 1.0), tolerance_mm=2.0) == pytest.approx(0.5)
    # The same shift is within tolerance when pixels are small.
    assert boundary_f1(a, b, (0.4, 0.4), tolerance_mm=2.0) == 1.0


def test_boundary_f1_matches_brute_force():
    rng = np.random.default_rng(5)
    spacing = np.array([0.9, 1.4])
    for _ in range(3):
        a = disc((30, 30), rng.uniform(12, 18, 2), rng.uniform(6, 10))
        b = disc((30, 30), rng.uniform(12, 18, 2), rng.uniform(6, 10)) | (rng.random((30, 30)) < 0.01)
        distances = brute_distances(a, b, spacing)
        precision = (distances.min(axis=1) <= 2.0).mean()
        recall = (distances.min(axis=0) <= 2.0).mean()
        expected = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        assert boundary_f1(a, b, spacing, 2.0) == pytest.approx(expected)


def test_boundary_f1_3d_is_per_slice_in_plane():
    a = np.zeros((20, 20, 3), bool)
    a[5:15, 5:15, 1] = True
    b = np.zeros_like(a)
    b[5:15, 5:15, 2] = True  # same contour, next slice: 10 mm away, no match at 2 mm
    assert boundary_f1(a, b, (1.0, 1.0, 0.5)) == 0.0
    b[5:15, 5:15, 1] = True
    assert boundary_f1(a, b, (1.0, 1.0, 0.5)) == pytest.approx(2 * 1.0 * 0.5 / 1.5)


def test_boundary_f1_empty_conventions():
    a = np.zeros((8, 8), bool)
    b = a.copy()
    b[2:5, 2:5] = True
    assert boundary_f1(a, a, (1, 1)) == 1.0
    assert boundary_f1(a, b, (1, 1)) == 0.0
    assert boundary_f1(b, a, (1, 1)) == 0.0


# --- EMIDEC and per-class --------------------------------------------------------------------


SPACING = (1.5, 2.0, 8.0)


def test_emidec_metrics_perfect_prediction():
    truth = square_ring_label()
    truth[8:32, 28:32, 1:3] = 3
    truth[12:20, 28:30, 1:3] = 4
    scores = emidec_metrics(truth, truth.copy(), SPACING)
    assert tuple(scores) == EMIDEC_METRICS
    for name in ("myocardium", "infarct", "no_reflow"):
        assert scores[f"dice_{name}"] == 1.0
        assert scores[f"volume_diff_{name}_mm3"] == 0.0
    assert scores["ratio_diff_infarct_pct"] == 0.0
    assert scores["ratio_diff_no_reflow_pct"] == 0.0
    assert scores["hausdorff_myocardium_mm"] == 0.0


def test_emidec_metrics_eroded_wall_known_values():
    truth = square_ring_label()
    pred = square_ring_label(outer=(9, 31), inner=(11, 29))  # wall eroded by one pixel per side
    voxel = 1.5 * 2.0 * 8.0
    wall_truth, wall_pred = (24**2 - 16**2) * 4, (22**2 - 18**2) * 4  # 1280 and 640 voxels
    scores = emidec_metrics(pred, truth, SPACING)
    assert scores["dice_myocardium"] == pytest.approx(2 * wall_pred / (wall_truth + wall_pred))
    assert scores["volume_diff_myocardium_mm3"] == pytest.approx((wall_truth - wall_pred) * voxel)
    # Sides move one pixel (1.5 or 2 mm), corners one pixel diagonally: sqrt(1.5^2 + 2^2) = 2.5 mm.
    assert scores["hausdorff_myocardium_mm"] == pytest.approx(2.5)
    assert scores["dice_infarct"] == 1.0 and scores["dice_no_reflow"] == 1.0  # both empty
    assert scores["ratio_diff_infarct_pct"] == 0.0


def test_emidec_metrics_missed_infarct_known_values():
    truth = square_ring_label()
    truth[8:32, 28:32, :] = 3  # 24 x 4 infarct per slice inside the 320-voxel wall
    truth[8:32, 28:29, :] = 4  # 24 of them no-reflow
    pred = square_ring_label()  # the same wall, all healthy
    voxel = 1.5 * 2.0 * 8.0
    scores = emidec_metrics(pred, truth, SPACING)
    assert scores["dice_myocardium"] == 1.0 and scores["hausdorff_myocardium_mm"] == 0.0
    assert scores["dice_infarct"] == 0.0 and scores["dice_no_reflow"] == 0.0
    assert scores["volume_diff_infarct_mm3"] == pytest.approx(96 * 4 * voxel)
    assert scores["volume_diff_no_reflow_mm3"] == pytest.approx(24 * 4 * voxel)
    assert scores["ratio_diff_infarct_pct"] == pytest.approx(100 * 96 / 320)
    assert scores["ratio_diff_no_reflow_pct"] == pytest.approx(100 * 24 / 320)


def test_emidec_metrics_empty_prediction():
    truth = square_ring_label()
    scores = emidec_metrics(np.zeros_like(truth), truth, SPACING)
    assert scores["dice_myocardium"] == 0.0
    assert scores["hausdorff_myocardium_mm"] == math.inf
    assert scores["ratio_diff_infarct_pct"] == 0.0  # no myocardium: ratio 0 by convention
    empty = emidec_metrics(np.zeros_like(truth), np.zeros_like(truth), SPACING)
    assert empty["dice_myocardium"] == 1.0 and empty["hausdorff_myocardium_mm"] == 0.0


def test_class_metrics_keys_and_values():
    truth = square_ring_label()
    truth[8:32, 28:32, :] = 3
    pred = truth.copy()
    pred[8:32, 28:32, :] = 2  # infarct missed, called healthy myocardium
    scores = class_metrics(pred, truth, SPACING)
    assert list(scores) == ["background", "lv_cavity", "myocardium", "infarct", "no_reflow"]
    for values in scores.values():
        assert tuple(values) == CLASS_METRICS
    assert scores["background"]["dice"] == 1.0
    assert scores["lv_cavity"] == {m: 1.0 for m in CLASS_METRICS}
    assert scores["infarct"]["dice"] == 0.0 and scores["infarct"]["sensitivity"] == 0.0
    assert scores["infarct"]["boundary_f1"] == 0.0
    wall, infarct = 320, 96
    assert scores["myocardium"]["dice"] == pytest.approx(2 * (wall - infarct) / (2 * wall - infarct))
    assert scores["myocardium"]["sensitivity"] == 1.0
    assert scores["no_reflow"]["dice"] == 1.0 and math.isnan(scores["no_reflow"]["sensitivity"])
