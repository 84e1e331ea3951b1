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
   false-alarm rate), by the plausibility checks of the label and by the model's uncertainty (the
   ``uncertainty`` of ``<case>.json``, which ``infer`` writes next to the label), and which check
   fired; then the uncertainty of good and of failed results per set.
3. ``--uncertainty-from NAME ...``: the ``--results`` sets the uncertainty limit is chosen on
   (the real validation split, its degraded copies of ``experiments/qc_stress.py`` and held-out
   phantom studies, never the training cases): the largest uncertainty of a good result there,
   rounded up to 0.01.
   ``--uncertainty-limit`` evaluates another limit.

    .venv/bin/python experiments/qc_thresholds.py \\
        --reference data/real-prep/nifti:data/real-prep:train data/phantom-cal/emidec \\
        --results val=runs/eval-val/cardiac_mi:data/real-prep/nifti:data/real-prep:val \\
                  old-val=runs/eval-shipped-val/cardiac_mi:data/real-prep/nifti:data/real-prep:val
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections import Counter
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from experiments.real_eval import infarct_percent, select_cases  # noqa: E402
from lgemri.labels import myocardium_mask  # noqa: E402
from lgemri.metrics import dice  # noqa: E402
from lgemri.qc import LIMITS, MARGIN, UNCERTAINTY_LIMIT, measure, quality_checks, uncertainty_check  # noqa: E402
from lgemri.volume import read_nifti  # noqa: E402

FAILED_BELOW, FAILED_INFARCT_ERROR = 0.5, 20.0
GOOD_FROM, GOOD_INFARCT_ERROR = 0.7, 10.0
JUMP_MARGIN = 2.0  # the slice-to-slice jump grows with slice thickness (5-23 mm between sites)


def outcome(pred: np.ndarray, truth: np.ndarray) -> str:
    """``"failed"``, ``"good"`` or ``"neither"``: the definitions of docs/quality.md."""
    d = dice(myocardium_mask(pred), myocardium_mask(truth))
    error = abs(infarct_percent(pred) - infarct_percent(truth))
    if d < FAILED_BELOW or error > FAILED_INFARCT_ERROR:
        return "failed"
    if d >= GOOD_FROM and error <= GOOD_INFARCT_ERROR:
        return "good"
    return "neither"


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
        print(
            f"| {code} | {v.min():.3f} | {np.percentile(v, 1):.3f} | {np.percentile(v, 99):.3f} | {v.max():.3f} "
            f"| {fmt(rule[0])} – {fmt(rule[1])} | {fmt(limits[0])} – {fmt(limits[1])} |"
        )


def _uncertainty(pred_dir: Path, case: str) -> float | None:
    """The model's uncertainty ``infer`` wrote into ``<case>.json`` (None: not measured)."""
    path = pred_dir / f"{case}.json"
    if not path.is_file():
        return None
    return (json.loads(path.read_text()).get("uncertainty") or {}).get("mutual_information")


def _results(spec: str) -> tuple[str, list[dict]]:
    """NAME and per case: outcome, plausibility findings (label only), uncertainty."""
    name, rest = spec.split("=", 1)
    pred_dir, rest = rest.split(":", 1)
    folder, cases = _cases(rest)
    rows = []
    for case in cases:
        pred = read_nifti(Path(pred_dir) / f"{case}.nii.gz")
        truth = read_nifti(folder / case / "Contours" / f"{case}.nii.gz").array
        rows.append(
            {
                "case": case,
                "outcome": outcome(pred.array, truth),
                "findings": [f.code for f in quality_checks(pred)],
                "uncertainty": _uncertainty(Path(pred_dir), case),
            }
        )
    return name, rows


def suggested_uncertainty_limit(rows: list[dict]) -> float | None:
    """The rule of :data:`lgemri.qc.UNCERTAINTY_LIMIT`: the largest uncertainty of a good result, rounded up to 0.01.

    No margin as for the label measures: these are results of the kind the limit judges, and a
    margin of 1.5 flagged no result of any set (docs/quality.md).
    """
    good = [r["uncertainty"] for r in rows if r["outcome"] == "good" and r["uncertainty"] is not None]
    return math.ceil(max(good) * 100) / 100 if good else None


def uncertainty_table(sets: dict[str, list[dict]], choose_from: list[str], limit: float) -> None:
    print("\n| results | good: min | median | max | failed: min | median | max |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    fmt = lambda v: f"{np.min(v):.4f} | {np.median(v):.4f} | {np.max(v):.4f}" if v else "— | — | —"  # noqa: E731
    for name, rows in sets.items():
        good = [r["uncertainty"] for r in rows if r["outcome"] == "good" and r["uncertainty"] is not None]
        failed = [r["uncertainty"] for r in rows if r["outcome"] == "failed" and r["uncertainty"] is not None]
        print(f"| {name} | {fmt(good)} | {fmt(failed)} |")
    if choose_from:
        chosen = suggested_uncertainty_limit([r for n in choose_from for r in sets[n]])
        print(
            f"\nuncertainty limit by the rule (largest good result of {', '.join(choose_from)}, rounded up): "
            f"{'—' if chosen is None else f'{chosen:.4f}'}; lgemri.qc.UNCERTAINTY_LIMIT {UNCERTAINTY_LIMIT}; evaluated with {limit}"
        )


def results_table(specs: list[str], choose_from: list[str], limit: float | None) -> None:
    sets = dict(_results(spec) for spec in specs)
    limit = UNCERTAINTY_LIMIT if limit is None else limit
    print(
        "\n| results | cases | failed | flagged | by the plausibility checks | by the uncertainty | good | flagged "
        "| by the plausibility checks | by the uncertainty | checks fired |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for name, rows in sets.items():
        counts = {}
        fired: Counter[str] = Counter()
        for r in rows:
            uncertain = uncertainty_check(r["uncertainty"], limit) is not None and "no_lv" not in r["findings"]
            codes = r["findings"] + (["uncertain"] * uncertain)
            fired.update(codes)
            c = counts.setdefault(r["outcome"], [0, 0, 0, 0])
            c[0] += 1
            c[1] += bool(codes)
            c[2] += bool(r["findings"])
            c[3] += uncertain
        cell = lambda o, counts=counts: " | ".join(str(v) for v in counts.get(o, [0, 0, 0, 0]))  # noqa: E731
        checks = ", ".join(f"{k} {v}" for k, v in fired.most_common()) or "—"
        print(f"| {name} | {len(rows)} | {cell('failed')} | {cell('good')} | {checks} |")
    uncertainty_table(sets, choose_from, limit)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reference", nargs="*", default=[])
    parser.add_argument("--results", nargs="*", default=[])
    parser.add_argument(
        "--uncertainty-from",
        nargs="*",
        default=[],
        metavar="NAME",
        help="--results sets the uncertainty limit is chosen on (largest good result x MARGIN)",
    )
    parser.add_argument(
        "--uncertainty-limit", type=float, help="evaluate with this limit (default lgemri.qc.UNCERTAINTY_LIMIT)"
    )
    args = parser.parse_args()
    if args.reference:
        reference_table(args.reference)
    if args.results:
        results_table(args.results, args.uncertainty_from, args.uncertainty_limit)


if __name__ == "__main__":
    main()
