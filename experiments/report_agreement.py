"""Clinical figures from the model's labels against the phantom truth.

For every study of a phantom test set, `quantify` runs on the label predicted by the cascade and
its infarct % of the LV myocardium, infarcted AHA segments and normal/pathological call are
compared with the phantom's ground truth (`phantom.json`, computed from the true label with the
same rules).

    .venv/bin/python experiments/phantom_eval.py --test data/phantom-test --out runs/eval --variants "as generated"
    .venv/bin/python experiments/report_agreement.py --test data/phantom-test --pred runs/eval/as_generated/pred
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from lgemri.quantification import quantify
from lgemri.volume import read_nifti


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--test", required=True, type=Path, help="phantom folder with phantom.json and emidec/")
    parser.add_argument("--pred", required=True, type=Path, help="folder of predicted <case_id>.nii.gz labels")
    args = parser.parse_args()
    truths = {c["case_id"]: c for c in json.loads((args.test / "phantom.json").read_text())["cases"]}
    errors, agreement, calls = [], [], []
    for case_id, truth in sorted(truths.items()):
        label = read_nifti(args.pred / f"{case_id}.nii.gz")
        q = quantify(None, label, rv_insertion_deg=truth["rv_insertion_deg"])
        errors.append(q["infarct"]["percent_lv"] - truth["infarct_percent_lv"])
        predicted = set(q["infarcted_segments"])
        true = {int(s) for s in truth["infarct_segments"]}
        agreement.append(np.mean([(s in predicted) == (s in true) for s in range(1, 18)]))
        calls.append((q["classification"]["label"] == "pathological") == (truth["group"] == "P"))
    errors_arr = np.abs(np.asarray(errors))
    print(f"{len(errors)} studies")
    print(
        f"infarct % of LV, |model - truth|: mean {errors_arr.mean():.2f}, median {np.median(errors_arr):.2f}, "
        f"within 2 points in {100 * np.mean(errors_arr <= 2):.0f} % of studies"
    )
    print(
        f"infarcted-segment agreement (17 segments): mean {100 * np.mean(agreement):.1f} %, "
        f">= 90 % in {100 * np.mean(np.asarray(agreement) >= 0.9):.0f} % of studies"
    )
    print(f"normal/pathological call correct in {100 * np.mean(calls):.0f} % of studies")


if __name__ == "__main__":
    main()
