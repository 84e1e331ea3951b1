"""Benchmark: a whole ~10-slice study through the `cardiac-mi infer` cascade, models loaded.

Prints the segmentation network's forward time next to MONAI's AttentionUnet of similar size on
the same ROI batch (ratio first), then the whole-study time with the model's uncertainty (the
default Monte-Carlo dropout passes, lgemri.inference.MC_PASSES, or $CARDIAC_MI_MC_PASSES) over the time without it
(``mc_passes=0``; ratio first), and the split. Target: <= 1.0 s per study on 2 CPU cores. Runs
on the GPU too when one is present.

    .venv/bin/python bench/infer_speed.py [--models models] [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from monai.networks.nets import AttentionUnet

from lgemri.inference import load_models, segment_volume
from lgemri.phantom import make_case


def ten_slice_study():
    for number in range(1, 40):
        case = make_case(number, 77)
        if case.image.shape[2] == 10:
            return case
    raise RuntimeError("no 10-slice phantom study found")


def median_time(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def run(device: str, models_dir: str | None, repeats: int) -> None:
    models = load_models(models_dir, device=device)
    case = ten_slice_study()
    spec = models.meta["segmentation_network"]
    specs = spec["kwargs"]["members"] if spec.get("name") == "ensemble" else [spec]  # one baseline per member
    channels = [tuple(s["kwargs"].get("channels", ())) for s in specs]
    in_channels = 2 if models.two_stage else 1
    baseline = (
        torch.nn.ModuleList(AttentionUnet(2, in_channels, 5, channels=c, strides=(2,) * (len(c) - 1)) for c in channels)
        .to(device)
        .eval()
    )
    rois = torch.randn(case.image.shape[2], in_channels, 128, 128, device=device)

    def forward(net):
        with torch.inference_mode():
            for member in net if isinstance(net, torch.nn.ModuleList) else [net]:
                member(rois)
            if device == "cuda":
                torch.cuda.synchronize()

    ours_fwd = median_time(lambda: forward(models.segmenter), repeats)
    base_fwd = median_time(lambda: forward(baseline), repeats)
    n_ours = sum(p.numel() for p in models.segmenter.parameters())
    n_base = sum(p.numel() for p in baseline.parameters())
    study = median_time(lambda: segment_volume(case.image, models), repeats)
    plain = median_time(lambda: segment_volume(case.image, models, mc_passes=0), repeats)
    result = segment_volume(case.image, models)
    split = result.timings
    print(
        f"[{device}] ResAtt-U-Net forward / MONAI AttentionUnet forward: {ours_fwd / base_fwd:.2f}x "
        f"({ours_fwd * 1000:.0f} ms vs {base_fwd * 1000:.0f} ms for {rois.shape[0]} ROIs; "
        f"{n_ours / 1e6:.2f} M vs {n_base / 1e6:.2f} M parameters, channels {' + '.join(map(str, channels))})"
    )
    print(
        f"[{device}] whole study {case.image.shape} through the cascade with / without the uncertainty: {study / plain:.2f}x "
        f"({study:.3f} s vs {plain:.3f} s; {result.uncertainty.samples} MC-dropout samples: {result.uncertainty.passes} passes x "
        f"{result.uncertainty.details['members']} member(s) of {len(getattr(models.segmenter, 'members', [0]))}, "
        f"+{(study - plain) * 1000:.0f} ms; target <= 1.0 s on 2 CPU cores)"
    )
    print(f"[{device}] split: " + ", ".join(f"{k} {v * 1000:.0f} ms" for k, v in split.items()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=None, help="models folder (default: models/)")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    run("cpu", args.models, args.repeats)
    if torch.cuda.is_available():
        run("cuda", args.models, args.repeats)
    else:
        print("[cuda] no GPU on this machine")


if __name__ == "__main__":
    main()
