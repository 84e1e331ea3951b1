"""Tests for lgemri.postprocess: cavity cleaning and anatomical consistency of EMIDEC labels."""

from __future__ import annotations

import numpy as np
import pytest

from lgemri.errors import InputError
from lgemri.metrics import dice
from lgemri.postprocess import clean_cavity, enforce_anatomy, largest_component

SIZE = 64


def disc(centre, radius, size=SIZE):
    ii, jj = np.mgrid[:size, :size]
    return np.hypot(ii - centre[0], jj - centre[1]) < radius


def ring_slice(centre=(32.0, 32.0), infarct=True, no_reflow=True) -> np.ndarray:
    """Cavity (r < 9), wall (9 <= r < 14), infarct sector through the wall, no-reflow at its core."""
    ii, jj = np.mgrid[:SIZE, :SIZE]
    r = np.hypot(ii - centre[0], jj - centre[1])
    angle = np.arctan2(jj - centre[1], ii - centre[0])
    label = np.zeros((SIZE, SIZE), np.uint8)
    label[r < 9] = 1
    wall = (r >= 9) & (r < 14)
    label[wall] = 2
    if infarct:
        label[wall & (angle > 0.3) & (angle < 1.5)] = 3
    if no_reflow:
        label[(r >= 9) & (r < 11) & (angle > 0.6) & (angle < 1.2)] = 4
    return label


def ring_volume(slices=5) -> np.ndarray:
    """A valid label: the ring drifting a little from slice to slice, infarct on the middle three."""
    vol = np.stack(
        [ring_slice((30 + 0.8 * k, 33 - 0.6 * k), infarct=0 < k < slices - 1, no_reflow=k == 2) for k in range(slices)],
        axis=-1,
    )
    return vol


# --- largest_component ------------------------------------------------------------------------


def test_largest_component_keeps_the_bigger_blob():
    mask = disc((20, 20), 8) | disc((50, 50), 4)
    assert np.array_equal(largest_component(mask), disc((20, 20), 8))
    assert largest_component(np.zeros((5, 5))).dtype == bool
    assert not largest_component(np.zeros((5, 5))).any()


def test_largest_component_connectivity():
    mask = np.zeros((6, 6), bool)
    mask[1, 1] = mask[2, 2] = mask[3, 3] = True  # a diagonal line
    mask[5, 0] = mask[5, 1] = True
    assert largest_component(mask).sum() == 3  # fully connected by default
    assert largest_component(mask, connectivity=1).sum() == 2
    volume = np.zeros((4, 4, 4), bool)
    volume[0, 0, 0] = volume[1, 1, 1] = True
    assert largest_component(volume).sum() == 2


# --- clean_cavity ------------------------------------------------------------------------------


def test_clean_cavity_removes_a_speck():
    cavity = disc((32, 32), 10)
    noisy = cavity.copy()
    noisy[3:5, 3:5] = True
    noisy[60, 2] = True
    out = clean_cavity(noisy)
    assert out.dtype == bool and out.shape == noisy.shape
    assert not out[3:5, 3:5].any() and not out[60, 2]
    assert dice(out, cavity) > 0.98


def test_clean_cavity_fills_a_hole():
    cavity = disc((32, 32), 10)
    holed = cavity & ~disc((30, 33), 3)
    out = clean_cavity(holed)
    assert out[30, 33] and out[28:33, 31:36].all()
    assert dice(out, cavity) > 0.98


def test_clean_cavity_smooths_a_spur():
    cavity = disc((32, 32), 10)
    spur = cavity.copy()
    spur[31:33, 41:52] = True  # a 2-pixel-wide spur, 10 pixels long, narrower than disk(2)
    out = clean_cavity(spur)
    assert not out[31:33, 45:52].any()
    assert dice(out, cavity) > 0.98
    assert clean_cavity(spur, radius=0)[31:33, 41:52].all()  # no opening: the spur stays


def test_clean_cavity_keeps_one_blob_and_is_stable():
    mask = disc((20, 20), 9) | disc((44, 44), 6)
    out = clean_cavity(mask)
    assert np.array_equal(largest_component(out), out)
    assert not out[44, 44]
    assert np.array_equal(clean_cavity(out), out)


def test_clean_cavity_empty_in_empty_out():
    out = clean_cavity(np.zeros((16, 16), np.uint8))
    assert out.dtype == bool and out.shape == (16, 16) and not out.any()
    # Narrower than the disk everywhere: the opening removes it, as in the paper.
    tiny = np.zeros((16, 16), bool)
    tiny[7:9, 7:9] = True
    assert not clean_cavity(tiny).any()


def test_clean_cavity_at_the_image_edge_is_not_eroded():
    mask = np.zeros((30, 30), bool)
    mask[0:12, 5:20] = True
    out = clean_cavity(mask)
    assert np.array_equal(out[0:10], mask[0:10])  # the edge along row 0 is not eaten
    assert not out[11, 5] and not out[11, 19]  # the corners inside the image are rounded


def test_clean_cavity_bad_input():
    with pytest.raises(InputError, match="2D"):
        clean_cavity(np.zeros((4, 4, 2)))
    with pytest.raises(InputError, match="radius"):
        clean_cavity(np.zeros((4, 4)), radius=-1)


# --- enforce_anatomy ---------------------------------------------------------------------------


def test_enforce_anatomy_keeps_a_valid_label_unchanged():
    vol = ring_volume()
    assert (vol == 4).any() and (vol == 3).any()
    out = enforce_anatomy(vol)
    assert out.dtype == np.uint8
    assert np.array_equal(out, vol)
    assert np.array_equal(enforce_anatomy(vol.astype(np.float64)), vol)  # EMIDEC stores float64


def test_enforce_anatomy_2d():
    lab = ring_slice()
    assert np.array_equal(enforce_anatomy(lab), lab)
    noisy = lab.copy()
    noisy[2:6, 2:6] = 2
    assert np.array_equal(enforce_anatomy(noisy), lab)


def test_enforce_anatomy_removes_a_second_blob():
    vol = ring_volume()
    noisy = vol.copy()
    noisy[2:8, 50:60, 1] = 1  # small cavity blob far from the LV
    noisy[:, :, 3][disc((52, 8), 11)] = 2  # a stray "wall" bigger than the LV's ring on slice 3
    noisy[:, :, 3][disc((52, 8), 14) & ~disc((52, 8), 11)] = 0
    assert (noisy[:, :, 3] > 0).sum() > 0
    out = enforce_anatomy(noisy)
    assert np.array_equal(out, vol)


def test_enforce_anatomy_handles_infarct_outside_the_wall():
    vol = ring_volume()
    noisy = vol.copy()
    k = 2
    centre = (30 + 0.8 * k, 33 - 0.6 * k)
    noisy[:, :, k][disc(centre, 3)] = 3  # infarct island in the middle of the cavity
    noisy[:, :, k][disc((56, 56), 3)] = 3  # infarct island outside the heart
    out = enforce_anatomy(noisy)
    assert np.all(out[:, :, k][disc(centre, 3)] == 1)  # became cavity
    assert not out[:, :, k][disc((56, 56), 3)].any()  # became background
    assert np.array_equal(out, vol)


def test_enforce_anatomy_cavity_outside_the_ring_becomes_background():
    vol = ring_volume()
    noisy = vol.copy()
    leak = np.zeros(vol.shape, bool)
    leak[28:31, 44:56, 1] = True  # cavity over the wall's outer part and beyond; the ring stays closed
    noisy[leak] = 1
    out = enforce_anatomy(noisy)
    assert not out[leak].any()
    assert np.array_equal(out[~leak], noisy[~leak])


def test_enforce_anatomy_converts_isolated_no_reflow():
    vol = ring_volume()
    noisy = vol.copy()
    lab = noisy[:, :, 3]
    healthy = np.argwhere((lab == 2) & (np.arange(SIZE)[:, None] < 25))  # wall far from the infarct
    i, j = healthy[len(healthy) // 2]
    lab[i, j] = 4
    out = enforce_anatomy(noisy)
    assert out[i, j, 3] == 3
    expected = vol.copy()
    expected[i, j, 3] = 3
    assert np.array_equal(out, expected)
    # No-reflow in the cavity is not wall: it becomes cavity.
    noisy = vol.copy()
    noisy[31, 32, 2] = 4
    assert np.array_equal(enforce_anatomy(noisy), vol)


def test_enforce_anatomy_fills_holes_in_the_wall():
    vol = ring_volume()
    noisy = vol.copy()
    k = 0
    lab = noisy[:, :, k]
    ii, jj = np.mgrid[:SIZE, :SIZE]
    r = np.hypot(ii - 30, jj - 33)
    hole = (r > 11) & (r < 12.2) & (jj < 28) & (ii > 25) & (ii < 35)
    lab[hole] = 0
    assert hole.any()
    out = enforce_anatomy(noisy)
    assert np.all(out[:, :, k][hole] == 2)
    assert np.array_equal(out, vol)


def test_enforce_anatomy_drops_cavity_without_myocardium():
    vol = np.zeros((SIZE, SIZE, 2), np.uint8)
    vol[:, :, 0] = ring_slice(infarct=False, no_reflow=False)
    vol[:, :, 1][disc((32, 32), 8)] = 1
    out = enforce_anatomy(vol)
    assert np.array_equal(out[:, :, 0], vol[:, :, 0])
    assert not out[:, :, 1].any()


def test_enforce_anatomy_open_ring_keeps_its_cavity():
    lab = ring_slice(infarct=False, no_reflow=False)
    lab[30:34, 41:50] = 1  # a gap in the wall, predicted as cavity
    lab[30:34, 50:60] = 1  # the cavity leaks on past the wall
    out = enforce_anatomy(lab)
    assert np.array_equal(out == 2, lab == 2)
    assert np.array_equal(out[disc((32, 32), 9)], lab[disc((32, 32), 9)])
    assert not out[30:34, 47:60].any()


def test_enforce_anatomy_is_idempotent_on_noisy_labels():
    vol = ring_volume()
    for seed in range(8):
        rng = np.random.default_rng(seed)
        noisy = vol.copy()
        flip = rng.random(vol.shape) < 0.1
        noisy[flip] = rng.integers(0, 5, int(flip.sum()))
        once = enforce_anatomy(noisy)
        assert np.array_equal(enforce_anatomy(once), once)
        assert dice(once == 2, vol == 2) > 0.7


def test_enforce_anatomy_empty_and_bad_input():
    assert not enforce_anatomy(np.zeros((8, 8, 3))).any()
    with pytest.raises(InputError, match="0..4"):
        enforce_anatomy(np.full((4, 4, 2), 5))
    with pytest.raises(InputError, match="integer"):
        enforce_anatomy(np.full((4, 4, 2), 1.5))
    with pytest.raises(InputError, match="2D or 3D"):
        enforce_anatomy(np.zeros(5))


def test_remove_small_infarcts_relabels_specks_as_myocardium():
    from lgemri.postprocess import remove_small_infarcts

    label = np.full((20, 20, 3), 2, dtype=np.uint8)
    label[2:8, 2:8, 0] = 3  # 36 voxels
    label[3:5, 3:5, 0] = 4  # its no-reflow core
    label[8, 8, 1] = 3  # touches the big one diagonally across slices: same 3D component
    label[15:17, 15:17, 2] = 4  # a 4-voxel speck of no-reflow alone
    out = remove_small_infarcts(label, voxel_ml=0.1, min_ml=1.0)  # keeps >= 10 voxels
    assert (out[2:8, 2:8, 0] == label[2:8, 2:8, 0]).all() and out[8, 8, 1] == 3
    assert (out[15:17, 15:17, 2] == 2).all()
    assert out.dtype == np.uint8 and ((out == label) | (label == 4)).all()
    np.testing.assert_array_equal(remove_small_infarcts(label, 0.1, 0.0), label)
    big_only = remove_small_infarcts(label, voxel_ml=0.1, min_ml=10.0)  # 37 voxels = 3.7 ml < 10
    assert not np.isin(big_only, (3, 4)).any()
