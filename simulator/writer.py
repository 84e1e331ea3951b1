"""Writing simulated cases as they are made: 2D slices, EMIDEC volumes and the manifest.

Layout under the output folder (every file written atomically)::

    roi/labels/<name>.npy                   uint8 [i, j] 128 x 128 slice at 1 mm, named by
                                            lgemri.emidec.slice_name, e.g.
                                            EMIDEC_Case_PSim000012_slice_3_Inf_Y
    emidec/<case_id>/Contours/<case_id>.nii.gz
                                            the uint8 label volume [i, j, k], base first
    manifest.csv                            one row per slice (MANIFEST_FIELDS); a sharded run
                                            writes manifest.shard-<i>-of-<n>.csv
    simulate.json                           the run's parameters (simulate.shard-<i>-of-<n>.json)

``formats`` leaves out the slices (``npy``) or the volumes (``nifti``) when a job needs only one.

``roi/labels`` matches the crops of ``cardiac-mi prepare``, so real and simulated masks can be
listed together. Manifest rows go to a hidden temporary file as each case is written (memory
stays flat in the number of cases) and the file is renamed into place at the end.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import logging
import os
from pathlib import Path
from typing import IO

import numpy as np

from lgemri.atomic import atomic_path
from lgemri.emidec import slice_name
from lgemri.volume import Volume, write_nifti

from .wall import Measurement, Wall, measure

__all__ = ["SimCase", "CaseWriter", "MANIFEST_FIELDS", "FORMATS", "case_rows", "volume_affine"]

logger = logging.getLogger(__name__)

FORMATS = ("npy", "nifti")
MANIFEST_FIELDS = (
    "name",
    "case_id",
    "slice",
    "level",
    "mode",
    "seed",
    "index",
    "territory_requested",
    "segments_requested",
    "size_requested_pct",
    "transmurality_requested_pct",
    "heterogeneity",
    "no_reflow_requested_pct",
    "infarct_pct",
    "no_reflow_pct",
    "no_reflow_share_pct",
    "transmurality_mean_pct",
    "transmurality_max_pct",
    "segments_hit",
    "territory",
    "slice_infarct_pct",
    "slice_no_reflow_pct",
    "slice_transmurality_mean_pct",
    "slice_transmurality_max_pct",
    "slice_segments_hit",
    "myocardium_px",
    "cavity_px",
    "infarct_px",
    "no_reflow_px",
    "myo_to_blood",
    "slice_spacing_mm",
    "lv_diameter_mm",
    "wall_mm",
    "seed_territory",
    "seed_slice",
    "seed_deg",
    "n_seeds",
    "capacity_pct",
    "recipient",
    "donor",
    "fusion_cost",
    "outside_wall",
    "repaired_px",
)


@dataclasses.dataclass
class SimCase:
    """One simulated case: its label volume, wall and the parameters that made it."""

    case_id: str
    index: int
    label: np.ndarray  # uint8 [128, 128, K]
    spacing: tuple[float, float, float]
    wall: Wall
    params: dict  # case-level manifest fields (requested values, seed, recipient, ...)

    def measurement(self) -> Measurement:
        return measure(self.wall, self.label)


def volume_affine(spacing: tuple[float, float, float]) -> np.ndarray:
    """A nominal RAS affine: ``i`` (image right) to the patient's left, ``j`` (image down) to
    posterior, ``k`` (base to apex) to inferior. Simulated stacks have no real place in a patient."""
    return np.diag([-spacing[0], -spacing[1], -spacing[2], 1.0])


def _fmt(value) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        return "" if not np.isfinite(value) else f"{float(value):.3f}"
    if isinstance(value, (tuple, list)):
        return ";".join(str(v) for v in value)
    return str(value)


def _pct(part, whole) -> float:
    return 100.0 * float(part) / float(whole) if whole else 0.0


def case_rows(case: SimCase, names: list[str], m: Measurement) -> list[dict]:
    """The manifest rows of one case (one per slice)."""
    n_inf = int(m.infarct.sum())
    common = {
        **case.params,
        "case_id": case.case_id,
        "index": case.index,
        "infarct_pct": m.infarct_pct,
        "no_reflow_pct": m.no_reflow_pct,
        "no_reflow_share_pct": _pct(m.no_reflow.sum(), n_inf),
        "transmurality_mean_pct": m.case_transmurality_mean,
        "transmurality_max_pct": m.case_transmurality_max,
        "segments_hit": m.segments,
        "territory": m.territory,
        "slice_spacing_mm": case.spacing[2],
    }
    rows = []
    for k, name in enumerate(names):
        myo, cav = int(m.myocardium[k]), int(m.cavity[k])
        rows.append(
            {
                **common,
                "name": name,
                "slice": k,
                "level": case.wall.levels[k] or "",
                "slice_infarct_pct": _pct(m.infarct[k], myo),
                "slice_no_reflow_pct": _pct(m.no_reflow[k], myo),
                "slice_transmurality_mean_pct": float(m.transmurality_mean[k]),
                "slice_transmurality_max_pct": float(m.transmurality_max[k]),
                "slice_segments_hit": m.slice_segments[k],
                "myocardium_px": myo,
                "cavity_px": cav,
                "infarct_px": int(m.infarct[k]),
                "no_reflow_px": int(m.no_reflow[k]),
                "myo_to_blood": myo / cav if cav else None,
            }
        )
    return [{field: _fmt(row.get(field)) for field in MANIFEST_FIELDS} for row in rows]


class CaseWriter:
    """Streams cases to disk; use as a context manager (the manifest is renamed in on success).

    Args:
        out_dir: the output folder.
        manifest_name: ``manifest.csv`` or ``manifest.shard-<i>-of-<n>.csv``.
        run_info: the run's parameters, written as JSON beside the manifest.
        formats: what to write besides the manifest: ``npy`` (2D slices), ``nifti`` (volumes).
    """

    def __init__(
        self,
        out_dir: str | os.PathLike,
        manifest_name: str = "manifest.csv",
        run_info: dict | None = None,
        formats: tuple[str, ...] = FORMATS,
    ):
        self.out = Path(out_dir)
        self.formats = tuple(formats)
        self.manifest = self.out / manifest_name
        self.run_info = run_info or {}
        self.cases = 0
        self.masks = 0
        self._tmp = self.out / f".{manifest_name}.partial"
        self._file: IO[str] | None = None
        self._csv: csv.DictWriter | None = None

    def __enter__(self) -> CaseWriter:
        self.out.mkdir(parents=True, exist_ok=True)
        self._file = open(self._tmp, "w", encoding="utf-8", newline="")
        self._csv = csv.DictWriter(self._file, fieldnames=MANIFEST_FIELDS, lineterminator="\n")
        self._csv.writeheader()
        return self

    def write(self, case: SimCase) -> int:
        """Write one case's slices and volume and append its manifest rows; returns the slices."""
        if self._csv is None or self._file is None:
            raise RuntimeError("CaseWriter.write outside its 'with' block")
        names = [slice_name(case.case_id, k, case.label[:, :, k]) for k in range(case.label.shape[2])]
        if "npy" in self.formats:
            for k, name in enumerate(names):
                with atomic_path(self.out / "roi" / "labels" / f"{name}.npy") as tmp:
                    np.save(tmp, np.ascontiguousarray(case.label[:, :, k]))
        if "nifti" in self.formats:
            cid = case.case_id
            volume = Volume(case.label, volume_affine(case.spacing))
            write_nifti(volume, self.out / "emidec" / cid / "Contours" / f"{cid}.nii.gz")
        self._csv.writerows(case_rows(case, names, case.measurement()))
        self._file.flush()
        self.cases += 1
        self.masks += len(names)
        return len(names)

    def __exit__(self, exc_type, exc, tb) -> None:
        assert self._file is not None
        self._file.close()
        if exc_type is not None:
            self._tmp.unlink(missing_ok=True)
            return
        os.replace(self._tmp, self.manifest)
        counts = {"cases_written": self.cases, "masks_written": self.masks, "manifest": self.manifest.name}
        info = {**self.run_info, **counts}
        stem = self.manifest.name.removeprefix("manifest").removesuffix(".csv")
        with atomic_path(self.out / f"simulate{stem}.json") as tmp:
            tmp.write_text(json.dumps(info, indent=1) + "\n", encoding="utf-8")
        logger.info("wrote %d cases (%d masks) to %s", self.cases, self.masks, self.out)
