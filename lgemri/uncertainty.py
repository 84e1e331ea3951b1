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

There is one code path: :class:`lgemri.inference.Cascade` calls :func:`estimate` on the very
network inputs it segmented (the final ROI crops), so ``cardiac-mi infer``, the server's infer
tasks, the viewer and the ``epistemic`` active-learning score (:func:`mc_dropout`, a thin wrapper
over the cascade) all see the same figure. How :func:`estimate` runs:

1. the scored region is the LV of the cascade's own prediction on the ROI crops (cavity,
   myocardium, infarct and no-reflow) grown in-plane by :data:`REGION_DILATION_MM`, so that the
   background, where every pass agrees, does not dilute it; only slices with some of it run;
2. every member of the segmentation network that has dropout (both members of the shipped
   ensemble; a plain network counts as one member) runs ``passes`` times on those slices, the
   slices of all passes batched together (:data:`BATCH_SIZE` crops per forward call), on the
   whole ROI crops (a smaller window centred on the LV was tried and dropped: without the ROI's
   context the networks changed 32-45 % of the LV's pixels). Each member's pass is one sample, so the samples'
   disagreement holds the dropout's and the ensemble members' (Lakshminarayanan et al. 2017);
   a member without dropout adds one deterministic sample; a network without any dropout gives
   no score (a warning says so);
3. the study's score is the mean MI over the region.

Thread safety: the shared model is never switched out of eval mode. The passes run in a private
copy of each member with dropout enabled (made once per network object), so infer requests that
use the same model at the same time stay deterministic. The seed is applied inside
``torch.random.fork_rng`` under a module lock: results are reproducible and the process-wide
random state is left as it was.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import threading
import time
import weakref
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch
from scipy import ndimage

from .errors import InputError
from .labels import LABEL_NAMES, NUM_CLASSES
from .nets import enable_mc_dropout
from .volume import Volume

if TYPE_CHECKING:  # lgemri.inference imports this module
    from .inference import Models

__all__ = [
    "Uncertainty",
    "UncertaintyResult",
    "estimate",
    "mc_dropout",
    "entropy",
    "mutual_information",
    "check_passes",
    "REGION_DILATION_MM",
    "DEFAULT_PASSES",
]

logger = logging.getLogger(__name__)

DEFAULT_PASSES = 8  # the active-learning score (epistemic scoring); the infer default is lgemri.inference.MC_PASSES
REGION_DILATION_MM = 2.0  # the scored region: the predicted LV grown by this much in-plane
BANK_SIZE = (
    1 << 22
)  # draws in BankDropout's bank (16 MB per drop rate): twice the largest activation of a batch (8 x 16 x 128 x 128)
BANK_SEED = 20240601
BATCH_SIZE = (
    8  # crops per forward call: bounds memory; on CPU small batches were fastest (8: 1.2 s, 32: 1.6-2.1 s for 72 crops)
)
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


def check_passes(passes, allow_zero: bool = False) -> int:
    """``passes`` as an int, or InputError: at least 2 (0 too with ``allow_zero``: no Monte-Carlo passes)."""
    bad = (
        isinstance(passes, bool)
        or not isinstance(passes, (int, np.integer))
        or (passes < 2 and not (allow_zero and passes == 0))
    )
    if bad:
        also = " (or 0: none)" if allow_zero else ""
        raise InputError(
            f"passes must be an integer of at least 2{also} (Monte-Carlo dropout needs several passes), got {passes!r}"
        )
    return int(passes)


def _check_seed(seed) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise InputError(f"seed must be a non-negative integer, got {seed!r}")
    return int(seed)


@dataclasses.dataclass
class Uncertainty:
    """What the Monte-Carlo passes found on one study's ROI crops.

    Attributes:
        score: Mean MI over the region (nats); None when nothing could be scored.
        passes: Stochastic passes per member with dropout.
        samples: Samples the MI is taken over (members with dropout x passes, + deterministic members).
        details: JSON-ready figures (region, per-class and per-slice MI, entropies, flip rate).
        mi_roi: Per-pixel MI ``(K, H, W)`` on the ROI crops (0 where no pass ran), or None (made with ``full_map``).
        seconds: Time of the passes and the figures.
        warnings: What the caller should know (no dropout, no region).
        map: The MI on the input grid (set by ``Cascade.predict(..., uncertainty_map=True)``).
    """

    score: float | None
    passes: int
    samples: int
    details: dict
    mi_roi: np.ndarray | None
    seconds: float
    warnings: list[str]
    map: Volume | None = None

    def summary(self) -> dict:
        """The result JSON's ``uncertainty``: ``{"mutual_information", "passes", ...}``."""
        return {
            "mutual_information": None if self.score is None else round(float(self.score), 5),
            "passes": self.passes,
            "samples": self.samples,
            "measure": "mean MC-dropout mutual information over the predicted LV (nats)",
            "seconds": round(self.seconds, 4),
        }


def _members(net: torch.nn.Module) -> list[torch.nn.Module]:
    from .nets.ensemble import Ensemble

    return list(net.members) if isinstance(net, Ensemble) else [net]


def _dropout_layers(net: torch.nn.Module) -> int:
    return sum(1 for m in net.modules() if isinstance(m, torch.nn.modules.dropout._DropoutNd) and m.p > 0)


class BankDropout(torch.nn.Module):
    """Element-wise dropout whose mask is a window, at a random offset, of one fixed bank of draws.

    The same distribution per element as ``nn.Dropout`` (keep with probability ``1 - p``, scaled
    by ``1 / (1 - p)``) at the cost of one multiplication: drawing a fresh Bernoulli mask per call
    cost about as much as the convolution it follows on CPU. The bank (:data:`BANK_SIZE` draws per
    drop rate and device, from a fixed seed) is shared by every layer; the offsets come from
    torch's random state, so a seeded run is reproducible. Activations larger than the bank fall
    back to ``nn.functional.dropout``. Call under the module lock.
    """

    _banks: dict = {}

    def __init__(self, p: float):
        super().__init__()
        self.p = float(p)

    def _bank(self, device: torch.device) -> torch.Tensor:
        key = (self.p, str(device))
        bank = self._banks.get(key)
        if bank is None:
            generator = torch.Generator().manual_seed(BANK_SEED)
            bank = ((torch.rand(BANK_SIZE, generator=generator) >= self.p).float() / (1.0 - self.p)).to(device)
            self._banks[key] = bank
        return bank

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = x.numel()
        if self.p <= 0 or n > BANK_SIZE // 2:
            return torch.nn.functional.dropout(x, self.p, training=True)
        bank = self._bank(x.device)
        offset = int(torch.randint(0, BANK_SIZE - n + 1, (1,)))
        return x * bank[offset : offset + n].view_as(x).to(x.dtype)


def _fold_batch_norm(net: torch.nn.Module) -> int:
    """Fold eval-mode batch norm into the convolution before it (MONAI ``Convolution`` blocks); returns how many."""
    folded = 0
    for module in net.modules():
        conv, adn = getattr(module, "conv", None), getattr(module, "adn", None)
        norm = getattr(adn, "N", None) if adn is not None else None
        if not isinstance(conv, (torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.Conv3d)) or not isinstance(
            norm, torch.nn.modules.batchnorm._BatchNorm
        ):
            continue
        if norm.running_mean is None or not norm.affine:
            continue
        with torch.no_grad():
            scale = norm.weight / torch.sqrt(norm.running_var + norm.eps)
            shape = (-1,) + (1,) * (conv.weight.dim() - 1)
            conv.weight.mul_(scale.reshape(shape))
            bias = conv.bias if conv.bias is not None else torch.zeros_like(norm.running_mean)
            new_bias = (bias - norm.running_mean) * scale + norm.bias
            if conv.bias is None:
                conv.bias = torch.nn.Parameter(new_bias)
            else:
                conv.bias.copy_(new_bias)
        adn.N = torch.nn.Identity()
        folded += 1
    return folded


def _mc_copy(net: torch.nn.Module) -> torch.nn.Module:
    """The Monte-Carlo dropout copy of ``net`` (made once per network object; call under the lock).

    Eval mode with batch norm folded into the convolutions and every dropout layer a
    :class:`BankDropout`, always dropping: the same distribution of outputs as ``net`` with
    dropout on, faster.
    """
    mc = _mc_copies.get(net)
    if mc is None:
        mc = copy.deepcopy(net).eval()
        _fold_batch_norm(mc)
        for module in list(mc.modules()):
            for name, child in module.named_children():
                if isinstance(child, torch.nn.modules.dropout._DropoutNd) and type(child) is torch.nn.Dropout:
                    setattr(module, name, BankDropout(child.p))
        enable_mc_dropout(mc)  # any other dropout kind keeps torch's own masks
        for p in mc.parameters():
            p.requires_grad_(False)
        _mc_copies[net] = mc
    return mc


@torch.no_grad()
def _softmax(net: torch.nn.Module, batch: np.ndarray, device: torch.device) -> np.ndarray:
    out = []
    for start in range(0, batch.shape[0], BATCH_SIZE):
        logits = net(torch.from_numpy(np.ascontiguousarray(batch[start : start + BATCH_SIZE])).to(device))
        out.append(torch.softmax(logits.float(), dim=1).cpu().numpy())
    return np.concatenate(out, axis=0)


def _stochastic_passes(net: torch.nn.Module, inputs: np.ndarray, passes: int, device: torch.device) -> np.ndarray:
    """Softmax probabilities ``(passes, K, C, H, W)`` of ``passes`` dropout passes over ``inputs`` (K, C_in, H, W)."""
    k = inputs.shape[0]
    probs = _softmax(net, np.concatenate([inputs] * passes, axis=0), device)  # pass-major: rows t*K .. t*K+K-1
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


def estimate(
    segmenter: torch.nn.Module,
    inputs: np.ndarray,
    probabilities: np.ndarray,
    valid: np.ndarray,
    passes: int,
    seed: int = 0,
    device: torch.device | str = "cpu",
    members: Sequence[int] | None = None,
    full_map: bool = False,
) -> Uncertainty:
    """MC-dropout mutual information of ``segmenter`` over the LV it predicts on ROI crops.

    Args:
        segmenter: The shared segmentation network (an ensemble or one network), in eval mode;
            it is only read.
        inputs: The network inputs ``(K, C_in, H, W)`` the cascade segmented.
        probabilities: The cascade's class probabilities ``(K, C, H, W)`` on them (the region is
            their argmax's LV).
        valid: ``(H, W)`` or ``(K, H, W)``: the crop pixels inside the image.
        passes: Stochastic passes per member (at least 2).
        seed: Seed of the dropout masks; the same seed gives the same result.
        device: Where the networks are.
        members: Which members of an ensemble run the passes (indices; None: all). A plain
            network is member 0.
        full_map: Also the MI of every pixel of the slices that ran (``mi_roi``), not only the
            region's (which is all the score needs).
    """
    passes, seed = check_passes(passes), _check_seed(seed)
    tick = time.perf_counter()
    device = torch.device(device)
    warnings: list[str] = []
    label_roi = np.argmax(probabilities, axis=1)
    k = label_roi.shape[0]
    region = _region(label_roi, np.broadcast_to(valid, label_roi.shape))
    every = _members(segmenter)
    if members is None:
        members = range(len(every))
    if not members or any(not 0 <= int(i) < len(every) for i in members):
        raise InputError(
            f"members must be indices of the {len(every)} member(s) of the segmentation network, got {list(members)}"
        )
    members = [every[int(i)] for i in members]
    with_dropout = [m for m in members if _dropout_layers(m)]
    details: dict = {
        "region_dilation_mm": REGION_DILATION_MM,
        "seed": seed,
        "members": len(members),
        "members_with_dropout": len(with_dropout),
    }
    if len(members) < len(every):
        details["of_members"] = len(every)

    def unscored(reason: str) -> Uncertainty:
        warnings.append(reason)
        return Uncertainty(None, passes, 0, details, None, time.perf_counter() - tick, warnings)

    if not with_dropout:
        return unscored("the segmentation network (the members used) has no dropout: no model uncertainty")
    if not region.any():
        return unscored("no LV predicted: no model uncertainty")
    slices = np.nonzero(region.any(axis=(1, 2)))[0]
    batch = inputs[slices]
    samples = []
    devices = (
        [device.index if device.index is not None else torch.cuda.current_device()] if device.type == "cuda" else []
    )
    with _lock, torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        for member in members:
            if member in with_dropout:
                samples.append(_stochastic_passes(_mc_copy(member), batch, passes, device))
            else:  # a member without dropout: one deterministic sample
                samples.append(_softmax(member, batch, device)[None])
    stacked = np.concatenate(samples, axis=0).transpose(0, 2, 1, 3, 4)  # (S, C, K', H, W)
    region_w = region[slices]
    mi_roi = None
    if full_map:
        predictive, expected, mi_all = mutual_information(stacked)
        predictive, expected, mi = predictive[region_w], expected[region_w], mi_all[region_w]
        mi_roi = np.zeros(label_roi.shape, dtype=np.float32)
        mi_roi[slices] = mi_all
    else:  # only the region's pixels: the entropies of the whole ROI cost as much as a pass
        predictive, expected, mi = mutual_information(stacked[:, :, region_w])
    labels_r = label_roi[slices][region_w]
    flips = (np.argmax(stacked[:, :, region_w], axis=1) != labels_r[None]).mean(axis=0)
    score = float(mi.mean())
    slice_of = np.nonzero(region_w)[0]
    sums, counts = (
        np.bincount(slice_of, weights=mi, minlength=len(slices)),
        np.bincount(slice_of, minlength=len(slices)),
    )
    per_slice: list[float | None] = [None] * k
    for n, s in enumerate(slices):
        per_slice[s] = round(float(sums[n] / counts[n]), 6) if counts[n] else None
    everywhere = np.ones(mi.shape, dtype=bool)
    details.update(
        {
            "measure": "mutual_information_nats",
            "region": "predicted_lv",
            "region_voxels": int(region.sum()),
            "predictive_entropy": _mean_or_none(predictive, everywhere),
            "expected_entropy": _mean_or_none(expected, everywhere),
            "flip_rate": _mean_or_none(flips, everywhere),
            "classes": {
                LABEL_NAMES[c]: {
                    "voxels": int((labels_r == c).sum()),
                    "mutual_information": _mean_or_none(mi, labels_r == c),
                }
                for c in range(1, NUM_CLASSES)
            },
            "slices": per_slice,
        }
    )
    n_samples = stacked.shape[0]
    seconds = time.perf_counter() - tick
    logger.debug("MC dropout: %d samples over %d slices: MI %.4f in %.3f s", n_samples, len(slices), score, seconds)
    return Uncertainty(score, passes, n_samples, details, mi_roi, seconds, warnings)


@dataclasses.dataclass
class UncertaintyResult:
    """What Monte-Carlo dropout found on one study.

    Attributes:
        label: The cascade's label on the input grid (the label of :meth:`lgemri.inference.Cascade.predict`).
        mutual_information: Per-voxel epistemic uncertainty (MI, nats) on the input grid; 0
            outside the ROI and on slices without predicted LV.
        score: Mean MI over the dilated predicted LV (nats); ``None`` when nothing could be
            scored (constant image, no LV found, a network without dropout).
        details: JSON-ready figures: region, per-class and per-slice MI, predictive and
            expected entropy, label flip rate, passes, seed, ROI (see :meth:`summary`).
        timings: Seconds per step.
        warnings: What the caller should know (no LV, no dropout, ...).
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


def mc_dropout(image: Volume, models: Models, passes: int = DEFAULT_PASSES, seed: int = 0) -> UncertaintyResult:
    """Monte-Carlo dropout on a short-axis LGE study: the cascade's label, per-voxel MI and a study score.

    :class:`lgemri.inference.Cascade` with ``passes`` Monte-Carlo passes and the MI map pasted
    back onto the input grid.

    Args:
        image: The study, as for :meth:`lgemri.inference.Cascade.predict`.
        models: The loaded cascade; its networks are only read, never switched to train mode.
        passes: Stochastic forward passes per member (at least 2).
        seed: Seed of the dropout masks; the same seed gives the same result.

    Raises:
        InputError: Bad ``passes`` or ``seed``, or an image the cascade cannot read.
    """
    from .inference import Cascade

    passes, seed = check_passes(passes), _check_seed(seed)
    result = Cascade(models, mc_passes=passes, mc_seed=seed)(image, uncertainty_map=True)
    u = result.uncertainty
    warnings = [w for w in result.warnings if not w.startswith("doubtful result")]
    details: dict = {"passes": passes, "seed": seed, "region_dilation_mm": REGION_DILATION_MM}
    if u is None or u.score is None:
        zeros = np.zeros(image.shape, dtype=np.float32)
        warnings += u.warnings if u is not None else []
        return UncertaintyResult(
            result.label, Volume(zeros, image.affine), None, details, dict(result.timings), warnings
        )
    details.update(
        {
            **u.details,
            "passes": passes,
            "samples": u.samples,
            "roi": {k: result.roi[k] for k in ("centre_voxel_1mm", "box_voxel_1mm", "size_mm")},
        }
    )
    return UncertaintyResult(result.label, u.map, u.score, details, dict(result.timings), warnings + u.warnings)
