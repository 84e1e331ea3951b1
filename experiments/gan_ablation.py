"""Ablation of the reference paper's GAN augmentation: ARD (augmented real) versus MD (real + GAN).

Omar et al. ("Web-Based Cardiac Delayed Enhanced MRI Segmentation Using Deep Learning and
Synthetic Data Augmentation", section 3.4.C and Table IV) train one segmentation network twice,
with identical hyper-parameters and budget: on an **Augmented Real Dataset** (ARD, 10,000
classically augmented slices of the real cases) and on a **Mixed Dataset** (MD, 5,000 augmented
real slices + 5,000 GAN slices), both class-balanced. MD raised no-reflow Dice from 0.5376 to
0.6076. This script runs the same design at a size that fits a CPU, every number a flag:

- **Real pool.** About ``R`` slices (``--real-slices``, default 200) of whole cases drawn from the
  ``train`` split of a prepared folder, stratified by case category (normal, infarct,
  no-reflow) in the split's proportions (:func:`select_real_pool`). ARD and MD use the same
  pool, as the paper builds both from the same real cases.
- **GAN.** By default a Pix2Pix is trained here on the pool only (:func:`train_pool_gan`:
  the shipped model's recipe, ``ngf = ndf = 16``, λ = 100, plus the GAN trainer's geometric
  augmentation), so that MD holds no information about real cases that ARD lacks.
  ``--gan-checkpoint`` takes another one. Either way the cases that the GAN trained or was
  selected on are read from the checkpoint, and a GAN that saw a validation or test case is
  refused (:func:`check_gan_isolation`): the shipped ``gan/weights/pix2pix_phantom.pt`` is,
  for ``/work/data/prep-train``'s ``val`` split, since its ``best.pt`` was chosen on it.
- **GAN slices.** Simulator masks (``synthetic`` mode: LV anatomy drawn from physiological
  ranges, no real case) painted by the GAN with :func:`cardiac_mi.retrain.synthesize_slices`;
  ``R`` of them are chosen so that their slice categories (normal / infarct / no-reflow in the
  slice) match the pool's exactly (:func:`select_synthetic`): "class-balanced".
- **Arms** (:data:`ARMS`). ``ard``: ``N = 2R`` entries, each pool slice twice; ``md``: the
  ``R`` pool slices + the ``R`` GAN slices, the synthetic share 0.5 of
  :func:`cardiac_mi.retrain.sampling_weights` (equal counts: weight 1 each). Optional
  ``ard-2r``: ``2R`` distinct real slices (the pool plus the next cases of the same draw):
  whether a GAN slice is worth a real one.
- **Training** (:func:`train_arm`). One :class:`lgemri.training.TrainConfig` for every arm,
  only ``data`` differs: the ResAtt-U-Net (``--channels``, default 8,16,32,64) from scratch,
  class-weighted CE + Dice, Adam with a cosine schedule, ``epochs × steps_per_epoch`` batches,
  the same seeds. Every draw, real or GAN, gets the trainer's classical augmentation
  (rotation, zoom, shift, gamma, noise). An arm's datalist repeats its ``N`` entries
  ``passes`` times so that an epoch is ``steps_per_epoch`` batches of one permutation; the
  hyper-parameters live in ``ablation.json`` and both arms read them from there.
- **Evaluation** (:func:`evaluate_checkpoint`). The final weights (``last.pt``: no epoch is
  selected) on the real ``val`` split and on a prepared test set. Dice per class and case (3D
  over the case's slices), averaged over the cases whose truth or prediction holds the class:
  the trainer's own validation figure, with the EMIDEC classes of Table IV (cavity, healthy
  myocardium, infarct, no-reflow). As a diagnostic of the domain gap the report also scores
  every run on MD's GAN slices (:func:`gan_slices`).

Commands (``OMP_NUM_THREADS=1``; the two ``train`` lines run side by side)::

    python experiments/gan_ablation.py build --work W --data PREPARED [--test PREPARED_OR_EMIDEC]
    python experiments/gan_ablation.py train --work W --arm ard --seeds 0,1 &
    python experiments/gan_ablation.py train --work W --arm md --seeds 0,1
    python experiments/gan_ablation.py report --work W

``run`` does all of it in one process (on a GPU); run again with the same flags, it continues
an interrupted run (``train`` resumes an unfinished run from its ``last.pt``). The work folder
holds ``ablation.json`` (the design, the counts and the hyper-parameters), ``data/<arm>.json``
(datalists), ``gan/``, ``synth/``, ``runs/<arm>-s<seed>/`` (trainer run folders),
``results.json`` and ``results.md``.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import logging
import math
import os
import statistics
import sys
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from lgemri.atomic import write_text
from lgemri.errors import InputError
from lgemri.labels import LABEL_NAMES, NUM_CLASSES
from lgemri.training.run_folder import LAST

logger = logging.getLogger("gan_ablation")

ROOT = Path(__file__).resolve().parents[1]
ARMS = {
    "ard": "augmented real data: the R pool slices, each twice",
    "md": "mixed data: the R pool slices + R GAN slices",
    "ard-2r": "augmented real data: 2R distinct real slices (the pool + as many again)",
}
CATEGORIES = ("normal", "infarct", "no_reflow")
CLASSES = tuple(range(1, NUM_CLASSES))
CONFIG_FILE = "ablation.json"


@dataclasses.dataclass
class AblationConfig:
    """The design of one ablation (written to ``ablation.json``; every arm trains from it).

    Attributes:
        data: Prepared folder of real slices (``train`` split: the pool; ``val``: validation).
        test: Prepared folder (its ``test`` split, else all its slices) or EMIDEC-layout folder
            (prepared into ``WORK/prep-test``); None: no test evaluation.
        real_slices: ``R``, the pool size (ARD has ``2R`` entries, MD ``R`` real + ``R`` GAN).
        pool_seed: Seed of the case draw.
        gan_checkpoint: A GAN checkpoint to use; None: train one on the pool.
        gan_epochs: Epochs of the pool GAN (of ``ceil(R / gan_batch_size)`` steps).
        gan_batch_size: Batch size of the pool GAN.
        gan_ngf, gan_ndf: Widths of its generator and discriminator (16: the shipped CPU model;
            64: the paper's).
        gan_seed: Seed of the pool GAN.
        sim_seed: Simulator seed of the GAN masks.
        sim_factor: Masks simulated per GAN slice needed (a surplus to match the categories).
        epochs, steps_per_epoch, batch_size, lr, loss, channels, dropout: Segmentation training,
            identical for every arm.
        device: Torch device of training and evaluation.
        workers: DataLoader worker processes of training (results do not depend on it).
    """

    data: str
    test: str | None = None
    real_slices: int = 200
    pool_seed: int = 0
    gan_checkpoint: str | None = None
    gan_epochs: int = 40
    gan_batch_size: int = 8
    gan_ngf: int = 16
    gan_ndf: int = 16
    gan_seed: int = 0
    sim_seed: int = 0
    sim_factor: int = 4
    epochs: int = 10
    steps_per_epoch: int = 200
    batch_size: int = 8
    lr: float = 2e-3
    loss: str = "ce+dice"
    channels: tuple[int, ...] = (8, 16, 32, 64)
    dropout: float = 0.1
    device: str = "cpu"
    workers: int = 0

    def validate(self) -> None:
        """Raise :class:`InputError` naming the first bad setting."""
        checks = [
            (self.real_slices >= 1, f"real slices must be at least 1, got {self.real_slices}"),
            (self.gan_epochs >= 1, f"GAN epochs must be at least 1, got {self.gan_epochs}"),
            (self.gan_batch_size >= 1, f"GAN batch size must be at least 1, got {self.gan_batch_size}"),
            (min(self.gan_ngf, self.gan_ndf) >= 1, f"GAN widths must be positive, got {self.gan_ngf}, {self.gan_ndf}"),
            (self.sim_factor >= 1, f"simulation factor must be at least 1, got {self.sim_factor}"),
            (self.epochs >= 1, f"epochs must be at least 1, got {self.epochs}"),
            (self.steps_per_epoch >= 1, f"steps per epoch must be at least 1, got {self.steps_per_epoch}"),
            (self.batch_size >= 1, f"batch size must be at least 1, got {self.batch_size}"),
            (self.workers >= 0, f"workers must be non-negative, got {self.workers}"),
            (math.isfinite(self.lr) and self.lr > 0, f"learning rate must be positive, got {self.lr}"),
            (
                len(self.channels) >= 2 and min(self.channels) >= 1,
                f"channels must be two or more positive numbers, got {self.channels}",
            ),
        ]
        for ok, message in checks:
            if not ok:
                raise InputError(message)

    def passes(self, entries: int) -> int:
        """Copies of an arm's ``entries`` (``N``) in its datalist: enough for one epoch."""
        return max(1, math.ceil(self.steps_per_epoch * self.batch_size / entries))


# --------------------------------------------------------------------------------------------
# the data


def read_manifest(folder: str | os.PathLike) -> list[dict]:
    """The rows of a prepared folder's (or a synthesis output's) ``manifest.csv``, each with
    ``image``/``label`` (absolute ROI paths) and ``slice_category`` added.

    ``slice_category`` is what the slice shows: ``no_reflow``, ``infarct`` or ``normal`` (from
    the ``no_reflow`` and ``infarct`` columns, else from the label).

    Raises:
        InputError: No manifest, or a manifest without ``name``, ``case_id`` and ``split``.
    """
    from lgemri.emidec import case_category

    folder = Path(folder).resolve()
    manifest = folder / "manifest.csv"
    if not manifest.is_file():
        raise InputError(f"{folder}: no manifest.csv (prepare the folder with 'cardiac-mi prepare')")
    with manifest.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        missing = {"name", "case_id", "split"} - set(reader.fieldnames or ())
        if missing:
            raise InputError(f"{manifest}: missing column(s) {', '.join(sorted(missing))}")
        rows = list(reader)
    for row in rows:
        row["image"] = str(folder / "roi" / "images" / f"{row['name']}.npy")
        row["label"] = str(folder / "roi" / "labels" / f"{row['name']}.npy")
        if row.get("no_reflow") not in (None, "") and row.get("infarct") not in (None, ""):
            row["slice_category"] = (
                "no_reflow" if int(row["no_reflow"]) else "infarct" if int(row["infarct"]) else "normal"
            )
        else:
            row["slice_category"] = case_category(np.load(row["label"]))
    return rows


def _case_categories(rows: Iterable[dict]) -> dict[str, str]:
    """Each case's category: its most severe slice (no-reflow > infarct > normal)."""
    rank = {c: i for i, c in enumerate(CATEGORIES)}
    out: dict[str, str] = {}
    for row in rows:
        current = out.get(row["case_id"])
        if current is None or rank[row["slice_category"]] > rank[current]:
            out[row["case_id"]] = row["slice_category"]
    return out


def select_real_pool(rows: Sequence[dict], n: int, seed: int, split: str = "train") -> list[dict]:
    """Whole cases of ``split`` drawn until ``n`` slices, stratified by case category.

    Each category's cases are shuffled (seeded by ``seed`` and the category) and taken in that
    order while a case brings the category closer to its share of ``n`` (its share of the
    split's slices; at least one case per category present). Every case is complete, so the
    pool is ``n`` slices give or take half a case per category. The draw order does not depend
    on ``n``: a larger ``n`` extends a smaller one's pool (``ard-2r`` contains the pool).

    Raises:
        InputError: ``n`` below 1, or fewer than ``n`` slices in ``split``.
    """
    rows = [r for r in rows if r["split"] == split]
    if n < 1:
        raise InputError(f"the real pool needs at least 1 slice, got {n}")
    if len(rows) < n:
        raise InputError(f"the {split!r} split holds {len(rows)} slices, fewer than the {n} asked for")
    by_case: dict[str, list[dict]] = {}
    for row in rows:
        by_case.setdefault(row["case_id"], []).append(row)
    categories = _case_categories(rows)
    pool: list[dict] = []
    for category in CATEGORIES:
        cases = sorted(c for c, k in categories.items() if k == category)
        if not cases:
            continue
        share = sum(len(by_case[c]) for c in cases) / len(rows)
        target = round(n * share)
        order = np.random.default_rng([seed, CATEGORIES.index(category)]).permutation(len(cases))
        taken = 0
        for i in order:
            case_rows = sorted(by_case[cases[i]], key=lambda r: int(r.get("slice") or 0))
            if taken and abs(taken + len(case_rows) - target) >= abs(taken - target):
                break
            pool.extend(case_rows)
            taken += len(case_rows)
    return pool


def category_counts(rows: Iterable[dict]) -> dict[str, int]:
    """Slices per slice category."""
    counts = dict.fromkeys(CATEGORIES, 0)
    for row in rows:
        counts[row["slice_category"]] += 1
    return counts


def select_synthetic(rows: Sequence[dict], counts: dict[str, int], seed: int) -> list[dict]:
    """GAN slices with exactly ``counts`` slices of each slice category, drawn at random.

    Raises:
        InputError: A category with fewer slices than asked for (simulate more masks).
    """
    rng = np.random.default_rng([seed, 0xAB1])
    chosen: list[dict] = []
    for category in CATEGORIES:
        available = [r for r in rows if r["slice_category"] == category]
        need = counts.get(category, 0)
        if len(available) < need:
            raise InputError(
                f"the simulator gave {len(available)} {category} slices, {need} needed; raise --sim-factor"
            )
        chosen.extend(available[i] for i in sorted(rng.choice(len(available), size=need, replace=False)))
    return chosen


def _entry(row: dict) -> dict:
    return {
        "image": row["image"],
        "label": row["label"],
        "name": row["name"],
        "case_id": row["case_id"],
        "spacing_mm": 1.0,
        "category": row["slice_category"],
    }


def write_datalist(path: Path, training: Sequence[dict], validation: Sequence[dict], passes: int = 1) -> Path:
    """A MONAI-style datalist (absolute paths): ``training`` repeated ``passes`` times."""
    data = {"training": [_entry(r) for r in training] * passes, "validation": [_entry(r) for r in validation]}
    write_text(path, json.dumps(data, indent=1) + "\n")
    return path


def _case_key(image: str | os.PathLike, case_id: str) -> tuple[str, str]:
    """``(prepared folder, case id)`` of a ROI image ``FOLDER/roi/images/<name>.npy``: case ids
    repeat across phantoms of other seeds, the folder tells them apart."""
    return str(Path(image).resolve().parents[2]), case_id


def gan_seen_cases(checkpoint: str | os.PathLike) -> set[tuple[str, str]]:
    """The ``(folder, case id)`` of every slice the GAN trained on or was selected on.

    Read from the checkpoint's recorded configuration: the ``train`` and ``val`` splits of its
    data sources (the GAN trainer picks ``best.pt`` on ``val``).

    Raises:
        InputError: A checkpoint that does not record its training data.
    """
    from gan.base_model import read_gan_file
    from lgemri.training.data import read_items

    payload = read_gan_file(checkpoint)
    sources = ((payload.get("extra") or {}).get("config") or {}).get("data")
    if not sources:
        raise InputError(
            f"{checkpoint}: the checkpoint does not record its training data; cannot check "
            "that it never saw the validation cases"
        )
    seen: set[tuple[str, str]] = set()
    for split in ("train", "val"):
        try:
            items = read_items([tuple(s) if isinstance(s, list) else s for s in sources], split)
        except InputError as exc:
            if split == "val" and "no slice in the 'val' split" in str(exc):
                continue
            raise
        seen.update(_case_key(item.roi_image, item.case_id) for item in items)
    return seen


def check_gan_isolation(checkpoint: str | os.PathLike, evaluated: Iterable[dict]) -> int:
    """Raise :class:`InputError` if the GAN saw a case of the ``evaluated`` rows; return how
    many cases the GAN saw."""
    seen = gan_seen_cases(checkpoint)
    leaked = sorted({_case_key(r["image"], r["case_id"]) for r in evaluated} & seen)
    if leaked:
        folder, case = leaked[0]
        raise InputError(
            f"{checkpoint}: the GAN trained or was selected on {len(leaked)} evaluated case(s), "
            f"e.g. {case} of {folder}; train it without them (leave --gan-checkpoint unset)"
        )
    return len(seen)


def train_pool_gan(pool_datalist: Path, out: Path, config: AblationConfig, progress: bool = False) -> Path:
    """A Pix2Pix trained on the pool only (the shipped recipe at ``gan_ngf``/``gan_ndf``); returns
    its final ``last.pt`` (no epoch is selected)."""
    from gan.train import GanTrainConfig, train_gan

    last = out / LAST
    gan_config = GanTrainConfig(
        model="pix2pix",
        data=[str(pool_datalist)],
        out=str(out),
        options={"ngf": config.gan_ngf, "ndf": config.gan_ndf},
        epochs=config.gan_epochs,
        batch_size=config.gan_batch_size,
        seed=config.gan_seed,
        augment=True,
        val_limit=16,
        sample_every=config.gan_epochs,
        device=config.device,
        progress=progress,
        resume=last.is_file(),
    )
    train_gan(gan_config)
    return last


def _test_rows(test: str, work: Path) -> list[dict]:
    """The test slices: a prepared folder's ``test`` split (else all of it), or an EMIDEC-layout
    folder (or a phantom folder holding ``emidec/``) prepared into ``work/prep-test``."""
    from lgemri.emidec import prepare_dataset

    folder = Path(test)
    if not (folder / "manifest.csv").is_file():
        emidec = folder / "emidec" if (folder / "emidec").is_dir() else folder
        if not emidec.is_dir():
            raise InputError(f"{test}: neither a prepared folder nor an EMIDEC-layout folder")
        folder = work / "prep-test"
        if not (folder / "manifest.csv").is_file():
            prepare_dataset(emidec, folder, fractions=(0.0, 0.0, 1.0))
    rows = read_manifest(folder)
    tests = [r for r in rows if r["split"] == "test"]
    return tests or rows


def build(work: str | os.PathLike, config: AblationConfig, progress: bool = False) -> dict:
    """Build the arms' datasets into ``work`` and write ``work/ablation.json``.

    Returns:
        The ``ablation.json`` content: ``config``, ``counts``, ``pool`` (cases), ``gan``,
        ``synthetic`` and ``datalists``.

    Raises:
        InputError: Bad settings or data, a GAN that saw an evaluated case, too few simulated
            slices of a category, or ``work`` already built.
    """
    from cardiac_mi.retrain import sampling_weights, synthesize_slices

    config.validate()
    work = Path(work).resolve()
    if (work / CONFIG_FILE).exists():
        raise InputError(f"{work}: already holds {CONFIG_FILE}; choose another --work")
    started = time.perf_counter()
    rows = read_manifest(config.data)
    val = [r for r in rows if r["split"] == "val"]
    if not val:
        raise InputError(f"{config.data}: no slice in the 'val' split to validate on")
    test = _test_rows(config.test, work) if config.test else []
    r = config.real_slices
    pool = select_real_pool(rows, r, config.pool_seed)
    train_slices = sum(row["split"] == "train" for row in rows)
    # ard-2r needs twice the pool; with the whole split as the pool it is left out.
    pool_2r = select_real_pool(rows, 2 * len(pool), config.pool_seed) if 2 * len(pool) <= train_slices else []
    data = work / "data"
    pool_datalist = write_datalist(data / "pool.json", pool, [])

    if config.gan_checkpoint is None:
        checkpoint = train_pool_gan(pool_datalist, work / "gan", config, progress)
    else:
        checkpoint = Path(config.gan_checkpoint).resolve()
    gan_cases = check_gan_isolation(checkpoint, [*val, *test])

    n_syn = len(pool)
    w_real, w_syn = sampling_weights(len(pool), n_syn, 0.5)
    synth = synthesize_slices(
        config.sim_factor * n_syn, work / "synth", seed=config.sim_seed, checkpoint=checkpoint, device=config.device
    )
    synthetic = select_synthetic(read_manifest(synth["folder"]), category_counts(pool), config.sim_seed)

    arms = {"ard": [*pool, *pool], "md": [*pool, *synthetic]}
    if pool_2r:
        arms["ard-2r"] = pool_2r
    passes = {arm: config.passes(len(train)) for arm, train in arms.items()}  # ard and md: equal N, equal passes
    datalists = {arm: str(write_datalist(data / f"{arm}.json", train, val, passes[arm])) for arm, train in arms.items()}
    result = {
        "config": dataclasses.asdict(config),
        "passes": passes,
        "counts": {
            "pool": len(pool),
            "pool_cases": len({p["case_id"] for p in pool}),
            "ard": len(arms["ard"]),
            "md_real": len(pool),
            "md_gan": len(synthetic),
            "ard-2r": len(pool_2r),
            "ard-2r_cases": len({p["case_id"] for p in pool_2r}),
            "val": len(val),
            "val_cases": len({v["case_id"] for v in val}),
            "test": len(test),
            "test_cases": len({t["case_id"] for t in test}),
        },
        "categories": {
            "pool": category_counts(pool),
            "gan": category_counts(synthetic),
            "ard-2r": category_counts(pool_2r),
            "val": category_counts(val),
        },
        "sampling_weights_md": [w_real, w_syn],
        "pool_cases": sorted({p["case_id"] for p in pool}),
        "gan": {
            "checkpoint": str(checkpoint),
            "trained_here": config.gan_checkpoint is None,
            "cases_seen": gan_cases,
            "sha256": synth["checkpoint_sha256"],
        },
        "synthetic": {**synth, "chosen": len(synthetic), "chosen_cases": len({s["case_id"] for s in synthetic})},
        "test_folder": str(Path(test[0]["image"]).parents[2]) if test else None,
        "datalists": datalists,
        "build_seconds": round(time.perf_counter() - started, 1),
    }
    write_text(work / CONFIG_FILE, json.dumps(result, indent=2) + "\n")
    logger.info(
        "built %s: pool %d slices (%d cases), GAN %d slices, val %d, test %d",
        work,
        len(pool),
        result["counts"]["pool_cases"],
        len(synthetic),
        len(val),
        len(test),
    )
    return result


def load_design(work: str | os.PathLike) -> tuple[dict, AblationConfig]:
    """``ablation.json`` of ``work`` and its :class:`AblationConfig`."""
    path = Path(work) / CONFIG_FILE
    if not path.is_file():
        raise InputError(f"{work}: no {CONFIG_FILE}; run 'build' first")
    design = json.loads(path.read_text(encoding="utf-8"))
    values = dict(design["config"])
    values["channels"] = tuple(values["channels"])
    return design, AblationConfig(**values)


# --------------------------------------------------------------------------------------------
# training and evaluation


def run_dir(work: str | os.PathLike, arm: str, seed: int) -> Path:
    return Path(work) / "runs" / f"{arm}-s{seed}"


def train_config(work: str | os.PathLike, arm: str, seed: int, progress: bool = False):
    """The :class:`~lgemri.training.TrainConfig` of one arm and seed: only ``data`` and ``out``
    depend on the arm."""
    from lgemri.training import TrainConfig

    if arm not in ARMS:
        raise InputError(f"unknown arm {arm!r}; choose from {', '.join(ARMS)}")
    design, config = load_design(work)
    if arm not in design["datalists"]:
        raise InputError(f"{work}: arm {arm!r} was not built (its pool would exceed the train split)")
    out = run_dir(work, arm, seed)
    return TrainConfig(
        task="segmentation",
        data=[design["datalists"][arm]],
        out=str(out),
        epochs=config.epochs,
        batch_size=config.batch_size,
        lr=config.lr,
        lr_schedule="cosine",
        seed=int(seed),
        loss=config.loss,
        channels=tuple(config.channels),
        dropout=config.dropout,
        augment=True,
        max_steps_per_epoch=config.steps_per_epoch,
        device=config.device,
        num_workers=config.workers,
        progress=progress,
        resume=(out / LAST).is_file(),
    )


def train_arm(work: str | os.PathLike, arm: str, seed: int, progress: bool = False) -> dict:
    """Train (or finish) one arm and seed; a finished run is left as it is."""
    import torch

    from lgemri.training import train

    config = train_config(work, arm, seed, progress)
    last = Path(config.out) / LAST
    if last.is_file():
        done = torch.load(last, map_location="cpu", weights_only=True).get("epoch", 0)
        if done >= config.epochs:
            logger.info("%s seed %d: already trained (%d epochs)", arm, seed, done)
            return {"run_dir": config.out, "skipped": True}
    started = time.perf_counter()
    summary = train(config)
    summary["wall_seconds"] = round(time.perf_counter() - started, 1)
    write_text(Path(config.out) / "wall.json", json.dumps({"wall_seconds": summary["wall_seconds"]}) + "\n")
    return summary


def evaluate_checkpoint(
    checkpoint: str | os.PathLike, rows: Sequence[dict], batch_size: int = 32, device: str = "cpu"
) -> dict:
    """Dice per class of a segmentation checkpoint on ROI slices, per case then averaged.

    Each case's slices form one 3D overlap count per class; a case counts for a class when its
    truth or prediction holds the class (the trainer's validation rule).

    Returns:
        ``{"slices", "cases", "dice": {class name: mean or None}, "mean_dice", "cases_per_class"}``.
    """
    import torch

    from lgemri.nets.checkpoint import load_checkpoint
    from lgemri.nets.preprocess import normalize

    model, _ = load_checkpoint(checkpoint, task="segmentation", device=device)
    counts: dict[str, np.ndarray] = {}
    with torch.no_grad():
        for start in range(0, len(rows), batch_size):
            chunk = rows[start : start + batch_size]
            x = np.stack([normalize(np.load(r["image"]).astype(np.float32))[None] for r in chunk])
            pred = model(torch.from_numpy(x.astype(np.float32)).to(device)).argmax(dim=1).cpu().numpy()
            for row, p in zip(chunk, pred):
                t = np.load(row["label"])
                c = counts.setdefault(row["case_id"], np.zeros((NUM_CLASSES, 3), dtype=np.int64))
                for k in CLASSES:
                    pk, tk = p == k, t == k
                    c[k] += (int((pk & tk).sum()), int((pk & ~tk).sum()), int((~pk & tk).sum()))
    dice, used = {}, {}
    for k in CLASSES:
        values = [2 * tp / (2 * tp + fp + fn) for tp, fp, fn in (c[k] for c in counts.values()) if tp + fp + fn]
        dice[LABEL_NAMES[k]] = float(np.mean(values)) if values else None
        used[LABEL_NAMES[k]] = len(values)
    finite = [v for v in dice.values() if v is not None]
    return {
        "slices": len(rows),
        "cases": len(counts),
        "dice": dice,
        "mean_dice": float(np.mean(finite)) if finite else None,
        "cases_per_class": used,
    }


def _mean(values: Sequence[float | None]) -> float | None:
    values = [v for v in values if v is not None]
    return float(statistics.mean(values)) if values else None


def gan_slices(design: dict) -> list[dict]:
    """MD's GAN slices (each once), as rows for :func:`evaluate_checkpoint`."""
    synth = Path(design["synthetic"]["folder"]).resolve()
    entries = json.loads(Path(design["datalists"]["md"]).read_text(encoding="utf-8"))["training"]
    unique = {e["name"]: e for e in entries if Path(e["image"]).resolve().is_relative_to(synth)}
    return [{**e, "slice_category": e["category"]} for e in unique.values()]


def report(work: str | os.PathLike) -> dict:
    """Evaluate every finished run's final weights on the real validation slices, the test
    slices and, as a diagnostic of the domain gap, MD's GAN slices; write ``results.json`` and
    ``results.md``."""
    import torch

    work = Path(work)
    design, config = load_design(work)
    sets = {
        "val": [r for r in read_manifest(config.data) if r["split"] == "val"],
        "test": _test_rows(config.test, work) if config.test else [],
        "gan": gan_slices(design),
    }
    results: dict[str, dict] = {}
    for arm in ARMS:
        runs = sorted(work.glob(f"runs/{arm}-s*/last.pt"), key=lambda p: int(p.parent.name.rsplit("-s", 1)[1]))
        for last in runs:
            state = torch.load(last, map_location="cpu", weights_only=True)
            if state.get("epoch", 0) < config.epochs:
                logger.warning(
                    "%s: unfinished (%s of %d epochs); left out", last.parent, state.get("epoch"), config.epochs
                )
                continue
            seed = int(last.parent.name.rsplit("-s", 1)[1])
            history = state.get("history") or []
            wall = last.parent / "wall.json"
            entry = {
                where: evaluate_checkpoint(last, rows, device=config.device) if rows else None
                for where, rows in sets.items()
            } | {
                "trainer_last_epoch": history[-1] if history else None,
                "steps": sum(h.get("steps", 0) for h in history),
                "train_seconds": round(sum(h.get("seconds", 0.0) for h in history), 1),
                "wall_seconds": json.loads(wall.read_text())["wall_seconds"] if wall.is_file() else None,
                "class_weights": (state.get("extra") or {}).get("class_weights"),
            }
            results.setdefault(arm, {})[str(seed)] = entry
    summary: dict[str, dict] = {}
    for arm, seeds in results.items():
        summary[arm] = {}
        for where in sets:
            if any(s[where] is None for s in seeds.values()):
                continue
            summary[arm][where] = {
                name: _mean([s[where]["dice"][name] for s in seeds.values()]) for name in _names()
            } | {"mean_dice": _mean([s[where]["mean_dice"] for s in seeds.values()])}
    out = {"design": design, "runs": results, "mean_over_seeds": summary}
    write_text(work / "results.json", json.dumps(out, indent=2) + "\n")
    write_text(work / "results.md", markdown_table(out))
    return out


def _names() -> list[str]:
    return [LABEL_NAMES[k] for k in CLASSES]


_SHOWN = {
    "lv_cavity": "1 LV cavity",
    "myocardium": "2 healthy myocardium",
    "infarct": "3 infarct",
    "no_reflow": "4 no-reflow",
    "mean_dice": "mean (1-4)",
}


def markdown_table(results: dict) -> str:
    """Table IV-style tables (one per evaluation set): Dice per class, per seed and the mean."""

    def fmt(v: float | None) -> str:
        return "–" if v is None else f"{v:.3f}"

    runs, means = results["runs"], results["mean_over_seeds"]
    arms = [a for a in ARMS if a in runs]
    lines: list[str] = []
    counts = results["design"]["counts"]
    titles = {
        "val": f"validation: {counts['val']} real slices, {counts['val_cases']} cases",
        "test": f"test: {counts['test']} slices, {counts['test_cases']} held-out studies",
        "gan": f"diagnostic, MD's own GAN slices: {counts['md_gan']} slices of simulated cases",
    }
    for where, title in titles.items():
        if not any(where in means.get(a, {}) for a in arms):
            continue
        header, rule = ["class"], ["---"]
        for arm in arms:
            seeds = sorted(runs[arm], key=int)
            header += [f"{arm.upper()} s{s}" for s in seeds] + [f"**{arm.upper()} mean**"]
            rule += ["---:"] * (len(seeds) + 1)
        if "ard" in arms and "md" in arms:
            header.append("MD − ARD")
            rule.append("---:")
        lines += [f"**{title}**", "", "| " + " | ".join(header) + " |", "| " + " | ".join(rule) + " |"]
        for key in [*_names(), "mean_dice"]:
            cells = [_SHOWN[key]]
            for arm in arms:
                for s in sorted(runs[arm], key=int):
                    block = runs[arm][s][where]
                    cells.append(fmt(block["mean_dice"] if key == "mean_dice" else block["dice"][key]))
                cells.append(f"**{fmt(means[arm][where][key])}**")
            if "ard" in arms and "md" in arms:
                a, m = means["ard"][where][key], means["md"][where][key]
                cells.append("–" if a is None or m is None else f"{m - a:+.3f}")
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# command line


def _ints(text: str) -> list[int]:
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    d = AblationConfig
    for name in ("build", "run"):
        p = sub.add_parser(name, help="build the datasets" if name == "build" else "build, train every arm, report")
        p.add_argument("--work", required=True, type=Path)
        p.add_argument("--data", required=True, help="prepared folder of real slices (train: pool, val: validation)")
        p.add_argument("--test", help="prepared folder or EMIDEC-layout folder of test studies")
        p.add_argument("--real-slices", type=int, default=d.real_slices, help=f"R (default {d.real_slices})")
        p.add_argument("--pool-seed", type=int, default=d.pool_seed)
        p.add_argument("--gan-checkpoint", help="use this GAN instead of training one on the pool")
        p.add_argument("--gan-epochs", type=int, default=d.gan_epochs)
        p.add_argument("--gan-seed", type=int, default=d.gan_seed)
        p.add_argument("--gan-batch-size", type=int, default=d.gan_batch_size)
        p.add_argument("--gan-ngf", type=int, default=d.gan_ngf)
        p.add_argument("--gan-ndf", type=int, default=d.gan_ndf)
        p.add_argument("--sim-seed", type=int, default=d.sim_seed)
        p.add_argument("--sim-factor", type=int, default=d.sim_factor)
        p.add_argument("--epochs", type=int, default=d.epochs)
        p.add_argument("--steps-per-epoch", type=int, default=d.steps_per_epoch)
        p.add_argument("--batch-size", type=int, default=d.batch_size)
        p.add_argument("--lr", type=float, default=d.lr)
        p.add_argument("--channels", type=_ints, default=list(d.channels))
        p.add_argument("--device", default=d.device, help="cpu or cuda")
        p.add_argument("--workers", type=int, default=d.workers, help="data loader processes (GPU runs)")
        if name == "run":
            p.add_argument("--arms", default="ard,md", help=f"comma-separated, of {', '.join(ARMS)}")
            p.add_argument("--seeds", type=_ints, default=[0, 1])
    p = sub.add_parser("train", help="train one arm for the given seeds")
    p.add_argument("--work", required=True, type=Path)
    p.add_argument("--arm", required=True, choices=list(ARMS))
    p.add_argument("--seeds", type=_ints, default=[0, 1])
    p = sub.add_parser("report", help="evaluate the finished runs, write results.json and results.md")
    p.add_argument("--work", required=True, type=Path)
    return parser


def _config(args: argparse.Namespace) -> AblationConfig:
    return AblationConfig(
        data=str(Path(args.data).resolve()),
        test=str(Path(args.test).resolve()) if args.test else None,
        real_slices=args.real_slices,
        pool_seed=args.pool_seed,
        gan_checkpoint=args.gan_checkpoint,
        gan_epochs=args.gan_epochs,
        gan_seed=args.gan_seed,
        gan_batch_size=args.gan_batch_size,
        gan_ngf=args.gan_ngf,
        gan_ndf=args.gan_ndf,
        sim_seed=args.sim_seed,
        sim_factor=args.sim_factor,
        epochs=args.epochs,
        steps_per_epoch=args.steps_per_epoch,
        batch_size=args.batch_size,
        lr=args.lr,
        channels=tuple(args.channels),
        device=args.device,
        workers=args.workers,
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        if args.command in ("build", "run"):
            config = _config(args)
            if args.command == "run" and (args.work / CONFIG_FILE).is_file():  # an interrupted run goes on
                design, built = load_design(args.work)
                if dataclasses.asdict(built) != dataclasses.asdict(config):
                    raise InputError(f"{args.work}: built with other settings; use another --work")
            else:
                design = build(args.work, config, progress=False)
            print(json.dumps({"counts": design["counts"], "categories": design["categories"]}, indent=1))
        if args.command == "run":
            for arm in [a.strip() for a in args.arms.split(",") if a.strip()]:
                for seed in args.seeds:
                    train_arm(args.work, arm, seed)
        if args.command == "train":
            for seed in args.seeds:
                summary = train_arm(args.work, args.arm, seed)
                print(f"{args.arm} seed {seed}: {summary.get('wall_seconds', 'already done')} s")
        if args.command in ("report", "run"):
            print(markdown_table(report(args.work)))
    except InputError as exc:
        print(f"gan_ablation {args.command}: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
