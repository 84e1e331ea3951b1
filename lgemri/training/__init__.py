"""Training of the cascade's networks: datasets (``data``), the loop (``loop``), the command (``cli``).

``train(TrainConfig(task=..., data=[...], out=...))`` trains one network and writes a run folder;
``cardiac-mi train`` is its command line (:func:`lgemri.training.cli.register`). ``TrainConfig``
and ``train`` load on first use, so that importing ``lgemri.training.cli`` stays light.
"""

from __future__ import annotations

from typing import Any

__all__ = ["TrainConfig", "train"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from . import loop

        return getattr(loop, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
