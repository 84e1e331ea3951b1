"""Several networks of one task as one: the mean of their class probabilities.

Networks trained separately (other widths, other seeds) make partly independent errors, so the
mean of their softmax outputs is better than either (Lakshminarayanan et al., NeurIPS 2017). The
ensemble is one checkpoint (``{"name": "ensemble", "kwargs": {"members": [spec, ...]}}``) that
:func:`lgemri.nets.checkpoint.load_checkpoint` rebuilds like any network, so the cascade, the
server and Monte-Carlo dropout use it unchanged.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn as nn

from ..errors import InputError

__all__ = ["Ensemble"]


class Ensemble(nn.Module):
    """Returns log mean softmax, so ``softmax(output)`` is the members' mean probability.

    Args:
        members: The members' network specs, ``{"name": ..., "kwargs": ...}`` each (at least two,
            none an ensemble itself).
    """

    def __init__(self, members: Sequence[Mapping]):
        super().__init__()
        from . import build_network

        if len(members) < 2:
            raise InputError(f"an ensemble needs at least two members, got {len(members)}")
        if any(m.get("name") == "ensemble" for m in members):
            raise InputError("an ensemble member cannot be an ensemble")
        self.members = nn.ModuleList(build_network(m["name"], **dict(m.get("kwargs") or {})) for m in members)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        probabilities = torch.stack([torch.softmax(m(x).float(), dim=1) for m in self.members]).mean(dim=0)
        return torch.log(probabilities.clamp_min(1e-7))
