"""The ``"real"`` style of the LGE phantom: domain-randomised appearance around the same hearts.

The classic phantom (:mod:`lgemri.phantom.study`) draws black air, black lungs and smooth
ellipses in an oval with one physical signal model; networks trained on it learn those shortcuts
and fail on real LGE. The real style keeps the heart (case ``n`` of seed ``s`` has the anatomy,
infarct and contrast draws of classic case ``n``: the same first draws from the same generator)
and randomises everything around it in the manner of SynthSeg (Billot et al., "SynthSeg:
segmentation of brain MRI scans of any contrast and resolution without retraining", Medical
Image Analysis 86:102789, 2023): random intensity per tissue class, random bias field, blur,
resolution and noise, so that shape is the cue that holds. Every range below is drawn per case,
uniformly unless said otherwise. "EMIDEC" marks figures measured on the 588 real EMIDEC slices
beside the project (Lalande et al., Data 5:89, 2020), 2nd-98th percentile over slices: they are
PSIR-like (air sits at half the stored range, 127 of 255, darker values are negative signal),
nearly every case has zero-padded strips on two edges, and the signal levels relative to air
(0) and blood pool (1) are the ones quoted.

Anatomy around the heart (heart frame: ``x`` lateral, ``y`` anterior, ``z`` base to apex):

- The trunk is the classic thorax stretched 1.0-1.7 times along a random direction (the oblique
  short-axis plane cuts the trunk long), with a smooth random deformation (0-8 mm, correlation
  80-150 mm) and a fine one (0-2 mm, 20-40 mm) so no outline is an exact ellipse; fat planes
  run through the muscles (where a random field with 8-25 mm correlation is within 0.02-0.12
  standard deviations of zero); arms by the sides in 30 % of cases each.
- The diaphragm: a dome (radius of curvature 90-300 mm) 3-7 mm thick whose top lies 0-45 mm
  beyond the basal epicardium in a direction 200-290 degrees from the LV centre (inferior to
  infero-septal) and 0-20 mm from the LV centre at the apex, so apical slices cut more abdomen.
- Below it: the liver on the septal side (its lateral edge 30 mm either side of the dome top,
  wavy, with 3-12 vessels of 2-6 mm radius and the inferior vena cava in 60 %); on the lateral
  side soft tissue with fat planes, the stomach (85 % of cases; semi-axes 25-50 x 15-35 mm,
  wall 3-7 mm, fluid with a gas cap of 5-50 % of its height in 70 %), the spleen (70 %), a
  kidney on either side (55 % each: cortex, lobulated medulla, sinus fat: ring-shaped like the
  LV), 2-20 bowel loops (radius 6-16 mm, wall 1.5-3.5 mm, content one of three chyme classes,
  gas or fluid) and a gallbladder (25 %). Organs are ellipsoids 30-160 mm long in ``z``, so they
  come and go through the stack.
- Lungs: 40-120 extra vessels of radius 0.6-2.2 mm running obliquely (0.5 mm per mm of ``z``)
  on top of the classic 25-45.

Intensities, signed, in units of the blood pool (air 0):

- 75 % of cases are *ordered*: fat 0.6-1.8, marrow 0.5-1.5, skeletal muscle -0.2-0.7,
  mediastinum and lateral abdomen 0.2-0.9, liver 0.2-0.9, spleen 0.2-1.0, kidney cortex 0.6-1.6
  (gadolinium), medulla 0.3-0.8 of the cortex, gut and stomach wall 0.3-1.3, gut content
  -0.3-1.2, fluid (stomach, gallbladder, CSF) -0.5-0.3, hepatic vessels -0.2-1.2, bone cortex
  0-0.1, lung 0.08-0.35. 25 % are *fully random*: every non-cardiac class -0.6-1.8 (PSIR) or
  0-1.8 (magnitude), lung 0.06-0.8. Gas is -0.9-0 (PSIR) or 0-0.05 (magnitude). Lungs are
  never below the air outside the body: mid-grey, not black (EMIDEC lung: at or a little above
  air, with texture).
- The LGE signature is kept in every case: healthy myocardium M -0.3-0.65 (PSIR; magnitude
  0-0.5; EMIDEC -0.6-0.89, median 0.49); infarct M + r (1 - M) with r 0.6-2.0, so above M and
  usually near or above blood (EMIDEC r 0.51-2.62, median 1.19); no-reflow M + q (infarct - M)
  with q -0.3-0.5 (magnitude -0.1-0.5): dark inside the infarct (EMIDEC q -0.59-0.96, median
  0.44, label partial volume included).
- Texture: each class adds fine (1.5 mm), medium (5 mm) and coarse (20 mm) smooth random fields
  (filtered or interpolated Gaussian noise) with class-specific amplitudes: lung speckle
  0.03-0.15, gut content 0.05-0.3, liver and spleen 0.02-0.1, scar 0.03-0.15, blood pool
  0.01-0.08, most others up to 0.05. Trabeculae: myocardial tissue in the cavity's outer 0-5 mm
  where the fine field exceeds 0.5-1.5 (labelled cavity, as the papillary muscles are).

Acquisition:

- Field of view 280-400 mm (70 %) or 150-280 mm, pixels square in
  [max(0.7, FOV / 384), min(2.0, FOV / 128)] mm (0.7-2.0 mm), so 128-384 pixels and both axes
  150-400 mm; the other axis 70-100 % as long, portrait in 30 %. Slice thickness 5-12 mm (60 %)
  or 12-23 mm, spacing thickness + 0-3 mm, 4-13 slices.
- Partial volume: 7-17 sub-slices across the thickness for the heart, 1-3 for the rest; 1-3 fine
  sub-pixels per pixel and axis (fine pixel at most 0.9 mm).
- Resolution: the acquired pixel is 1-1.7 times the stored one along readout (at most 2.6 mm
  unless the stored pixel is larger) and 1-1.4 times that along phase encoding (at most 3 mm);
  k-space is cut there with a Tukey window of taper 0-0.5 (no taper: Gibbs ringing) and
  zero-filled; motion blur (Gaussian, 0-1.2 mm) in half of the cases.
- Receive field: 1 + w (surface-coil sensitivity - 1) with w 0-0.5, times exp(b F), F a coarse
  random field (80 mm) and b 0-0.3 (SynthSeg's bias field), normalised to 1 at the heart
  (prescan normalisation).
- Ghosting (35 % of cases): 1-2 copies of 1.5-6 % shifted by a half or a third of the field along
  the phase-encoding axis.
- Noise: complex Gaussian in k-space, blood SNR 6-40 (log-uniform; EMIDEC about 3-25). 65 % of
  cases are PSIR-like (the real part: Gaussian noise, negative signal darker than air), 35 %
  magnitude (Rician).
- Stored values: 8-bit in 40 % (volume maximum at 255, as the EMIDEC PNGs), else 12-bit (99.9th
  percentile at 20-100 % of the range above the offset, clipped at 4095). PSIR-like cases add an
  offset of 35-55 % of the range (EMIDEC: air at 127 of 255).
- Zero padding: no strip in 20 % of cases, one edge in 35 %, two in 45 % (a row and a column
  edge, or in 30 % of those two opposite edges), each 2-30 % of the matrix, stopped 4 pixels
  short of the LV label (EMIDEC: 2 strips in nearly every case, up to a quarter of the image).

The label is the classic one: the EMIDEC classes of each slice's centre plane on the stored grid.
``truth`` adds ``style``, ``fov_mm``, ``zero_padding_px``, ``appearance`` (the draws above) and
``organs``; its ``snr_blood`` is the real style's.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
from scipy import ndimage
from scipy.spatial import cKDTree

from ..errors import InputError
from ..labels import CAVITY
from ..volume import Volume
from .anatomy import Anatomy, Tissue
from .cases import PhantomCase, case_truth, draw_subject
from .mr import coil_sensitivity
from .render import Geometry, enclose_no_reflow, heart_window, patient_frame

__all__ = [
    "STYLES",
    "RealTissue",
    "Appearance",
    "Surroundings",
    "check_style",
    "make_real_case",
    "sample_surroundings",
    "sample_appearance",
    "sample_real_geometry",
]

STYLES = ("classic", "real")


def check_style(style: str) -> str:
    if style not in STYLES:
        raise InputError(f"unknown phantom style {style!r}; choose from {', '.join(STYLES)}")
    return style


class RealTissue(Tissue):
    """The classic tissue codes plus the abdominal ones of the real style."""

    STOMACH_WALL = 13
    STOMACH_FLUID = 14  # also gallbladder: fluid
    BOWEL_WALL = 15
    CHYME_A = 16
    CHYME_B = 17
    CHYME_C = 18
    KIDNEY_CORTEX = 19
    KIDNEY_MEDULLA = 20
    SPLEEN = 21
    LIVER_VESSEL = 22
    GAS = 23  # gas inside the body (stomach, bowel); outside air is AIR
    COUNT = 24


T = RealTissue
CARDIAC = (T.BLOOD, T.MYOCARDIUM, T.INFARCT, T.NO_REFLOW)
# ordered-mode level ranges (signed, blood = 1)
ORDERED_LEVELS = {
    T.FAT: (0.6, 1.8),
    T.MUSCLE: (-0.2, 0.7),
    T.SOFT: (0.2, 0.9),
    T.LUNG: (0.08, 0.35),
    T.LIVER: (0.2, 0.9),
    T.MARROW: (0.5, 1.5),
    T.CORTEX: (0.0, 0.1),
    T.CSF: (-0.5, 0.3),
    T.STOMACH_WALL: (0.3, 1.3),
    T.STOMACH_FLUID: (-0.5, 0.3),
    T.BOWEL_WALL: (0.3, 1.3),
    T.CHYME_A: (-0.3, 1.2),
    T.CHYME_B: (-0.3, 1.2),
    T.CHYME_C: (-0.3, 1.2),
    T.KIDNEY_CORTEX: (0.6, 1.6),
    T.SPLEEN: (0.2, 1.0),
    T.LIVER_VESSEL: (-0.2, 1.2),
}
# texture amplitudes (fine, medium, coarse) per class: (low, high) of each; others get DEFAULT_TEXTURE
TEXTURE = {
    T.LUNG: ((0.03, 0.15), (0.0, 0.05), (0.0, 0.03)),
    T.LIVER: ((0.0, 0.04), (0.02, 0.1), (0.0, 0.05)),
    T.SPLEEN: ((0.0, 0.04), (0.02, 0.1), (0.0, 0.05)),
    T.CHYME_A: ((0.05, 0.3), (0.0, 0.2), (0.0, 0.1)),
    T.CHYME_B: ((0.05, 0.3), (0.0, 0.2), (0.0, 0.1)),
    T.CHYME_C: ((0.05, 0.3), (0.0, 0.2), (0.0, 0.1)),
    T.STOMACH_FLUID: ((0.0, 0.1), (0.0, 0.2), (0.0, 0.05)),
    T.FAT: ((0.0, 0.03), (0.0, 0.05), (0.0, 0.1)),
    T.MUSCLE: ((0.0, 0.03), (0.02, 0.08), (0.0, 0.05)),
    T.KIDNEY_CORTEX: ((0.0, 0.04), (0.02, 0.1), (0.0, 0.05)),
    T.KIDNEY_MEDULLA: ((0.0, 0.04), (0.02, 0.1), (0.0, 0.05)),
    T.BLOOD: ((0.0, 0.02), (0.0, 0.04), (0.01, 0.08)),
    T.MYOCARDIUM: ((0.0, 0.02), (0.0, 0.05), (0.0, 0.04)),
    T.INFARCT: ((0.0, 0.04), (0.03, 0.15), (0.0, 0.05)),
    T.NO_REFLOW: ((0.0, 0.02), (0.0, 0.05), (0.0, 0.02)),
    T.AIR: ((0.0, 0.0), (0.0, 0.0), (0.0, 0.0)),
    T.GAS: ((0.0, 0.0), (0.0, 0.05), (0.0, 0.0)),
}
DEFAULT_TEXTURE = ((0.0, 0.03), (0.01, 0.05), (0.0, 0.05))
TEXTURE_MM = (1.5, 5.0, 20.0)  # correlation lengths of the fine, medium and coarse fields


@dataclasses.dataclass
class Organ:
    """An ellipsoid below the diaphragm, placed in the diaphragm's frame.

    ``t`` runs along the dome (towards the lateral side), ``depth`` is the distance below the
    dome's surface; ``a`` and ``b`` are the in-plane semi-axes at the organ's widest plane
    ``zc``, ``half`` its half-extent in ``z``.
    """

    t: float
    depth: float
    zc: float
    half: float
    a: float
    b: float
    angle: float  # deg
    wall: float = 0.0
    content: int = 0
    extra: float = 0.0  # stomach: gas fraction; kidney: lobulation phase


@dataclasses.dataclass
class Surroundings:
    """Diaphragm, abdominal organs, arms, muscle marbling and extra lung vessels of one real-style case."""

    psi: float  # deg: direction from the LV centre towards the abdomen
    d_base: float  # mm from the LV centre to the dome top at z = 0
    d_apex: float  # same at z = LV length
    kappa: float  # 1 / (2 R), dome curvature
    diaphragm: float  # muscle thickness (mm)
    t_split: float  # liver | lateral abdomen along the dome
    split_wave: tuple[float, float, float]  # amplitude (mm), wavelength (mm), phase
    stomach: Organ | None
    spleen: Organ | None
    kidneys: tuple[Organ, ...]
    bowel: tuple[Organ, ...]
    liver_vessels: tuple[Organ, ...]
    gallbladder: Organ | None
    vessels: np.ndarray  # (n, 7): u, v, radius, zc, half, du/dz, dv/dz (body frame, mm)
    warp_mm: float
    warp_scale_mm: float
    arms: tuple[tuple[float, float, float, float], ...]  # body-frame centre and semi-axes (mm)
    marbling: float  # fat planes: where a smooth random field is within this of zero (in SDs)
    marbling_mm: float  # correlation length of that field
    ripple_mm: float  # amplitude of the fine deformation (irregular outlines)
    ripple_scale_mm: float
    stretch: float  # elongation of the body's cross-section (oblique cut)
    stretch_deg: float  # its direction


def _organ(rng, t, depth, zc, half, a, b, **kw) -> Organ:
    return Organ(
        float(t), float(depth), float(zc), float(half), float(a), float(b), float(rng.uniform(0.0, 180.0)), **kw
    )


def sample_surroundings(rng: np.random.Generator, anatomy: Anatomy) -> Surroundings:
    """Draw the real style's extra anatomy (ranges in the module docstring)."""
    L = anatomy.length
    psi = rng.uniform(200.0, 290.0)
    d_base = anatomy.r_epi_base + rng.uniform(0.0, 45.0)
    d_apex = rng.uniform(0.0, 20.0)
    kappa = 1.0 / (2.0 * rng.uniform(90.0, 300.0))
    diaphragm = rng.uniform(3.0, 7.0)
    t_split = rng.uniform(-30.0, 30.0)
    wave = (rng.uniform(0.0, 12.0), rng.uniform(30.0, 80.0), rng.uniform(0.0, 2 * math.pi))
    stomach = None
    if rng.random() < 0.85:
        gas = rng.uniform(0.05, 0.5) if rng.random() < 0.7 else 0.0
        stomach = _organ(
            rng,
            t_split + rng.uniform(25.0, 80.0),
            rng.uniform(2.0, 25.0),
            rng.uniform(0.2, 1.0) * L,
            rng.uniform(40.0, 80.0),
            rng.uniform(25.0, 50.0),
            rng.uniform(15.0, 35.0),
            wall=float(rng.uniform(3.0, 7.0)),
            extra=float(gas),
        )
    spleen = None
    if rng.random() < 0.7:
        spleen = _organ(
            rng,
            t_split + rng.uniform(60.0, 140.0),
            rng.uniform(30.0, 90.0),
            rng.uniform(0.0, 0.8) * L,
            rng.uniform(30.0, 60.0),
            rng.uniform(25.0, 50.0),
            rng.uniform(12.0, 25.0),
        )
    kidneys = []
    for side in (1.0, -1.0):
        if rng.random() < 0.55:
            kidneys.append(
                _organ(
                    rng,
                    side * rng.uniform(20.0, 100.0),
                    rng.uniform(15.0, 90.0),
                    rng.uniform(0.3, 1.2) * L,
                    rng.uniform(25.0, 45.0),
                    rng.uniform(14.0, 22.0),
                    rng.uniform(22.0, 35.0),
                    extra=float(rng.uniform(0.0, 2 * math.pi)),
                )
            )
    n_loops = int(rng.integers(2, 21))
    tb, db = t_split + rng.uniform(0.0, 100.0), rng.uniform(5.0, 50.0)
    contents = [T.CHYME_A, T.CHYME_B, T.CHYME_C, T.GAS, T.STOMACH_FLUID]
    bowel = []
    for _ in range(n_loops):
        r = rng.uniform(6.0, 16.0)
        bowel.append(
            _organ(
                rng,
                tb + rng.normal(0.0, 35.0),
                max(db + rng.normal(0.0, 30.0), 2.0),
                rng.uniform(-10.0, L + 30.0),
                rng.uniform(15.0, 40.0),
                r,
                r * rng.uniform(0.6, 1.0),
                wall=float(rng.uniform(1.5, 3.5)),
                content=int(rng.choice(contents, p=[0.3, 0.25, 0.2, 0.15, 0.1])),
            )
        )
    liver_vessels = []
    for _ in range(int(rng.integers(3, 13))):
        r = rng.uniform(2.0, 6.0)
        liver_vessels.append(
            _organ(
                rng,
                rng.uniform(-120.0, t_split - 5.0),
                rng.uniform(10.0, 120.0),
                rng.uniform(0.0, L + 20.0),
                rng.uniform(15.0, 40.0),
                r,
                r * rng.uniform(0.5, 1.0),
            )
        )
    if rng.random() < 0.6:  # inferior vena cava entering the right atrium through the liver
        r = rng.uniform(9.0, 15.0)
        liver_vessels.append(
            _organ(
                rng,
                t_split - rng.uniform(10.0, 50.0),
                rng.uniform(3.0, 20.0),
                rng.uniform(0.3, 1.0) * L,
                rng.uniform(30.0, 60.0),
                r,
                r * rng.uniform(0.7, 1.0),
                content=T.BLOOD,
            )
        )
    gallbladder = None
    if rng.random() < 0.25:
        gallbladder = _organ(
            rng,
            rng.uniform(-80.0, t_split - 20.0),
            rng.uniform(10.0, 60.0),
            rng.uniform(0.4, 1.2) * L,
            rng.uniform(20.0, 35.0),
            rng.uniform(12.0, 20.0),
            rng.uniform(8.0, 14.0),
        )
    a, b = anatomy.thorax_axes
    n = int(rng.integers(40, 121))
    side = rng.choice([-1.0, 1.0], size=n)
    vessels = np.stack(
        [
            side * 0.5 * a + rng.normal(0.0, 0.22 * a, n),
            rng.normal(-0.05 * b, 0.35 * b, n),
            rng.uniform(0.6, 2.2, n),
            rng.uniform(-20.0, L + 20.0, n),
            rng.uniform(5.0, 25.0, n),
            rng.uniform(-0.5, 0.5, n),
            rng.uniform(-0.5, 0.5, n),
        ],
        axis=1,
    )
    arms = []
    for side in (1.0, -1.0):
        if rng.random() < 0.3:  # arms down by the sides
            gap = anatomy.muscle_thickness + anatomy.subcutaneous_fat + rng.uniform(5.0, 40.0)
            arms.append(
                (side * (a + gap + 45.0), rng.uniform(-0.3, 0.5) * b, rng.uniform(38.0, 55.0), rng.uniform(32.0, 48.0))
            )
    return Surroundings(
        psi,
        d_base,
        d_apex,
        kappa,
        diaphragm,
        t_split,
        wave,
        stomach,
        spleen,
        tuple(kidneys),
        tuple(bowel),
        tuple(liver_vessels),
        gallbladder,
        vessels,
        float(rng.uniform(0.0, 8.0)),
        float(rng.uniform(80.0, 150.0)),
        tuple(arms),
        float(rng.uniform(0.02, 0.12)),
        float(rng.uniform(8.0, 25.0)),
        float(rng.uniform(0.0, 2.0)),
        float(rng.uniform(20.0, 40.0)),
        float(rng.uniform(1.0, 1.7)),
        float(rng.uniform(0.0, 180.0)),
    )


@dataclasses.dataclass
class Appearance:
    """Intensities and acquisition chain of one real-style case (ranges in the module docstring)."""

    psir: bool
    ordered: bool
    levels: np.ndarray  # (RealTissue.COUNT,) signed level per class, blood = 1
    texture: np.ndarray  # (RealTissue.COUNT, 3) amplitude of the fine, medium, coarse fields
    snr: float
    bias: float
    coil: float  # weight of the surface-coil sensitivity (1: unnormalised, 0: flat)
    acquired_mm: tuple[float, float]  # (rows: phase or readout, cols)
    taper: float
    ghost: float
    ghost_axis: int
    ghost_copies: int
    ghost_divisor: int
    bits: int
    offset: float  # PSIR offset, fraction of the stored range
    top: float  # 12-bit: the 99.9th percentile's stored value, as a fraction of 4095
    motion_mm: float  # Gaussian blur of cardiac and respiratory motion
    trabeculae_mm: float  # depth of the trabecular rim of the cavity
    trabeculae_threshold: float  # the rim is trabecular where the fine field exceeds this
    padding_edges: tuple[str, ...]
    padding_fractions: tuple[float, ...]

    def describe(self) -> dict:
        names = {v: k.lower() for k, v in vars(RealTissue).items() if k.isupper() and k != "COUNT"}
        names.update({v: k.lower() for k, v in vars(Tissue).items() if k.isupper() and k != "COUNT"})
        return {
            "psir": self.psir,
            "intensities": "ordered" if self.ordered else "random",
            "levels": {names[c]: round(float(self.levels[c]), 4) for c in range(RealTissue.COUNT)},
            "snr_blood": round(self.snr, 2),
            "bias_log_amplitude": round(self.bias, 4),
            "coil_weight": round(self.coil, 4),
            "acquired_pixel_mm": [round(v, 3) for v in self.acquired_mm],
            "kspace_taper": round(self.taper, 3),
            "ghost": round(self.ghost, 4),
            "motion_blur_mm": round(self.motion_mm, 3),
            "trabeculae_mm": round(self.trabeculae_mm, 3),
            "bits": self.bits,
        }


def sample_appearance(rng: np.random.Generator, pixel_mm: float) -> Appearance:
    """Draw the intensities and acquisition of one real-style case."""
    psir = bool(rng.random() < 0.65)
    ordered = bool(rng.random() < 0.75)
    levels = np.zeros(T.COUNT)
    for code in range(T.COUNT):
        if code in CARDIAC or code == T.AIR:
            continue
        lo, hi = ORDERED_LEVELS.get(code, (0.0, 1.0)) if ordered else ((0.0 if not psir else -0.6), 1.8)
        if code == T.LUNG and not ordered:
            lo, hi = 0.06, 0.8
        levels[code] = rng.uniform(lo, hi)
    if ordered:
        levels[T.KIDNEY_MEDULLA] = levels[T.KIDNEY_CORTEX] * rng.uniform(0.3, 0.8)
    levels[T.GAS] = rng.uniform(-0.9, 0.0) if psir else rng.uniform(0.0, 0.05)
    if not psir:
        levels = np.abs(levels)
    myo = rng.uniform(-0.3, 0.65) if psir else rng.uniform(0.0, 0.5)
    scar = myo + rng.uniform(0.6, 2.0) * (1.0 - myo)
    mvo = myo + (rng.uniform(-0.3, 0.5) if psir else rng.uniform(-0.1, 0.5)) * (scar - myo)
    levels[T.BLOOD], levels[T.MYOCARDIUM], levels[T.INFARCT], levels[T.NO_REFLOW] = 1.0, myo, scar, mvo
    levels[T.AIR] = 0.0
    texture = np.zeros((T.COUNT, 3))
    for code in range(T.COUNT):
        for k, (lo, hi) in enumerate(TEXTURE.get(code, DEFAULT_TEXTURE)):
            texture[code, k] = rng.uniform(lo, hi)
    snr = float(math.exp(rng.uniform(math.log(6.0), math.log(40.0))))
    bias = float(rng.uniform(0.0, 0.3))
    coil = float(rng.uniform(0.0, 0.5))
    read = pixel_mm * rng.uniform(1.0, 1.7)
    read = min(read, max(pixel_mm, 2.6))
    phase = max(min(read * rng.uniform(1.0, 1.4), max(pixel_mm, 3.0)), pixel_mm)
    phase_axis = int(rng.integers(0, 2))  # 0: phase encoding along rows (vertical), 1: along columns
    acquired = (phase, read) if phase_axis == 0 else (read, phase)
    taper = float(rng.uniform(0.0, 0.5))
    ghost = float(rng.uniform(0.015, 0.06)) if rng.random() < 0.35 else 0.0
    copies = int(rng.integers(1, 3))
    divisor = int(rng.choice([2, 3]))
    bits = 8 if rng.random() < 0.4 else 12
    offset = float(rng.uniform(0.35, 0.55)) if psir else 0.0
    top = float(rng.uniform(0.2, 1.0))
    n_edges = int(rng.choice([0, 1, 2], p=[0.2, 0.35, 0.45]))
    if n_edges == 0:
        edges: tuple[str, ...] = ()
    elif n_edges == 1:
        edges = (str(rng.choice(["i_low", "i_high", "j_low", "j_high"])),)
    elif rng.random() < 0.7:
        edges = (str(rng.choice(["i_low", "i_high"])), str(rng.choice(["j_low", "j_high"])))
    else:
        edges = ("i_low", "i_high") if rng.random() < 0.5 else ("j_low", "j_high")
    fractions = tuple(float(rng.uniform(0.02, 0.3)) for _ in edges)
    motion = float(rng.uniform(0.0, 1.2)) if rng.random() < 0.5 else 0.0
    trabeculae = float(rng.uniform(0.0, 5.0))
    trabeculae_threshold = float(rng.uniform(0.5, 1.5))
    return Appearance(
        psir,
        ordered,
        levels,
        texture,
        snr,
        bias,
        coil,
        acquired,
        taper,
        ghost,
        phase_axis,
        copies,
        divisor,
        bits,
        offset,
        top,
        motion,
        trabeculae,
        trabeculae_threshold,
        edges,
        fractions,
    )


def sample_real_geometry(rng: np.random.Generator, anatomy: Anatomy):
    """A stack with a real study's field of view, matrix and slice thickness (module docstring)."""
    fov = rng.uniform(280.0, 400.0) if rng.random() < 0.7 else rng.uniform(150.0, 280.0)
    pixel = round(float(rng.uniform(max(0.7, fov / 384.0), min(2.0, fov / 128.0))), 4)
    lo = math.ceil(150.0 / pixel)
    cols = int(np.clip(round(fov / pixel), lo, min(math.floor(400.0 / pixel), 384)))
    rows = int(np.clip(round(cols * rng.uniform(0.7, 1.0)), lo, cols))
    if rng.random() < 0.3:
        rows, cols = cols, rows
    if rng.random() < 0.6:
        thickness = round(float(rng.uniform(5.0, 12.0)), 1)
    else:
        thickness = round(float(rng.uniform(12.0, 23.0)), 1)
    spacing = round(float(thickness + rng.uniform(0.0, 3.0)), 1)
    z0 = float(rng.uniform(2.0, 8.0))
    slices = int(np.clip((anatomy.length - z0) // spacing + 1 + rng.integers(0, 2), 4, 13))
    fov_x, fov_y = cols * pixel, rows * pixel
    margin_x = max(fov_x / 2.0 - anatomy.r_epi_base - 8.0, 0.0)
    margin_y = max(fov_y / 2.0 - anatomy.r_epi_base - 8.0, 0.0)
    centre = (
        float(np.clip(rng.uniform(-0.15, 0.15) * fov_x - 15.0, -margin_x, margin_x)),
        float(np.clip(rng.uniform(-0.15, 0.15) * fov_y - 10.0, -margin_y, margin_y)),
    )
    long_axis, right, up, origin = patient_frame(rng)
    return Geometry(pixel, rows, cols, thickness, spacing, z0, slices, centre, long_axis, right, up, origin)


def _field(rng: np.random.Generator, shape: tuple[int, int], corr_px: float) -> np.ndarray:
    """Zero-mean, unit-std smooth random field with correlation length ``corr_px`` pixels."""
    if corr_px <= 4.0:
        f = ndimage.gaussian_filter(rng.normal(0.0, 1.0, shape), max(corr_px, 0.5), mode="wrap")
    else:
        coarse = (max(int(math.ceil(shape[0] / corr_px)) + 1, 3), max(int(math.ceil(shape[1] / corr_px)) + 1, 3))
        grid = rng.normal(0.0, 1.0, coarse)
        f = ndimage.zoom(
            grid,
            (shape[0] / coarse[0] * 1.0001, shape[1] / coarse[1] * 1.0001),
            order=3,
            grid_mode=True,
            mode="reflect",
        )
        f = f[: shape[0], : shape[1]]
    f = f - f.mean()
    sd = f.std()
    return f / sd if sd > 0 else f


class _RealScene:
    """Paints the real style's tissue codes on a fixed (fine) grid of the heart frame."""

    def __init__(
        self,
        rng: np.random.Generator,
        anatomy: Anatomy,
        around: Surroundings,
        x: np.ndarray,
        y: np.ndarray,
        fine_mm: float,
    ):
        self.anatomy, self.around = anatomy, around
        self.plain = dataclasses.replace(anatomy, lung_vessels=np.zeros((0, 3)))
        corr = around.warp_scale_mm / fine_mm
        fine = around.ripple_scale_mm / fine_mm
        self.xw = x + around.warp_mm * _field(rng, x.shape, corr) + around.ripple_mm * _field(rng, x.shape, fine)
        self.yw = y + around.warp_mm * _field(rng, x.shape, corr) + around.ripple_mm * _field(rng, x.shape, fine)
        self.marble = np.abs(_field(rng, x.shape, around.marbling_mm / fine_mm)) < around.marbling
        self.xs, self.ys = x[0], y[:, 0]  # column x (increasing) and row y (decreasing)
        e = math.radians(around.stretch_deg)
        self.stretch_dir = (math.cos(e), math.sin(e))
        p = math.radians(around.psi)
        self.dir = (math.cos(p), math.sin(p))
        self.perp = (-math.sin(p), math.cos(p))

    def _window(self, cx: float, cy: float, r: float) -> tuple[slice, slice]:
        r = r + self.around.warp_mm + 2.0
        c0, c1 = np.searchsorted(self.xs, [cx - r, cx + r])
        # ys decreases along rows
        r0 = len(self.ys) - np.searchsorted(self.ys[::-1], cy + r)
        r1 = len(self.ys) - np.searchsorted(self.ys[::-1], cy - r)
        return slice(max(int(r0), 0), max(int(r1), 0)), slice(int(c0), int(c1))

    def dome(self, z: float) -> float:
        ab = self.around
        f = min(max(z / self.anatomy.length, 0.0), 1.3)
        return ab.d_base + (ab.d_apex - ab.d_base) * f

    def _place(self, organ: Organ, z: float) -> tuple[float, float, float] | None:
        """Heart-frame centre and in-plane scale of ``organ`` on the plane at ``z``."""
        q = (z - organ.zc) / organ.half
        if abs(q) >= 1.0:
            return None
        scale = math.sqrt(1.0 - q * q)
        cx0, cy0 = self.anatomy.centre(z)
        w = self.dome(z) + self.around.kappa * organ.t**2 + organ.depth
        cx = cx0 + w * self.dir[0] + organ.t * self.perp[0]
        cy = cy0 + w * self.dir[1] + organ.t * self.perp[1]
        return cx, cy, scale

    def _ellipse(self, organ: Organ, z: float):
        """``(window, u, v, a, b)`` of ``organ`` on the plane at ``z``: the fine-grid window that
        holds it, coordinates in its own frame there and its semi-axes; None where it is absent."""
        placed = self._place(organ, z)
        if placed is None:
            return None
        cx, cy, s = placed
        a, b = organ.a * s, organ.b * s
        if a <= 0.5 or b <= 0.5:
            return None
        rows, cols = self._window(cx, cy, max(a, b))
        if rows.stop <= rows.start or cols.stop <= cols.start:
            return None
        dx, dy = self.xw[rows, cols] - cx, self.yw[rows, cols] - cy
        ca, sa = math.cos(math.radians(organ.angle)), math.sin(math.radians(organ.angle))
        u, v = dx * ca + dy * sa, -dx * sa + dy * ca
        return (rows, cols), u, v, a, b

    def paint(self, z: float) -> np.ndarray:
        """Tissue codes (:class:`RealTissue`) of everything but the heart on the plane at ``z``."""
        ab, an = self.around, self.anatomy
        xw, yw = self.xw, self.yw
        # The oblique plane cuts the trunk long: stretch the body along a random direction.
        bx = an.body_centre[0] + an.body_drift[0] * z
        by = an.body_centre[1] + an.body_drift[1] * z
        ex, ey = self.stretch_dir
        along = (xw - bx) * ex + (yw - by) * ey
        shrink = along * (1.0 / ab.stretch - 1.0)
        tissue = self.plain.paint_thorax(xw + shrink * ex, yw + shrink * ey, z)
        tissue[self.marble & (tissue == T.MUSCLE)] = T.FAT
        if ab.arms:
            for ux, vy, ra, rb in ab.arms:
                e = np.hypot((xw - bx - ux) / ra, (yw - by - vy) / rb)
                outside = tissue == T.AIR
                tissue[outside & (e <= 1.0)] = T.FAT
                tissue[outside & (e <= 0.8)] = T.MUSCLE
                tissue[outside & (e <= 0.25)] = T.CORTEX
                tissue[outside & (e <= 0.17)] = T.MARROW
        cavity = (tissue == T.LUNG) | (tissue == T.LIVER)
        tissue[tissue == T.LIVER] = T.LUNG
        cx0, cy0 = an.centre(z)
        dx, dy = xw - cx0, yw - cy0
        w = dx * self.dir[0] + dy * self.dir[1]
        t = dx * self.perp[0] + dy * self.perp[1]
        below = w - ab.kappa * t * t - self.dome(z)
        abdomen = cavity & (below > 0)
        tissue[cavity & (below > -ab.diaphragm) & (below <= 0)] = T.MUSCLE
        amp, wavelength, phase = ab.split_wave
        liver = abdomen & (t < ab.t_split + amp * np.sin(w / wavelength * 2 * math.pi + phase))
        tissue[abdomen] = T.SOFT
        tissue[abdomen & self.marble] = T.FAT
        tissue[liver] = T.LIVER
        for organ in (ab.spleen,):
            if organ is not None:
                self._solid(tissue, abdomen, organ, z, T.SPLEEN)
        for organ in ab.kidneys:
            self._kidney(tissue, abdomen, organ, z)
        if ab.stomach is not None:
            self._stomach(tissue, abdomen, ab.stomach, z)
        for organ in ab.bowel:
            self._loop(tissue, abdomen, organ, z)
        for organ in ab.liver_vessels:
            self._solid(tissue, tissue == T.LIVER, organ, z, organ.content or T.LIVER_VESSEL)
        if ab.gallbladder is not None:
            self._solid(tissue, tissue == T.LIVER, ab.gallbladder, z, T.STOMACH_FLUID)
        self._vessels(tissue, z)
        return tissue

    def _solid(self, tissue, allowed, organ, z, code):
        e = self._ellipse(organ, z)
        if e is None:
            return
        win, u, v, a, b = e
        inside = ((u / a) ** 2 + (v / b) ** 2 <= 1.0) & allowed[win]
        tissue[win][inside] = code

    def _kidney(self, tissue, allowed, organ, z):
        e = self._ellipse(organ, z)
        if e is None:
            return
        win, u, v, a, b = e
        rho = np.hypot(u / a, v / b)
        theta = np.arctan2(v / b, u / a)
        ok = allowed[win]
        sub = tissue[win]
        sub[(rho <= 1.0) & ok] = T.KIDNEY_CORTEX
        lobes = 0.62 * (1.0 + 0.12 * np.cos(6 * theta + organ.extra))
        sub[(rho <= lobes) & ok] = T.KIDNEY_MEDULLA
        sinus = np.hypot((u + 0.55 * a) / (0.45 * a), v / (0.35 * b)) <= 1.0  # the hilum, on one side
        sub[sinus & (rho <= 0.9) & ok] = T.FAT

    def _stomach(self, tissue, allowed, organ, z):
        e = self._ellipse(organ, z)
        if e is None:
            return
        win, u, v, a, b = e
        ok = allowed[win]
        sub = tissue[win]
        sub[((u / a) ** 2 + (v / b) ** 2 <= 1.0) & ok] = T.STOMACH_WALL
        ai, bi = a - organ.wall, b - organ.wall
        if ai <= 1.0 or bi <= 1.0:
            return
        lumen = ((u / ai) ** 2 + (v / bi) ** 2 <= 1.0) & ok
        sub[lumen] = T.STOMACH_FLUID
        if organ.extra > 0:
            # Gas rises to the anterior side (image up) above a flat level.
            y = self.yw[win]
            top = y[lumen].max() if lumen.any() else 0.0
            bottom = y[lumen].min() if lumen.any() else 0.0
            level = top - organ.extra * (top - bottom)
            sub[lumen & (y > level)] = T.GAS

    def _loop(self, tissue, allowed, organ, z):
        e = self._ellipse(organ, z)
        if e is None:
            return
        win, u, v, a, b = e
        ok = allowed[win]
        sub = tissue[win]
        sub[((u / a) ** 2 + (v / b) ** 2 <= 1.0) & ok] = T.BOWEL_WALL
        ai, bi = a - organ.wall, b - organ.wall
        if ai > 0.5 and bi > 0.5:
            sub[((u / ai) ** 2 + (v / bi) ** 2 <= 1.0) & ok] = organ.content

    def _vessels(self, tissue, z):
        an, ab = self.anatomy, self.around
        lung = tissue == T.LUNG
        if not lung.any():
            return
        vz = ab.vessels
        active = np.abs(z - vz[:, 3]) < vz[:, 4]
        moved = vz[active, :2] + vz[active, 5:7] * (z - vz[active, 3:4])
        points = np.concatenate([an.lung_vessels, np.column_stack([moved, vz[active, 2]])], axis=0)
        if not len(points):
            return
        bx = an.body_centre[0] + an.body_drift[0] * z
        by = an.body_centre[1] + an.body_drift[1] * z
        dist, idx = cKDTree(points[:, :2]).query(np.stack([self.xw[lung] - bx, self.yw[lung] - by], axis=1))
        dots = np.zeros_like(lung)
        dots[lung] = dist <= points[idx, 2]
        tissue[dots] = T.BLOOD


def _tukey(n: int, keep: float, taper: float) -> np.ndarray:
    """k-space weights along one axis (FFT order): 1 in the central ``keep`` fraction tapered by
    a cosine over its outer ``taper`` part, 0 outside."""
    k = np.abs(np.fft.fftfreq(n)) * 2.0  # 0 at DC, 1 at Nyquist
    w = np.zeros(n)
    inside = k <= keep
    w[inside] = 1.0
    if taper > 0:
        edge = keep * (1.0 - taper)
        ramp = inside & (k > edge)
        w[ramp] = 0.5 * (1.0 + np.cos(np.pi * (k[ramp] - edge) / (keep - edge)))
    return w


class _RealRenderer:
    """Renders the slices of one real-style case (see the module docstring)."""

    def __init__(
        self, rng, anatomy: Anatomy, geometry, around: Surroundings, look: Appearance, keep_tissue: bool = False
    ):
        self.rng, self.anatomy, self.geometry, self.around, self.look = rng, anatomy, geometry, around, look
        g = geometry
        self.sup = max(1, math.ceil(g.pixel_mm / 0.9))
        self.fine_mm = g.pixel_mm / self.sup
        self.fine_xy = g.plane_xy(self.sup)
        self.xy = g.plane_xy(1)
        self.scene = _RealScene(rng, anatomy, around, *self.fine_xy, self.fine_mm)
        self.n_heart = int(np.clip(round(g.thickness_mm / 1.25), 7, 17))
        self.heart_offsets = (np.arange(self.n_heart) + 0.5) / self.n_heart - 0.5
        self.n_body = 1 if g.thickness_mm < 8.0 else 2 if g.thickness_mm < 14.0 else 3
        self.body_offsets = (np.arange(self.n_body) + 0.5) / self.n_body - 0.5
        a, b = anatomy.thorax_axes
        span = a + anatomy.muscle_thickness + anatomy.subcutaneous_fat + 25.0
        bx, by = anatomy.body_centre
        coils = [
            (bx + dx, yc) for dx in np.linspace(-0.6 * span, 0.6 * span, 4) for yc in (by + b + 60.0, by - b - 50.0)
        ]
        coils = np.array(coils) + rng.normal(0.0, 15.0, (len(coils), 2))
        shape = self.xy[0].shape
        receive = coil_sensitivity(*self.xy, coils)
        receive = 1.0 + look.coil * (receive - 1.0)
        receive = receive * np.exp(look.bias * _field(rng, shape, 80.0 / g.pixel_mm))
        # Scanners normalise the receive field (prescan normalisation); the heart is at 1.
        row = int(np.clip(round(g.centre_xy[1] / g.pixel_mm + (g.rows - 1) / 2.0), 0, g.rows - 1))
        col = int(np.clip(round(-g.centre_xy[0] / g.pixel_mm + (g.cols - 1) / 2.0), 0, g.cols - 1))
        self.receive = receive / receive[row, col]
        self.trabeculae_px = int(round(look.trabeculae_mm / self.fine_mm))
        self.keep_tissue = keep_tissue
        self.tissue_slices: list[np.ndarray] = []

    def _heart_window(self, z: float) -> tuple[slice, slice]:
        return heart_window(self.anatomy, self.fine_xy, z)

    def _signal(self, tissue: np.ndarray, fields: np.ndarray) -> np.ndarray:
        tex = self.look.texture[tissue]  # (..., 3)
        return self.look.levels[tissue] + np.einsum("...k,k...->...", tex, fields)

    def _fine_signal(self, z: float) -> np.ndarray:
        g, a = self.geometry, self.anatomy
        shape = self.fine_xy[0].shape
        fields = np.stack([_field(self.rng, shape, mm / self.fine_mm) for mm in TEXTURE_MM])
        bodies = [self.scene.paint(z + s * g.thickness_mm) for s in self.body_offsets]
        if self.keep_tissue:
            centre = bodies[len(bodies) // 2].copy() if self.n_body % 2 else self.scene.paint(z)
            label = np.zeros(shape, dtype=np.uint8)
            a.paint_heart(centre, label, *self.fine_xy, z)
            o = self.sup // 2
            self.tissue_slices.append(centre[o :: self.sup, o :: self.sup])
        signal = sum(self._signal(t, fields) for t in bodies) / len(bodies)
        rows, cols = self._heart_window(z)
        if rows.stop > rows.start and cols.stop > cols.start:
            x, y = self.fine_xy[0][rows, cols], self.fine_xy[1][rows, cols]
            sub_fields = fields[:, rows, cols]
            window = np.zeros(x.shape)
            for s in self.heart_offsets:
                nearest = bodies[min(int((s + 0.5) * self.n_body), self.n_body - 1)]
                tissue = nearest[rows, cols].copy()
                sub_label = np.zeros(x.shape, dtype=np.uint8)
                a.paint_heart(tissue, sub_label, x, y, z + s * g.thickness_mm)
                if self.trabeculae_px:
                    # Trabeculae: myocardial tissue in the cavity's outer rim (labelled cavity, as
                    # the papillary muscles are).
                    cavity = sub_label == CAVITY
                    rim = cavity & ~ndimage.binary_erosion(cavity, iterations=self.trabeculae_px)
                    tissue[rim & (sub_fields[0] > self.look.trabeculae_threshold)] = T.MYOCARDIUM
                window += self._signal(tissue, sub_fields)
            signal[rows, cols] = window / self.n_heart
        return signal

    def _acquire(self, image: np.ndarray) -> np.ndarray:
        """k-space cut to the acquired resolution, windowed, with complex noise; complex image."""
        look, g = self.look, self.geometry
        n0, n1 = image.shape
        w0 = _tukey(n0, g.pixel_mm / look.acquired_mm[0], look.taper)
        w1 = _tukey(n1, g.pixel_mm / look.acquired_mm[1], look.taper)
        weights = w0[:, None] * w1[None, :]
        k = np.fft.fft2(image)
        # numpy's inverse FFT divides by n: white k-space noise of standard deviation sigma_k
        # per component, weighted, leaves sigma_k sqrt(sum w^2) / n per component in the image.
        n = n0 * n1
        norm = math.sqrt(float((weights**2).sum()))
        sigma_k = n / max(norm, 1e-9) / look.snr
        noise = self.rng.normal(0.0, sigma_k, (2, n0, n1))
        k = (k + noise[0] + 1j * noise[1]) * weights
        return np.fft.ifft2(k)

    def render_slice(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        g, look = self.geometry, self.look
        z = g.z(k)
        fine = self._fine_signal(z)
        if look.motion_mm > 0:
            fine = ndimage.gaussian_filter(fine, look.motion_mm / self.fine_mm)
        s = self.sup
        signal = fine.reshape(g.rows, s, g.cols, s).mean(axis=(1, 3)) * self.receive
        if look.ghost:
            axis = look.ghost_axis
            n = signal.shape[axis]
            ghosted = signal.copy()
            for c in range(1, look.ghost_copies + 1):
                shift = c * n // look.ghost_divisor
                ghosted += (
                    look.ghost / c * (np.roll(signal, shift, axis=axis) + np.roll(signal, -shift, axis=axis)) / 2.0
                )
            signal = ghosted
        cplx = self._acquire(signal)
        value = cplx.real if look.psir else np.abs(cplx)
        label = np.zeros(self.xy[0].shape, dtype=np.uint8)
        self.anatomy.paint_heart(np.zeros_like(label), label, *self.xy, z)
        enclose_no_reflow(label)
        return value, label


def _store(values: np.ndarray, look: Appearance) -> np.ndarray:
    """Scale and quantise a float volume to 8 or 12 bits (see the module docstring).

    8-bit: the volume maximum becomes 255. 12-bit: the 99.9th percentile becomes ``top`` of the
    range above the offset (clipped at 4095). PSIR-like cases store ``offset + value``, so zero
    signal (air) is mid-grey and negative signal darker.
    """
    ceiling = 255 if look.bits == 8 else 4095
    high = max(float(values.max()) if look.bits == 8 else float(np.percentile(values, 99.9)), 1e-9)
    offset = look.offset * (ceiling + 1)
    fraction = 1.0 if look.bits == 8 else look.top
    scale = (ceiling - offset) * fraction / high
    stored = np.rint(offset + values * scale)
    return np.clip(stored, 0, ceiling).astype(np.int16)


def _padding(look: Appearance, label: np.ndarray) -> dict[str, int]:
    """Strip widths per edge (volume axes i, j), stopped 4 pixels short of the label."""
    ni, nj = label.shape[:2]
    heart = np.argwhere(label.any(axis=2))
    if len(heart):
        (i0, j0), (i1, j1) = heart.min(axis=0), heart.max(axis=0)
    else:
        i0, j0, i1, j1 = ni // 2, nj // 2, ni // 2, nj // 2
    room = {"i_low": i0 - 4, "i_high": ni - 1 - i1 - 4, "j_low": j0 - 4, "j_high": nj - 1 - j1 - 4}
    size = {"i_low": ni, "i_high": ni, "j_low": nj, "j_high": nj}
    widths = {}
    for edge, fraction in zip(look.padding_edges, look.padding_fractions):
        widths[edge] = int(max(0, min(round(fraction * size[edge]), room[edge])))
    return widths


def render_real_case(rng: np.random.Generator, anatomy: Anatomy, *, keep_tissue: bool = False):
    """``(image, label, geometry, truth additions, appearance, tissue)`` of one real-style case.

    ``rng`` is the case's generator after the draws every style shares (anatomy, contrast).
    ``tissue`` (only with ``keep_tissue``, else None) holds the tissue codes of each slice's
    centre plane on the stored grid, (i, j, k); keeping it draws nothing.
    """
    geometry = sample_real_geometry(rng, anatomy)
    around = sample_surroundings(rng, anatomy)
    look = sample_appearance(rng, geometry.pixel_mm)
    renderer = _RealRenderer(rng, anatomy, geometry, around, look, keep_tissue)
    values, labels = zip(*(renderer.render_slice(k) for k in range(geometry.slices)))
    values = np.stack(values, axis=-1).transpose(1, 0, 2)
    label = np.ascontiguousarray(np.stack(labels, axis=-1).transpose(1, 0, 2))
    image = _store(values, look)
    pad = _padding(look, label)
    for edge, width in pad.items():
        if width <= 0:
            continue
        if edge == "i_low":
            image[:width] = 0
        elif edge == "i_high":
            image[-width:] = 0
        elif edge == "j_low":
            image[:, :width] = 0
        else:
            image[:, -width:] = 0
    extra = {
        "style": "real",
        "fov_mm": [round(geometry.cols * geometry.pixel_mm, 2), round(geometry.rows * geometry.pixel_mm, 2)],
        "zero_padding_px": {e: w for e, w in pad.items() if w > 0},
        "appearance": look.describe(),
        "organs": {
            "stomach": around.stomach is not None,
            "spleen": around.spleen is not None,
            "kidneys": len(around.kidneys),
            "bowel_loops": len(around.bowel),
            "gallbladder": around.gallbladder is not None,
        },
    }
    tissue = None
    if keep_tissue:
        tissue = np.ascontiguousarray(np.stack(renderer.tissue_slices, axis=-1).transpose(1, 0, 2))
    return image, label, geometry, extra, look, tissue


def make_real_case(number: int, seed: int, territory: str | None = None, *, keep_tissue: bool = False):
    """Real-style case ``number`` of ``seed``: ``(PhantomCase, tissue)``.

    ``tissue`` is None unless ``keep_tissue``: then the tissue codes (:class:`RealTissue`) of each
    slice's centre plane on the stored grid, indexed (i, j, k) like the image. Keeping them draws
    nothing, so the case is the same either way.
    """
    case_id, rng, anatomy, contrast = draw_subject(number, seed, territory)
    image, label, geometry, extra, look, tissue = render_real_case(rng, anatomy, keep_tissue=keep_tissue)
    affine = geometry.affine()
    truth = case_truth(case_id, number, seed, anatomy, contrast, geometry, label)
    truth["snr_blood"] = round(look.snr, 2)
    truth.update(extra)
    case = PhantomCase(case_id, Volume(np.ascontiguousarray(image), affine), Volume(label, affine), truth)
    return case, (None if tissue is None else Volume(tissue, affine))
