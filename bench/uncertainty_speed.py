"""Benchmark: Monte-Carlo dropout (lgemri.uncertainty) on a whole 10-slice study, models loaded.

Prints our batched MC dropout (localize once, T dropout passes of the segmentation network over
the study's ROI crops) next to the naive way, T full runs of the cascade with dropout switched on
(what MONAI Label's own EpistemicScoring does with an infer task), then the deterministic cascade
for scale, and the split of our time. Runs on the GPU too when one is present.

    .venv/bin/python bench/uncertainty_speed.py [--models models] [--passes 8] [--repeats 3]
"""

from __future__ import annotations

import argparse
import copy
import dataclasses

import torch
from infer_speed import median_time, ten_slice_study  # bench/ is on sys.path when a script there runs

from lgemri.inference import load_models, segment_volume
from lgemri.nets import enable_mc_dropout
from lgemri.uncertainty import mc_dropout


def run(device: str, models_dir: str | None, passes: int, repeats: int) -> None:
    models = load_models(models_dir, device=device)
    case = ten_slice_study()
    noisy = dataclasses.replace(models, segmenter=enable_mc_dropout(copy.deepcopy(models.segmenter)))

    def naive():
        torch.manual_seed(0)
        for _ in range(passes):
            segment_volume(case.image, noisy)

    ours = median_time(lambda: mc_dropout(case.image, models, passes=passes, seed=0), repeats)
    base = median_time(naive, repeats)
    single = median_time(lambda: segment_volume(case.image, models), repeats)
    result = mc_dropout(case.image, models, passes=passes, seed=0)
    print(
        f"[{device}] MC dropout, {passes} passes, study {case.case_id} {case.image.shape}: {ours:.2f} s; "
        f"{passes} x cascade with dropout on: {base:.2f} s ({base / ours:.1f}x slower); one deterministic cascade: {single:.2f} s"
    )
    print(f"[{device}] split: " + ", ".join(f"{k} {v * 1000:.0f} ms" for k, v in result.timings.items()))
    print(
        f"[{device}] score (mean MI over the LV) {result.score:.4f} nats; flip rate {result.details['flip_rate']:.3f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=None, help="models folder (default: models/)")
    parser.add_argument("--passes", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    run("cpu", args.models, args.passes, args.repeats)
    if torch.cuda.is_available():
        run("cuda", args.models, args.passes, args.repeats)
    else:
        print("[cuda] no GPU on this machine")


if __name__ == "__main__":
    main()
