"""Monte-Carlo dropout uncertainty (lgemri.uncertainty) with the shipped models on phantom studies,
through the cascade (segment_volume's uncertainty and its ``uncertain`` finding) and mc_dropout."""

from __future__ import annotations

import copy
import dataclasses
import math
import threading

import numpy as np
import pytest
import torch

from lgemri import qc
from lgemri import uncertainty as U
from lgemri.errors import InputError
from lgemri.inference import MC_PASSES, MC_PASSES_ENV, load_models, segment_volume
from lgemri.labels import LABEL_NAMES
from lgemri.phantom import make_case
from lgemri.uncertainty import entropy, estimate, mc_dropout, mutual_information
from lgemri.volume import Volume

PASSES = 4  # enough to separate the cases below; the product default is 8


@pytest.fixture(scope="module")
def models():
    return load_models()


@pytest.fixture(scope="module")
def case():
    return make_case(1, seed=11)  # Case_P001: an infarct with a no-reflow core


@pytest.fixture(scope="module")
def clean(case, models):
    return mc_dropout(case.image, models, passes=PASSES, seed=0)


def test_mutual_information_by_hand():
    agree = np.tile(np.array([0.7, 0.2, 0.1], dtype=np.float32)[None, :, None], (5, 1, 1))
    h, eh, mi = mutual_information(agree)
    assert h[0] == pytest.approx(eh[0], abs=1e-6) and mi[0] == pytest.approx(0.0, abs=1e-6)
    disagree = np.array([[[1.0], [0.0]], [[0.0], [1.0]]], dtype=np.float32)  # two confident passes, opposite classes
    h, eh, mi = mutual_information(disagree)
    assert eh[0] == pytest.approx(0.0, abs=1e-6)
    assert mi[0] == pytest.approx(math.log(2), abs=1e-5)  # all the uncertainty is epistemic
    assert entropy(np.full((5, 1), 0.2), axis=0)[0] == pytest.approx(math.log(5))


def test_shapes_ranges_and_details(case, clean):
    image = case.image
    assert clean.label.shape == image.shape and np.allclose(clean.label.affine, image.affine)
    assert clean.mutual_information.shape == image.shape
    assert set(np.unique(clean.label.array)) <= {0, 1, 2, 3, 4}
    mi = clean.mutual_information.array
    assert mi.min() >= 0.0 and mi.max() <= math.log(5) + 1e-5
    assert 0.0 < clean.score < math.log(5)
    summary = clean.summary()
    assert summary["passes"] == PASSES and summary["region"] == "predicted_lv"
    assert (
        summary["samples"] == PASSES and summary["members"] == 1 and summary["of_members"] == 2
    )  # the narrow member's passes
    assert len(summary["slices"]) == image.shape[2]
    assert set(summary["classes"]) == {LABEL_NAMES[c] for c in range(1, 5)}
    assert summary["predictive_entropy"] >= summary["expected_entropy"] >= 0.0
    assert 0.0 <= summary["flip_rate"] <= 1.0
    assert clean.warnings == []


def test_the_label_is_the_infer_label_and_the_score_the_infer_uncertainty(case, models, clean):
    result = segment_volume(case.image, models, mc_passes=PASSES)
    assert np.array_equal(clean.label.array, result.label.array)  # one cascade: the passes never change the label
    assert result.uncertainty.score == clean.score
    assert result.summary()["uncertainty"]["mutual_information"] == round(clean.score, 5)


def test_reproducible_with_a_seed(case, models, clean):
    again = mc_dropout(case.image, models, passes=PASSES, seed=0)
    assert again.score == clean.score
    assert np.array_equal(again.mutual_information.array, clean.mutual_information.array)
    other = mc_dropout(case.image, models, passes=PASSES, seed=1)
    assert other.score != clean.score  # other dropout masks
    assert other.score == pytest.approx(clean.score, rel=0.5)  # but the same uncertainty, roughly


def test_no_dropout_means_no_epistemic_uncertainty(case, models):
    still = copy.deepcopy(models.segmenter)
    for module in still.modules():
        if isinstance(module, torch.nn.modules.dropout._DropoutNd):
            module.p = 0.0
    result = mc_dropout(case.image, dataclasses.replace(models, segmenter=still), passes=PASSES, seed=0)
    assert result.score is None and not result.mutual_information.array.any()
    assert any("no dropout: no model uncertainty" in w for w in result.warnings)
    infer = segment_volume(case.image, dataclasses.replace(models, segmenter=still), mc_passes=PASSES)
    assert infer.summary()["uncertainty"]["mutual_information"] is None
    assert "uncertain" not in {f.code for f in infer.findings}


def test_every_member_can_run_and_one_without_dropout_adds_one_deterministic_sample(case, models):
    both = segment_volume(case.image, models, mc_passes=PASSES, mc_members=None).uncertainty
    assert both.samples == 2 * PASSES and both.details["members"] == 2 and "of_members" not in both.details
    ensemble = copy.deepcopy(models.segmenter)
    for module in ensemble.members[1].modules():
        if isinstance(module, torch.nn.modules.dropout._DropoutNd):
            module.p = 0.0
    still_wide = dataclasses.replace(models, segmenter=ensemble)
    result = segment_volume(case.image, still_wide, mc_passes=PASSES, mc_members=None).uncertainty
    assert result.samples == PASSES + 1 and result.details["members_with_dropout"] == 1
    assert 0.0 < result.score < math.log(5)
    alone = segment_volume(case.image, still_wide, mc_passes=PASSES, mc_members=(1,))
    assert alone.uncertainty.score is None and "no dropout: no model uncertainty" in alone.uncertainty.warnings[0]
    with pytest.raises(InputError, match="members must be indices of the 2 member"):
        segment_volume(case.image, models, mc_passes=PASSES, mc_members=(2,))


def test_noisy_study_is_more_uncertain(case, models, clean):
    rng = np.random.default_rng(0)
    array = case.image.array.astype(np.float32)
    noisy = np.abs(array + rng.normal(0.0, 0.5 * array.std(), array.shape))  # magnitude noise, SNR ~2
    result = mc_dropout(Volume(noisy.astype(np.float32), case.image.affine), models, passes=PASSES, seed=0)
    assert result.score > 3 * clean.score


def test_infarct_is_less_certain_than_the_cavity(clean):
    classes = clean.summary()["classes"]
    assert classes["infarct"]["voxels"] > 0
    assert classes["infarct"]["mutual_information"] > 2 * classes["lv_cavity"]["mutual_information"]


def test_shared_model_untouched_and_rng_restored(case, models):
    assert not any(m.training for m in models.segmenter.modules())
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    reference = segment_volume(case.image, models).label.array
    results = {}

    def infer():
        results["infer"] = [segment_volume(case.image, models).label.array for _ in range(3)]

    def mc():
        results["mc"] = mc_dropout(case.image, models, passes=2, seed=5)

    threads = [threading.Thread(target=infer), threading.Thread(target=mc)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(np.array_equal(label, reference) for label in results["infer"])  # infer stayed deterministic
    assert not any(m.training for m in models.segmenter.modules())  # still in eval mode
    assert torch.equal(torch.rand(3), expected)  # the global RNG went on as if nothing had run


def test_empty_and_constant_images(models, case):
    constant = Volume(np.full((64, 64, 3), 7.0, dtype=np.float32), case.image.affine)
    result = mc_dropout(constant, models, passes=2)
    assert result.score is None and not result.label.array.any()
    assert any("constant" in w for w in result.warnings)


def test_the_cascade_reports_its_uncertainty_deterministically(case, models):
    result = segment_volume(case.image, models)
    summary = result.summary()["uncertainty"]
    assert summary["passes"] == MC_PASSES and summary["samples"] == MC_PASSES
    assert 0.0 < summary["mutual_information"] < math.log(5)
    assert "uncertainty" in result.timings
    again = segment_volume(case.image, models)
    assert again.summary()["uncertainty"]["mutual_information"] == summary["mutual_information"]
    assert np.array_equal(again.label.array, result.label.array)


def test_mc_passes_0_switches_the_uncertainty_off(case, models, monkeypatch):
    on = segment_volume(case.image, models, mc_passes=PASSES)
    off = segment_volume(case.image, models, mc_passes=0)
    assert np.array_equal(on.label.array, off.label.array)
    assert off.uncertainty is None and "uncertainty" not in off.timings
    assert off.summary()["uncertainty"] == {"mutual_information": None, "passes": 0}
    monkeypatch.setenv(MC_PASSES_ENV, "0")
    assert segment_volume(case.image, models).uncertainty is None
    monkeypatch.setenv(MC_PASSES_ENV, "3")
    assert segment_volume(case.image, models).uncertainty.passes == 3
    monkeypatch.setenv(MC_PASSES_ENV, "many")
    with pytest.raises(InputError, match=MC_PASSES_ENV):
        segment_volume(case.image, models)
    with pytest.raises(InputError, match="at least 2 \\(or 0: none\\)"):
        segment_volume(case.image, models, mc_passes=1)


def test_an_uncertain_result_is_doubtful_in_words(case, models, monkeypatch):
    result = segment_volume(case.image, models, mc_passes=PASSES)
    assert "uncertain" not in {f.code for f in result.findings}
    monkeypatch.setattr(qc, "UNCERTAINTY_LIMIT", result.uncertainty.score / 2)
    doubtful = segment_volume(case.image, models, mc_passes=PASSES).summary()
    assert doubtful["quality"]["doubtful"] is True
    (finding,) = [f for f in doubtful["quality"]["findings"] if f["code"] == "uncertain"]
    assert finding["value"] == pytest.approx(result.uncertainty.score, abs=1e-4)
    assert finding["high"] == pytest.approx(result.uncertainty.score / 2)
    assert finding["message"].startswith("the model is unsure of this result (uncertainty ")
    assert finding["message"].endswith("check it slice by slice")
    assert f"doubtful result: {finding['message']}" in doubtful["warnings"]


def test_estimate_without_an_lv_gives_no_score(models):
    inputs = np.zeros((3, 1, 128, 128), dtype=np.float32)
    background = np.zeros((3, 5, 128, 128), dtype=np.float32)
    background[:, 0] = 1.0
    result = estimate(models.segmenter, inputs, background, np.ones((128, 128), bool), passes=2)
    assert result.score is None and result.samples == 0
    assert result.warnings == ["no LV predicted: no model uncertainty"]


@pytest.mark.parametrize("passes", [1, 0, 2.5, "8", True])
def test_bad_passes(case, models, passes):
    with pytest.raises(InputError, match="passes must be an integer of at least 2"):
        mc_dropout(case.image, models, passes=passes)


def test_bad_seed(case, models):
    with pytest.raises(InputError, match="seed must be a non-negative integer"):
        mc_dropout(case.image, models, seed=-1)


def test_bank_dropout_drops_like_dropout_and_reproducibly():
    layer = U.BankDropout(0.1)
    x = torch.ones(8, 16, 64, 64)
    torch.manual_seed(0)
    a = layer(x)
    kept = (a > 0).float().mean().item()
    assert kept == pytest.approx(0.9, abs=0.005)
    assert torch.allclose(a[a > 0], torch.full_like(a[a > 0], 1 / 0.9))  # scaled like nn.Dropout
    b = layer(x)
    assert not torch.equal(a, b)  # another mask each call
    torch.manual_seed(0)
    assert torch.equal(layer(x), a)  # the same seed, the same mask
    big = torch.ones(U.BANK_SIZE // 2 + 1)
    assert (layer(big) > 0).float().mean().item() == pytest.approx(0.9, abs=0.005)  # beyond the bank: torch's dropout


def test_the_mc_copy_computes_what_the_network_computes(models):
    member = models.segmenter.members[0]
    mc = U._mc_copy(member)
    assert mc is U._mc_copy(member)  # made once
    unfolded = [
        m
        for m in mc.modules()
        if isinstance(getattr(getattr(m, "adn", None), "N", None), torch.nn.modules.batchnorm._BatchNorm)
    ]
    assert unfolded and all(
        isinstance(m.conv, torch.nn.ConvTranspose2d) for m in unfolded
    )  # folded but after up-convolutions
    assert sum(isinstance(m, U.BankDropout) for m in mc.modules()) == 22
    x = torch.from_numpy(np.random.default_rng(0).random((2, 1, 96, 96), dtype=np.float32))
    still = copy.deepcopy(mc)
    for m in still.modules():
        if isinstance(m, U.BankDropout):
            m.p = 0.0
    with torch.no_grad():
        assert torch.allclose(still(x), member(x), atol=1e-4)  # batch norm folded, nothing dropped: the same logits
