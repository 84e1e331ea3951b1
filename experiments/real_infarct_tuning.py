"""Choose how sure the cascade must be before it calls a voxel infarct, on real tuning studies.

On real LGE a model trained on few cases paints thin bright rims (partial volume with blood at
the apex, trabeculae) as infarct, so normal studies get a few percent of "infarct" and are
called pathological. Two knobs act on the final label: the least summed probability of infarct
and no-reflow a voxel needs to stay infarct (``infarct_min_probability``), and the smallest
infarct component kept (``min_infarct_ml``). This script segments every study of the tuning
split (the validation split, which also chose the training epoch; the test split stays
untouched) for each probability and scores each pair: the normal / pathological call, infarct
Dice over the studies with an infarct and over all studies (a normal study scores 1 only with no
infarct), and no-reflow Dice.

    .venv/bin/python experiments/real_infarct_tuning.py --cases data/real-prep/nifti \\
        --split-from data/real-prep --split val --models runs/models-A-tta

The choice rule (printed last): the highest call accuracy, then the highest infarct Dice over the
studies with an infarct.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from experiments.real_eval import score, select_cases  # noqa: E402
from lgemri.inference import load_models, segment_volume  # noqa: E402
from lgemri.postprocess import remove_small_infarcts  # noqa: E402
from lgemri.volume import read_nifti  # noqa: E402

PROBABILITIES = (None, 0.6, 0.7, 0.8, 0.9)
MIN_ML = (1.0, 2.0, 3.0, 5.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", required=True, type=Path)
    parser.add_argument("--split-from", required=True, type=Path)
    parser.add_argument("--split", default="val")
    parser.add_argument("--models", type=Path)
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    models = load_models(args.models)
    cases = select_cases(args.cases, args.split_from, args.split)
    studies = []
    for c in cases:
        image = read_nifti(args.cases / c / "Images" / f"{c}.nii.gz")
        truth = read_nifti(args.cases / c / "Contours" / f"{c}.nii.gz").array
        voxel_ml = abs(float(np.linalg.det(image.affine[:3, :3]))) / 1000.0
        studies.append((image, truth, voxel_ml))
    print(f"{len(cases)} studies of split {args.split!r}")
    print("min P   min ml   call right   infarct (with)   infarct (all)   no-reflow (with)")
    best = None
    for probability in PROBABILITIES:
        labels = [
            segment_volume(image, models, 0.0, probability if probability else 0.0).label.array
            for image, _, _ in studies
        ]
        for min_ml in MIN_ML:
            rows = [
                score(remove_small_infarcts(label, voxel_ml, min_ml), truth)
                for label, (_, truth, voxel_ml) in zip(labels, studies)
            ]
            call = np.mean([r["call_true"] == r["call_pred"] for r in rows])
            inf_with = np.mean([r["infarct"] for r in rows if r["has_infarct"]])
            inf_all = np.mean([r["infarct"] for r in rows])
            mvo = [r["no_reflow"] for r in rows if r["has_no_reflow"]]
            mvo_with = np.mean(mvo) if mvo else float("nan")
            shown = "argmax" if probability is None else f"{probability:.1f}"
            print(
                f"{shown:>6} {min_ml:>7.1f} {100 * call:>10.0f} % {inf_with:>14.3f} {inf_all:>15.3f} {mvo_with:>16.3f}"
            )
            key = (call, inf_with)
            if best is None or key > best[0]:
                best = (key, probability, min_ml)
    _, probability, min_ml = best
    print(f"chosen: infarct_min_probability {probability}, min_infarct_ml {min_ml}")


if __name__ == "__main__":
    main()
