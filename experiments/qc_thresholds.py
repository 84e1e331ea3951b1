"""Choose the plausibility limits of :mod:`lgemri.qc` on reference labels, and measure the flags.

1. ``--reference DIR[:SPLIT_FROM:SPLIT]``: folders of EMIDEC-layout cases (``<case>/Contours/<case>.nii.gz``)
   whose reference labels show what hearts look like (the real training split and the phantom
   calibration studies). Printed per measure: min, 1st and 99th percentile, max, and the limit in
   :data:`lgemri.qc.LIMITS`.
2. ``--results NAME=PRED_DIR:CASES_DIR[:SPLIT_FROM:SPLIT]``: segmentations made by ``cardiac-mi infer``
   (``<case>.nii.gz`` in PRED_DIR, e.g. the ``cardiac_mi`` folder of ``experiments/real_eval.py``)
   with their truth. A result is *failed* when its myocardium Dice is below 0.5 or its infarct % of
   the myocardium is over 20 points off, *good* when its myocardium Dice is at least 0.7 and its
   infarct % within 10 points; printed per set: how many of each were flagged (sensitivity and
   false-alarm rate) and which check fired.

    .venv/bin/python experiments/qc_thresholds.py \\
        --reference data/real-prep/nifti:data/real-prep:train data/phantom-cal/emidec \\
        --results val=runs/eval-val/cardiac_mi:data/real-prep/nifti:data/real-prep:val \\
                  old-val=runs/eval-shipped-val/cardiac_mi:data/real-prep/nifti:data/real-prep:val
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from experiments.real_eval import infarct_percent, select_cases  # noqa: E402
from lgemri.labels import myocardium_mask  # noqa: E402
from lgemri.metrics import dice  # noqa: E402
from lgemri.qc import LIMITS, MARGIN, measure, quality_checks  # noqa: E402
from lgemri.volume import read_nifti  # noqa: E402

FAILED_BELOW, FAILED_INFARCT_ERROR = 0.5, 20.0
GOOD_FROM, GOOD_INFARCT_ERROR = 0.7, 10.0
JUMP_MARGIN = 2.0  # the slice-to-slice jump grows with slice thickness (5-23 mm between sites)


def suggested(code: str, v: np.ndarray) -> tuple[float | None, float | None]:
    """The rule of :mod:`lgemri.qc`: reference min / MARGIN, max * MARGIN (shape measures: as set)."""
    if code in ("lv_at_border", "open_ring"):
        return LIMITS[code]
    margin = JUMP_MARGIN if code == "lv_jump_mm" else MARGIN
    low = None if code in ("infarct_percent", "lv_jump_mm") else float(v.min()) / margin
    return low, float(v.max()) * margin


def _cases(spec: str) -> tuple[Path, list[str]]:
    parts = spec.split(":")
    folder = Path(parts[0])
    if len(parts) == 3:
        return folder, select_cases(folder, Path(parts[1]), parts[2])
    return folder, sorted(p.name for p in folder.iterdir() if (p / "Contours").is_dir())


def reference_table(specs: list[str]) -> None:
    values: dict[str, list[float]] = {code: [] for code in LIMITS}
    n = 0
    for spec in specs:
        folder, cases = _cases(spec)
        for case in cases:
            m = measure(read_nifti(folder / case / "Contours" / f"{case}.nii.gz"))
            n += bool(m)
            for code, value in m.items():
                values[code].append(value)
    print(f"reference labels: {n} cases from {', '.join(specs)}")
    print("| measure | min | p1 | p99 | max | rule | lgemri.qc.LIMITS |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    fmt = lambda x: "—" if x is None else f"{x:.3g}"  # noqa: E731
    for code, vals in values.items():
        v = np.asarray(vals)
        rule, limits = suggested(code, v), LIMITS[code]
        print(f"| {code} | {v.min():.3f} | {np.percentile(v, 1):.3f} | {np.percentile(v, 99):.3f} | {v.max():.3f} "
              f"| {fmt(rule[0])} – {fmt(rule[1])} | {fmt(limits[0])} – {fmt(limits[1])} |")


def results_table(specs: list[str]) -> None:
    print("\n| results | cases | failed | flagged | good | flagged | checks fired |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for spec in specs:
        name, rest = spec.split("=", 1)
        pred_dir, rest = rest.split(":", 1)
        folder, cases = _cases(rest)
        failed = good = failed_flagged = good_flagged = 0
        fired: Counter[str] = Counter()
        for case in cases:
            pred = read_nifti(Path(pred_dir) / f"{case}.nii.gz")
            truth = read_nifti(folder / case / "Contours" / f"{case}.nii.gz").array
            d = dice(myocardium_mask(pred.array), myocardium_mask(truth))
            error = abs(infarct_percent(pred.array) - infarct_percent(truth))
            findings = quality_checks(pred)
            flagged = bool(findings)
            fired.update(f.code for f in findings)
            if d < FAILED_BELOW or error > FAILED_INFARCT_ERROR:
                failed += 1
                failed_flagged += flagged
            elif d >= GOOD_FROM and error <= GOOD_INFARCT_ERROR:
                good += 1
                good_flagged += flagged
        checks = ", ".join(f"{k} {v}" for k, v in fired.most_common()) or "—"
        print(f"| {name} | {len(cases)} | {failed} | {failed_flagged} | {good} | {good_flagged} | {checks} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reference", nargs="+", required=True)
    parser.add_argument("--results", nargs="*", default=[])
    args = parser.parse_args()
    reference_table(args.reference)
    if args.results:
        results_table(args.results)


if __name__ == "__main__":
    main()
