"""Tests for lgemri.aha (the AHA 17-segment model) and the phantom's per-segment infarct extent."""

from __future__ import annotations

import numpy as np
import pytest

from lgemri import aha
from lgemri.errors import InputError
from lgemri.labels import CAVITY, INFARCT, MYOCARDIUM
from lgemri.phantom.cases import infarct_segments

RV = 120.0  # anterior RV insertion point, degrees counter-clockwise from image right

# angle -> basal segment, with the RV insertion at 120 degrees.
BASAL = {
    150: 2,  # anteroseptal
    200: 3,  # inferoseptal
    250: 4,  # inferior
    330: 5,  # inferolateral
    30: 6,  # anterolateral
    90: 1,  # anterior
}
APICAL = {180: 14, 270: 15, 0: 16, 90: 13}


@pytest.mark.parametrize(("angle", "segment"), sorted(BASAL.items()))
def test_basal_segments(angle, segment):
    assert int(aha.segment_from_angle(angle, "basal", RV)) == segment
    assert aha.SEGMENT_NAMES[segment].startswith("basal")


@pytest.mark.parametrize(("angle", "segment"), sorted(BASAL.items()))
def test_mid_segments_are_basal_plus_six(angle, segment):
    assert int(aha.segment_from_angle(angle, "mid", RV)) == segment + 6
    assert aha.SEGMENT_NAMES[segment + 6] == aha.SEGMENT_NAMES[segment].replace("basal", "mid")


@pytest.mark.parametrize(("angle", "segment"), sorted(APICAL.items()))
def test_apical_segments(angle, segment):
    assert int(aha.segment_from_angle(angle, "apical", RV)) == segment


@pytest.mark.parametrize("angle", [0, 45, 123.4, 359.9, -90])
def test_apex_is_17(angle):
    assert int(aha.segment_from_angle(angle, "apex", RV)) == 17


def test_segment_from_angle_on_arrays():
    angles = np.array([[150.0, 200.0, 250.0], [330.0, 30.0, 90.0]])
    segments = aha.segment_from_angle(angles, "basal", RV)
    assert segments.shape == angles.shape
    assert segments.tolist() == [[2, 3, 4], [5, 6, 1]]
    # Angles wrap: -210 is 150, 510 is 150.
    assert aha.segment_from_angle(np.array([-210.0, 510.0]), "basal", RV).tolist() == [2, 2]
    assert aha.segment_from_angle(np.zeros((2, 3)), "apex", RV).shape == (2, 3)


def test_segment_boundaries():
    # Each six-segment ring starts exactly at the insertion point.
    assert int(aha.segment_from_angle(RV, "basal", RV)) == 2
    assert int(aha.segment_from_angle(RV - 1e-6, "basal", RV)) == 1
    assert int(aha.segment_from_angle(RV + 60.0, "mid", RV)) == 9
    # The whole circle covers each ring's segments.
    circle = np.arange(0.0, 360.0, 0.5)
    assert set(aha.segment_from_angle(circle, "basal", RV).tolist()) == set(range(1, 7))
    assert set(aha.segment_from_angle(circle, "mid", RV).tolist()) == set(range(7, 13))
    assert set(aha.segment_from_angle(circle, "apical", RV).tolist()) == set(range(13, 17))


def test_unknown_level_is_an_input_error():
    with pytest.raises(InputError, match="level"):
        aha.segment_from_angle(10.0, "equatorial", RV)


# -- slice levels -------------------------------------------------------------------------------

B, M, A, X = "basal", "mid", "apical", "apex"


@pytest.mark.parametrize(
    ("n", "expected"),
    [
        (3, [B, M, A]),
        (4, [B, M, M, A]),
        (5, [B, B, M, M, A]),
        (9, [B, B, B, M, M, M, A, A, A]),
    ],
)
def test_slice_levels(n, expected):
    assert aha.slice_levels([True] * n, [True] * n) == expected
    # With an apex cap (myocardium, no cavity) and empty slices at both ends.
    has_myo = [False, False] + [True] * (n + 1) + [False]
    has_cav = [False, False] + [True] * n + [False, False]
    assert aha.slice_levels(has_myo, has_cav) == [None, None] + expected + [X, None]
    # Two cap slices.
    has_myo = [False] + [True] * (n + 2) + [False, False]
    has_cav = [False] + [True] * n + [False] * 4
    assert aha.slice_levels(np.array(has_myo), np.array(has_cav)) == [None] + expected + [X, X, None, None]


def test_slice_levels_edge_cases():
    assert aha.slice_levels([False, False], [False, False]) == [None, None]
    assert aha.slice_levels([True, True], [False, False]) == [X, X]
    with pytest.raises(InputError):
        aha.slice_levels([True, True], [True])
    with pytest.raises(InputError):
        aha.slice_levels(np.ones((2, 2), bool), np.ones((2, 2), bool))


# -- territories --------------------------------------------------------------------------------

TERRITORY = {
    **dict.fromkeys((1, 2, 7, 8, 13, 14, 17), "LAD"),
    **dict.fromkeys((3, 4, 9, 10, 15), "RCA"),
    **dict.fromkeys((5, 6, 11, 12, 16), "LCX"),
}


@pytest.mark.parametrize("segment", range(1, 18))
def test_territory_of_segment(segment):
    assert aha.territory_of_segment(segment) == TERRITORY[segment]


@pytest.mark.parametrize("segment", [0, 18, -1])
def test_territory_of_unknown_segment(segment):
    with pytest.raises(InputError, match="1-17"):
        aha.territory_of_segment(segment)


def test_territories_partition_the_17_segments():
    segments = [s for group in aha.TERRITORIES.values() for s in group]
    assert sorted(segments) == list(range(1, 18))
    assert sorted(aha.SEGMENT_NAMES) == list(range(1, 18))


# -- a known geometry ---------------------------------------------------------------------------


def ring_stack(sector_deg: tuple[float, float] | None, infarct_slices: range) -> np.ndarray:
    """Nine base-to-apex slices of a cavity disc in a myocardial ring, shrinking to the apex.

    Array convention: ``label[i, j, k]``, ``i`` the image column (x to the right), ``j`` the row
    (down); angles count counter-clockwise from the right with anterior up. The rings are
    symmetric about voxel (48, 48), so the LV centre is exact.
    """
    n, pixel = 97, 1.5
    c = (n - 1) // 2
    ii, jj = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    di, dj = (ii - c) * pixel, (jj - c) * pixel
    r = np.hypot(di, dj)
    angle = np.mod(np.degrees(np.arctan2(-dj, di)), 360.0)
    label = np.zeros((n, n, 9), np.uint8)
    for k in range(9):
        r_endo = 26.0 - 1.8 * k
        r_epi = r_endo + 9.0 - 0.3 * k
        s = label[:, :, k]
        s[r < r_epi] = MYOCARDIUM
        s[r < r_endo] = CAVITY
        if sector_deg is not None and k in infarct_slices:
            lo, hi = sector_deg
            s[(s == MYOCARDIUM) & (angle >= lo) & (angle < hi)] = INFARCT  # transmural
    return label


def test_infarct_segments_of_a_basal_inferoseptal_infarct():
    label = ring_stack((180.0, 240.0), range(0, 3))
    assert (label == CAVITY).any(axis=(0, 1)).all()
    segments = infarct_segments(label, (1.5, 1.5), 120.0)
    assert list(segments) == [3], segments
    assert segments[3] > 0.9
    assert aha.territory_of_segment(3) == "RCA"


def test_infarct_segments_of_a_mid_anterolateral_infarct():
    # Anterolateral: 60 degrees clockwise from the insertion, 0-60 with rv 120 -> segment 12.
    label = ring_stack((0.0, 60.0), range(3, 6))
    segments = infarct_segments(label, (1.5, 1.5), 120.0)
    assert list(segments) == [12], segments
    assert segments[12] > 0.9


def test_infarct_segments_without_infarct():
    assert infarct_segments(ring_stack(None, range(0)), (1.5, 1.5), 120.0) == {}
