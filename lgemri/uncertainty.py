"""Epistemic uncertainty of the segmentation cascade by Monte-Carlo dropout.

Gal & Ghahramani, "Dropout as a Bayesian approximation: representing model uncertainty in deep
learning", ICML 2016: keeping dropout active at test time and averaging ``T`` stochastic forward
passes approximates the predictive distribution of a Bayesian network. With the per-pass class
probabilities ``p_t`` and their mean ``p̄``, each pixel gets

- the predictive entropy ``H[p̄]`` (total uncertainty),
- the expected entropy ``E_t H[p_t]`` (the aleatoric part: what every pass finds ambiguous),
- their difference, the mutual information between the prediction and the weights
  ``MI = H[p̄] - E_t H[p_t]`` (the epistemic part: where the passes disagree; Houlsby et al.
  2011, "BALD"). Entropies are in nats; MI lies in ``[0, ln 5]`` for the five EMIDEC classes.

How :func:`mc_dropout` runs:

1. the same steps as :func:`lgemri.inference.segment_volume` choose the ROI, deterministically:
   in-plane resampling to 1 mm, localization, one segmentation pass and the re-centring, so
   the Monte-Carlo passes see exactly the crops the infer task segments;
2. the segmentation network runs ``passes`` times on every slice of that ROI, the slices of all
   passes batched together, with dropout active (for two-stage models the cavity channel is
   computed once, deterministically);
3. the study's score is the mean MI over the LV the mean prediction finds (cavity, myocardium,
   infarct and no-reflow), dilated by :data:`REGION_DILATION_MM` on the 1 mm grid, so that the
   background, where every pass agrees, does not dilute it.

Thread safety: the shared model is never switched out of eval mode. The passes run in a private
copy with dropout enabled (one copy per loaded network, made once), so infer requests that use
the same model at the same time stay deterministic. The seed is applied inside
``torch.random.fork_rng`` under a module lock: runs are reproducible and the process-wide random
state is left as it was.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import threading
import time
import weakref

import numpy as np
import torch
from scipy import ndimage

from .errors import InputError
from .geometry import crop_roi, resample_inplane
from .inference import Models, _check_image, _predict, _segment_at, _to_input_grid, localize, recentred
from .labels import LABEL_NAMES, NUM_CLASSES
from .nets import enable_mc_dropout
from .nets.preprocess import ROI_SIZE, normalize
from .postprocess import clean_cavity, enforce_anatomy
from .volume import Volume

__all__ = ["UncertaintyResult", "mc_dropout", "entropy", "mutual_information", "REGION_DILATION_MM", "DEFAULT_PASSES"]

logger = logging.getLogger(__name__)

DEFAULT_PASSES = 8
REGION_DILATION_MM = 2.0  # the scored region: the predicted LV grown by this much in-plane
BATCH_SIZE = 8  # crops per forward call: bounds memory; on CPU small batches were fastest (8: 1.2 s, 32: 1.6-2.1 s for 72 crops)
_EPS = 1e-12

_lock = threading.Lock()  # one Monte-Carlo run at a time: the seed goes through torch's global RNG
_mc_copies: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # shared network -> its MC-dropout copy


def entropy(probs: np.ndarray, axis: int) -> np.ndarray:
    """Shannon entropy in nats of class probabilities along ``axis``."""
    p = np.clip(probs, _EPS, 1.0)
    return -(probs * np.log(p)).sum(axis=axis)


def mutual_information(samples: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Predictive entropy, expected entropy and mutual information of Monte-Carlo samples.

    Args:
        samples: Class probabilities ``(T, C, ...)`` from ``T`` stochastic passes.

    Returns:
        ``(predictive, expected, mi)``, each of shape ``samples.shape[2:]``; ``mi`` is clipped at
        0 (rounding can make it slightly negative).
    """
    samples = np.asarray(samples, dtype=np.float32)
    if samples.ndim < 2 or samples.shape[0] < 1:
        raise InputError(f"expected samples of shape (passes, classes, ...), got {samples.shape}")
    predictive = entropy(samples.mean(axis=0), axis=0)
    expected = entropy(samples, axis=1).mean(axis=0)
    return predictive, expected, np.maximum(predictive - expected, 0.0)


@dataclasses.dataclass
class UncertaintyResult:
    """What Monte-Carlo dropout found on one study.

    Attributes:
        label: The label of the mean prediction on the input grid (anatomically cleaned like the
            infer label).
        mutual_information: Per-voxel epistemic uncertainty (MI, nats) on the input grid; 0
            outside the ROI.
        score: Mean MI over the dilated predicted LV (nats); ``None`` when no ROI could be
            chosen (constant image, no LV found by localization).
        details: JSON-ready figures: region, per-class and per-slice MI, predictive and
            expected entropy, label flip rate, passes, seed, ROI (see :meth:`summary`).
        timings: Seconds per step.
        warnings: What the caller should know (fallback region, no dropout, ...).
    """

    label: Volume
    mutual_information: Volume
    score: float | None
    details: dict
    timings: dict[str, float]
    warnings: list[str]

    def summary(self) -> dict:
        """JSON-ready: the score, the details, the timings and the warnings."""
        return {
            "score": None if self.score is None else round(float(self.score), 6),
            **self.details,
            "timings_s": {k: round(v, 4) for k, v in self.timings.items()},
            "warnings": list(self.warnings),
        }


def _mc_copy(net: torch.nn.Module) -> torch.nn.Module:
    """The Monte-Carlo dropout copy of ``net`` (made once per network object; call under the lock)."""
    mc = _mc_copies.get(net)
    if mc is None:
        mc = enable_mc_dropout(copy.deepcopy(net))
        for p in mc.parameters():
            p.requires_grad_(False)
        _mc_copies[net] = mc
    return mc


def _active_dropout(net: torch.nn.Module) -> int:
    """How many dropout layers of ``net`` drop something (training mode, p > 0)."""
    return sum(1 for m in net.modules() if isinstance(m, torch.nn.modules.dropout._DropoutNd) and m.training and m.p > 0)


@torch.no_grad()
def _stochastic_passes(net: torch.nn.Module, inputs: np.ndarray, passes: int, seed: int, device: torch.device) -> np.ndarray:
    """Softmax probabilities ``(passes, K, C, H, W)`` of ``passes`` dropout passes over ``inputs`` (K, C_in, H, W)."""
    k = inputs.shape[0]
    batch = np.concatenate([inputs] * passes, axis=0)  # pass-major: rows t*K .. t*K+K-1 are pass t
    devices = [device.index if device.index is not None else torch.cuda.current_device()] if device.type == "cuda" else []
    out = []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        for start in range(0, batch.shape[0], BATCH_SIZE):
            out.append(_predict(net, batch[start : start + BATCH_SIZE], device))
    probs = np.concatenate(out, axis=0)
    return probs.reshape((passes, k) + probs.shape[1:])


def _region(label_roi: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """The predicted LV (K, H, W) grown in-plane by REGION_DILATION_MM (1 mm pixels), inside ``valid``."""
    r = int(round(REGION_DILATION_MM))
    yy, xx = np.mgrid[-r : r + 1, -r : r + 1]
    disk = (yy**2 + xx**2 <= REGION_DILATION_MM**2)[None]
    lv = label_roi > 0
    return (ndimage.binary_dilation(lv, structure=disk) if r > 0 and lv.any() else lv) & valid


def _mean_or_none(values: np.ndarray, mask: np.ndarray) -> float | None:
    return round(float(values[mask].mean()), 6) if mask.any() else None


def mc_dropout(image: Volume, models: Models, passes: int = DEFAULT_PASSES, seed: int = 0) -> UncertaintyResult:
    """Monte-Carlo dropout on a short-axis LGE study: mean label, per-voxel MI and a study score.

    Args:
        image: The study, as for :func:`lgemri.inference.segment_volume`.
        models: The loaded cascade; its networks are only read, never switched to train mode.
        passes: Stochastic forward passes (at least 2).
        seed: Seed of the dropout masks; the same seed gives the same result.

    Returns:
        An :class:`UncertaintyResult`.

    Raises:
        InputError: Bad ``passes`` or ``seed``, or an image the cascade cannot read (see
            :func:`lgemri.inference.segment_volume`).
    """
    if isinstance(passes, bool) or not isinstance(passes, (int, np.integer)) or passes < 2:
        raise InputError(f"passes must be an integer of at least 2 (Monte-Carlo dropout needs several passes), got {passes!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise InputError(f"seed must be a non-negative integer, got {seed!r}")
    passes, seed = int(passes), int(seed)
    timings: dict[str, float] = {}
    start = tick = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal tick
        now = time.perf_counter()
        timings[name] = now - tick
        tick = now

    warnings = _check_image(image)
    details: dict = {"passes": passes, "seed": seed, "region_dilation_mm": REGION_DILATION_MM}

    def unscored(reason: str) -> UncertaintyResult:
        warnings.append(reason)
        timings["total"] = time.perf_counter() - start
        zeros = np.zeros(image.shape, dtype=np.float32)
        return UncertaintyResult(Volume(zeros.astype(np.uint8), image.affine), Volume(zeros, image.affine), None, details, timings, warnings)

    grid = resample_inplane(Volume(image.array.astype(np.float32), image.affine), 1.0, order=3)
    lap("resample")
    if float(image.array.max()) == float(image.array.min()):
        return unscored("the image is constant: nothing to score")
    centre, _ = localize(grid.array, models)
    lap("localization")
    if centre is None:
        return unscored("no LV found by the localization network: no score")
    # The ROI of segment_volume: one deterministic pass, re-centred on the LV it finds.
    full, _ = _segment_at(grid.array, centre, models)
    centre = recentred(full, centre) or centre
    lap("roi")

    nk = grid.shape[2]
    crops, boxes = zip(*(crop_roi(grid.array[:, :, k], centre, ROI_SIZE, fill=0) for k in range(nk)))
    inputs = np.stack([normalize(c) for c in crops])[:, None]
    if models.two_stage:
        cavity = _predict(models.cavity, inputs, models.device)[:, 1] > 0.5
        cleaned = np.stack([clean_cavity(c) for c in cavity]).astype(np.float32)
        inputs = np.concatenate([inputs, cleaned[:, None]], axis=1)
    with _lock:
        net = _mc_copy(models.segmenter)
        if not _active_dropout(net):
            warnings.append("the segmentation network has no active dropout: all passes agree and MI is 0")
        samples = _stochastic_passes(net, inputs, passes, seed, models.device)  # (T, K, C, H, W)
    lap("passes")

    samples = samples.transpose(0, 2, 1, 3, 4)  # (T, C, K, H, W)
    mean = samples.mean(axis=0)
    predictive, expected, mi = mutual_information(samples)
    label_roi = np.argmax(mean, axis=0)  # (K, H, W)
    pass_labels = np.argmax(samples, axis=1)  # (T, K, H, W)

    i0, j0, i1, j1 = boxes[0]
    valid = np.zeros((ROI_SIZE, ROI_SIZE), dtype=bool)
    valid[max(-i0, 0) : ROI_SIZE - max(i1 - grid.shape[0], 0), max(-j0, 0) : ROI_SIZE - max(j1 - grid.shape[1], 0)] = True
    valid = np.broadcast_to(valid[None], label_roi.shape)
    region = _region(label_roi, valid)
    region_kind = "predicted_lv"
    if not region.any():
        region, region_kind = _region((pass_labels > 0).any(axis=0), valid), "any_pass_lv"
    if not region.any():
        region, region_kind = valid.copy(), "roi"
    if region_kind != "predicted_lv":
        warnings.append(f"the mean prediction has no LV: scored over {'the LV of any pass' if region_kind == 'any_pass_lv' else 'the whole ROI'}")
    score = float(mi[region].mean())

    flips = (pass_labels != label_roi[None]).mean(axis=0)
    details.update(
        {
            "measure": "mutual_information_nats",
            "region": region_kind,
            "region_voxels": int(region.sum()),
            "predictive_entropy": _mean_or_none(predictive, region),
            "expected_entropy": _mean_or_none(expected, region),
            "flip_rate": _mean_or_none(flips, region),
            "classes": {
                LABEL_NAMES[c]: {"voxels": int((label_roi == c).sum()), "mutual_information": _mean_or_none(mi, label_roi == c)}
                for c in range(1, NUM_CLASSES)
            },
            "slices": [_mean_or_none(mi[k], region[k]) for k in range(nk)],
            "roi": {"centre_voxel_1mm": [round(centre[0], 2), round(centre[1], 2)], "box_voxel_1mm": [int(v) for v in boxes[0]], "size_mm": ROI_SIZE},
        }
    )

    # Paste back onto the input grid, as segment_volume does with its probabilities.
    si, sj = slice(max(i0, 0), min(i1, grid.shape[0])), slice(max(j0, 0), min(j1, grid.shape[1]))
    ci, cj = slice(si.start - i0, si.stop - i0), slice(sj.start - j0, sj.stop - j0)
    channels = np.zeros((NUM_CLASSES + 1,) + grid.shape, dtype=np.float32)
    channels[0] = 1.0
    channels[:NUM_CLASSES, si, sj, :] = mean[:, :, ci, cj].transpose(0, 2, 3, 1)
    channels[NUM_CLASSES, si, sj, :] = mi[:, ci, cj].transpose(1, 2, 0)
    box = boxes[0]
    on_input = np.stack([_to_input_grid(channels[c], grid, image, 1, float(c == 0), box) for c in range(NUM_CLASSES)])
    label = enforce_anatomy(np.argmax(on_input, axis=0).astype(np.uint8))
    mi_input = _to_input_grid(channels[NUM_CLASSES], grid, image, 1, 0.0, box)
    lap("paste_back")
    timings["total"] = time.perf_counter() - start
    return UncertaintyResult(Volume(label, image.affine), Volume(mi_input, image.affine), score, details, timings, warnings)
