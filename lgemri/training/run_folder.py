"""The run folder every training run writes: its file names, in one place.

A run folder holds, every file written atomically by :class:`lgemri.training.engine.Trainer`:

- ``config.json`` (:data:`CONFIG`): the configuration, the resolved network or model options,
  data, device and software versions (written when the run starts or resumes);
- ``best.pt`` (:data:`BEST`): the model checkpoint of the epoch with the best validation score,
  what inference and synthesis load;
- ``last.pt`` (:data:`LAST`): the training state after the latest epoch, for ``resume``;
- ``history.json`` (:data:`HISTORY`) and ``curves.png`` (:data:`CURVES`): losses and
  validation metrics per epoch;
- ``samples/`` (:data:`SAMPLES`): the GAN's sample grids.

Torch-free, so that readers of run folders (the app's training status, the active-learning
statistics) import it cheaply.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import InputError

__all__ = ["CONFIG", "BEST", "LAST", "HISTORY", "CURVES", "SAMPLES", "RunFolder"]

CONFIG = "config.json"
BEST = "best.pt"
LAST = "last.pt"
HISTORY = "history.json"
CURVES = "curves.png"
SAMPLES = "samples"


class RunFolder:
    """The paths of one run folder (nothing is created until a trainer writes)."""

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root)
        self.config = self.root / CONFIG
        self.best = self.root / BEST
        self.last = self.root / LAST
        self.history = self.root / HISTORY
        self.curves = self.root / CURVES
        self.samples = self.root / SAMPLES

    def check(self, resume: bool) -> None:
        """Raise :class:`InputError` when ``resume`` finds no training state, or a new run
        would overwrite one."""
        if resume and not self.last.is_file():
            raise InputError(f"{self.root}: nothing to resume (no {LAST})")
        if not resume and self.last.exists():
            raise InputError(
                f"{self.root}: already holds a training run ({LAST}); pass --resume or choose another --out"
            )
