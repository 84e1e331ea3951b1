"""Inversion-recovery LGE contrast and the acquisition chain of the phantom.

Signal model (magnitude inversion-recovery gradient echo, one inversion every ``n`` heart beats):

    Mz(TI) = 1 - 2 exp(-TI / T1) + exp(-T_rec / T1),    S = PD * Mz(TI)

with T1 values 10-20 minutes after 0.15-0.2 mmol/kg of an extracellular gadolinium agent at
1.5 T: blood 240-380 ms, remote myocardium 30-60 % longer than blood, infarct 5-28 % shorter
than blood (so brighter), no-reflow close to remote myocardium (a dark core: gadolinium has not
entered it), fat about 260 ms, skeletal muscle and liver longer than myocardium (Kellman and Arai,
"Cardiac imaging techniques for physicians: late enhancement", JMRI 36:529-542, 2012; Messroghli
et al., "Clinical recommendations for cardiovascular magnetic resonance mapping of T1, T2, T2*
and extracellular volume", JCMR 19:75, 2017). The inversion time is the one that nulls remote
myocardium, off by a per-case mis-nulling factor.

The signed signal is blurred by a point-spread function, averaged over each voxel (in-plane
supersampling and sub-slices across the slice thickness: partial volume), multiplied by a smooth
receive-coil sensitivity, optionally ghosted along the phase-encoding axis, and made Rician by
adding complex Gaussian noise before taking the magnitude.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
from scipy import ndimage

from .anatomy import Tissue

__all__ = ["Contrast", "sample_contrast", "null_time", "signal_table", "smooth_field", "coil_sensitivity"]


@dataclasses.dataclass
class Contrast:
    """Relaxation and acquisition parameters of one LGE scan."""

    t1_blood: float
    myo_ratio: float
    infarct_ratio: float
    mvo_ratio: float
    heart_rate: float
    beats_per_inversion: int
    misnull: float  # TI = null time * (1 + misnull)
    snr: float  # blood-pool signal over the noise standard deviation
    psf_mm: float
    ghost: float
    gain: float  # stored value of the blood pool
    field_strength: float

    @property
    def t1_myocardium(self) -> float:
        return self.t1_blood * self.myo_ratio

    @property
    def recovery_ms(self) -> float:
        return 60000.0 / self.heart_rate * self.beats_per_inversion

    @property
    def inversion_time(self) -> float:
        return null_time(self.t1_myocardium, self.recovery_ms) * (1.0 + self.misnull)

    def t1_pd(self) -> tuple[np.ndarray, np.ndarray]:
        """T1 (ms) and proton density per tissue code."""
        t1 = np.ones(Tissue.COUNT)
        pd = np.zeros(Tissue.COUNT)
        myo = self.t1_myocardium
        table = {
            Tissue.AIR: (1000.0, 0.0),
            Tissue.FAT: (260.0, 0.95),
            Tissue.MUSCLE: (myo * 1.15, 0.8),
            Tissue.SOFT: (myo * 1.1, 0.75),
            Tissue.LUNG: (myo * 1.8, 0.12),
            Tissue.LIVER: (myo * 1.12, 0.85),
            Tissue.MARROW: (340.0, 0.75),
            Tissue.CORTEX: (1000.0, 0.03),
            Tissue.CSF: (4000.0, 1.0),
            Tissue.BLOOD: (self.t1_blood, 0.95),
            Tissue.MYOCARDIUM: (myo, 0.8),
            Tissue.INFARCT: (self.t1_blood * self.infarct_ratio, 0.85),
            Tissue.NO_REFLOW: (myo * self.mvo_ratio, 0.8),
        }
        for code, (t1_ms, density) in table.items():
            t1[code], pd[code] = t1_ms, density
        return t1, pd


def null_time(t1: float, recovery_ms: float) -> float:
    """Inversion time that nulls a tissue of longitudinal relaxation ``t1`` (ms)."""
    return t1 * math.log(2.0 / (1.0 + math.exp(-recovery_ms / t1)))


def signal_table(contrast: Contrast, inversion_time: float | None = None) -> np.ndarray:
    """Signed IR signal PD * Mz(TI) per tissue code."""
    ti = contrast.inversion_time if inversion_time is None else inversion_time
    t1, pd = contrast.t1_pd()
    return pd * (1.0 - 2.0 * np.exp(-ti / t1) + np.exp(-contrast.recovery_ms / t1))


def sample_contrast(rng: np.random.Generator) -> Contrast:
    """Draw scan parameters; about a third of cases are noticeably mis-nulled."""
    well_nulled = rng.random() < 0.65
    return Contrast(
        t1_blood=rng.uniform(240.0, 380.0),
        myo_ratio=rng.uniform(1.3, 1.6),
        infarct_ratio=rng.uniform(0.72, 0.95),
        mvo_ratio=rng.uniform(0.95, 1.15),
        heart_rate=rng.uniform(55.0, 95.0),
        beats_per_inversion=int(rng.choice([1, 2], p=[0.3, 0.7])),
        misnull=rng.uniform(-0.05, 0.06) if well_nulled else rng.choice([-1, 1]) * rng.uniform(0.08, 0.2),
        snr=rng.uniform(14.0, 40.0),
        psf_mm=rng.uniform(0.5, 1.2),
        ghost=rng.uniform(0.015, 0.05) if rng.random() < 0.3 else 0.0,
        gain=rng.uniform(250.0, 900.0),
        field_strength=float(rng.choice([1.5, 3.0], p=[0.6, 0.4])),
    )


def smooth_field(
    rng: np.random.Generator, shape: tuple[int, int], coarse: int = 6, amplitude: float = 1.0
) -> np.ndarray:
    """A smooth random field of zero mean: coarse Gaussian noise interpolated cubically."""
    grid = rng.normal(0.0, amplitude, (coarse, coarse))
    zoom = (shape[0] / coarse, shape[1] / coarse)
    field = ndimage.zoom(grid, zoom, order=3, mode="reflect", grid_mode=True)
    return field[: shape[0], : shape[1]]


def coil_sensitivity(x: np.ndarray, y: np.ndarray, coils: np.ndarray) -> np.ndarray:
    """Sum-of-squares-like receive sensitivity of surface coils at ``coils`` (n, 2) in mm.

    Each element falls off as 1 / (1 + (d / 80 mm)^2); the result is normalised to mean 1.
    """
    sens = np.zeros(x.shape)
    for cx, cy in coils:
        sens += 1.0 / (1.0 + ((x - cx) ** 2 + (y - cy) ** 2) / 80.0**2) ** 2
    sens = np.sqrt(sens)
    return sens / sens.mean()
