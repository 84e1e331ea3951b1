"""Which Monte-Carlo dropout estimate should the cascade's uncertainty check use?

On every study of the given sets, the cascade (``segment_volume``) segments as in ``infer``; its
final ROI crops then go through each member of the shipped ensemble 4 times with dropout on (the
region of :func:`lgemri.uncertainty.estimate`). From those passes it scores variants:
members pooled (each member's pass a sample) or averaged per pass (the ensemble's pass), one
member alone, 2 or 4 passes. Printed per set and variant: the mean score on good and on failed
results (definitions of ``experiments/qc_thresholds.py``), the area under the ROC curve of failed
vs good, the Spearman correlation with the 4-pass pooled estimate, and the forward passes per
slice (what it costs: the narrow member costs about half the wide one).

    .venv/bin/python experiments/uncertainty_variants.py --out runs/uq-variants \\
        --sets val=data/real-prep/nifti:data/real-prep:val phantom=data/phantom-qc/emidec \\
               stress=data/qc-stress-val
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
from scipy import stats

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import lgemri.inference as inference  # noqa: E402
from experiments.qc_thresholds import (
    _cases,  # noqa: E402
    outcome,  # noqa: E402
)
from lgemri import uncertainty as U  # noqa: E402
from lgemri.volume import read_nifti  # noqa: E402

PASSES = 4
VARIANTS = {  # name: (members, passes, pooling)
    "pooled-4": ((0, 1), 4, "pool"),
    "pooled-2": ((0, 1), 2, "pool"),
    "ensemble-4": ((0, 1), 4, "mean"),
    "ensemble-2": ((0, 1), 2, "mean"),
    "narrow-4": ((0,), 4, "pool"),
    "narrow-3": ((0,), 3, "pool"),
    "narrow-2": ((0,), 2, "pool"),
    "wide-4": ((1,), 4, "pool"),
}


def raw_passes(image, models):
    """The cascade's result and 4 passes per member on its crops: (result, {member: (T, C, K', h, w)}, region)."""
    captured = {}

    def capture(segmenter, inputs, probabilities, valid, passes, seed=0, device="cpu", members=None, full_map=False):
        captured.update(inputs=inputs, probs=probabilities, valid=valid)
        return U.Uncertainty(None, passes, 0, {}, None, 0.0, [])

    inference.estimate, real = capture, inference.estimate
    try:
        result = inference.segment_volume(image, models, mc_passes=2)
    finally:
        inference.estimate = real
    if "inputs" not in captured:
        return result, None, None
    label_roi = np.argmax(captured["probs"], axis=1)
    region = U._region(label_roi, np.broadcast_to(captured["valid"], label_roi.shape))
    if not region.any():
        return result, None, None
    slices = np.nonzero(region.any(axis=(1, 2)))[0]
    batch = captured["inputs"][slices]
    samples = {}
    with torch.random.fork_rng():
        torch.manual_seed(0)
        for m, member in enumerate(U._members(models.segmenter)):
            samples[m] = U._stochastic_passes(U._mc_copy(member), batch, PASSES, models.device).transpose(0, 2, 1, 3, 4)
    return result, samples, region[slices]


def score(samples, region, members, passes, pooling) -> float:
    if pooling == "pool":
        stacked = np.concatenate([samples[m][:passes] for m in members])
    else:
        stacked = np.mean([samples[m][:passes] for m in members], axis=0)
    return float(U.mutual_information(stacked)[2][region].mean())


def auc(failed: list[float], good: list[float]) -> float | None:
    if not failed or not good:
        return None
    return float(np.mean([(f > g) + 0.5 * (f == g) for f in failed for g in good]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sets", nargs="+", required=True, help="NAME=CASES_DIR[:SPLIT_FROM:SPLIT]")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    models = inference.load_models()
    args.out.mkdir(parents=True, exist_ok=True)
    rows = []
    for spec in args.sets:
        name, rest = spec.split("=", 1)
        folder, cases = _cases(rest)
        for case in cases:
            image = read_nifti(folder / case / "Images" / f"{case}.nii.gz")
            truth = read_nifti(folder / case / "Contours" / f"{case}.nii.gz").array
            result, samples, region = raw_passes(image, models)
            row = {"set": name, "case": case, "outcome": outcome(result.label.array, truth)}
            for v, (members, passes, pooling) in VARIANTS.items():
                row[v] = None if samples is None else score(samples, region, members, passes, pooling)
            rows.append(row)
            print(json.dumps(row), flush=True)
    (args.out / "variants.json").write_text(json.dumps(rows, indent=1) + "\n")
    print("\n| set | variant | good (n) mean | failed (n) mean | AUC failed vs good | Spearman vs pooled-4 |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name in dict.fromkeys(r["set"] for r in rows):
        subset = [r for r in rows if r["set"] == name and r["pooled-4"] is not None]
        for v in VARIANTS:
            good = [r[v] for r in subset if r["outcome"] == "good"]
            failed = [r[v] for r in subset if r["outcome"] == "failed"]
            a = auc(failed, good)
            rho = (
                stats.spearmanr([r[v] for r in subset], [r["pooled-4"] for r in subset])[0]
                if len(subset) > 2
                else float("nan")
            )
            fmt = lambda x: f"{np.mean(x):.4f}" if x else "—"  # noqa: E731
            print(
                f"| {name} | {v} | {fmt(good)} ({len(good)}) | {fmt(failed)} ({len(failed)}) | "
                f"{'—' if a is None else f'{a:.2f}'} | {rho:.3f} |"
            )


if __name__ == "__main__":
    main()
