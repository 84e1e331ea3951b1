"""Plausibility checks of a segmentation (lgemri.qc) and their place in the cascade's output."""

from pathlib import Path

import numpy as np
import pytest

from lgemri.inference import load_models, segment_volume
from lgemri.labels import CAVITY, INFARCT, MYOCARDIUM
from lgemri.qc import LIMITS, UNCERTAINTY_LIMIT, measure, quality_checks, uncertainty_check
from lgemri.volume import Volume, read_nifti

SAMPLE = Path(__file__).resolve().parents[2] / "sample-data" / "emidec" / "Case_P004" / "Images" / "Case_P004.nii.gz"

SPACING = (1.4, 1.4, 10.0)


def _ring(shape=(128, 128), centre=(64, 64), r_in=22, r_out=30) -> np.ndarray:
    ii, jj = np.mgrid[: shape[0], : shape[1]]
    r = np.hypot((ii - centre[0]) * SPACING[0], (jj - centre[1]) * SPACING[1])
    lab = np.zeros(shape, dtype=np.uint8)
    lab[r < r_out] = MYOCARDIUM
    lab[r < r_in] = CAVITY
    return lab


def _volume(slices) -> Volume:
    return Volume(np.stack(slices, axis=-1), np.diag([*SPACING, 1.0]))


def _codes(label: Volume) -> set[str]:
    return {f.code for f in quality_checks(label)}


def test_a_heart_shaped_label_passes_every_check():
    label = _volume([_ring(r_in=r, r_out=r + 9) for r in (18, 20, 22, 20, 16)])
    values = measure(label)
    assert values["wall_thickness_mm"] == pytest.approx(9.0, abs=1.0)
    assert values["open_ring"] == 0.0 and values["lv_at_border"] == 0.0
    assert quality_checks(label) == []


def test_an_lv_cut_by_the_field_of_view_is_flagged():
    label = _volume([_ring(centre=(64, 10)) for _ in range(4)])
    assert "lv_at_border" in _codes(label)


def test_an_open_ring_on_mid_slices_is_flagged_but_not_at_the_base():
    closed = _ring()
    opened = closed.copy()
    opened[:64, 64:] = np.where(opened[:64, 64:] == MYOCARDIUM, 0, opened[:64, 64:])  # a quarter of the wall gone
    assert "open_ring" in _codes(_volume([closed, opened, opened, closed]))
    # the first (basal) third may be open (the outflow tract); only mid slices count
    assert "open_ring" not in _codes(_volume([opened, closed, closed, closed, closed, closed]))


def test_implausible_wall_volume_and_infarct_are_flagged_with_words():
    thin = _volume([_ring(r_in=29, r_out=30) for _ in range(4)])
    assert {"wall_thickness_mm", "myocardium_ml"} <= _codes(thin)
    infarcted = _volume([np.where(_ring() == MYOCARDIUM, INFARCT, _ring()) for _ in range(4)])
    (finding,) = [f for f in quality_checks(infarcted) if f.code == "infarct_percent"]
    assert finding.value == pytest.approx(100.0)
    assert finding.high == LIMITS["infarct_percent"][1]
    assert "100 % of the myocardium" in finding.message


def test_an_lv_jumping_between_slices_is_flagged():
    label = _volume([_ring(centre=(64, 64)), _ring(centre=(64, 64)), _ring(centre=(40, 90)), _ring(centre=(64, 64))])
    findings = {f.code: f for f in quality_checks(label)}
    assert findings["lv_jump_mm"].value > LIMITS["lv_jump_mm"][1]
    assert "jumps" in findings["lv_jump_mm"].message


def test_an_empty_label_says_no_lv():
    assert _codes(_volume([np.zeros((64, 64), np.uint8)] * 3)) == {"no_lv"}


def test_the_model_uncertainty_is_checked_only_when_measured():
    heart = _volume([_ring(r_in=r, r_out=r + 9) for r in (18, 20, 22, 20, 16)])
    assert quality_checks(heart, None) == [] and quality_checks(heart, UNCERTAINTY_LIMIT) == []
    (finding,) = quality_checks(heart, UNCERTAINTY_LIMIT + 0.05)
    assert finding.code == "uncertain" and finding.high == UNCERTAINTY_LIMIT and finding.low is None
    assert finding.value == pytest.approx(UNCERTAINTY_LIMIT + 0.05)
    assert finding.message == (
        f"the model is unsure of this result (uncertainty {UNCERTAINTY_LIMIT + 0.05:.3f}, "
        f"above {UNCERTAINTY_LIMIT:.3f}): check it slice by slice"
    )
    assert uncertainty_check(0.5, limit=0.6) is None and uncertainty_check(0.7, limit=0.6).high == 0.6
    # an empty label is "no LV", whatever the uncertainty
    assert _codes(_volume([np.zeros((64, 64), np.uint8)] * 3)) == {"no_lv"}
    assert [f.code for f in quality_checks(_volume([np.zeros((64, 64), np.uint8)] * 3), 1.0)] == ["no_lv"]


@pytest.fixture(scope="module")
def models():
    return load_models()


def test_the_cascade_reports_quality_of_a_good_and_of_a_doubtful_result(models):
    image = read_nifti(SAMPLE)
    good = segment_volume(image, models)
    summary = good.summary()
    assert summary["quality"] == {"doubtful": False, "findings": []}
    assert not any(w.startswith("doubtful") for w in summary["warnings"])
    assert 0.0 < summary["uncertainty"]["mutual_information"] <= UNCERTAINTY_LIMIT

    # the same study with the field of view cut through the middle of the heart
    centre = int(np.argwhere(good.label.array > 0)[:, 1].mean())
    cut = Volume(np.ascontiguousarray(image.array[:, : centre + 3]), image.affine)
    doubtful = segment_volume(cut, models).summary()
    assert doubtful["quality"]["doubtful"] is True
    codes = {f["code"] for f in doubtful["quality"]["findings"]}
    assert "lv_at_border" in codes
    assert any(w.startswith("doubtful result: the LV touches the edge") for w in doubtful["warnings"])
