"""AHA 17-segment assignment of every myocardium voxel (lgemri.aha.assign_segments) on a known
geometry, and its agreement with the simulator's wall coordinates."""

from __future__ import annotations

import numpy as np
import pytest

from lgemri import aha
from lgemri.errors import InputError
from lgemri.labels import CAVITY, INFARCT, MYOCARDIUM
from simulator.wall import wall_from_label

N, PIXEL = 97, 1.5
C = (N - 1) // 2


def ring_stack(n_slices: int = 9, cap: bool = True) -> np.ndarray:
    """Base-to-apex rings symmetric about voxel (48, 48), optionally closed by an apex cap."""
    ii, jj = np.meshgrid(np.arange(N), np.arange(N), indexing="ij")
    r = np.hypot((ii - C) * PIXEL, (jj - C) * PIXEL)
    label = np.zeros((N, N, n_slices + int(cap)), np.uint8)
    for k in range(n_slices):
        r_endo = 26.0 - 1.8 * k
        label[:, :, k][r < r_endo + 9.0] = MYOCARDIUM
        label[:, :, k][r < r_endo] = CAVITY
    if cap:
        label[:, :, n_slices][r < 6.0] = MYOCARDIUM
    return label


def at_angle(angle_deg: float, radius_mm: float) -> tuple[int, int]:
    """The voxel (i, j) at ``angle_deg`` (counter-clockwise from image right, anterior up)."""
    t = np.radians(angle_deg)
    return C + int(round(radius_mm * np.cos(t) / PIXEL)), C - int(round(radius_mm * np.sin(t) / PIXEL))


# (slice, angle) -> segment with the RV insertion at 120 degrees; 9 ring slices are split
# 3 basal (0-2), 3 mid (3-5), 3 apical (6-8); slice 9 is the apex cap.
KNOWN = [
    (0, 90, 1),
    (1, 150, 2),
    (2, 200, 3),
    (0, 250, 4),
    (1, 330, 5),
    (2, 30, 6),
    (3, 90, 7),
    (4, 150, 8),
    (5, 200, 9),
    (3, 250, 10),
    (4, 330, 11),
    (5, 30, 12),
    (6, 90, 13),
    (7, 180, 14),
    (8, 270, 15),
    (6, 0, 16),
]


@pytest.mark.parametrize(("k", "angle", "segment"), KNOWN)
def test_assign_segments_on_rings(k, angle, segment):
    label = ring_stack()
    segments = aha.assign_segments(label, (PIXEL, PIXEL), 120.0)
    r_mid_wall = 26.0 - 1.8 * k + 4.5
    i, j = at_angle(angle, r_mid_wall)
    assert label[i, j, k] == MYOCARDIUM
    assert segments[i, j, k] == segment


def test_assign_segments_cap_background_and_default():
    label = ring_stack()
    segments = aha.assign_segments(label, (PIXEL, PIXEL))
    assert segments.shape == label.shape
    assert set(np.unique(segments[:, :, 9])) == {0, 17}
    assert (segments[label == CAVITY] == 0).all() and (segments[label == 0] == 0).all()
    assert (segments[label == MYOCARDIUM] > 0).all()
    # None is the patient-axes default of 120 degrees.
    assert aha.DEFAULT_RV_INSERTION_DEG == 120.0
    assert np.array_equal(segments, aha.assign_segments(label, (PIXEL, PIXEL), 120.0))
    # Turning the insertion point turns the segments: at 180 degrees, the 150-degree point of a
    # basal slice is 330 degrees past it, the anterior segment (1).
    i, j = at_angle(150, 30.5)
    assert aha.assign_segments(label, (PIXEL, PIXEL), 180.0)[i, j, 0] == 1


def test_assign_segments_counts_infarct_as_myocardium_and_takes_2d():
    label = ring_stack()
    label[(label == MYOCARDIUM) & (np.arange(N)[:, None, None] > C)] = INFARCT
    segments = aha.assign_segments(label, (PIXEL, PIXEL))
    assert np.array_equal(segments > 0, label >= MYOCARDIUM)
    one = aha.assign_segments(label[:, :, 4], (PIXEL, PIXEL))
    assert one.shape == (N, N)
    assert set(np.unique(one)) - {0} <= set(range(7, 13))  # a lone slice with cavity is mid
    with pytest.raises(InputError, match="2D or 3D"):
        aha.assign_segments(np.zeros(5), (1.0, 1.0))


def test_parse_territory():
    assert aha.parse_territory("lcx") == "LCX" and aha.parse_territory(" LAD ") == "LAD"
    with pytest.raises(InputError, match="LAD, RCA, LCX"):
        aha.parse_territory("LMCA")


def test_wall_coordinates_agree_with_assign_segments():
    label = ring_stack()
    wall = wall_from_label(label, (PIXEL, PIXEL, 10.0))
    segments = aha.assign_segments(label, (PIXEL, PIXEL))
    assert wall.n == int((label == MYOCARDIUM).sum())
    assert np.array_equal(wall.segment, segments[wall.ii, wall.jj, wall.kk])
    ring = wall.kk < 9
    assert wall.depth[ring].min() < 0.1 and wall.depth[ring].max() > 0.9
    # Depth grows outward on every ring.
    r = np.hypot(wall.ii - C, wall.jj - C)
    assert np.corrcoef(r[ring & (wall.kk == 4)], wall.depth[ring & (wall.kk == 4)])[0, 1] > 0.95
