"""The site shifts of experiments/site_shift.py change how a study was acquired, not its anatomy:
the label keeps its place and size in the patient, so Dice against it measures the model (but for
``nominal-pixels``, whose point is the stretch of a PNG read without its geometry)."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

from lgemri.volume import Volume

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def shifts():
    spec = importlib.util.spec_from_file_location("site_shift", ROOT / "experiments" / "site_shift.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _study() -> tuple[Volume, Volume]:
    """An anisotropic grid (1.5 x 1.1 mm pixels, 10 mm slices, off origin) with an elliptic 'LV'."""
    affine = np.diag([1.5, 1.1, 10.0, 1.0])
    affine[:3, 3] = (-40.0, 25.0, 5.0)
    i, j = np.meshgrid(np.arange(120), np.arange(160), indexing="ij")
    disc = ((i - 50) * 1.5 / 30.0) ** 2 + ((j - 90) * 1.1 / 20.0) ** 2 <= 1.0
    label = np.repeat(disc[:, :, None], 6, axis=2).astype(np.uint8) * 2
    image = label.astype(np.float32) * 100.0 + 20.0
    return Volume(image, affine), Volume(label, affine)


def _world_centre(volume: Volume) -> np.ndarray:
    centre = np.asarray(ndimage.center_of_mass(volume.array > 0))
    return volume.affine[:3, :3] @ centre + volume.affine[:3, 3]


def _ml(volume: Volume) -> float:
    return float((volume.array > 0).sum() * abs(np.linalg.det(volume.affine[:3, :3])) / 1000.0)


@pytest.mark.parametrize("name", ["fine-pixels", "wide-fov", "sparse-slices", "12-bit", "bias", "site"])
def test_a_shift_keeps_the_anatomy_where_it_is(shifts, name):
    image, label = _study()
    new_image, new_label = shifts.SHIFTS[name](image, label, np.random.default_rng(0))
    assert new_image.shape == new_label.shape
    assert np.allclose(new_image.affine, new_label.affine)
    assert np.allclose(_world_centre(new_label)[:2], _world_centre(label)[:2], atol=0.6)  # mm, in-plane
    per_slice = _ml(new_label) / new_label.shape[2] / new_label.spacing[2]
    assert per_slice == pytest.approx(_ml(label) / label.shape[2] / label.spacing[2], rel=0.03)


def test_fine_pixels_and_rotation_keep_the_true_pixel_shape(shifts):
    image, label = _study()
    fine, fine_label = shifts.fine_pixels(image, label, np.random.default_rng(0))
    assert np.allclose(fine.spacing[:2], shifts.FINE_MM, atol=0.01)
    assert np.allclose(fine.shape[0] * fine.spacing[0], image.shape[0] * image.spacing[0], atol=0.01)
    turned, turned_label = shifts.rotated(image, label, np.random.default_rng(0))
    assert turned.shape[:2] == (image.shape[1], image.shape[0])
    assert np.allclose(turned.spacing, (1.1, 1.5, 10.0))
    assert _ml(turned_label) == pytest.approx(_ml(label))
    # the ellipse's long axis (60 mm along the first axis) now lies along the second array axis
    ii, jj = np.nonzero(turned_label.array[:, :, 0])
    assert (jj.max() - jj.min()) * turned.spacing[1] == pytest.approx(60.0, abs=3.0)
    assert (ii.max() - ii.min()) * turned.spacing[0] == pytest.approx(40.0, abs=3.0)


def test_twelve_bit_and_wide_fov_change_storage_only(shifts):
    image, label = _study()
    stored, same = shifts.twelve_bit(image, label, np.random.default_rng(0))
    assert (
        same is label
        and stored.array.max() > 3000
        and np.corrcoef(stored.array.ravel(), image.array.ravel())[0, 1] > 0.999
    )
    wide, wide_label = shifts.wide_fov(image, label, np.random.default_rng(3))
    assert wide.shape[0] * wide.spacing[0] == pytest.approx(shifts.WIDE_FOV_MM, abs=1.5)
    assert wide_label.array.sum() == label.array.sum()


def test_nominal_pixels_are_square_and_keep_the_pixel_area(shifts):
    image, label = _study()
    nominal, nominal_label = shifts.nominal_pixels(image, label, np.random.default_rng(0))
    assert nominal.array is image.array and nominal_label.array is label.array
    assert nominal.spacing[0] == pytest.approx(nominal.spacing[1])
    assert nominal.spacing[0] * nominal.spacing[1] == pytest.approx(1.5 * 1.1)
