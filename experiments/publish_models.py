"""Make a models folder from training runs: the best checkpoints with how inference should use them.

    .venv/bin/python experiments/publish_models.py --localization runs/loc-real2/best.pt \\
        --segmentation runs/seg-mix/best.pt [runs/seg-wide/best.pt ...] --out models [--flip-tta] \
        [--min-infarct-ml 5] [--infarct-min-probability P]

Each checkpoint is copied with its weights and training record unchanged; ``--flip-tta`` sets
``extra["flip_tta"]`` (the cascade then averages the four in-plane mirror images, see
``lgemri.inference``), ``--min-infarct-ml`` and ``--infarct-min-probability`` the segmentation
checkpoint's post-processing (chosen with ``experiments/real_infarct_tuning.py``). A checkpoint without a record of its training data (``provenance``) is
refused: the shipped models must say what they learned from.

Several ``--segmentation`` checkpoints (a published ensemble among them brings its members)
become one ensemble checkpoint (``lgemri.nets.ensemble``: the mean of their probabilities), its
weights stored as float16 to stay within the 10 MB a shipped file may have (the networks compute in float32 after loading); its provenance is every
member's, and ``extra["members"]`` keeps each member's training record.
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


def members_of(source: Path) -> list[tuple[str, dict]]:
    """(name, payload) of each network in ``source``: itself, or each member of a published ensemble,
    so that an ensemble can grow by a member without its other members' training runs at hand."""
    payload = torch.load(source, map_location="cpu", weights_only=True)
    if payload.get("network", {}).get("name") != "ensemble":
        return [(source.parent.name, payload)]
    found = []
    for i, (network, record) in enumerate(zip(payload["network"]["kwargs"]["members"], payload["extra"]["members"])):
        prefix = f"members.{i}."
        state = {k[len(prefix) :]: v for k, v in payload["state_dict"].items() if k.startswith(prefix)}
        extra = {**payload["extra"], **{k: record.get(k) for k in ("config", "metrics", "epoch")}}
        found.append((record["published_from"], {**payload, "network": network, "state_dict": state, "extra": extra}))
    return found


def ensemble(sources: list[Path]) -> dict:
    """One checkpoint payload holding the networks of ``sources`` (checkpoints, or published ensembles
    whose members join) as an ``ensemble``."""
    named = [member for source in sources for member in members_of(source)]
    names = [name for name, _ in named]
    payloads = [payload for _, payload in named]
    tasks = {p["task"] for p in payloads}
    if len(tasks) != 1:
        raise SystemExit(f"ensemble members hold different tasks: {sorted(tasks)}")
    provenance: list[dict] = []
    for name, payload in named:
        if "provenance" not in payload.get("extra", {}):
            raise SystemExit(f"{name}: no provenance in the checkpoint; train it with the current loop")
        provenance += [r for r in payload["extra"]["provenance"] if r not in provenance]
    state = {
        f"members.{i}.{k}": (v.half() if v.is_floating_point() else v)
        for i, p in enumerate(payloads)
        for k, v in p["state_dict"].items()
    }
    first = payloads[0]
    members = [
        {"published_from": name, **{k: p["extra"].get(k) for k in ("config", "metrics", "epoch")}} for name, p in named
    ]
    extra = {**first["extra"], "provenance": provenance, "members": members, "published_from": "+".join(names)}
    network = {"name": "ensemble", "kwargs": {"members": [p["network"] for p in payloads]}}
    return {**first, "network": network, "state_dict": state, "extra": extra}


def publish_ensemble(sources: list[Path], dest: Path, flip_tta: bool, **settings) -> Path:
    payload = ensemble(sources)
    payload["extra"]["flip_tta"] = bool(flip_tta)
    payload["extra"].update({k: v for k, v in settings.items() if v is not None})
    return _save(dest, payload)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--localization", required=True, type=Path)
    parser.add_argument(
        "--segmentation",
        required=True,
        type=Path,
        nargs="+",
        help="one checkpoint, or several for an ensemble (a published ensemble brings its members)",
    )
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--flip-tta", action="store_true", help="average the four mirror images at inference")
    parser.add_argument("--min-infarct-ml", type=float, help="smallest infarct component kept (ml)")
    parser.add_argument(
        "--infarct-min-probability", type=float, help="least P(infarct) + P(no-reflow) of an infarct voxel"
    )
    args = parser.parse_args()
    publish(args.localization, args.out / "localization.pt", args.flip_tta)
    settings = {"min_infarct_ml": args.min_infarct_ml, "infarct_min_probability": args.infarct_min_probability}
    if len(args.segmentation) == 1:
        publish(args.segmentation[0], args.out / "segmentation.pt", args.flip_tta, **settings)
    else:
        publish_ensemble(args.segmentation, args.out / "segmentation.pt", args.flip_tta, **settings)


if __name__ == "__main__":
    main()
