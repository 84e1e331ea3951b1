"""``cardiac-mi evaluate``: score predicted EMIDEC labels against the truth (:mod:`lgemri.evaluation`)."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from lgemri.evaluation import LAYOUTS, evaluate

logger = logging.getLogger("cardiac_mi")


def cmd_evaluate(args: argparse.Namespace) -> None:
    summary = evaluate(args.pred, args.truth, args.out)
    mean = summary["mean"]["emidec"]

    def show(key: str, unit: str = "", digits: int = 3) -> str:
        value = mean[key]
        return "n/a" if value is None else f"{value:.{digits}f}{unit}"

    logger.info(
        "mean over %d case(s): Dice myocardium %s, infarct %s, no-reflow %s; Hausdorff myocardium %s",
        summary["metadata"]["n_cases"],
        show("dice_myocardium"),
        show("dice_infarct"),
        show("dice_no_reflow"),
        show("hausdorff_myocardium_mm", " mm", 2),
    )
    logger.info(
        "mean volume differences: myocardium %s, infarct %s, no-reflow %s; ratio differences: infarct %s, no-reflow %s",
        show("volume_diff_myocardium_mm3", " mm^3", 1),
        show("volume_diff_infarct_mm3", " mm^3", 1),
        show("volume_diff_no_reflow_mm3", " mm^3", 1),
        show("ratio_diff_infarct_pct", " %", 2),
        show("ratio_diff_no_reflow_pct", " %", 2),
    )
    logger.info("wrote %s, %s and %s", *(Path(args.out) / n for n in ("metrics.csv", "metrics.json", "boxplots.png")))


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the ``evaluate`` sub-command to ``subparsers`` (from ``parser.add_subparsers()``).

    ``evaluate --pred DIR --truth DIR --out DIR`` runs :func:`lgemri.evaluation.evaluate` and logs the mean
    figures; ``args.func(args)`` raises :class:`InputError` for bad input.

    Returns:
        The sub-command's parser.
    """
    help_text = "score predicted EMIDEC labels against the truth (EMIDEC metrics, per-class metrics, box plots)"
    parser = subparsers.add_parser("evaluate", help=help_text, description=help_text)
    parser.add_argument("--pred", required=True, type=Path, help=f"folder of predicted labels ({LAYOUTS})")
    parser.add_argument("--truth", required=True, type=Path, help="folder of reference labels (same layouts)")
    parser.add_argument(
        "--out", required=True, type=Path, help="output folder for metrics.csv, metrics.json, boxplots.png"
    )
    parser.set_defaults(func=cmd_evaluate)
    return parser
