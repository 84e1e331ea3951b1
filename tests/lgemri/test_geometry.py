"""Tests for lgemri.geometry: in-plane resampling, LV centre and ROI crops."""

from __future__ import annotations

import numpy as np
import pytest

from lgemri.errors import InputError
from lgemri.geometry import crop_roi, lv_centre, paste_roi, resample_inplane
from lgemri.volume import Volume

SHAPE = (160, 180, 7)
SPACING = (1.6, 1.6, 10.0)


def oblique_affine(spacing=SPACING, origin=(-112.5, 87.0, 41.0)) -> np.ndarray:
    """A rotated (not axis-aligned) voxel-to-RAS affine."""
    a, b = np.deg2rad(25.0), np.deg2rad(-40.0)
    rx = np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])
    rz = np.array([[np.cos(b), -np.sin(b), 0], [np.sin(b), np.cos(b), 0], [0, 0, 1]])
    affine = np.eye(4)
    affine[:3, :3] = rz @ rx @ np.diag(spacing)
    affine[:3, 3] = origin
    return affine


def ring_label(shape=SHAPE, centre=(70.3, 101.7), empty_slices=(0, 6)) -> np.ndarray:
    """Cavity disc (1) in a myocardial ring (2) with an infarct sector (3) and a core (4)."""
    ii, jj = np.meshgrid(np.arange(shape[0]), np.arange(shape[1]), indexing="ij")
    label = np.zeros(shape, np.uint8)
    for k in range(shape[2]):
        if k in empty_slices:
            continue
        r = np.hypot(ii - centre[0] - k, jj - centre[1] + 0.5 * k)
        angle = np.arctan2(jj - centre[1] + 0.5 * k, ii - centre[0] - k)
        sl = label[..., k]
        sl[r < 18] = 2
        sl[r < 12] = 1
        sl[(r >= 12) & (r < 18) & (angle > 0) & (angle < 1.2)] = 3
        sl[(r >= 14) & (r < 16) & (angle > 0.3) & (angle < 0.9)] = 4
    return label


def world(affine: np.ndarray, ijk: np.ndarray) -> np.ndarray:
    """RAS of voxel indices ``ijk`` (shape ``(3,)`` or ``(3, n)``)."""
    offset = affine[:3, 3] if ijk.ndim == 1 else affine[:3, 3, None]
    return affine[:3, :3] @ ijk + offset


def test_resample_shape_spacing_and_exact_affine():
    affine = oblique_affine()
    ii, jj, kk = np.meshgrid(*(np.arange(n) for n in SHAPE), indexing="ij")
    # The image value is the voxel's RAS x coordinate: linear, so a cubic spline reproduces it.
    x = world(affine, np.stack([ii, jj, kk]).reshape(3, -1))[0].reshape(SHAPE)
    out = resample_inplane(Volume(x, affine), spacing=1.0, order=3)
    assert out.shape == (256, 288, 7)
    np.testing.assert_allclose(out.spacing, [1.0, 1.0, 10.0], atol=1e-9)
    np.testing.assert_allclose(out.direction, Volume(x, affine).direction, atol=1e-12)
    np.testing.assert_allclose(out.affine[:3, 2], affine[:3, 2])
    ni, nj, nk = out.shape
    oi, oj, ok = np.meshgrid(np.arange(ni), np.arange(nj), np.arange(nk), indexing="ij")
    expected = world(out.affine, np.stack([oi, oj, ok]).reshape(3, -1))[0].reshape(out.shape)
    m = 20  # away from the borders, where the boundary mode bends the spline
    np.testing.assert_allclose(out.array[m:-m, m:-m], expected[m:-m, m:-m], atol=1e-3)
    # The first voxel's outer edge stays where the old one's was.
    old_edge = world(affine, np.array([-0.5, -0.5, 0.0]))
    new_edge = world(out.affine, np.array([-0.5, -0.5, 0.0]))
    np.testing.assert_allclose(new_edge, old_edge, atol=1e-9)


def test_resample_cubic_clips_to_input_range():
    rng = np.random.default_rng(1)
    image = rng.uniform(10.0, 20.0, SHAPE)
    out = resample_inplane(Volume(image, oblique_affine()), spacing=0.7)
    assert out.array.min() >= image.min() and out.array.max() <= image.max()
    assert out.array.dtype == np.float64


def test_resample_label_keeps_place_values_and_dtype():
    affine = oblique_affine()
    label = ring_label()
    out = resample_inplane(Volume(label, affine), spacing=1.0, order=0)
    assert out.array.dtype == np.uint8
    assert set(np.unique(out.array)) == set(np.unique(label))
    for value in (1, 3, 4):
        before = world(affine, np.argwhere(label == value).mean(axis=0))
        after = world(out.affine, np.argwhere(out.array == value).mean(axis=0))
        assert np.linalg.norm(after - before) < 1.0, value


def test_resample_rejects_bad_spacing():
    with pytest.raises(InputError):
        resample_inplane(Volume(np.zeros(SHAPE), oblique_affine()), spacing=0.0)


def test_lv_centre_is_median_of_slice_centroids():
    label = ring_label()
    centroids = [np.argwhere(label[..., k] > 0).mean(axis=0) for k in range(1, 6)]
    np.testing.assert_allclose(lv_centre(label), np.median(centroids, axis=0))
    assert lv_centre(np.zeros(SHAPE, np.uint8)) is None


def test_crop_contains_whole_lv_and_paste_inverts():
    label = ring_label()
    centre = lv_centre(label)
    crop, box = crop_roi(label, centre, size=64)
    assert crop.shape == (64, 64, SHAPE[2]) and crop.dtype == label.dtype
    assert box[2] - box[0] == 64 and box[3] - box[1] == 64
    for k in range(SHAPE[2]):
        assert (crop[..., k] > 0).sum() == (label[..., k] > 0).sum()
    restored = paste_roi(crop, box, label.shape)
    np.testing.assert_array_equal(restored, label)


def test_crop_outside_image_is_filled_and_paste_clips():
    image = np.arange(20 * 30, dtype=np.float32).reshape(20, 30)
    crop, box = crop_roi(image, (2.4, 28.6), size=16, fill=-1)
    assert box == (-6, 21, 10, 37)
    assert (crop[:6] == -1).all() and (crop[:, 9:] == -1).all()
    np.testing.assert_array_equal(crop[6:, :9], image[0:10, 21:30])
    pasted = paste_roi(crop, box, image.shape, fill=0)
    np.testing.assert_array_equal(pasted[0:10, 21:30], image[0:10, 21:30])
    assert (pasted[10:] == 0).all() and (pasted[:, :21] == 0).all()


def test_paste_rejects_mismatched_crop():
    with pytest.raises(InputError):
        paste_roi(np.zeros((8, 8)), (0, 0, 16, 16), (32, 32))
