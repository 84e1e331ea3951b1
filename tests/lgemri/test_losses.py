"""Tests for lgemri.losses: class frequencies, the shared class weights, the segmentation loss."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from lgemri.errors import InputError
from lgemri.losses import WEIGHT_SCHEMES, SegmentationLoss, class_frequencies, class_weights
from lgemri.nets.resatt_unet import ResAttUNet

# the reference paper's imbalance: background ~77 %, no-reflow < 1 %
PAPER_FREQUENCIES = np.array([0.77, 0.12, 0.08, 0.025, 0.005])


def test_class_frequencies_counts_pixels_over_all_arrays():
    a = np.array([[0, 0], [1, 2]], dtype=np.uint8)
    b = np.array([0, 0, 0, 4, 4, 4], dtype=np.int64)
    f = class_frequencies([a, b, np.zeros((0,), dtype=np.uint8)])
    assert f.shape == (5,)
    np.testing.assert_allclose(f, np.array([5, 1, 1, 0, 3]) / 10)
    np.testing.assert_allclose(class_frequencies([np.array([0.0, 1.0, 1.0])], num_classes=2), [1 / 3, 2 / 3])


@pytest.mark.parametrize(
    "labels, message",
    [
        ([np.array([0, 5])], "0..4"),
        ([np.array([-1, 0])], "0..4"),
        ([np.array([0.5])], "integers"),
        ([], "no labelled pixel"),
    ],
)
def test_class_frequencies_rejects_bad_labels(labels, message):
    with pytest.raises(InputError, match=message):
        class_frequencies(labels)


@pytest.mark.parametrize("scheme", [s for s in WEIGHT_SCHEMES if s != "none"])
def test_class_weights_favour_the_rare_class_and_have_mean_one(scheme):
    w = class_weights(PAPER_FREQUENCIES, scheme)
    assert w.shape == (5,)
    assert w.mean() == pytest.approx(1.0)
    assert int(np.argmax(w)) == 4  # no-reflow, the rarest
    assert int(np.argmin(w)) == 0  # background, the commonest
    assert np.all(np.diff(w[[0, 1, 2, 3, 4]]) >= 0)  # rarer never weighs less
    # counts instead of fractions give the same weights
    np.testing.assert_allclose(class_weights(PAPER_FREQUENCIES * 12345, scheme), w)


def test_class_weight_values():
    w = class_weights(PAPER_FREQUENCIES, "inverse_sqrt", clip=None)
    raw = 1 / np.sqrt(PAPER_FREQUENCIES)
    np.testing.assert_allclose(w, raw / raw.mean())
    np.testing.assert_allclose(class_weights(PAPER_FREQUENCIES, "none"), np.ones(5))
    median = class_weights([0.5, 0.3, 0.2], "median", clip=None)
    raw = 0.3 / np.array([0.5, 0.3, 0.2])
    np.testing.assert_allclose(median, raw / raw.mean())


def test_class_weights_clip_and_unseen_classes():
    w = class_weights(PAPER_FREQUENCIES, "inverse", clip=10.0)
    assert w.max() / w.min() == pytest.approx(10.0)
    assert w.mean() == pytest.approx(1.0)
    unseen = class_weights([0.9, 0.1, 0.0], "inverse_sqrt", clip=5.0)
    assert unseen[2] == pytest.approx(unseen.max()) and unseen[2] / unseen[0] == pytest.approx(5.0)
    unclipped = class_weights([0.9, 0.1, 0.0], "inverse_sqrt", clip=None)
    assert unclipped[2] == pytest.approx(unclipped[1])


@pytest.mark.parametrize(
    "frequencies, kwargs, message",
    [
        (PAPER_FREQUENCIES, {"scheme": "log"}, "choose from inverse_sqrt"),
        ([0.5, -0.1], {}, "non-negative"),
        ([0.0, 0.0], {}, "not all zero"),
        ([0.5, np.nan], {}, "finite"),
        ([0.5, 0.5], {"clip": 0.5}, "at least 1"),
    ],
)
def test_class_weights_reject_bad_input(frequencies, kwargs, message):
    with pytest.raises(InputError, match=message):
        class_weights(frequencies, **kwargs)


def test_weighted_cross_entropy_matches_torch():
    torch.manual_seed(0)
    logits, target = torch.randn(2, 5, 8, 8), torch.randint(0, 5, (2, 8, 8))
    w = class_weights(PAPER_FREQUENCIES)
    expected = F.cross_entropy(logits, target, weight=torch.tensor(w, dtype=torch.float32))
    assert SegmentationLoss(w)(logits, target).item() == pytest.approx(expected.item(), rel=1e-6)
    assert SegmentationLoss(w)(logits, target[:, None]).item() == pytest.approx(expected.item(), rel=1e-6)
    unweighted = F.cross_entropy(logits, target).item()
    assert SegmentationLoss(None)(logits, target).item() == pytest.approx(unweighted, rel=1e-6)
    with_dice = SegmentationLoss(w, dice_weight=0.5)(logits, target)
    assert with_dice.ndim == 0 and with_dice.item() > expected.item()
    with pytest.raises(InputError, match="3 class weights for 5 classes"):
        SegmentationLoss([1.0, 1.0, 1.0])(logits, target)


def _phantom_batch() -> tuple[torch.Tensor, torch.Tensor]:
    """Two 32 x 32 slices: a bright cavity disc in a dark ring with a rare bright patch."""
    ii, jj = np.mgrid[:32, :32]
    r = np.hypot(ii - 16, jj - 15)
    label = np.zeros((32, 32), dtype=np.int64)
    label[r < 9] = 2
    label[r < 6] = 1
    label[(r >= 6) & (r < 9) & (jj > 20)] = 3
    label[(r >= 7) & (r < 8) & (jj > 22)] = 4
    intensity = np.array([0.2, 0.9, 0.1, 1.0, 0.4], dtype=np.float32)[label]
    images = np.stack([intensity, np.rot90(intensity).copy()])[:, None]
    labels = np.stack([label, np.rot90(label).copy()])
    return torch.from_numpy(images), torch.from_numpy(labels)


@pytest.mark.parametrize("dice_weight", [0.0, 1.0])
def test_loss_decreases_on_a_fixed_batch(dice_weight):
    torch.manual_seed(0)
    x, y = _phantom_batch()
    weights = class_weights(class_frequencies(y.numpy()))
    net = ResAttUNet(channels=(4, 8, 8, 8, 8, 8), dropout=0.0)
    loss_fn = SegmentationLoss(weights, dice_weight=dice_weight)
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    losses = []
    for _ in range(20):
        loss = loss_fn(net(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0]
    assert min(losses[-5:]) < min(losses[:5])
