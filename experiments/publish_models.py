"""Make a models folder from training runs: the best checkpoints with how inference should use them.

    .venv/bin/python experiments/publish_models.py --localization runs/loc-real2/best.pt \\
        --segmentation runs/seg-mix/best.pt --out models [--flip-tta] [--min-infarct-ml 5] \
        [--infarct-min-probability P]

Each checkpoint is copied with its weights and training record unchanged; ``--flip-tta`` sets
``extra["flip_tta"]`` (the cascade then averages the four in-plane mirror images, see
``lgemri.inference``), ``--min-infarct-ml`` and ``--infarct-min-probability`` the segmentation
checkpoint's post-processing (chosen with ``experiments/real_infarct_tuning.py``). A checkpoint without a record of its training data (``provenance``) is
refused: the shipped models must say what they learned from.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from lgemri.nets.checkpoint import _save  # the one atomic writer of checkpoints


def publish(source: Path, dest: Path, flip_tta: bool, **settings) -> Path:
    payload = torch.load(source, map_location="cpu", weights_only=True)
    if "provenance" not in payload.get("extra", {}):
        raise SystemExit(f"{source}: no provenance in the checkpoint; train it with the current loop")
    payload["extra"]["flip_tta"] = bool(flip_tta)
    payload["extra"].update({k: v for k, v in settings.items() if v is not None})
    payload["extra"]["published_from"] = source.parent.name
    return _save(dest, payload)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--localization", required=True, type=Path)
    parser.add_argument("--segmentation", required=True, type=Path)
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--flip-tta", action="store_true", help="average the four mirror images at inference")
    parser.add_argument("--min-infarct-ml", type=float, help="smallest infarct component kept (ml)")
    parser.add_argument("--infarct-min-probability", type=float, help="least P(infarct) + P(no-reflow) of an infarct voxel")
    args = parser.parse_args()
    publish(args.localization, args.out / "localization.pt", args.flip_tta)
    publish(args.segmentation, args.out / "segmentation.pt", args.flip_tta, min_infarct_ml=args.min_infarct_ml,
            infarct_min_probability=args.infarct_min_probability)


if __name__ == "__main__":
    main()
