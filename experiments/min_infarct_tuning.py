"""Choose the smallest infarct component the cascade keeps, on phantom studies not used for testing.

Segments every study of a tuning set once with nothing removed, then, for each candidate
threshold, relabels smaller infarct components as myocardium
(:func:`lgemri.postprocess.remove_small_infarcts`) and reports the infarct and no-reflow Dice
over all studies (a normal study scores 1 only with no infarct at all) and over the studies
that have the structure. The tuning set uses a seed that neither training (1000) nor the test
set of ``experiments/phantom_eval.py`` (5000) uses:

    .venv/bin/cardiac-mi phantom --out /tmp/phantom-tune --cases 24 --seed 6000 --format emidec
    .venv/bin/python experiments/min_infarct_tuning.py --tune /tmp/phantom-tune [--models models]
"""

from __future__ import annotations

import argparse
import logging

import numpy as np

from lgemri.emidec import find_cases, load_case
from lgemri.inference import load_models, segment_volume
from lgemri.labels import INFARCT, NO_REFLOW
from lgemri.metrics import dice
from lgemri.postprocess import remove_small_infarcts

THRESHOLDS_ML = (0.0, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tune", required=True, help="EMIDEC-layout phantom folder (tuning seeds)")
    parser.add_argument("--models", default=None)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    models = load_models(args.models)
    cases = []
    for case_id in find_cases(args.tune):
        case = load_case(args.tune, case_id)
        result = segment_volume(case.image, models, min_infarct_ml=0.0)
        voxel_ml = abs(float(np.linalg.det(case.image.affine[:3, :3]))) / 1000.0
        cases.append((np.asarray(case.label.array), result.label.array, voxel_ml))

    print(f"{len(cases)} studies; Dice infarct / no-reflow: over all studies | over studies with it")
    print("min ml   infarct all  infarct with   no-reflow all  no-reflow with")
    for threshold in THRESHOLDS_ML:
        rows = {"inf": [], "inf_with": [], "mvo": [], "mvo_with": []}
        for truth, pred, voxel_ml in cases:
            kept = remove_small_infarcts(pred, voxel_ml, threshold)
            for key, values in (("inf", (INFARCT, NO_REFLOW)), ("mvo", (NO_REFLOW,))):
                t, p = np.isin(truth, values), np.isin(kept, values)
                score = dice(p, t)
                rows[key].append(score)
                if t.any():
                    rows[f"{key}_with"].append(score)
        print(
            f"{threshold:6.2f}   {np.mean(rows['inf']):11.3f}  {np.mean(rows['inf_with']):12.3f}"
            f"   {np.mean(rows['mvo']):13.3f}  {np.mean(rows['mvo_with']):14.3f}"
        )


if __name__ == "__main__":
    main()
