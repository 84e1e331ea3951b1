"""Class frequencies, class weights and the segmentation loss.

EMIDEC labels are severely imbalanced: the reference web-based LGE paper (Omar et al.,
section 3.3.B, Fig. 4) counts about 77 % background and under 1 % no-reflow. Both its
segmentation loss (class-weighted cross-entropy, section 3.4.B) and its GAN's weighted L1 loss
use the same per-class weights; :func:`class_weights` is that one shared definition. It is pure
numpy (no tensors) so that the GAN (which weights an L1 image loss per pixel by the class under it) and the
segmentation trainer compute identical weights from identical frequencies.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from monai.losses import DiceLoss

from .errors import InputError
from .labels import NUM_CLASSES

__all__ = ["WEIGHT_SCHEMES", "class_frequencies", "class_weights", "SegmentationLoss"]

WEIGHT_SCHEMES = ("inverse_sqrt", "inverse", "median", "none")


def class_frequencies(labels: Iterable[np.ndarray], num_classes: int = NUM_CLASSES) -> np.ndarray:
    """The fraction of pixels of each class over a set of label arrays.

    Args:
        labels: Integer label arrays of any shapes (e.g. the training ROI crops).
        num_classes: Number of classes; values must lie in ``0..num_classes - 1``.

    Returns:
        float64 array of shape ``(num_classes,)`` summing to 1 (a class never seen has 0).

    Raises:
        InputError: No pixel at all, or a value outside ``0..num_classes - 1``.
    """
    counts = np.zeros(num_classes, dtype=np.int64)
    for label in labels:
        values = np.asarray(label)
        if values.size == 0:
            continue
        if not np.issubdtype(values.dtype, np.integer) and not np.issubdtype(values.dtype, np.bool_):
            rounded = np.round(values)
            if not np.array_equal(rounded, values):
                raise InputError("class_frequencies: label values must be integers")
            values = rounded
        values = values.astype(np.int64).ravel()
        if values.min() < 0 or values.max() >= num_classes:
            raise InputError(
                f"class_frequencies: label values must lie in 0..{num_classes - 1}, "
                f"found {values.min()}..{values.max()}"
            )
        counts += np.bincount(values, minlength=num_classes)
    total = counts.sum()
    if total == 0:
        raise InputError("class_frequencies: no labelled pixel given")
    return counts / total


def class_weights(
    frequencies: Sequence[float] | np.ndarray,
    scheme: str = "inverse_sqrt",
    clip: float | None = 50.0,
) -> np.ndarray:
    """Per-class loss weights from class frequencies, normalised to mean 1.

    Schemes (``f_c`` is the frequency of class ``c``, normalised to sum 1):

    - ``inverse_sqrt``: ``1 / sqrt(f_c)`` (the default; rare classes count more, without
      letting a class of 0.5 % dominate: with 77 % background and 0.5 % no-reflow the ratio
      is about 12);
    - ``inverse``: ``1 / f_c`` (every class contributes equally to the loss in expectation);
    - ``median``: ``median(f) / f_c`` (median-frequency balancing, Eigen and Fergus 2015);
    - ``none``: all ones.

    Then the largest weight is capped at ``clip`` times the smallest, a class with frequency 0
    (never seen) gets the largest weight allowed (``clip`` times the smallest, or the largest
    weight of a seen class when ``clip`` is None), and the weights are divided by their mean.

    Args:
        frequencies: Non-negative per-class frequencies or pixel counts (normalised here).
        scheme: One of :data:`WEIGHT_SCHEMES`.
        clip: Largest allowed ratio between two weights (>= 1), or None for no cap.

    Returns:
        float64 array of the frequencies' length, mean 1; the rarest class has the largest
        weight (ties aside).

    Raises:
        InputError: Unknown scheme, negative or non-finite frequencies, all zero, or
            ``clip < 1``.
    """
    freq = np.asarray(frequencies, dtype=np.float64).ravel()
    if scheme not in WEIGHT_SCHEMES:
        raise InputError(f"unknown class-weight scheme {scheme!r}; choose from {', '.join(WEIGHT_SCHEMES)}")
    if freq.size == 0 or not np.all(np.isfinite(freq)) or np.any(freq < 0) or freq.sum() <= 0:
        raise InputError(f"class frequencies must be non-negative, finite and not all zero, got {freq.tolist()}")
    if clip is not None and not clip >= 1.0:
        raise InputError(f"class-weight clip must be at least 1 (a ratio of weights), got {clip}")
    if scheme == "none":
        return np.ones_like(freq)
    freq = freq / freq.sum()
    seen = freq > 0
    raw = np.zeros_like(freq)
    if scheme == "inverse_sqrt":
        raw[seen] = 1.0 / np.sqrt(freq[seen])
    elif scheme == "inverse":
        raw[seen] = 1.0 / freq[seen]
    else:  # median
        raw[seen] = np.median(freq[seen]) / freq[seen]
    smallest = raw[seen].min()
    ceiling = clip * smallest if clip is not None else raw[seen].max()
    weights = np.where(seen, np.minimum(raw, ceiling), ceiling)
    return weights / weights.mean()


class SegmentationLoss(nn.Module):
    """Class-weighted cross-entropy plus an optional soft multi-class Dice term.

    ``loss = CE(logits, target; weights) + dice_weight * Dice(softmax(logits), target)``.
    The cross-entropy is the mean over pixels weighted by the target class's weight (the
    reference paper's class-weighted categorical cross-entropy); the Dice term is MONAI's
    ``DiceLoss(softmax=True, to_onehot_y=True, include_background=False, batch=True)``,
    i.e. one soft Dice per foreground class over the whole batch (stable for rare classes
    that are absent from most slices), averaged over classes.

    Args:
        weights: Per-class weights (length = number of classes), e.g. from
            :func:`class_weights`, or None for an unweighted cross-entropy.
        dice_weight: Factor of the Dice term; 0 (default) leaves it out.

    Call with ``logits (N, C, *spatial)`` and integer ``target (N, *spatial)`` or
    ``(N, 1, *spatial)``; returns the scalar loss.
    """

    def __init__(self, weights: Sequence[float] | np.ndarray | None = None, dice_weight: float = 0.0) -> None:
        super().__init__()
        if dice_weight < 0:
            raise InputError(f"dice_weight must be non-negative, got {dice_weight}")
        w = None if weights is None else torch.as_tensor(np.asarray(weights, dtype=np.float32))
        self.register_buffer("weights", w)
        self.dice_weight = float(dice_weight)
        self.dice = (
            DiceLoss(softmax=True, to_onehot_y=True, include_background=False, batch=True) if dice_weight > 0 else None
        )

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if target.ndim == logits.ndim:
            target = target[:, 0]
        target = target.long()
        logits = logits.float()  # the loss in float32, also under autocast
        if self.weights is not None and self.weights.numel() != logits.shape[1]:
            raise InputError(f"SegmentationLoss: {self.weights.numel()} class weights for {logits.shape[1]} classes")
        weight = self.weights
        loss = F.cross_entropy(logits, target, weight=weight)
        if self.dice is not None:
            loss = loss + self.dice_weight * self.dice(logits, target[:, None])
        return loss
