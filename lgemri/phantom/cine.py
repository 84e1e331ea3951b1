"""Cine (bSSFP-like) contrast of the phantom: the CycleGAN's domain A.

Case ``n`` of seed ``s`` has exactly the anatomy, geometry and EMIDEC label of the LGE case
:func:`lgemri.phantom.make_case` ``(n, s)`` (the same draws, in the same order, from the same
generator), rendered with the steady-state signal of balanced SSFP before contrast:

    S = PD sin(a) (1 - E1) / (1 - (E1 - E2) cos(a) - E1 E2) * exp(-TE / T2),
    E1 = exp(-TR / T1), E2 = exp(-TR / T2), TE = TR / 2

(Scheffler and Lehnhardt, "Principles and applications of balanced SSFP techniques", Eur Radiol
13:2409-2418, 2003), roughly ``PD sqrt(T2 / T1)`` at the optimal flip angle. With native
relaxation times (1.5 T: blood T1 1550 / T2 250 ms, myocardium 1000 / 50 ms, fat 260 / 80 ms;
3 T: longer T1, slightly shorter T2; Messroghli et al., JCMR 19:75, 2017) blood is bright,
myocardium grey, fat bright, lung dark. Infarct and no-reflow get the relaxation of remote
myocardium (within a few per cent): cine does not show the scar, which is why the CycleGAN is
given the mask. No scar texture either. Flip angle, TR, SNR and gain are drawn per case from a
separate generator, so the LGE phantom's own output is untouched (its determinism is tested).

The cine phantom is one end-diastolic frame per slice (the phase of the LGE phantom), not a
movie. ``write_cine_phantom`` writes the EMIDEC layout, so ``cardiac-mi prepare`` turns it into
ROI crops for ``cardiac-mi gan train --model cyclegan --data-a``.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
from pathlib import Path

import numpy as np

from ..volume import Volume
from .anatomy import Tissue
from .cases import PhantomCase, case_truth, draw_subject, write_cases, write_series
from .mr import Contrast, smooth_field
from .render import SUB_SLICES, Renderer, render_stack, sample_geometry

__all__ = [
    "CineContrast",
    "sample_cine_contrast",
    "cine_signal_table",
    "make_cine_case",
    "write_cine_case",
    "write_cine_phantom",
    "HEADER",
]

logger = logging.getLogger(__name__)

HEADER = {"generator": "cardiac_mi cine phantom", "contrast": "cine"}  # phantom.json's header

# native (pre-contrast) T1, T2 in ms and proton density per tissue; (1.5 T, 3 T) T1 values
_NATIVE = {
    Tissue.AIR: ((1000.0, 1000.0), 1.0, 0.0),
    Tissue.FAT: ((260.0, 380.0), 80.0, 0.95),
    Tissue.MUSCLE: ((870.0, 1100.0), 35.0, 0.8),
    Tissue.SOFT: ((1000.0, 1200.0), 55.0, 0.75),
    Tissue.LUNG: ((1200.0, 1400.0), 40.0, 0.12),
    Tissue.LIVER: ((580.0, 810.0), 45.0, 0.85),
    Tissue.MARROW: ((370.0, 500.0), 70.0, 0.75),
    Tissue.CORTEX: ((1000.0, 1000.0), 1.0, 0.03),
    Tissue.CSF: ((4000.0, 4300.0), 2000.0, 1.0),
    Tissue.BLOOD: ((1550.0, 1900.0), 250.0, 0.95),
    Tissue.MYOCARDIUM: ((1000.0, 1200.0), 50.0, 0.8),
    Tissue.INFARCT: ((1000.0, 1200.0), 50.0, 0.8),  # scaled per case by scar_t1 / scar_t2
    Tissue.NO_REFLOW: ((1000.0, 1200.0), 50.0, 0.8),
}


@dataclasses.dataclass
class CineContrast:
    """Acquisition parameters of one cine (bSSFP) scan of the phantom."""

    flip_deg: float
    tr_ms: float
    snr: float  # blood-pool signal over the noise standard deviation
    gain: float  # stored value of the blood pool
    ghost: float
    scar_t1: float  # infarct T1 / remote myocardium T1 (close to 1: cine does not show scar)
    scar_t2: float
    field_strength: float


def sample_cine_contrast(rng: np.random.Generator, field_strength: float) -> CineContrast:
    """Draw cine scan parameters (flip 45-70 degrees, TR 2.8-3.8 ms, blood SNR 30-80)."""
    return CineContrast(
        flip_deg=rng.uniform(45.0, 70.0),
        tr_ms=rng.uniform(2.8, 3.8),
        snr=rng.uniform(30.0, 80.0),
        gain=rng.uniform(250.0, 900.0),
        ghost=rng.uniform(0.01, 0.03) if rng.random() < 0.2 else 0.0,
        scar_t1=rng.uniform(0.98, 1.04),
        scar_t2=rng.uniform(0.98, 1.05),
        field_strength=float(field_strength),
    )


def cine_signal_table(cine: CineContrast) -> np.ndarray:
    """bSSFP steady-state signal per tissue code (see the module docstring)."""
    high = cine.field_strength >= 2.0
    a = math.radians(cine.flip_deg)
    table = np.zeros(Tissue.COUNT)
    for code, ((t1_15, t1_3), t2, pd) in _NATIVE.items():
        t1 = t1_3 if high else t1_15
        t2 = t2 * (0.9 if high else 1.0)
        if code in (Tissue.INFARCT, Tissue.NO_REFLOW):
            t1, t2 = t1 * cine.scar_t1, t2 * cine.scar_t2
        e1, e2 = math.exp(-cine.tr_ms / t1), math.exp(-cine.tr_ms / t2)
        steady = math.sin(a) * (1.0 - e1) / (1.0 - (e1 - e2) * math.cos(a) - e1 * e2)
        table[code] = pd * steady * math.exp(-cine.tr_ms / 2.0 / t2)
    return table


class CineRenderer(Renderer):
    """The LGE renderer with the bSSFP table and no scar texture."""

    def __init__(self, rng, anatomy, contrast: Contrast, geometry, cine: CineContrast) -> None:
        acquisition = dataclasses.replace(contrast, snr=cine.snr, gain=cine.gain, ghost=cine.ghost)
        super().__init__(rng, anatomy, acquisition, geometry)
        self.table = cine_signal_table(cine)

    def _fine_signal(self, z: float) -> np.ndarray:
        g, a = self.geometry, self.anatomy
        thorax = a.paint_thorax(*self.fine_xy, z)
        texture = 1.0 + smooth_field(self.rng, thorax.shape, 8, 0.04)
        smooth_field(self.rng, thorax.shape, 12, 0.12)  # the LGE scar texture's draw: cine shows no scar
        rows, cols = self._heart_window(z)
        x, y = self.fine_xy[0][rows, cols], self.fine_xy[1][rows, cols]
        signal = self.table[thorax] * texture
        window = np.zeros(x.shape)
        for s in SUB_SLICES:
            tissue = thorax[rows, cols].copy()
            a.paint_heart(tissue, np.zeros(x.shape, dtype=np.uint8), x, y, z + s * g.thickness_mm)
            window += self.table[tissue] * texture[rows, cols] / len(SUB_SLICES)
        signal[rows, cols] = window
        return signal


def make_cine_case(number: int, seed: int, territory: str | None = None) -> PhantomCase:
    """The cine (bSSFP) rendering of phantom case ``number`` of ``seed``.

    Its label and geometry are those of ``make_case(number, seed, territory)``; ``truth`` is
    that case's ground truth plus ``"contrast": "cine"`` and the cine parameters.
    """
    case_id, rng, anatomy, contrast = draw_subject(number, seed, territory)  # the LGE case's draws, in its order
    geometry = sample_geometry(rng, anatomy)
    cine = sample_cine_contrast(np.random.default_rng([seed, number, 0xC1E]), contrast.field_strength)
    image, label = render_stack(CineRenderer(rng, anatomy, contrast, geometry, cine), geometry)
    affine = geometry.affine()
    truth = case_truth(case_id, number, seed, anatomy, contrast, geometry, label)
    truth.update(
        {
            "contrast": "cine",
            "cine": {k: (round(v, 4) if isinstance(v, float) else v) for k, v in dataclasses.asdict(cine).items()},
        }
    )
    image_volume = Volume(np.ascontiguousarray(image), affine)
    return PhantomCase(case_id, image_volume, Volume(np.ascontiguousarray(label), affine), truth)


def write_cine_case(case: PhantomCase, out: Path, formats: tuple[str, ...]) -> None:
    """Write one cine case: EMIDEC layout and a cine bSSFP DICOM series (:func:`lgemri.phantom.cases.write_series`)."""
    t = case.truth
    write_series(
        case,
        out,
        formats,
        series_description="cine bSSFP SAX phantom (end-diastole)",
        study_description="Cardiac MRI cine (cardiac_mi phantom)",
        series_number=5,
        uid_prefix="cardiac_mi-cine-phantom",
        extra={
            "SliceThickness": t["slice_thickness_mm"],
            "RepetitionTime": t["cine"]["tr_ms"],
            "EchoTime": round(t["cine"]["tr_ms"] / 2.0, 3),
            "FlipAngle": t["cine"]["flip_deg"],
            "MagneticFieldStrength": t["field_strength_t"],
            "ScanningSequence": ["GR"],
            "SequenceVariant": ["SS"],
            "SequenceName": "bSSFP_CINE",
            "PatientSex": "O",
        },
    )


def write_cine_phantom(
    out_dir: str | os.PathLike, cases: int, seed: int, progress: bool = False, formats: tuple[str, ...] = ("emidec",)
) -> Path:
    """Generate ``cases`` cine phantom studies into ``out_dir``; returns the path of ``phantom.json``.

    The layout is :func:`lgemri.phantom.write_phantom`'s (``emidec/`` and/or ``dicom/``);
    ``phantom.json`` says ``"contrast": "cine"`` and holds each case's ground truth and cine
    parameters. Case ``n`` of ``seed`` has the anatomy and label of LGE case ``n`` of ``seed``.

    Raises:
        InputError: ``cases < 1`` or an unknown format.
    """
    return write_cases(
        out_dir,
        cases,
        seed,
        make_cine_case,
        write_cine_case,
        HEADER,
        progress=progress,
        description="cine phantom",
        formats=formats,
    )
