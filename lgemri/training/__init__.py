"""Training: the engine and the cascade's networks' trainer.

- ``engine``: :class:`~lgemri.training.engine.Trainer`, the one training loop (runtime, run
  folder, checkpoints, history, curves, LR schedule) with hooks a task fills in;
- ``config``: the shared configuration fields (``BaseTrainConfig``) and the cascade's
  (``TrainConfig``); ``options``: the command-line flags shared by the training commands;
  ``run_folder``: the run folder's file names; all three torch-free;
- ``segmentation``: the trainer of the localization, segmentation and cavity networks;
- ``data``: datasets over prepared folders and the epoch sampler; ``provenance``: where the
  training data came from.

``train(TrainConfig(task=..., data=[...], out=...))`` trains one network and writes a run folder;
``cardiac-mi train`` is its command line (:mod:`cardiac_mi.commands.train`). ``TrainConfig``
and ``train`` load on first use, so that importing ``lgemri.training`` stays light.
"""

from __future__ import annotations

from typing import Any

__all__ = ["TrainConfig", "train"]


def __getattr__(name: str) -> Any:
    if name == "TrainConfig":
        from .config import TrainConfig

        return TrainConfig
    if name == "train":
        from .segmentation import train

        return train
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
