"""Thorax and heart anatomy of the LGE phantom, as regions evaluated at points in millimetres.

Coordinates are those of the heart frame: ``x`` towards the lateral LV wall (image right), ``y``
towards the anterior wall (image up), ``z`` along the LV long axis from the base plane (0)
towards the apex. The LV is a truncated prolate shell whose endocardial and epicardial radii
shrink from base to apex, with irregular contours; the RV is a crescent on the septal side;
the thorax around them (subcutaneous fat, chest-wall muscle, ribs, lungs, liver, spine,
descending aorta) moves slowly with ``z`` the way oblique short-axis planes cut a real chest.

Physiological ranges (end-diastole, adults), used to sample each case:

- LV end-diastolic inner diameter at the base 42-56 mm in normal hearts (Lang et al., "Recommendations
  for cardiac chamber quantification by echocardiography in adults", JASE 28:1-39, 2015:
  normal LVIDd 37.8-52.2 mm in women, 42.0-58.4 mm in men); up to 62 mm after infarction
  (remodelling).
- LV wall thickness 7-11 mm at the base, thinning to 4.5-7 mm at the apex (Kawel-Boehm et al.,
  "Reference ranges ('normal values') for cardiovascular magnetic resonance in adults and
  children: 2020 update", JCMR 22:87, 2020).
- LV long-axis length, base plane to epicardial apex, 75-100 mm (same source, LV length 80-95 mm).
- RV free-wall thickness 2.5-4 mm; pericardial fat 0-4 mm, thicker in the grooves.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
from scipy.spatial import cKDTree

from .. import aha
from ..labels import CAVITY, INFARCT, MYOCARDIUM, NO_REFLOW

__all__ = ["Tissue", "Infarct", "Anatomy", "sample_anatomy"]


class Tissue:
    """Tissue codes of the phantom's tissue maps."""

    AIR = 0
    FAT = 1
    MUSCLE = 2
    SOFT = 3
    LUNG = 4
    LIVER = 5
    MARROW = 6
    CORTEX = 7
    CSF = 8
    BLOOD = 9
    MYOCARDIUM = 10
    INFARCT = 11
    NO_REFLOW = 12
    COUNT = 13


TERRITORY_OFFSETS_DEG = {
    # Centre of each coronary territory, relative to the anterior RV insertion point, in the
    # counter-clockwise angle convention of lgemri.aha (LAD: anterior/anteroseptal, RCA:
    # inferior/inferoseptal, LCX: inferolateral/anterolateral).
    "LAD": (-50.0, 50.0),
    "RCA": (70.0, 170.0),
    "LCX": (190.0, 290.0),
}


@dataclasses.dataclass
class Infarct:
    """A myocardial infarct grown from the subendocardium outward (the wavefront of Reimer and
    Jennings, 1977), optionally with a no-reflow core."""

    territory: str
    centre_deg: float  # image-plane angle of the infarct centre
    half_width_deg: float
    z_start: float
    z_end: float
    transmurality: float  # maximum fraction of the wall thickness, 0-1
    edge_noise: tuple[tuple[float, float], ...]  # (amplitude, phase) of angular harmonics
    no_reflow: bool
    mvo_width: float  # fraction of the infarct's angular half-width
    mvo_depth: float  # fraction of the local infarct depth

    def extent(self, z: float) -> tuple[float, float]:
        """Angular half-width (deg) and maximum transmurality (0-1) on the plane at ``z``."""
        ramp = 10.0
        taper = min(max((z - self.z_start) / ramp, 0.0), 1.0) * min(max((self.z_end - z) / ramp, 0.0), 1.0)
        if taper <= 0.0:
            return 0.0, 0.0
        return self.half_width_deg * (0.6 + 0.4 * taper), self.transmurality * (0.5 + 0.5 * taper)

    def regions(self, theta: np.ndarray, depth: np.ndarray, z: float) -> tuple[np.ndarray, np.ndarray]:
        """Masks of infarct (including no-reflow) and no-reflow for wall points.

        ``depth`` is the normalised position across the wall: 0 at the endocardium, 1 at the
        epicardium.
        """
        half, t_max = self.extent(z)
        if half <= 0.0:
            empty = np.zeros(theta.shape, dtype=bool)
            return empty, empty
        dtheta = np.mod(theta - self.centre_deg + 180.0, 360.0) - 180.0
        wobble = sum(a * np.cos(np.radians((k + 2) * theta) + p + 0.02 * z) for k, (a, p) in enumerate(self.edge_noise))
        q = np.clip(1.0 - (dtheta / half) ** 2, 0.0, 1.0)
        reach = t_max * q**0.35 + 0.08 * wobble
        infarct = (np.abs(dtheta) < half * (1.0 + 0.1 * wobble)) & (depth < reach)
        if not self.no_reflow or t_max < 0.45:
            return infarct, np.zeros_like(infarct)
        mvo = infarct & (np.abs(dtheta) < self.mvo_width * half) & (depth < self.mvo_depth * reach)
        return infarct, mvo


@dataclasses.dataclass
class Anatomy:
    """One phantom subject: heart and thorax geometry."""

    r_endo_base: float
    wall_base: float
    length: float  # base plane to epicardial apex
    apex_wall: float
    profile: float
    endo_harmonics: tuple[tuple[float, float], ...]
    epi_harmonics: tuple[tuple[float, float], ...]
    tilt: tuple[float, float]  # LV centre drift per mm of z
    rv_offset: float
    rv_width: float
    rv_height: float
    rv_shift: float
    rv_wall: float
    fat_thickness: float
    papillary: tuple[tuple[float, float, float], ...]  # (angle deg, radius mm, z fraction)
    body_centre: tuple[float, float]
    body_drift: tuple[float, float]
    thorax_axes: tuple[float, float]
    muscle_thickness: float
    subcutaneous_fat: float
    lung_vessels: np.ndarray  # (n, 3): x, y, radius in mm relative to the body centre
    liver_start: float
    infarct: Infarct | None

    # -- LV shape ---------------------------------------------------------------------------
    @property
    def cavity_length(self) -> float:
        return self.length - self.apex_wall

    @property
    def r_epi_base(self) -> float:
        return self.r_endo_base + self.wall_base

    def heart_box(self, z: float) -> tuple[float, float, float, float]:
        """Heart-frame (x_min, x_max, y_min, y_max) that holds the heart and its fat at ``z``."""
        cx, cy = self.centre(z)
        ex, ey, ea, eb = self.rv_ellipse(z)
        pad = self.fat_thickness + 3.0
        r = self.r_epi_base * 1.25 + pad
        return (min(cx - r, ex - ea - pad), cx + r, min(cy - r, ey - eb - pad), max(cy + r, ey + eb + pad))

    def centre(self, z: float) -> tuple[float, float]:
        return self.tilt[0] * z, self.tilt[1] * z

    def radii(self, theta: np.ndarray, z: float) -> tuple[np.ndarray, np.ndarray]:
        """Endocardial and epicardial radius (mm) at angles ``theta`` (deg) on the plane at ``z``.

        The cavity is a truncated prolate ellipsoid; the wall thins linearly from its basal to
        its apical thickness and closes over the cavity's tip as the apex cap (17).
        """
        t = np.radians(theta)

        def shape(harmonics):
            return 1.0 + sum(a * np.cos((k + 2) * t + p + 0.01 * z) for k, (a, p) in enumerate(harmonics))

        zc = min(max(z, 0.0), self.length)
        cavity = self.cavity_length
        if zc < cavity:
            endo = self.r_endo_base * math.sqrt(1.0 - (zc / cavity) ** self.profile)
            epi = endo + self.wall_base + (self.apex_wall - self.wall_base) * zc / cavity
        else:
            endo = 0.0
            epi = self.apex_wall * math.sqrt(max(0.0, 1.0 - ((zc - cavity) / self.apex_wall) ** 2))
        r_endo = endo * shape(self.endo_harmonics)
        r_epi = epi * shape(self.epi_harmonics)
        return r_endo, np.maximum(r_epi, r_endo + 2.5 * (endo > 0))

    def rv_ellipse(self, z: float) -> tuple[float, float, float, float]:
        """Centre and semi-axes of the RV's outer wall on the plane at ``z`` (zero size past its apex)."""
        scale = math.sqrt(max(0.0, 1.0 - (max(z, 0.0) / (0.82 * self.length)) ** 2))
        cx, cy = self.centre(z)
        return cx - self.rv_offset * scale - 6.0, cy + self.rv_shift, self.rv_width * scale, self.rv_height * scale

    def rv_insertion_deg(self, z: float | None = None) -> float:
        """Angle of the anterior RV insertion point (where the RV wall meets the LV epicardium)."""
        z = 0.35 * self.length if z is None else z
        theta = np.arange(0.0, 360.0, 0.5)
        _, r_epi = self.radii(theta, z)
        cx, cy = self.centre(z)
        ex, ey, a, b = self.rv_ellipse(z)
        x = cx + r_epi * np.cos(np.radians(theta))
        y = cy + r_epi * np.sin(np.radians(theta))
        inside = ((x - ex) / max(a, 1e-6)) ** 2 + ((y - ey) / max(b, 1e-6)) ** 2 <= 1.0
        if not inside.any():
            return 120.0
        # The covered arc runs through the septum (180 degrees); its counter-clockwise start is
        # the anterior insertion point.
        return float(theta[inside].min())

    # -- regions ----------------------------------------------------------------------------
    def paint(self, x: np.ndarray, y: np.ndarray, z: float) -> tuple[np.ndarray, np.ndarray]:
        """Tissue codes and EMIDEC labels at points ``(x, y)`` of the short-axis plane at ``z``."""
        tissue = self.paint_thorax(x, y, z)
        label = np.zeros(x.shape, dtype=np.uint8)
        self.paint_heart(tissue, label, x, y, z)
        return tissue, label

    def paint_thorax(self, x: np.ndarray, y: np.ndarray, z: float) -> np.ndarray:
        """Tissue codes of everything but the heart at points ``(x, y)`` of the plane at ``z``."""
        tissue = np.full(x.shape, Tissue.AIR, dtype=np.uint8)
        bx = self.body_centre[0] + self.body_drift[0] * z
        by = self.body_centre[1] + self.body_drift[1] * z
        a, b = self.thorax_axes
        u, v = x - bx, y - by
        m, f = self.muscle_thickness, self.subcutaneous_fat
        table = v > -(b + m + 0.6 * f)  # the patient lies on the table: flat back

        def ellipse(cx, cy, ax, ay):
            return ((u - cx) / ax) ** 2 + ((v - cy) / ay) ** 2 <= 1.0

        tissue[ellipse(0, 0, a + m + f, b + m + f) & table] = Tissue.FAT
        tissue[ellipse(0, 0, a + m, b + m) & table] = Tissue.MUSCLE
        tissue[ellipse(0, 0, a, b)] = Tissue.LUNG
        # Ribs in the chest wall and the sternum: marrow with a cortical rim.
        for ang in (25.0, 50.0, 130.0, 155.0, 205.0, 335.0):
            t = math.radians(ang)
            rx, ry = (a + 0.5 * m) * math.cos(t), (b + 0.5 * m) * math.sin(t)
            tissue[ellipse(rx, ry, 9.0, 6.0)] = Tissue.CORTEX
            tissue[ellipse(rx, ry, 7.0, 4.0)] = Tissue.MARROW
        tissue[ellipse(0, b + 0.3 * m, 14.0, 7.0)] = Tissue.CORTEX
        tissue[ellipse(0, b + 0.3 * m, 12.0, 5.0)] = Tissue.MARROW
        # Pulmonary vessels: small bright dots in the lungs.
        lung = tissue == Tissue.LUNG
        if lung.any() and len(self.lung_vessels):
            dist, idx = cKDTree(self.lung_vessels[:, :2]).query(np.stack([u[lung], v[lung]], axis=1))
            dots = np.zeros_like(lung)
            dots[lung] = dist <= self.lung_vessels[idx, 2]
            tissue[dots] = Tissue.BLOOD
        # Posterior mediastinum: soft tissue between the lungs, in front of the spine.
        tissue[ellipse(0, -b + 62.0, 0.12 * a, 0.22 * b)] = Tissue.SOFT
        # Liver: below the right hemidiaphragm, cut more by the apical planes.
        grow = min((z - self.liver_start) / 45.0, 1.0)
        if grow > 0:
            tissue[ellipse(-0.45 * a, -0.3 * b, 0.52 * a * grow, 0.6 * b * grow)] = Tissue.LIVER
        # Spine with paraspinal muscles, vertebral body, spinal canal; descending aorta.
        sy = -b + 26.0
        tissue[ellipse(0, sy - 14.0, 45.0, 30.0) & table] = Tissue.MUSCLE
        tissue[ellipse(0, sy, 19.0, 17.0)] = Tissue.CORTEX
        tissue[ellipse(0, sy, 17.0, 15.0)] = Tissue.MARROW
        tissue[ellipse(0, sy - 25.0, 8.0, 7.0)] = Tissue.CORTEX
        tissue[ellipse(0, sy - 25.0, 6.5, 5.5)] = Tissue.CSF
        tissue[ellipse(26.0, sy + 22.0, 15.0, 15.0)] = Tissue.SOFT
        tissue[ellipse(26.0, sy + 22.0, 12.0, 12.0)] = Tissue.BLOOD
        return tissue

    def paint_heart(self, tissue: np.ndarray, label: np.ndarray, x: np.ndarray, y: np.ndarray, z: float) -> None:
        """Paint the LV, RV and epicardial fat over ``tissue`` and their EMIDEC classes into ``label``."""
        if z < 0.0 or z >= self.length:
            return
        cx, cy = self.centre(z)
        dx, dy = x - cx, y - cy
        r = np.hypot(dx, dy)
        theta = np.mod(np.degrees(np.arctan2(dy, dx)), 360.0)
        r_endo, r_epi = self.radii(theta, z)
        ex, ey, ea, eb = self.rv_ellipse(z)
        insertion = self.rv_insertion_deg(z)
        groove = np.exp(-(((np.mod(theta - insertion + 180, 360) - 180) / 25.0) ** 2))
        fat_lv = self.fat_thickness * (0.35 + 0.65 * groove)
        tissue[r < r_epi + fat_lv] = Tissue.FAT
        if ea > 0:
            e = np.hypot((x - ex) / (ea + self.fat_thickness), (y - ey) / (eb + self.fat_thickness))
            tissue[(e <= 1.0) & (r >= r_epi)] = Tissue.FAT
            e_out = np.hypot((x - ex) / ea, (y - ey) / eb)
            e_in = np.hypot((x - ex) / max(ea - self.rv_wall, 1.0), (y - ey) / max(eb - self.rv_wall, 1.0))
            tissue[(e_out <= 1.0) & (r >= r_epi)] = Tissue.MYOCARDIUM
            tissue[(e_in <= 1.0) & (r >= r_epi + 0.5)] = Tissue.BLOOD
        wall = r < r_epi
        tissue[wall] = Tissue.MYOCARDIUM
        label[wall] = MYOCARDIUM
        cavity = r < r_endo
        tissue[cavity] = Tissue.BLOOD
        label[cavity] = CAVITY
        for ang, rad, zf in self.papillary:
            if abs(z / self.length - zf) < 0.2:
                t = math.radians(ang)
                px = cx + 0.72 * r_endo.mean() * math.cos(t)
                py = cy + 0.72 * r_endo.mean() * math.sin(t)
                tissue[cavity & (np.hypot(x - px, y - py) < rad)] = Tissue.MYOCARDIUM
        if self.infarct is None:
            return
        cap = z >= self.cavity_length
        thickness = np.maximum(r_epi - r_endo, 1e-6)
        depth = r / np.maximum(r_epi, 1e-6) if cap else (r - r_endo) / thickness
        infarct, mvo = self.infarct.regions(theta, depth, z)
        infarct &= wall & ~cavity
        mvo &= infarct
        tissue[infarct] = Tissue.INFARCT
        label[infarct] = INFARCT
        tissue[mvo] = Tissue.NO_REFLOW
        label[mvo] = NO_REFLOW


def _harmonics(rng: np.random.Generator, n: int, scale: float) -> tuple[tuple[float, float], ...]:
    return tuple((float(rng.uniform(0, scale) / (k + 1)), float(rng.uniform(0, 2 * math.pi))) for k in range(n))


def sample_anatomy(rng: np.random.Generator, pathological: bool, territory: str | None = None) -> Anatomy:
    """Draw one subject from the physiological ranges of the module docstring.

    Args:
        rng: the case's random generator.
        pathological: whether the subject has an infarct.
        territory: force the infarct's coronary territory (LAD, RCA or LCX).
    """
    r_endo = rng.uniform(44.0, 62.0) / 2 if pathological else rng.uniform(42.0, 56.0) / 2
    wall = rng.uniform(7.0, 11.0)
    length = rng.uniform(75.0, 100.0)
    a, b = rng.uniform(118.0, 148.0), rng.uniform(82.0, 105.0)
    n_vessels = int(rng.integers(25, 45))
    lung_side = rng.choice([-1.0, 1.0], size=n_vessels)
    vessels = np.stack(
        [
            lung_side * 0.5 * a + rng.normal(0, 0.2 * a, n_vessels),
            rng.normal(-0.05 * b, 0.35 * b, n_vessels),
            rng.uniform(1.0, 3.0, n_vessels),
        ],
        axis=1,
    )
    anatomy = Anatomy(
        r_endo_base=r_endo,
        wall_base=wall,
        length=length,
        apex_wall=rng.uniform(4.5, 7.0),
        profile=rng.uniform(1.8, 2.6),
        endo_harmonics=_harmonics(rng, 3, 0.08),
        epi_harmonics=_harmonics(rng, 3, 0.05),
        tilt=(rng.uniform(-0.08, 0.08), rng.uniform(-0.08, 0.08)),
        rv_offset=r_endo + wall + rng.uniform(-8.0, 2.0),
        rv_width=rng.uniform(24.0, 34.0),
        rv_height=r_endo + wall + rng.uniform(6.0, 16.0),
        rv_shift=rng.uniform(0.0, 12.0),
        rv_wall=rng.uniform(2.5, 4.0),
        fat_thickness=rng.uniform(0.5, 4.0),
        papillary=(
            (rng.uniform(30.0, 60.0), rng.uniform(3.0, 5.5), rng.uniform(0.4, 0.55)),
            (rng.uniform(265.0, 300.0), rng.uniform(3.0, 5.5), rng.uniform(0.4, 0.55)),
        ),
        body_centre=(-rng.uniform(20.0, 45.0), -rng.uniform(30.0, 50.0)),
        body_drift=(-rng.uniform(0.05, 0.2), -rng.uniform(0.05, 0.25)),
        thorax_axes=(a, b),
        muscle_thickness=rng.uniform(8.0, 15.0),
        subcutaneous_fat=rng.uniform(4.0, 25.0),
        lung_vessels=vessels,
        liver_start=rng.uniform(10.0, 50.0),
        infarct=None,
    )
    if pathological:
        anatomy.infarct = sample_infarct(rng, anatomy, territory)
    return anatomy


def sample_infarct(rng: np.random.Generator, anatomy: Anatomy, territory: str | None = None) -> Infarct:
    """An infarct in a coronary territory (LAD most often), sized and placed from the territory."""
    if territory is None:
        territory = str(rng.choice(["LAD", "RCA", "LCX"], p=[0.5, 0.3, 0.2]))
    territory = territory.upper()
    if territory not in TERRITORY_OFFSETS_DEG:
        raise ValueError(f"unknown territory {territory!r}; choose one of {', '.join(aha.TERRITORIES)}")
    lo, hi = TERRITORY_OFFSETS_DEG[territory]
    centre = anatomy.rv_insertion_deg() + rng.uniform(lo, hi)
    length = anatomy.length
    if territory == "LAD":
        z_start, z_end = rng.uniform(0.05, 0.5) * length, length + 10.0
    else:
        z_start, z_end = rng.uniform(-0.1, 0.15) * length, rng.uniform(0.55, 0.9) * length
    transmurality = float(rng.uniform(0.45, 1.0))
    return Infarct(
        territory=territory,
        centre_deg=float(np.mod(centre, 360.0)),
        half_width_deg=float(rng.uniform(35.0, 90.0)),
        z_start=float(z_start),
        z_end=float(z_end),
        transmurality=transmurality,
        edge_noise=_harmonics(rng, 3, 0.6),
        no_reflow=bool(rng.random() < 0.65 and transmurality > 0.5),
        mvo_width=float(rng.uniform(0.3, 0.6)),
        mvo_depth=float(rng.uniform(0.35, 0.7)),
    )
