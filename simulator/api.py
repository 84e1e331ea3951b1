"""The simulator's entry point: configuration, sharding and the case loop.

Case ``index`` (0-based) of a run draws everything from ``np.random.default_rng([seed, index])``,
so a case is the same whatever the number of cases asked for and whichever shard makes it:
shard ``i/n`` makes the cases with ``index % n == i``, and the union of the shards of a run is
byte for byte the unsharded run.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import re
from pathlib import Path
from typing import Annotated, Literal

import numpy as np
from pydantic import AfterValidator, Field, model_validator
from tqdm import tqdm

from lgemri import aha
from lgemri.config import Checked, Share
from lgemri.emidec import SPLITS
from lgemri.errors import InputError

from .fusion import fuse
from .hybrid import Subject, load_subjects
from .infarct import InfarctSpec, check_segments, grow_infarct
from .rings import make_anatomy
from .wall import enclose_no_reflow, measure
from .writer import FORMATS, CaseWriter, SimCase

__all__ = [
    "MODES",
    "Shard",
    "parse_shard",
    "SimulationConfig",
    "SimulationResult",
    "Pool",
    "prepare_pool",
    "make_case",
    "simulate",
]

logger = logging.getLogger(__name__)

MODES = ("synthetic", "hybrid", "fusion")
CASE_MARKERS = {"synthetic": "Sim", "hybrid": "SimH", "fusion": "SimF"}
_SHARD_RE = re.compile(r"\s*(\d+)\s*/\s*(\d+)\s*")


@dataclasses.dataclass(frozen=True)
class Shard(Checked):
    """Part ``index`` of ``count`` of a run: the cases with ``case_index % count == index``."""

    index: int = 0
    count: Annotated[int, Field(ge=1, title="shard count")] = 1

    def __post_init__(self) -> None:
        self.validate()

    @model_validator(mode="after")
    def _index_in_range(self) -> Shard:
        if not 0 <= self.index < self.count:
            raise InputError(f"shard index must lie in 0..{self.count - 1} for {self.count} shards, got {self.index}")
        return self

    @property
    def manifest_name(self) -> str:
        return "manifest.csv" if self.count == 1 else f"manifest.shard-{self.index}-of-{self.count}.csv"

    def indices(self, n: int) -> range:
        return range(self.index, n, self.count)

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def parse_shard(text: str | None) -> Shard:
    """``"i/n"`` (0 <= i < n) as a :class:`Shard`; None is the whole run.

    Raises:
        InputError: malformed text, ``n < 1`` or ``i >= n`` (``3/2`` is refused).
    """
    if text is None:
        return Shard()
    match = _SHARD_RE.fullmatch(str(text))
    if not match:
        raise InputError(f"shard must look like i/n with 0 <= i < n (e.g. 0/4), got {text!r}")
    return Shard(int(match[1]), int(match[2]))


def _range(name: str, hi: float, unit: str, open_low: bool = False):
    """A ``(low, high)`` field within ``0..hi`` (above 0 with ``open_low``), in ``name``'s words."""
    unit = f" {unit}" if unit else ""

    def check(bounds: tuple[float, float]) -> tuple[float, float]:
        a, b = bounds
        got = f"{a:g}" if a == b else f"{a:g} to {b:g}"
        if not ((a > 0 if open_low else a >= 0) and b <= hi):
            raise InputError(
                f"{name} must be {'above' if open_low else 'at least'} 0 and at most {hi:g}{unit}, got {got}"
            )
        if a > b:
            raise InputError(f"{name} range is reversed ({a:g} > {b:g}); give low,high")
        return bounds

    finite = Annotated[float, Field(allow_inf_nan=False)]
    return Annotated[tuple[finite, finite], AfterValidator(check), Field(title=name)]


def _territories(names: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(aha.parse_territory(t) for t in names))


def _formats(names: tuple[str, ...]) -> tuple[str, ...]:
    names = tuple(dict.fromkeys(f.strip().lower() for f in names))
    if not names or not set(names) <= set(FORMATS):
        raise InputError(f"output formats must be one or more of {', '.join(FORMATS)}, got {list(names)}")
    return names


InfarctSizes = _range("infarct size", 100.0, "% of the LV", open_low=True)
Transmuralities = _range("transmurality", 100.0, "%", open_low=True)
Heterogeneities = _range("heterogeneity", 1.0, "")
NoReflowSizes = _range("no-reflow size", 100.0, "% of the infarct")


@dataclasses.dataclass
class SimulationConfig(Checked):
    """Everything a run needs; ``validate`` names the first bad parameter.

    Ranges are ``(low, high)``; a value is drawn per case (sizes log-uniformly, so small infarcts
    are more common, the rest uniformly).

    Attributes:
        mode: ``synthetic`` (rings drawn from physiological ranges), ``hybrid`` (infarct grown
            on real myocardium from ``recipients``) or ``fusion`` (a donor's infarct moved into
            a similar recipient, both from ``recipients``).
        n: number of cases of the whole run (all shards).
        seed: run seed.
        recipients: EMIDEC-layout folder of labelled subjects (hybrid, fusion), or a prepared
            folder (``cases.json`` and ``nifti/``) with ``recipients_split``.
        recipients_split: the split (train, val, test) of a prepared ``recipients`` folder whose
            cases alone are recipients and donors (needed for a prepared folder).
        territories: confine infarcts to one of these coronary territories (drawn per case);
            empty: place them by culprit prevalence, unconfined. Fusion: allowed donor
            territories.
        segments: confine infarcts to these AHA segments (adjacent levels).
        infarct_size: % of the LV myocardium.
        transmurality: largest extent across the wall, %.
        heterogeneity: 0-1.
        no_reflow_probability: chance that an infarct of >= 50 % transmurality has no-reflow.
        no_reflow_size: no-reflow core, % of the infarct.
        normal_fraction: share of cases without infarct (``Case_N...``; synthetic, hybrid).
        slices: slices per synthetic stack (None: 6-12 from the LV length and 8-13 mm spacing;
            1: single mid-ventricular 2D masks).
        neighbours: k of the k-nearest-neighbour recipient search (fusion).
        max_cost: largest acceptable fusion cost.
        keep_recipient_infarct: fusion merges into the recipient's own infarct.
        rv_insertion_deg: anterior RV insertion angle for the AHA segments (None: 120).
        formats: files besides the manifest: ``npy`` 2D slices, ``nifti`` EMIDEC volumes.
        shard: the part of the run this process makes.
    """

    mode: Literal[MODES] = "synthetic"
    n: Annotated[int, Field(ge=1, title="--n")] = 10
    seed: Annotated[int, Field(ge=0, title="--seed")] = 0
    recipients: Path | None = None
    recipients_split: Literal[SPLITS] | None = None
    territories: Annotated[tuple[str, ...], AfterValidator(_territories)] = ()
    segments: Annotated[tuple[int, ...], AfterValidator(lambda s: check_segments(s) if s else s)] = ()
    infarct_size: InfarctSizes = (3.0, 40.0)
    transmurality: Transmuralities = (40.0, 100.0)
    heterogeneity: Heterogeneities = (0.0, 0.6)
    no_reflow_probability: Annotated[Share, Field(title="no-reflow probability")] = 0.5
    no_reflow_size: NoReflowSizes = (5.0, 35.0)
    normal_fraction: Share = 0.0
    slices: Annotated[int, Field(ge=1, le=30, title="--slices")] | None = None
    neighbours: Annotated[int, Field(ge=1, title="--neighbours")] = 3
    max_cost: Annotated[float, Field(ge=0, allow_inf_nan=False, title="--max-cost")] = 0.5
    keep_recipient_infarct: bool = False
    rv_insertion_deg: Annotated[float, Field(allow_inf_nan=False, title="--rv-insertion")] | None = None
    formats: Annotated[tuple[str, ...], AfterValidator(_formats)] = FORMATS
    shard: Shard = dataclasses.field(default_factory=Shard)

    @model_validator(mode="after")
    def _mode_rules(self) -> SimulationConfig:
        if self.territories and self.segments:
            raise InputError("ask for --territory or for --segments, not both")
        if self.mode == "synthetic":
            if self.recipients is not None:
                raise InputError("--recipients is for the hybrid and fusion modes; synthetic masks need none")
        elif self.recipients is None:
            raise InputError(f"--mode {self.mode} needs --recipients (an EMIDEC-layout folder of labelled cases)")
        if self.recipients_split is not None and self.recipients is None:
            raise InputError("--recipients-split goes with --recipients (a prepared folder)")
        if self.mode == "fusion" and self.segments:
            raise InputError(
                "--segments does not apply to fusion (the donor's infarct is moved as it is); use --territory"
            )
        return self

    def as_dict(self) -> dict:
        out = dataclasses.asdict(self)
        out["recipients"] = None if self.recipients is None else str(self.recipients)
        out["shard"] = str(self.shard)
        return out


@dataclasses.dataclass
class Pool:
    """Loaded subjects for hybrid and fusion, and the indices of the allowed donors."""

    subjects: list[Subject]
    donors: list[int]


def prepare_pool(config: SimulationConfig) -> Pool | None:
    """Load the recipients (hybrid, fusion); None for synthetic runs.

    Raises:
        InputError: no usable subject; for fusion, fewer than two subjects or no donor with an
            infarct (of the requested territories).
    """
    if config.mode == "synthetic":
        return None
    subjects = load_subjects(config.recipients, config.rv_insertion_deg, config.recipients_split)
    if config.mode == "hybrid":
        return Pool(subjects, [])
    if len(subjects) < 2:
        raise InputError(f"{config.recipients}: fusion needs at least two usable subjects (a donor and a recipient)")
    donors = []
    for i, s in enumerate(subjects):
        if not s.has_infarct:
            continue
        territory = measure(s.wall, s.label).territory
        if config.territories and territory not in config.territories:
            continue
        donors.append(i)
    if not donors:
        wanted = f" in territory {', '.join(config.territories)}" if config.territories else ""
        raise InputError(f"{config.recipients}: no donor with an infarct{wanted} for fusion")
    return Pool(subjects, donors)


def _draw(rng: np.random.Generator, bounds: tuple[float, float], log: bool = False) -> float:
    a, b = bounds
    if a == b:
        return float(a)
    if log:
        return float(math.exp(rng.uniform(math.log(a), math.log(b))))
    return float(rng.uniform(a, b))


def _sample_spec(rng: np.random.Generator, config: SimulationConfig) -> InfarctSpec:
    size = _draw(rng, config.infarct_size, log=True)
    transmurality = _draw(rng, config.transmurality)
    heterogeneity = _draw(rng, config.heterogeneity)
    territory = config.territories[int(rng.integers(len(config.territories)))] if config.territories else None
    no_reflow = 0.0
    if rng.random() < config.no_reflow_probability and transmurality >= 50.0:
        no_reflow = _draw(rng, config.no_reflow_size)
    return InfarctSpec(size, transmurality, heterogeneity, no_reflow, territory, config.segments or None)


def _spec_params(spec: InfarctSpec | None) -> dict:
    if spec is None:
        return {}
    return {
        "territory_requested": spec.territory or "",
        "segments_requested": spec.segments or (),
        "size_requested_pct": spec.size_pct,
        "transmurality_requested_pct": spec.transmurality_pct,
        "heterogeneity": spec.heterogeneity,
        "no_reflow_requested_pct": spec.no_reflow_pct,
    }


def _growth_params(growth) -> dict:
    return {
        "seed_territory": growth.seed_territory,
        "seed_slice": growth.seed_slice if growth.seed_slice >= 0 else None,
        "seed_deg": growth.seed_deg,
        "n_seeds": growth.n_seeds,
        "capacity_pct": growth.capacity_pct,
    }


def make_case(config: SimulationConfig, index: int, pool: Pool | None = None) -> SimCase | None:
    """Case ``index`` of the run described by ``config`` (validated), or None when fusion found
    no acceptable result (logged). ``pool`` comes from :func:`prepare_pool`."""
    rng = np.random.default_rng([config.seed, index])
    params: dict = {"mode": config.mode, "seed": config.seed}
    if config.mode == "fusion":
        assert pool is not None
        fused = fuse(pool.subjects, pool.donors, rng, config.neighbours, config.max_cost, config.keep_recipient_infarct)
        if fused is None:
            logger.warning("case %d: skipped: no donor/recipient pair within fusion cost %.2f", index, config.max_cost)
            return None
        recipient = next(s for s in pool.subjects if s.subject_id == fused.recipient)
        label, wall, spacing = fused.label, recipient.wall, recipient.spacing
        params.update(
            {
                "size_requested_pct": fused.donor_infarct_pct,
                "territory_requested": ";".join(config.territories),
                "recipient": fused.recipient,
                "donor": fused.donor,
                "fusion_cost": fused.cost,
                "outside_wall": fused.parts["outside_wall"],
                "repaired_px": fused.repaired,
                "lv_diameter_mm": recipient.descriptors[0],
                "wall_mm": recipient.descriptors[1],
            }
        )
    else:
        normal = bool(rng.random() < config.normal_fraction)
        if config.mode == "synthetic":
            anatomy, wall, spacing, shape = make_anatomy(rng, not normal, config.slices, config.rv_insertion_deg)
            params.update({"lv_diameter_mm": 2 * shape.r_endo_base, "wall_mm": shape.wall_base})
        else:
            assert pool is not None
            recipient = pool.subjects[int(rng.integers(len(pool.subjects)))]
            anatomy, wall, spacing = recipient.anatomy, recipient.wall, recipient.spacing
            params.update(
                {
                    "recipient": recipient.subject_id,
                    "lv_diameter_mm": recipient.descriptors[0],
                    "wall_mm": recipient.descriptors[1],
                }
            )
        if normal:
            label = anatomy.copy()
        else:
            spec = _sample_spec(rng, config)
            growth = grow_infarct(wall, spec, rng)
            label = wall.paint(anatomy, growth.infarct, growth.no_reflow)
            enclose_no_reflow(label)
            params.update(_spec_params(spec))
            params.update(_growth_params(growth))
            if growth.note:
                logger.warning("case %d: no infarct grown: %s", index, growth.note)
    group = "P" if (label >= 3).any() else "N"
    case_id = f"Case_{group}{CASE_MARKERS[config.mode]}{index:06d}"
    return SimCase(case_id, index, np.ascontiguousarray(label, dtype=np.uint8), spacing, wall, params)


@dataclasses.dataclass
class SimulationResult:
    """What a run wrote."""

    manifest: Path
    cases: int
    masks: int
    skipped: int


def simulate(config: SimulationConfig, out_dir: str | os.PathLike, progress: bool = False) -> SimulationResult:
    """Make this shard's cases of the run and stream them to ``out_dir`` (see :mod:`simulator.writer`).

    Raises:
        InputError: bad parameters or recipients.
    """
    config.validate()
    pool = prepare_pool(config)
    indices = config.shard.indices(config.n)
    skipped = 0
    run_info = {"generator": "cardiac_mi simulator", **config.as_dict()}
    with CaseWriter(out_dir, config.shard.manifest_name, run_info, config.formats) as writer:
        for index in tqdm(indices, desc=f"simulate {config.mode}", unit="case", disable=not progress):
            case = make_case(config, index, pool)
            if case is None:
                skipped += 1
                continue
            writer.write(case)
    if skipped:
        logger.warning("%d of %d cases skipped (see the log for the reasons)", skipped, len(indices))
    return SimulationResult(writer.manifest, writer.cases, writer.masks, skipped)
