"""Checkpoints that rebuild their own network: what was trained, how, and its weights.

Two kinds of file, both plain ``torch.save`` dictionaries readable with ``weights_only=True``:

- a **model checkpoint** (``best.pt``; what inference loads) holds the task, the network spec
  ``{"name": ..., "kwargs": ...}`` for :func:`lgemri.nets.build_network`, the CPU
  ``state_dict`` and ``extra`` (training configuration, metrics, epoch, ``two_stage``, class
  weights, data description);
- a **training state** (``last.pt`` in a run folder; what ``--resume`` loads) holds the same plus
  the optimizer, scheduler and gradient-scaler states, the epoch, the random-number generator
  states and the history, so that training continues exactly where it stopped.

Both are written atomically (saved under a temporary name, then renamed) and carry
``format == "cardiac_mi.checkpoint"`` with a ``version``; :func:`load_checkpoint` reads either.
"""

from __future__ import annotations

import dataclasses
import os
import pickle
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from ..atomic import atomic_path
from ..errors import InputError
from . import TASKS, build_network

__all__ = [
    "TASKS",
    "FORMAT",
    "FORMAT_VERSION",
    "save_checkpoint",
    "load_checkpoint",
    "save_training_state",
    "load_training_state",
    "unwrap",
    "to_plain",
]

FORMAT = "cardiac_mi.checkpoint"
FORMAT_VERSION = 1
_KINDS = ("model", "training_state")


def unwrap(model: nn.Module) -> nn.Module:
    """The bare network inside ``DistributedDataParallel`` / ``DataParallel`` (or ``model``)."""
    while isinstance(model, (nn.parallel.DistributedDataParallel, nn.DataParallel)):
        model = model.module
    return model


def to_plain(value: Any) -> Any:
    """``value`` as plain Python data that ``torch.load(weights_only=True)`` accepts.

    Mappings become dicts with string keys, tuples stay tuples, numpy arrays and scalars become
    lists and numbers, paths become strings, dataclasses become dicts; tensors are kept (moved
    to the CPU).

    Raises:
        TypeError: A value of another type.
    """
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, torch.Tensor):
        return value.detach().cpu()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return to_plain(dataclasses.asdict(value))
    if isinstance(value, Mapping):
        return {str(k): to_plain(v) for k, v in value.items()}
    if isinstance(value, tuple):
        return tuple(to_plain(v) for v in value)
    if isinstance(value, (list, set, frozenset)):
        return [to_plain(v) for v in value]
    raise TypeError(f"cannot store a {type(value).__name__} in a checkpoint: {value!r}")


def _check_spec(task: str, network: Mapping) -> dict:
    if task not in TASKS:
        raise InputError(f"unknown task {task!r}; choose from {', '.join(TASKS)}")
    if not isinstance(network, Mapping) or "name" not in network:
        raise InputError(f"network spec must be a dict with 'name' and 'kwargs', got {network!r}")
    return {"name": str(network["name"]), "kwargs": to_plain(dict(network.get("kwargs") or {}))}


def _cpu_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().clone() for k, v in unwrap(model).state_dict().items()}


def _save(path: str | os.PathLike, payload: dict) -> Path:
    path = Path(path)
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return path


def save_checkpoint(
    path: str | os.PathLike,
    model: nn.Module,
    *,
    task: str,
    network: Mapping,
    extra: Mapping | None = None,
) -> Path:
    """Write a model checkpoint atomically; returns its path.

    Args:
        path: The ``.pt`` file to write (folders are created).
        model: The trained network (a DDP wrapper is unwrapped); weights are stored on the CPU.
        task: ``localization``, ``segmentation`` or ``cavity``.
        network: ``{"name": registry name, "kwargs": constructor arguments}``; with it
            :func:`load_checkpoint` rebuilds the network.
        extra: Plain data to keep with the weights: training configuration, metrics, epoch,
            ``two_stage``, class weights, data description (numpy values become lists).

    Raises:
        InputError: Unknown task or a malformed network spec.
    """
    payload = {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "kind": "model",
        "task": task,
        "network": _check_spec(task, network),
        "state_dict": _cpu_state(model),
        "extra": to_plain(dict(extra or {})),
    }
    return _save(path, payload)


def load_weights_only(path: Path, device: str | torch.device, what: str):
    """``torch.load(path, weights_only=True)``; an InputError naming ``path`` and ``what`` it is
    not when the file is missing or unreadable. Shared by the network and GAN checkpoints."""
    if not path.is_file():
        raise InputError(f"{path}: checkpoint file not found")
    try:
        return torch.load(path, map_location=device, weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError) as exc:
        raise InputError(
            f"{path}: not a {what} (torch.load cannot read it as a weights-only file: {type(exc).__name__})"
        ) from None


def _read(path: str | os.PathLike, device: str | torch.device = "cpu") -> dict:
    """Load and validate one of our files (model or training state) with ``weights_only=True``."""
    path = Path(path)
    payload = load_weights_only(path, device, "cardiac_mi checkpoint")
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise InputError(f"{path}: not a cardiac_mi checkpoint (no '{FORMAT}' format marker)")
    version = payload.get("version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise InputError(
            f"{path}: checkpoint format version {version!r} is newer than this code reads ({FORMAT_VERSION})"
        )
    if payload.get("kind") not in _KINDS or payload.get("task") not in TASKS:
        raise InputError(f"{path}: malformed cardiac_mi checkpoint (kind {payload.get('kind')!r})")
    return payload


def _build(path: Path, payload: dict, device: str | torch.device) -> nn.Module:
    spec = payload.get("network") or {}
    try:
        model = build_network(spec.get("name"), **dict(spec.get("kwargs") or {}))
    except InputError as exc:
        raise InputError(f"{path}: cannot rebuild the network: {exc}") from None
    try:
        model.load_state_dict(payload["state_dict"], strict=True)
    except (RuntimeError, KeyError) as exc:
        first = str(exc).strip().splitlines()[0]
        raise InputError(f"{path}: weights do not fit network {spec.get('name')!r}: {first}") from None
    return model.to(device).eval()


def load_checkpoint(
    path: str | os.PathLike, task: str | None = None, device: str | torch.device = "cpu"
) -> tuple[nn.Module, dict]:
    """Rebuild the network of a checkpoint (``best.pt`` or ``last.pt``) in eval mode.

    Args:
        path: The checkpoint file.
        task: When given, the task the checkpoint must hold.
        device: Where to put the network.

    Returns:
        ``(model, meta)``; ``meta`` holds ``task``, ``network``, ``extra``, ``version``,
        ``kind`` and ``path`` (everything but the weights and the optimizer state).

    Raises:
        InputError: The file is missing, not one of our checkpoints, of a newer format, holds
            another task (the message says which), or its weights do not fit its network.
    """
    path = Path(path)
    if task is not None and task not in TASKS:
        raise InputError(f"unknown task {task!r}; choose from {', '.join(TASKS)}")
    payload = _read(path, device)
    if task is not None and payload["task"] != task:
        raise InputError(f"{path}: holds a {payload['task']!r} network, expected a {task!r} network")
    model = _build(path, payload, device)
    meta = {
        "task": payload["task"],
        "network": payload["network"],
        "extra": payload.get("extra") or {},
        "version": payload["version"],
        "kind": payload["kind"],
        "path": str(path),
    }
    return model, meta


def _rng_states() -> dict:
    import random

    np_state = np.random.get_state()
    states = {
        "python": random.getstate(),
        "numpy": (np_state[0], np_state[1].tolist(), *np_state[2:]),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def _set_rng_states(states: Mapping) -> None:
    import random

    if "python" in states:
        version, internal, gauss = states["python"]
        random.setstate((version, tuple(internal), gauss))
    if "numpy" in states:
        name, keys, pos, has_gauss, cached = states["numpy"]
        np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    if "torch" in states:
        torch.set_rng_state(states["torch"].cpu())
    if "cuda" in states and torch.cuda.is_available() and len(states["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all([s.cpu() for s in states["cuda"]])


def save_training_state(
    path: str | os.PathLike,
    model: nn.Module,
    *,
    task: str,
    network: Mapping,
    epoch: int,
    optimizer: torch.optim.Optimizer,
    scheduler: Any = None,
    scaler: Any = None,
    history: list | None = None,
    extra: Mapping | None = None,
) -> Path:
    """Write everything needed to resume training (``last.pt``) atomically; returns its path.

    Args:
        path: The file to write.
        model: The network (unwrapped from DDP).
        task: As for :func:`save_checkpoint`.
        network: As for :func:`save_checkpoint`.
        epoch: The number of epochs completed.
        optimizer: Its ``state_dict`` is stored.
        scheduler: An LR scheduler or None.
        scaler: A ``torch.amp.GradScaler`` or None.
        history: Per-epoch records so far.
        extra: Plain data (configuration, best metric so far, ...).
    """
    payload = {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "kind": "training_state",
        "task": task,
        "network": _check_spec(task, network),
        "state_dict": _cpu_state(model),
        "extra": to_plain(dict(extra or {})),
        "epoch": int(epoch),
        # state dicts as they are: optimizer state is keyed by parameter index (int)
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "scaler": scaler.state_dict() if scaler is not None else None,
        "rng": _rng_states(),
        "history": to_plain(list(history or [])),
    }
    return _save(path, payload)


def load_training_state(
    path: str | os.PathLike,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any = None,
    scaler: Any = None,
    *,
    task: str | None = None,
    network: Mapping | None = None,
    device: str | torch.device = "cpu",
    restore_rng: bool = True,
) -> dict:
    """Load ``last.pt`` into an existing model, optimizer, scheduler and scaler.

    Args:
        path: The training state file.
        model, optimizer, scheduler, scaler: Objects of the resumed run to load into (the
            scheduler and scaler may be None).
        task: When given, the task the run must have.
        network: When given, the network spec the run must have been started with.
        device: Where the model goes.
        restore_rng: Restore the python, numpy and torch generator states.

    Returns:
        ``{"epoch", "history", "extra", "network", "task"}``.

    Raises:
        InputError: Missing or foreign file, a model checkpoint instead of a training state,
            another task or network, or weights or optimizer state that do not fit.
    """
    path = Path(path)
    payload = _read(path, "cpu")
    if payload["kind"] != "training_state":
        raise InputError(f"{path}: a model checkpoint, not a training state (last.pt) to resume from")
    if task is not None and payload["task"] != task:
        raise InputError(f"{path}: holds a {payload['task']!r} run, expected a {task!r} run")
    if network is not None and payload["network"] != _check_spec(payload["task"], network):
        raise InputError(
            f"{path}: the run was started with network {payload['network']}, this configuration asks "
            f"for {_check_spec(payload['task'], network)}"
        )
    try:
        unwrap(model).load_state_dict(payload["state_dict"], strict=True)
        optimizer.load_state_dict(payload["optimizer"])
        if scheduler is not None and payload.get("scheduler") is not None:
            scheduler.load_state_dict(payload["scheduler"])
        if scaler is not None and payload.get("scaler"):
            scaler.load_state_dict(payload["scaler"])
    except (RuntimeError, KeyError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0]
        raise InputError(f"{path}: saved state does not fit this run's network or optimizer: {first}") from None
    unwrap(model).to(device)
    if restore_rng:
        _set_rng_states(payload.get("rng") or {})
    return {
        "epoch": int(payload["epoch"]),
        "history": list(payload.get("history") or []),
        "extra": payload.get("extra") or {},
        "network": payload["network"],
        "task": payload["task"],
    }
