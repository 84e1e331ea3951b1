"""``cardiac-mi simulate``: a thin command line over :func:`simulator.api.simulate` and
:func:`simulator.report.realism_report`.

``register(subparsers)`` adds the sub-command to the ``cardiac-mi`` parser; its ``func`` raises
:class:`lgemri.errors.InputError` for bad input (the ``cardiac-mi`` main prints it on one line).
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from lgemri.errors import InputError

__all__ = ["register", "run"]

logger = logging.getLogger(__name__)

EPILOG = """examples:
  cardiac-mi simulate --mode synthetic --n 1000 --seed 0 --out sim/
  cardiac-mi simulate --mode hybrid --recipients emidec/ --territory LAD --n 200 --out sim-hybrid/
  cardiac-mi simulate --mode hybrid --recipients data/real-prep --recipients-split train --n 100 --out sim-real/
  cardiac-mi simulate --mode fusion --recipients phantom/emidec --n 200 --out sim-fusion/ --shard 0/4
  cardiac-mi simulate --report sim/ --reference phantom/phantom.json
  cardiac-mi simulate --report sim-real/ --reference data/real-prep --reference-split train
"""


def _numbers(text: str, name: str) -> tuple[float, float]:
    """``"a"`` or ``"a,b"`` as a (low, high) pair."""
    parts = [p.strip() for p in str(text).split(",")]
    try:
        values = [float(p) for p in parts]
    except ValueError:
        raise InputError(f"{name} must be one number or low,high (e.g. 5,30), got {text!r}") from None
    if len(values) == 1:
        return values[0], values[0]
    if len(values) == 2:
        return values[0], values[1]
    raise InputError(f"{name} must be one number or low,high (e.g. 5,30), got {text!r}")


def _segments(text: str | None) -> tuple[int, ...]:
    if not text:
        return ()
    try:
        return tuple(int(p) for p in text.split(",") if p.strip())
    except ValueError:
        raise InputError(
            f"--segments must be comma-separated AHA segment numbers (e.g. 7,8,13), got {text!r}"
        ) from None


def _territories(text: str | None) -> tuple[str, ...]:
    if not text:
        return ()
    return tuple(p.strip() for p in text.split(",") if p.strip())


def config_from_args(args: argparse.Namespace):
    """The :class:`~simulator.api.SimulationConfig` of parsed ``simulate`` arguments (validated)."""
    from simulator.api import SimulationConfig, parse_shard

    if args.n is None:
        raise InputError("--n (number of cases) is required")
    if args.out is None:
        raise InputError("--out (output folder) is required")
    config = SimulationConfig(
        mode=args.mode,
        n=args.n,
        seed=args.seed,
        recipients=args.recipients,
        recipients_split=args.recipients_split,
        territories=_territories(args.territory),
        segments=_segments(args.segments),
        infarct_size=_numbers(args.infarct_size, "--infarct-size"),
        transmurality=_numbers(args.transmurality, "--transmurality"),
        heterogeneity=_numbers(args.heterogeneity, "--heterogeneity"),
        no_reflow_probability=args.no_reflow_prob,
        no_reflow_size=_numbers(args.no_reflow_size, "--no-reflow-size"),
        normal_fraction=args.normal_fraction,
        slices=args.slices,
        neighbours=args.neighbours,
        max_cost=args.max_cost,
        keep_recipient_infarct=args.keep_recipient_infarct,
        rv_insertion_deg=args.rv_insertion,
        formats=tuple(p.strip() for p in args.format.split(",") if p.strip()),
        shard=parse_shard(args.shard),
    )
    config.validate()
    return config


def run(args: argparse.Namespace) -> None:
    """The ``simulate`` sub-command: generate masks, or write the realism report (``--report``)."""
    progress = not getattr(args, "quiet", False)
    if args.report is not None:
        from simulator.report import realism_report

        if args.recipients_split is not None:
            raise InputError(
                "--recipients-split goes with --recipients when simulating; for the report: --reference-split"
            )
        path = realism_report(args.report, args.out, args.reference, args.reference_split)
        logger.info("wrote the realism report %s", path)
        return
    if args.reference or args.reference_split is not None:
        raise InputError("--reference and --reference-split go with --report")
    from simulator.api import simulate

    config = config_from_args(args)
    result = simulate(config, args.out, progress=progress)
    logger.info(
        "%s: %d cases, %d masks (shard %s), %d skipped; manifest %s",
        config.mode,
        result.cases,
        result.masks,
        config.shard,
        result.skipped,
        result.manifest,
    )


def register(subparsers) -> argparse.ArgumentParser:
    """Add the ``simulate`` sub-command to ``cardiac-mi``'s sub-parsers; returns its parser."""
    from lgemri.emidec import SPLITS
    from simulator.api import MODES

    help_text = "simulate infarct label masks (synthetic, hybrid, fusion; AHA-17 guided) or report their realism"
    p = subparsers.add_parser(
        "simulate",
        help=help_text,
        description=help_text,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    # fmt: off
    add = p.add_argument
    add("--mode", choices=MODES, default="synthetic",
        help="synthetic rings, hybrid injection or cross-subject fusion (default synthetic)")
    add("--n", type=int, help="number of cases of the whole run, all shards together")
    add("--seed", type=int, default=0, help="run seed (default 0); case i uses default_rng([seed, i])")
    add("--out", type=Path, help="output folder (with --report: the report folder, default SIM_DIR/report)")
    add("--recipients", type=Path,
        help="EMIDEC-layout folder of labelled cases, or a prepared folder with --recipients-split (hybrid, fusion)")
    add("--recipients-split", choices=SPLITS,
        help="the only split of a prepared --recipients folder (cases.json, nifti/) whose cases are used; "
             "masks for training: train")
    add("--territory",
        help="confine infarcts to LAD, RCA or LCX (comma-separated: drawn per case); fusion: donor territories")
    add("--segments", help="confine infarcts to these AHA segments, e.g. 7,8,13 (adjacent levels)")
    add("--infarct-size", default="3,40",
        help="infarct %% of the LV myocardium, one value or low,high (default 3,40, log-uniform)")
    add("--transmurality", default="40,100",
        help="largest extent across the wall in %%, value or low,high (default 40,100)")
    add("--heterogeneity", default="0,0.6",
        help="border and depth irregularity 0-1, value or low,high (default 0,0.6)")
    add("--no-reflow-prob", type=float, default=0.5,
        help="chance of a no-reflow core when transmurality >= 50 %% (default 0.5)")
    add("--no-reflow-size", default="5,35", help="no-reflow %% of the infarct, value or low,high (default 5,35)")
    add("--normal-fraction", type=float, default=0.0, help="share of cases without infarct (default 0)")
    add("--slices", type=int,
        help="slices per synthetic stack (default 6-12 from the LV; 1: 2D mid-ventricular masks)")
    add("--neighbours", type=int, default=3, help="k nearest recipients tried per donor (fusion, default 3)")
    add("--max-cost", type=float, default=0.5, help="largest accepted fusion cost (default 0.5)")
    add("--keep-recipient-infarct", action="store_true", help="fusion: merge into the recipient's own infarct")
    add("--rv-insertion", type=float, help="anterior RV insertion angle in degrees for AHA segments (default 120)")
    add("--format", default="npy,nifti",
        help="files besides the manifest, comma-separated: npy (2D slices), nifti (volumes); default both")
    add("--shard", metavar="I/N",
        help="make only the cases with index %% N == I (0 <= I < N), e.g. $JOB_COMPLETION_INDEX/8")
    add("--report", type=Path, metavar="SIM_DIR",
        help="write the realism report of a simulator output instead of simulating")
    add("--reference", type=Path, action="append", default=[],
        help="with --report: phantom.json, phantom output, EMIDEC-layout or prepared folder (repeatable)")
    add("--reference-split", choices=SPLITS,
        help="with --report: the split of every prepared --reference folder that is measured (e.g. train)")
    # fmt: on
    p.set_defaults(func=run)
    return p
