"""The networks of cardiac_mi, found by name, and what their inputs look like (``preprocess``).

``build_network("resatt_unet", ...)`` builds the ResAtt-U-Net that segments LV crops,
``build_network("localizer", ...)`` the small U-Net that finds the LV on a whole slice,
``build_network("ensemble", members=[spec, ...])`` the mean of several of them. Torch and
MONAI are imported on first use, so ``lgemri.nets.preprocess`` stays a light numpy import.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ..errors import InputError

if TYPE_CHECKING:  # pragma: no cover
    import torch.nn as nn

__all__ = ["TASKS", "NETWORKS", "build_network", "enable_mc_dropout", "ResAttUNet", "Localizer"]

#: What a network is trained for; a checkpoint records one of these.
TASKS = ("localization", "segmentation", "cavity")

# name -> "module:attribute" (imported lazily)
NETWORKS: dict[str, str] = {
    "resatt_unet": "lgemri.nets.resatt_unet:ResAttUNet",
    "localizer": "lgemri.nets.localizer:Localizer",
    "ensemble": "lgemri.nets.ensemble:Ensemble",
}


def _resolve(target: str) -> Any:
    module, attr = target.split(":")
    return getattr(importlib.import_module(module), attr)


def __getattr__(name: str) -> Any:  # lazy ResAttUNet, Localizer
    lazy = {"ResAttUNet": NETWORKS["resatt_unet"], "Localizer": NETWORKS["localizer"]}
    if name in lazy:
        return _resolve(lazy[name])
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def build_network(name: str, **kwargs: Any) -> nn.Module:
    """Build the network registered as ``name`` with keyword arguments ``kwargs``.

    Args:
        name: One of :data:`NETWORKS` (``resatt_unet``, ``localizer``, ``ensemble``).
        **kwargs: The network's constructor arguments (e.g. ``in_channels``, ``channels``).

    Raises:
        InputError: Unknown name (the message lists the choices) or arguments the network
            does not take.
    """
    if name not in NETWORKS:
        raise InputError(f"unknown network {name!r}; choose from {', '.join(sorted(NETWORKS))}")
    cls = _resolve(NETWORKS[name])
    try:
        return cls(**kwargs)
    except TypeError as exc:
        raise InputError(f"network {name!r}: bad arguments {sorted(kwargs)}: {exc}") from None


def enable_mc_dropout(model: nn.Module) -> nn.Module:
    """Put ``model`` in eval mode except its dropout layers (Monte-Carlo dropout); returns it.

    Batch norm keeps its running statistics, so repeated forward passes differ only by dropout.
    """
    import torch.nn as nn

    model.eval()
    for module in model.modules():
        if isinstance(module, nn.modules.dropout._DropoutNd):
            module.train()
    return model
