"""What every contrast of the phantom renders with: the short-axis stack's geometry and the renderer.

:class:`Geometry` places a short-axis stack in the heart frame and in the patient (LPS);
:func:`sample_geometry` draws an EMIDEC-shaped one (5-13 slices, 1.2-2.0 mm pixels, 8-13 mm from
slice to slice, 140-300 pixels per axis). :class:`Renderer` turns the anatomy's tissue maps into
signal through a contrast's signal table (partial volume over the slice thickness and in-plane
sub-pixels, point spread, coil sensitivity, ghosting, Rician noise) and paints the EMIDEC label;
the LGE phantom (:mod:`lgemri.phantom.study`) uses it as it is, the cine phantom
(:mod:`lgemri.phantom.cine`) with its own table and no scar texture, and the real style
(:mod:`lgemri.phantom.real`) shares the geometry and the label's clean-up.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from scipy import ndimage

from ..labels import INFARCT, NO_REFLOW
from ..volume import LPS_TO_RAS
from .anatomy import Anatomy, Tissue
from .mr import Contrast, coil_sensitivity, signal_table, smooth_field

__all__ = [
    "SUPERSAMPLE",
    "SUB_SLICES",
    "MAX_STORED",
    "Geometry",
    "sample_geometry",
    "patient_frame",
    "heart_window",
    "Renderer",
    "render_stack",
    "enclose_no_reflow",
]

SUPERSAMPLE = 2  # in-plane sub-pixels per pixel and axis, for partial volume
SUB_SLICES = tuple(np.linspace(-0.45, 0.45, 9))  # positions across the slice thickness (fractions)
MAX_STORED = 4095  # 12-bit magnitude, as MR scanners store it


@dataclasses.dataclass
class Geometry:
    """Where the short-axis stack lies, in the heart frame and in the patient (LPS)."""

    pixel_mm: float
    rows: int
    cols: int
    thickness_mm: float
    spacing_mm: float
    z0: float  # heart-frame z of slice 0 (the most basal)
    slices: int
    centre_xy: tuple[float, float]  # heart-frame (x, y) of the image centre
    long_axis: np.ndarray  # LPS unit vector, base to apex
    right: np.ndarray  # LPS unit vector of image right (heart-frame x)
    up: np.ndarray  # LPS unit vector of image up (heart-frame y)
    heart_origin: np.ndarray  # LPS position of the heart-frame origin

    def plane_xy(self, supersample: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """Heart-frame x and y of the (sub)pixel centres of one slice, shaped (rows, cols)."""
        rows = (np.arange(self.rows * supersample) + 0.5) / supersample - 0.5
        cols = (np.arange(self.cols * supersample) + 0.5) / supersample - 0.5
        x = (cols - (self.cols - 1) / 2.0) * self.pixel_mm + self.centre_xy[0]
        y = -(rows - (self.rows - 1) / 2.0) * self.pixel_mm + self.centre_xy[1]
        return np.meshgrid(x, y)

    def z(self, k: int) -> float:
        return self.z0 + k * self.spacing_mm

    def affine(self) -> np.ndarray:
        """Voxel (i = column, j = row, k = slice) to RAS affine."""
        lps = np.eye(4)
        lps[:3, 0] = self.right * self.pixel_mm
        lps[:3, 1] = -self.up * self.pixel_mm
        lps[:3, 2] = self.long_axis * self.spacing_mm
        corner_x = -(self.cols - 1) / 2.0 * self.pixel_mm + self.centre_xy[0]
        corner_y = (self.rows - 1) / 2.0 * self.pixel_mm + self.centre_xy[1]
        lps[:3, 3] = self.heart_origin + corner_x * self.right + corner_y * self.up + self.z0 * self.long_axis
        return LPS_TO_RAS @ lps


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v)


def sample_geometry(rng: np.random.Generator, anatomy: Anatomy) -> Geometry:
    pixel = round(float(rng.uniform(1.2, 2.0)), 4)
    fov = rng.uniform(300.0, 400.0)
    cols = int(np.clip(round(fov / pixel), 140, 300))
    rows = int(np.clip(round(cols * rng.uniform(0.75, 1.0)), 140, 300))
    thickness = round(float(rng.uniform(8.0, 10.0)), 1)
    spacing = round(float(min(thickness + rng.uniform(0.0, 3.0), 13.0)), 1)
    z0 = float(rng.uniform(2.0, 8.0))
    slices = int(np.clip((anatomy.length - z0) // spacing + 1 + rng.integers(0, 2), 5, 13))
    # Keep the LV inside the field of view, off-centre towards the body's midline.
    margin_x = cols * pixel / 2.0 - anatomy.r_epi_base - 10.0
    margin_y = rows * pixel / 2.0 - anatomy.r_epi_base - 10.0
    centre = (
        float(np.clip(rng.uniform(-0.12, 0.12) * fov - 20.0, -margin_x, margin_x)),
        float(np.clip(rng.uniform(-0.1, 0.1) * fov - 15.0, -margin_y, margin_y)),
    )
    long_axis, right, up, origin = patient_frame(rng)
    return Geometry(pixel, rows, cols, thickness, spacing, z0, slices, centre, long_axis, right, up, origin)


def patient_frame(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """LPS long axis, image right, image up and heart-frame origin of an oblique short-axis stack."""
    long_axis = _unit(np.array([0.55, -0.5, -0.65]) + rng.normal(0.0, 0.08, 3))
    anterior = np.array([0.0, -1.0, 0.0])
    up = _unit(anterior - anterior.dot(long_axis) * long_axis)
    right = _unit(np.cross(up, long_axis))
    if right[0] < 0:  # image right is the lateral wall, towards the patient's left
        right = -right
    origin = np.array([rng.uniform(20.0, 45.0), rng.uniform(-30.0, 0.0), rng.uniform(-170.0, -120.0)])
    return long_axis, right, up, origin


def heart_window(anatomy: Anatomy, fine_xy, z: float) -> tuple[slice, slice]:
    """Rows and columns of the fine grid ``fine_xy`` (x, y planes) that can hold the heart at ``z``."""
    x0, x1, y0, y1 = anatomy.heart_box(z)
    x, y = fine_xy[0][0], fine_xy[1][:, 0]
    cols = np.flatnonzero((x >= x0) & (x <= x1))
    rows = np.flatnonzero((y >= y0) & (y <= y1))
    if not len(cols) or not len(rows):
        return slice(0, 0), slice(0, 0)
    return slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1)


class Renderer:
    """Renders the slices of one case: tissue maps to signal, partial volume, coil, noise.

    The LGE renderer; a contrast of its own replaces :attr:`table` (signal per tissue code) and,
    where its texture differs, :meth:`_fine_signal`.
    """

    def __init__(self, rng: np.random.Generator, anatomy: Anatomy, contrast: Contrast, geometry: Geometry):
        self.rng, self.anatomy, self.contrast, self.geometry = rng, anatomy, contrast, geometry
        self.table = signal_table(contrast)
        self.fine_xy = geometry.plane_xy(SUPERSAMPLE)
        self.xy = geometry.plane_xy(1)
        a, b = anatomy.thorax_axes
        span = a + anatomy.muscle_thickness + anatomy.subcutaneous_fat + 25.0
        bx, by = anatomy.body_centre
        top, bottom = by + b + 60.0, by - b - 50.0
        coils = [(bx + dx, yc) for dx in np.linspace(-0.6 * span, 0.6 * span, 4) for yc in (top, bottom)]
        coils = np.array(coils) + rng.normal(0.0, 15.0, (len(coils), 2))
        self.coil = coil_sensitivity(*self.xy, coils) * (1.0 + 0.05 * smooth_field(rng, self.xy[0].shape, 4))

    def _heart_window(self, z: float) -> tuple[slice, slice]:
        return heart_window(self.anatomy, self.fine_xy, z)

    def _fine_signal(self, z: float) -> np.ndarray:
        """Signed signal on the fine grid, averaged over the slice thickness."""
        g, a = self.geometry, self.anatomy
        thorax = a.paint_thorax(*self.fine_xy, z)
        texture = 1.0 + smooth_field(self.rng, thorax.shape, 8, 0.04)
        scar_texture = 1.0 + smooth_field(self.rng, thorax.shape, 12, 0.12)
        rows, cols = self._heart_window(z)
        x, y = self.fine_xy[0][rows, cols], self.fine_xy[1][rows, cols]
        signal = self.table[thorax] * texture
        window = np.zeros(x.shape)
        for s in SUB_SLICES:
            tissue = thorax[rows, cols].copy()
            a.paint_heart(tissue, np.zeros(x.shape, dtype=np.uint8), x, y, z + s * g.thickness_mm)
            sub = self.table[tissue] * texture[rows, cols]
            scar = tissue == Tissue.INFARCT
            sub[scar] *= scar_texture[rows, cols][scar]
            window += sub / len(SUB_SLICES)
        signal[rows, cols] = window
        return signal

    def render_slice(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        g, c = self.geometry, self.contrast
        z = g.z(k)
        fine = self._fine_signal(z)
        fine = ndimage.gaussian_filter(fine, sigma=c.psf_mm / (g.pixel_mm / SUPERSAMPLE))
        signal = fine.reshape(g.rows, SUPERSAMPLE, g.cols, SUPERSAMPLE).mean(axis=(1, 3)) * self.coil
        if c.ghost:
            signal = signal + c.ghost * np.roll(signal, g.rows // 2, axis=0)
        blood = abs(self.table[Tissue.BLOOD])
        sigma = blood / c.snr
        real = signal + self.rng.normal(0.0, sigma, signal.shape)
        imag = self.rng.normal(0.0, sigma, signal.shape)
        magnitude = np.hypot(real, imag) * (c.gain / blood)
        image = np.clip(np.rint(magnitude), 0, MAX_STORED).astype(np.int16)
        label = np.zeros(self.xy[0].shape, dtype=np.uint8)
        self.anatomy.paint_heart(np.zeros_like(label), label, *self.xy, z)
        enclose_no_reflow(label)
        return image, label


def render_stack(renderer: Renderer, geometry: Geometry) -> tuple[np.ndarray, np.ndarray]:
    """Every slice of ``geometry`` through ``renderer``: the image and label volumes, indexed (i, j, k).

    Slices are rendered as (row, column); volumes are indexed (column, row, slice).
    """
    images, labels = zip(*(renderer.render_slice(k) for k in range(geometry.slices)))
    image = np.stack(images, axis=-1).transpose(1, 0, 2)
    label = np.stack(labels, axis=-1).transpose(1, 0, 2)
    return image, label


def enclose_no_reflow(label: np.ndarray) -> None:
    """Relabel as infarct the no-reflow pixels of one slice that no infarct pixel borders.

    No-reflow is the core of an infarct. Sampled at pixel centres, a sector-shaped infarct that
    narrows to the centre of the apex cap can leave a lone no-reflow pixel with no infarct
    (3) next to it; it stays infarct, only its no-reflow class is dropped.
    """
    mvo = label == NO_REFLOW
    if not mvo.any():
        return
    parts, _ = ndimage.label(mvo)  # 4-connectivity
    touching = np.unique(parts[mvo & ndimage.binary_dilation(label == INFARCT)])
    label[mvo & ~np.isin(parts, touching)] = INFARCT
