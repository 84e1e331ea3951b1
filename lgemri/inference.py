"""The segmentation cascade: localization -> LV-centred ROI -> ResAtt-U-Net -> label on the input grid.

One code path, :class:`Cascade` (built once from the loaded networks, then called on each study),
for ``cardiac-mi infer`` (:func:`infer_file`), the MONAI Label infer tasks, the scoring methods
and Monte-Carlo dropout (:func:`lgemri.uncertainty.mc_dropout`); :func:`segment_volume` is one
study through a cascade made for it. The steps of :meth:`Cascade.predict`:

1. the image is resampled in-plane to 1 x 1 mm (cubic; slices stay as acquired);
2. the localization network finds the LV on every slice at 3 mm; the study's LV centre is the
   median of the per-slice centres of the slices with a substantial LV (robust to basal and apical
   slices without one);
3. a fixed 128 x 128 mm ROI around that centre goes through the segmentation network (with the
   cleaned cavity of the first stage as a second channel for two-stage models); when the LV it
   segments is centred more than 1.5 mm away, the ROI is re-centred on it and segmented again;
4. class probabilities are pasted back into the 1 mm grid, interpolated linearly onto the input's
   own grid and turned into a label, which is then made anatomically consistent;
5. the model's uncertainty: :data:`MC_PASSES` Monte-Carlo dropout passes of the segmentation
   network on the final ROI crops give the mutual information over the predicted LV
   (:func:`lgemri.uncertainty.estimate`), and the plausibility checks (:mod:`lgemri.qc`) judge the
   label and that uncertainty.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage

from .errors import InputError
from .geometry import crop_roi, lv_centre, resample_inplane
from .labels import INFARCT, LABEL_NAMES, MYOCARDIUM, NO_REFLOW, NUM_CLASSES, infarct_mask, myocardium_mask
from .nets.checkpoint import load_checkpoint
from .nets.preprocess import LOC_FACTOR, ROI_SIZE, localization_input, localization_to_slice, normalize
from .postprocess import clean_cavity, enforce_anatomy, largest_component, remove_small_infarcts
from .qc import Finding, quality_checks
from .uncertainty import Uncertainty, check_passes, estimate
from .volume import Volume

__all__ = [
    "Models",
    "Cascade",
    "RoiPass",
    "InferenceResult",
    "default_models_dir",
    "load_models",
    "segment_volume",
    "infer_file",
    "recentred",
]

logger = logging.getLogger(__name__)

MIN_LV_FRACTION = 0.3  # slices whose LV area is below this fraction of the largest do not vote
REFINE_MM = 1.5  # re-centre the ROI on the segmented LV when it lies further than this
MIN_INFARCT_ML = 1.0  # infarct specks below this volume are noise (experiments/min_infarct_tuning.py)
MC_PASSES = 3  # Monte-Carlo dropout passes for the uncertainty check (docs/quality.md); 0: none
# the ensemble members that run them: the first, the shipped narrow network (dropout 0.1, a third of the cost)
MC_MEMBERS = (0,)
MC_PASSES_ENV = "CARDIAC_MI_MC_PASSES"  # overrides MC_PASSES for a Cascade without mc_passes (infer, the server)


def default_models_dir() -> Path:
    """``$CARDIAC_MI_MODELS`` or the ``models/`` folder of the source tree."""
    env = os.environ.get("CARDIAC_MI_MODELS")
    return Path(env) if env else Path(__file__).resolve().parent.parent / "models"


@dataclasses.dataclass
class Models:
    """The networks of the cascade, in eval mode on one device."""

    localizer: torch.nn.Module
    segmenter: torch.nn.Module
    cavity: torch.nn.Module | None
    meta: dict
    device: torch.device
    flip_tta: bool = False  # average the predictions of the four in-plane mirror images
    infarct_min_probability: float | None = None  # infarct needs P(infarct) + P(no-reflow) above this

    @property
    def two_stage(self) -> bool:
        return self.cavity is not None


def load_models(models_dir: str | os.PathLike | None = None, device: str = "cpu") -> Models:
    """Load ``localization.pt``, ``segmentation.pt`` (and ``cavity.pt`` for two-stage models)."""
    folder = Path(models_dir) if models_dir else default_models_dir()
    if not folder.is_dir():
        raise InputError(f"{folder}: no models folder (set --models or CARDIAC_MI_MODELS)")
    dev = torch.device(device)
    localizer, loc_meta = load_checkpoint(folder / "localization.pt", task="localization", device=dev)
    segmenter, seg_meta = load_checkpoint(folder / "segmentation.pt", task="segmentation", device=dev)
    cavity = None
    if seg_meta.get("extra", {}).get("two_stage"):
        cavity, _ = load_checkpoint(folder / "cavity.pt", task="cavity", device=dev)
    flip_tta = bool(seg_meta.get("extra", {}).get("flip_tta", False))
    infarct_min_probability = seg_meta.get("extra", {}).get("infarct_min_probability")
    meta = {
        "localization": loc_meta.get("extra", {}),
        "segmentation": seg_meta.get("extra", {}),
        "segmentation_network": seg_meta.get("network", {}),
        "folder": str(folder),
    }
    return Models(localizer, segmenter, cavity, meta, dev, flip_tta, infarct_min_probability)


@dataclasses.dataclass
class InferenceResult:
    """A label on the input grid and what the cascade found on the way."""

    label: Volume
    lv_mask: Volume  # coarse LV mask from localization, on the input grid
    roi: dict  # centre and box of the ROI, in voxels of the 1 mm grid and in RAS mm
    timings: dict[str, float]
    warnings: list[str]
    findings: list[Finding] = dataclasses.field(default_factory=list)  # failed plausibility checks (lgemri.qc)
    uncertainty: Uncertainty | None = None  # the Monte-Carlo dropout figures; None: no passes ran

    def uncertainty_summary(self) -> dict:
        """The JSON's ``uncertainty``: ``{"mutual_information": nats or None, "passes": n, ...}``."""
        if self.uncertainty is None:
            return {"mutual_information": None, "passes": 0}
        return self.uncertainty.summary()

    def summary(self) -> dict:
        """JSON-ready: ROI, class volumes (mm^3 and ml), infarct %, timings, warnings, quality, uncertainty."""
        voxel = float(np.prod(self.label.spacing))
        arr = self.label.array
        volumes = {LABEL_NAMES[c]: float((arr == c).sum() * voxel) for c in range(1, NUM_CLASSES)}
        myo = float(myocardium_mask(arr).sum() * voxel)
        infarct = float(infarct_mask(arr).sum() * voxel)
        return {
            "shape": list(self.label.shape),
            "spacing_mm": [round(float(s), 4) for s in self.label.spacing],
            "roi": self.roi,
            "volumes_mm3": {
                **{k: round(v, 1) for k, v in volumes.items()},
                "lv_myocardium_total": round(myo, 1),
                "infarct_total": round(infarct, 1),
            },
            "volumes_ml": {k: round(v / 1000.0, 3) for k, v in volumes.items()},
            "infarct_percent_of_myocardium": round(100.0 * infarct / myo, 2) if myo else 0.0,
            "timings_s": {k: round(v, 4) for k, v in self.timings.items()},
            "warnings": self.warnings,
            "quality": {"doubtful": bool(self.findings), "findings": [f.as_dict() for f in self.findings]},
            "uncertainty": self.uncertainty_summary(),
        }


def _coarse_to_slice(coarse: np.ndarray, offset: tuple[int, int], shape: tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour upsampling of a localization-grid mask onto the 1 mm slice."""
    ii = np.arange(shape[0]) // LOC_FACTOR + offset[0]
    jj = np.arange(shape[1]) // LOC_FACTOR + offset[1]
    valid_i = (ii >= 0) & (ii < coarse.shape[0])
    valid_j = (jj >= 0) & (jj < coarse.shape[1])
    out = np.zeros(shape, dtype=bool)
    out[np.ix_(valid_i, valid_j)] = coarse[np.ix_(ii[valid_i], jj[valid_j])]
    return out


def _box_slices(box: tuple, shape: tuple) -> tuple[slice, slice, slice, slice]:
    """The part of the ROI box (i0, j0, i1, j1) inside a 1 mm grid of ``shape``: (grid i, grid j, crop i, crop j)."""
    i0, j0, i1, j1 = box
    si, sj = slice(max(i0, 0), min(i1, shape[0])), slice(max(j0, 0), min(j1, shape[1]))
    return si, sj, slice(si.start - i0, si.stop - i0), slice(sj.start - j0, sj.stop - j0)


def _mc_passes(mc_passes: int | None) -> int:
    """The Monte-Carlo passes to run: ``mc_passes``, else ``$CARDIAC_MI_MC_PASSES``, else :data:`MC_PASSES`."""
    if mc_passes is None:
        env = os.environ.get(MC_PASSES_ENV, "").strip()
        if not env:
            return MC_PASSES
        try:
            mc_passes = int(env)
        except ValueError:
            raise InputError(f"${MC_PASSES_ENV} must be an integer (0: no uncertainty), got {env!r}") from None
    return check_passes(mc_passes, allow_zero=True)


def _to_input_grid(
    values_1mm: np.ndarray, grid_1mm: Volume, target: Volume, order: int, fill: float, box=None
) -> np.ndarray:
    """Interpolate a 1 mm in-plane array [i, j, k] onto ``target``'s grid (same slices).

    With ``box`` = (i0, j0, i1, j1) on the 1 mm grid, only the target voxels that fall inside it
    are interpolated; the others get ``fill``.
    """
    mapping = np.linalg.inv(grid_1mm.affine) @ target.affine
    ni, nj, nk = target.shape
    lo, hi = np.zeros(2, dtype=int), np.array([ni, nj])
    if box is not None:
        i0, j0, i1, j1 = box
        corners = np.array([[i, j, 0.0, 1.0] for i in (i0 - 1, i1) for j in (j0 - 1, j1)]).T
        inside = (np.linalg.inv(mapping) @ corners)[:2]
        lo = np.clip(np.floor(inside.min(axis=1)).astype(int) - 1, 0, [ni, nj])
        hi = np.clip(np.ceil(inside.max(axis=1)).astype(int) + 2, 0, [ni, nj])
    out = np.full((ni, nj, nk), fill, dtype=np.float32)
    ii, jj = np.meshgrid(np.arange(lo[0], hi[0]), np.arange(lo[1], hi[1]), indexing="ij")
    if ii.size == 0:
        return out
    for k in range(nk):
        coords = mapping @ np.stack([ii.ravel(), jj.ravel(), np.full(ii.size, k), np.ones(ii.size)])
        values = ndimage.map_coordinates(values_1mm[:, :, k], coords[:2], order=order, mode="constant", cval=fill)
        out[lo[0] : hi[0], lo[1] : hi[1], k] = values.reshape(ii.shape)
    return out


def _roi_to_input(values_roi: np.ndarray, box: tuple, grid: Volume, image: Volume) -> np.ndarray:
    """A per-crop array (K, 128, 128) pasted into the 1 mm grid and interpolated onto ``image``'s grid (0 outside)."""
    out = np.zeros(grid.shape, dtype=np.float32)
    si, sj, ci, cj = _box_slices(box, grid.shape)
    out[si, sj, :] = values_roi[:, ci, cj].transpose(1, 2, 0)
    return _to_input_grid(out, grid, image, 1, 0.0, box)


def _check_image(image: Volume) -> list[str]:
    array = image.array
    if not np.issubdtype(array.dtype, np.number):
        raise InputError(f"the image has non-numeric voxels ({array.dtype})")
    if not np.isfinite(array).all():
        raise InputError("the image holds NaN or infinite values")
    if min(image.shape[:2]) < 16:
        raise InputError(
            f"the image is too small to hold a heart ({image.shape[0]} x {image.shape[1]} voxels per slice)"
        )
    warnings = []
    if image.shape[2] == 1:
        warnings.append("single slice: the LV centre comes from one slice only")
    return warnings


def recentred(probabilities: np.ndarray, centre) -> tuple[float, float] | None:
    """The second ROI centre: the LV the first pass segmented, when it lies over ``REFINE_MM`` away.

    Finer than the 3 mm localization grid; None keeps ``centre``. ``probabilities`` is the first
    pass's ``(C, I, J, K)`` output on the 1 mm grid.
    """
    refined = lv_centre(np.argmax(probabilities, axis=0))
    if refined is not None and np.hypot(refined[0] - centre[0], refined[1] - centre[1]) > REFINE_MM:
        return refined
    return None


def _roi_summary(grid: Volume, centre, located, box) -> dict:
    """The JSON's ``roi``: centres and box in 1 mm voxels and in RAS mm (on the middle slice)."""
    i0, j0, i1, j1 = box
    mid = grid.shape[2] // 2
    corners = [(i0, j0), (i1, j0), (i1, j1), (i0, j1)]

    def to_ras(i, j):
        return [round(float(v), 3) for v in (grid.affine @ np.array([i, j, mid, 1.0]))[:3]]

    return {
        "centre_voxel_1mm": [round(centre[0], 2), round(centre[1], 2)],
        "localization_centre_voxel_1mm": [round(located[0], 2), round(located[1], 2)],
        "centre_ras_mm": to_ras(*centre),
        "box_voxel_1mm": [int(i0), int(j0), int(i1), int(j1)],
        "box_corners_ras_mm": [to_ras(i - 0.5, j - 0.5) for i, j in corners],
        "size_mm": ROI_SIZE,
    }


@dataclasses.dataclass
class RoiPass:
    """One segmentation pass over the ROI: probabilities on the 1 mm grid and what the network saw."""

    full: np.ndarray  # (5, I, J, K) on the 1 mm grid
    box: tuple  # (i0, j0, i1, j1) on the 1 mm grid
    inputs: np.ndarray  # (K, C_in, 128, 128) network inputs
    probs: np.ndarray  # (K, 5, 128, 128) on the crops
    valid: np.ndarray  # (128, 128): crop pixels inside the image


class Cascade:
    """The cascade on one device, built once from the loaded networks and their settings.

    Like nnU-Net's ``nnUNetPredictor``: construct it once (:meth:`load` from a models folder, or
    from loaded :class:`Models`), then call it on each study (``cascade(image)``, the same as
    :meth:`predict`). Its steps are methods: :meth:`localize` (LV centre and coarse mask),
    :meth:`crop_rois`, :meth:`segment` (the crops through the segmentation network),
    :meth:`segment_at` (those three on one ROI), :meth:`paste_back` (the label on the input grid,
    post-processed) and :meth:`estimate_uncertainty` (Monte-Carlo dropout on the final crops).
    It holds no state that changes, so threads may share one.

    Args:
        models: The loaded networks.
        min_infarct_ml: Infarct components smaller than this become healthy myocardium
            (:func:`lgemri.postprocess.remove_small_infarcts`; 0 keeps them). None: the
            segmentation checkpoint's ``min_infarct_ml``, else :data:`MIN_INFARCT_ML`.
        infarct_min_probability: Infarct and no-reflow voxels whose summed probability of the two
            is below this become healthy myocardium. None: the checkpoint's
            ``infarct_min_probability``, else plain argmax.
        mc_passes: Monte-Carlo dropout passes for the model's uncertainty; 0: none. None:
            ``$CARDIAC_MI_MC_PASSES`` (read on every call), else :data:`MC_PASSES`.
        mc_seed: Seed of the dropout masks (the same seed, the same figure; the label never
            depends on it).
        mc_members: The ensemble members that run the passes (indices; None: all; a plain
            network is member 0).
    """

    def __init__(
        self,
        models: Models,
        *,
        min_infarct_ml: float | None = None,
        infarct_min_probability: float | None = None,
        mc_passes: int | None = None,
        mc_seed: int = 0,
        mc_members: tuple[int, ...] | None = MC_MEMBERS,
    ):
        if mc_passes is not None:
            check_passes(mc_passes, allow_zero=True)
        self.models = models
        if min_infarct_ml is None:
            min_infarct_ml = float(models.meta.get("segmentation", {}).get("min_infarct_ml", MIN_INFARCT_ML))
        self.min_infarct_ml = min_infarct_ml
        self.infarct_min_probability = (
            models.infarct_min_probability if infarct_min_probability is None else infarct_min_probability
        )
        self.mc_passes, self.mc_seed, self.mc_members = mc_passes, mc_seed, mc_members

    @classmethod
    def load(cls, models_dir: str | os.PathLike | None = None, device: str = "cpu", **settings) -> Cascade:
        """The cascade of a models folder (:func:`load_models`); ``settings`` as for the constructor."""
        return cls(load_models(models_dir, device=device), **settings)

    @property
    def device(self) -> torch.device:
        return self.models.device

    @property
    def two_stage(self) -> bool:
        return self.models.two_stage

    @torch.no_grad()
    def _forward(self, net: torch.nn.Module, batch: np.ndarray) -> np.ndarray:
        logits = net(torch.from_numpy(np.ascontiguousarray(batch)).to(self.device))
        return torch.softmax(logits.float(), dim=1).cpu().numpy()

    def probabilities(self, net: torch.nn.Module, batch: np.ndarray) -> np.ndarray:
        """Softmax probabilities (N, C, H, W) of ``net`` for inputs (N, C_in, H, W).

        Averaged over the four in-plane mirror images when the checkpoint asks for it
        (``flip_tta``): networks trained with mirroring (:class:`lgemri.training.data.Augmentation`)
        see each of them as a plausible study, so averaging is test-time augmentation.
        """
        if not self.models.flip_tta:
            return self._forward(net, batch)
        flips = ((), (-1,), (-2,), (-2, -1))
        stacked = np.concatenate([np.flip(batch, axis) if axis else batch for axis in flips])
        probs = self._forward(net, stacked).reshape((len(flips),) + (len(batch), -1) + batch.shape[2:])
        return np.mean([np.flip(p, axis) if axis else p for p, axis in zip(probs, flips)], axis=0)

    def localize(self, slices_1mm: np.ndarray) -> tuple[tuple[float, float] | None, np.ndarray]:
        """The study's LV centre in 1 mm (i, j) indices and the coarse LV mask per slice (1 mm grid).

        Returns ``(None, mask)`` when no slice shows an LV.
        """
        inputs, offsets = zip(*(localization_input(slices_1mm[:, :, k]) for k in range(slices_1mm.shape[2])))
        probs = self.probabilities(self.models.localizer, np.stack(inputs)[:, None])
        lv_mask = np.zeros(slices_1mm.shape, dtype=bool)
        centres, areas = [], []
        for k, offset in enumerate(offsets):
            coarse = largest_component(probs[k, 1] > 0.5, connectivity=1)
            if not coarse.any():
                continue
            centres.append(localization_to_slice(np.argwhere(coarse).mean(axis=0), offset))
            areas.append(int(coarse.sum()))
            lv_mask[:, :, k] = _coarse_to_slice(coarse, offset, slices_1mm.shape[:2])
        if not centres:
            return None, lv_mask
        areas_arr = np.asarray(areas)
        voting = areas_arr >= MIN_LV_FRACTION * areas_arr.max()
        centre = np.median(np.asarray(centres)[voting], axis=0)
        return (float(centre[0]), float(centre[1])), lv_mask

    def crop_rois(self, slices_1mm: np.ndarray, centre: tuple[float, float]) -> tuple[np.ndarray, tuple]:
        """The normalised ROI crops (K, 128, 128) around ``centre`` and their box (i0, j0, i1, j1) on the 1 mm grid."""
        crops, boxes = zip(
            *(crop_roi(slices_1mm[:, :, k], centre, ROI_SIZE, fill=0) for k in range(slices_1mm.shape[2]))
        )
        return np.stack([normalize(c) for c in crops]), boxes[0]

    def segment(self, rois: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Class probabilities (K, 5, 128, 128) for normalised ROI crops (K, 128, 128), and the network inputs.

        Two-stage models add the cleaned cavity of the first stage as a second channel.
        """
        inputs = rois[:, None]
        if self.two_stage:
            cavity = self.probabilities(self.models.cavity, inputs)[:, 1] > 0.5
            cleaned = np.stack([clean_cavity(c) for c in cavity]).astype(np.float32)
            inputs = np.concatenate([inputs, cleaned[:, None]], axis=1)
        return self.probabilities(self.models.segmenter, inputs), inputs

    def segment_at(self, slices_1mm: np.ndarray, centre: tuple[float, float]) -> RoiPass:
        """The ROI around ``centre`` cropped and segmented; its probabilities pasted into the 1 mm grid."""
        rois, box = self.crop_rois(slices_1mm, centre)
        probs, inputs = self.segment(rois)
        full = np.zeros((NUM_CLASSES,) + slices_1mm.shape, dtype=np.float32)
        full[0] = 1.0
        si, sj, ci, cj = _box_slices(box, slices_1mm.shape)
        full[:, si, sj, :] = probs[:, :, ci, cj].transpose(1, 2, 3, 0)
        valid = np.zeros((ROI_SIZE, ROI_SIZE), dtype=bool)
        valid[ci, cj] = True
        return RoiPass(full, box, inputs, probs, valid)

    def paste_back(self, roi_pass: RoiPass, grid: Volume, image: Volume) -> np.ndarray:
        """The label on ``image``'s grid from the probabilities of ``roi_pass`` on the 1 mm ``grid``.

        Probabilities are interpolated linearly, turned into a label (with the minimum infarct
        probability), made anatomically consistent and cleared of infarct specks.
        """
        full, box = roi_pass.full, roi_pass.box
        on_input = np.stack([_to_input_grid(full[c], grid, image, 1, float(c == 0), box) for c in range(NUM_CLASSES)])
        label = np.argmax(on_input, axis=0).astype(np.uint8)
        if self.infarct_min_probability is not None:
            weak = (label >= INFARCT) & (on_input[INFARCT] + on_input[NO_REFLOW] < float(self.infarct_min_probability))
            label[weak] = MYOCARDIUM
        label = enforce_anatomy(label)
        voxel_ml = abs(float(np.linalg.det(image.affine[:3, :3]))) / 1000.0
        return remove_small_infarcts(label, voxel_ml, self.min_infarct_ml)

    def estimate_uncertainty(self, roi_pass: RoiPass, passes: int, full_map: bool = False) -> Uncertainty:
        """Monte-Carlo dropout on the crops ``roi_pass`` segmented (:func:`lgemri.uncertainty.estimate`)."""
        return estimate(
            self.models.segmenter,
            roi_pass.inputs,
            roi_pass.probs,
            roi_pass.valid,
            passes,
            self.mc_seed,
            self.device,
            self.mc_members,
            full_map,
        )

    def predict(self, image: Volume, uncertainty_map: bool = False) -> InferenceResult:
        """Run the cascade on a short-axis LGE volume; the label is on ``image``'s own grid.

        The model's uncertainty (``mc_passes`` passes) gives ``result.uncertainty`` and, above
        :data:`lgemri.qc.UNCERTAINTY_LIMIT`, the ``uncertain`` finding. ``uncertainty_map`` also
        pastes the per-voxel MI back onto the input grid (``result.uncertainty.map``).
        """
        mc_passes = _mc_passes(self.mc_passes)
        timings: dict[str, float] = {}
        start = tick = time.perf_counter()

        def lap(name: str) -> None:
            nonlocal tick
            now = time.perf_counter()
            timings[name] = now - tick
            tick = now

        warnings = _check_image(image)
        grid = resample_inplane(Volume(image.array.astype(np.float32), image.affine), 1.0, order=3)
        lap("resample")
        empty = Volume(np.zeros(image.shape, dtype=np.uint8), image.affine)
        if float(image.array.max()) == float(image.array.min()):
            warnings.append("the image is constant: nothing to segment")
            timings["total"] = time.perf_counter() - start
            return InferenceResult(empty, empty, {}, timings, warnings, quality_checks(empty))

        centre, lv_1mm = self.localize(grid.array)
        lap("localization")
        if centre is None:
            warnings.append("no LV found by the localization network: empty label")
            timings["total"] = time.perf_counter() - start
            return InferenceResult(empty, empty, {}, timings, warnings, quality_checks(empty))

        located = centre
        roi_pass = self.segment_at(grid.array, centre)
        refined = recentred(roi_pass.full, centre)
        if refined is not None:
            centre = refined
            roi_pass = self.segment_at(grid.array, centre)
        lap("segmentation")

        uncertainty = None
        if mc_passes:
            uncertainty = self.estimate_uncertainty(roi_pass, mc_passes, uncertainty_map)
            warnings += uncertainty.warnings
            lap("uncertainty")

        label = self.paste_back(roi_pass, grid, image)
        lv = _to_input_grid(lv_1mm.astype(np.float32), grid, image, order=0, fill=0.0) > 0.5
        if uncertainty_map and uncertainty is not None and uncertainty.mi_roi is not None:
            uncertainty.map = Volume(_roi_to_input(uncertainty.mi_roi, roi_pass.box, grid, image), image.affine)
        lap("paste_back")

        if not (label > 0).any():
            warnings.append("the segmentation found no LV inside the ROI: empty label")
        findings = quality_checks(Volume(label, image.affine), None if uncertainty is None else uncertainty.score)
        warnings += [f"doubtful result: {f.message}" for f in findings if f.code != "no_lv"]
        roi = _roi_summary(grid, centre, located, roi_pass.box)
        timings["total"] = time.perf_counter() - start
        return InferenceResult(
            Volume(label, image.affine),
            Volume(lv.astype(np.uint8), image.affine),
            roi,
            timings,
            warnings,
            findings,
            uncertainty,
        )

    __call__ = predict


def segment_volume(
    image: Volume,
    models: Models,
    min_infarct_ml: float | None = None,
    infarct_min_probability: float | None = None,
    mc_passes: int | None = None,
    mc_seed: int = 0,
    uncertainty_map: bool = False,
    mc_members: tuple[int, ...] | None = MC_MEMBERS,
) -> InferenceResult:
    """One study through a :class:`Cascade` of ``models`` made for it (keep a Cascade for many studies).

    The settings are the :class:`Cascade`'s; ``uncertainty_map`` is :meth:`Cascade.predict`'s.
    """
    cascade = Cascade(
        models,
        min_infarct_ml=min_infarct_ml,
        infarct_min_probability=infarct_min_probability,
        mc_passes=mc_passes,
        mc_seed=mc_seed,
        mc_members=mc_members,
    )
    return cascade.predict(image, uncertainty_map=uncertainty_map)


def infer_file(
    path: str | os.PathLike, out_dir: str | os.PathLike, cascade: Cascade | Models, series_uid: str | None = None
) -> tuple[Path, Path]:
    """Segment a NIfTI file or DICOM series folder; write ``<name>.nii.gz`` and ``<name>.json``.

    ``cascade``: the :class:`Cascade` to run (loaded :class:`Models` get one with their settings).
    """
    import json

    from .atomic import write_text
    from .images import read_image
    from .quantification import quantify
    from .volume import write_nifti

    path = Path(path)
    tick = time.perf_counter()
    image = read_image(path, series_uid)
    read_s = time.perf_counter() - tick
    if isinstance(cascade, Models):
        cascade = Cascade(cascade)
    result = cascade(image)
    name = path.name[: -len(".nii.gz")] if path.name.endswith(".nii.gz") else path.stem if path.is_file() else path.name
    out = Path(out_dir)
    tick = time.perf_counter()
    label_path = write_nifti(result.label, out / f"{name}.nii.gz")
    summary = {"input": str(path), "label": str(label_path), **result.summary()}
    if result.label.array.any():
        try:
            summary["quantification"] = quantify(image, result.label)
        except InputError as exc:
            summary["quantification"] = {"error": str(exc)}
    summary["timings_s"] = {
        "read": round(read_s, 4),
        **summary["timings_s"],
        "write": round(time.perf_counter() - tick, 4),
    }
    summary["models"] = {"folder": cascade.models.meta.get("folder"), "two_stage": cascade.two_stage}
    json_path = out / f"{name}.json"
    write_text(json_path, json.dumps(summary, indent=1) + "\n")
    for warning in result.warnings:
        logger.warning("%s: %s", path, warning)
    return label_path, json_path
