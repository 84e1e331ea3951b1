"""Infarct mask simulator (issue 4): synthetic, hybrid and fusion masks, AHA-17 guided.

Modules, in data-flow order: :mod:`~simulator.rings` (synthetic LV myocardium),
:mod:`~simulator.hybrid` (real recipients), :mod:`~simulator.wall` (wall coordinates and
measurements), :mod:`~simulator.infarct` (region growing), :mod:`~simulator.fusion`
(cross-subject transfer), :mod:`~simulator.writer` (files and manifest), :mod:`~simulator.api`
(``simulate``), :mod:`~simulator.report` (realism report); the command line is
:mod:`cardiac_mi.commands.simulate` (``cardiac-mi simulate``).
"""

from .api import MODES, Shard, SimulationConfig, SimulationResult, make_case, parse_shard, prepare_pool, simulate
from .infarct import InfarctSpec, grow_infarct
from .report import realism_report
from .wall import Wall, measure, wall_from_label

__all__ = [
    "MODES",
    "Shard",
    "SimulationConfig",
    "SimulationResult",
    "InfarctSpec",
    "Wall",
    "grow_infarct",
    "make_case",
    "measure",
    "parse_shard",
    "prepare_pool",
    "realism_report",
    "simulate",
    "wall_from_label",
]
