"""The contract every GAN model follows, its checkpoints, and finding a model by name.

A model is one file ``gan/<name>_model.py`` holding one :class:`BaseModel` subclass whose
``name`` is ``<name>`` (as in junyanz/pytorch-CycleGAN-and-pix2pix). The subclass declares

- ``Options``: a dataclass of its settings (subclass of :class:`CommonOptions`), stored in every
  checkpoint so that the model rebuilds itself;
- ``loss_names``: the losses it sets as ``self.loss_<name>`` (logged, averaged per epoch, plotted);
- ``visual_names``: the tensors it sets as ``self.<name>`` (drawn in the sample grids);
- ``model_names``: its networks, attributes ``self.net<name>``; ``inference_names`` the subset a
  model checkpoint keeps (the generators);
- ``data_kind``: ``paired`` (mask + image batches) or ``unpaired`` (domains A and B);
- ``score``: the validation metric that picks ``best.pt`` and whether higher is better;

and implements ``build`` (networks, losses, optimizers), ``set_input``, ``forward``,
``optimize_parameters`` and ``validation_metrics``. The base class does the rest: devices,
train/eval modes, mixed precision, gradient averaging under ``torchrun``, LR schedulers, losses
and visuals as plain data, saving and loading.

Checkpoint files are ``torch.save`` dictionaries readable with ``weights_only=True``, written
atomically, with ``format == "cardiac_mi.gan"``, a ``version``, the ``model`` name, its
``options`` and the networks' weights; a ``model`` checkpoint (``best.pt``) holds the inference
networks only, a ``training_state`` (``last.pt``) also the discriminators, optimizers,
schedulers, gradient scaler, epoch, history and random-number generator states.
"""

from __future__ import annotations

import dataclasses
import importlib
import os
from collections.abc import Callable, Iterable, Mapping
from contextlib import nullcontext
from pathlib import Path
from typing import Annotated, Any, ClassVar

import torch
import torch.distributed as dist
import torch.nn as nn
from pydantic import Field, model_validator

from lgemri.atomic import atomic_path
from lgemri.config import Checked, NonNegative, Positive, Rate
from lgemri.errors import InputError
from lgemri.labels import NUM_CLASSES
from lgemri.nets.checkpoint import _rng_states, _set_rng_states, load_weights_only, to_plain, unwrap

__all__ = [
    "CommonOptions",
    "BaseModel",
    "FORMAT",
    "FORMAT_VERSION",
    "available_models",
    "find_model",
    "create_model",
    "load_model",
    "read_gan_file",
]

FORMAT = "cardiac_mi.gan"
FORMAT_VERSION = 1
KINDS = ("model", "training_state", "encoder")
_PACKAGE_DIR = Path(__file__).resolve().parent


@dataclasses.dataclass
class CommonOptions(Checked):
    """Settings every model has (declared and checked as in :mod:`lgemri.config`).

    Attributes:
        lr: Adam learning rate of all networks (Pix2Pix: 2e-4).
        beta1: Adam beta1 (Pix2Pix: 0.5).
        num_classes: Classes of the masks (EMIDEC: 5).
        class_weights: One weight per class for the class-weighted image losses, from
            :func:`lgemri.losses.class_weights` of the training masks' class frequencies (the same
            definition as the segmentation loss); None = all ones. Set by the trainer.
    """

    lr: Annotated[Positive, Field(title="learning rate")] = 2e-4
    beta1: Rate = 0.5
    num_classes: Annotated[int, Field(ge=2)] = NUM_CLASSES
    class_weights: tuple[NonNegative, ...] | None = None

    @model_validator(mode="after")
    def _one_weight_per_class(self) -> CommonOptions:
        w = self.class_weights
        if w is not None and (len(w) != self.num_classes or sum(w) <= 0):
            raise InputError(f"class_weights must be {self.num_classes} non-negative numbers, got {w}")
        return self


class BaseModel:
    """Base of the GAN models; see the module docstring for the contract.

    Args:
        options: The model's ``Options`` or a mapping of some of its fields (the rest default).
        device: Where the networks live.
        is_train: Build the discriminators, losses and optimizers too.
        amp: Mixed precision (autocast + gradient scaling); effective on CUDA only.
        world_size: Number of ``torchrun`` processes; above 1 gradients are averaged over them
            before every optimizer step.

    Raises:
        InputError: Unknown or bad options (the message names the valid ones).
    """

    name: ClassVar[str] = ""
    Options: ClassVar[type] = CommonOptions
    loss_names: ClassVar[tuple[str, ...]] = ()
    visual_names: ClassVar[tuple[str, ...]] = ()
    model_names: ClassVar[tuple[str, ...]] = ()
    inference_names: ClassVar[tuple[str, ...]] = ()
    data_kind: ClassVar[str] = "paired"
    score: ClassVar[tuple[str, str]] = ("val_l1", "min")

    def __init__(
        self,
        options: Any = None,
        *,
        device: str | torch.device = "cpu",
        is_train: bool = True,
        amp: bool = False,
        world_size: int = 1,
    ) -> None:
        self.opt = self.make_options(options)
        self.device = torch.device(device)
        self.is_train = bool(is_train)
        self.world_size = int(world_size)
        self.use_amp = bool(amp and self.device.type == "cuda")
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.use_amp)
        self.optimizers: list[torch.optim.Optimizer] = []
        self.schedulers: list[Any] = []
        weights = self.opt.class_weights or (1.0,) * self.opt.num_classes
        self.class_weight_table = torch.tensor(weights, dtype=torch.float32, device=self.device)
        self.build()
        for name in self.active_model_names:
            getattr(self, f"net{name}").to(self.device)

    # ---------------------------------------------------------------------------------------
    # what a subclass implements

    def build(self) -> None:
        """Create ``self.net<name>`` for the networks (discriminators only when training), the
        losses and ``self.optimizers``."""
        raise NotImplementedError

    def set_input(self, batch: Mapping[str, Any]) -> None:
        """Take one batch from the model's dataset (moved to the device here)."""
        raise NotImplementedError

    def forward(self) -> None:
        """Compute the generated visuals from the current input."""
        raise NotImplementedError

    def optimize_parameters(self) -> None:
        """One training step on the current input: forward, update D, update G."""
        raise NotImplementedError

    def validation_metrics(self) -> dict[str, torch.Tensor]:
        """Per-sample validation values ``{name: (N,) tensor}`` for the current input (call after
        :meth:`test`); the trainer averages them over the validation set."""
        raise NotImplementedError

    def generate(self, batch: Mapping[str, Any]) -> torch.Tensor:
        """The model's main output for ``batch`` (the synthesised LGE images), without gradients."""
        raise NotImplementedError

    # ---------------------------------------------------------------------------------------
    # provided

    @classmethod
    def make_options(cls, options: Any = None) -> Any:
        """``options`` (an ``Options``, a mapping or None) as a validated ``Options``."""
        if isinstance(options, cls.Options):
            opt = dataclasses.replace(options)
        else:
            values = dict(options or {})
            valid = {f.name for f in dataclasses.fields(cls.Options)}
            unknown = sorted(set(values) - valid)
            if unknown:
                raise InputError(
                    f"unknown {cls.name} option(s) {', '.join(unknown)}; valid options: {', '.join(sorted(valid))}"
                )
            opt = cls.Options(**values)
        opt.validate()  # JSON/torch.load's lists become tuples
        return opt

    @property
    def active_model_names(self) -> tuple[str, ...]:
        """The networks this instance holds: all when training, the inference ones otherwise."""
        return tuple(n for n in self.model_names if getattr(self, f"net{n}", None) is not None)

    def networks(self) -> dict[str, nn.Module]:
        return {n: getattr(self, f"net{n}") for n in self.active_model_names}

    def pixel_weights(self, mask: torch.Tensor) -> torch.Tensor:
        """``(N, 1, H, W)`` class weight of the label under each pixel of ``mask (N, H, W)``."""
        return self.class_weight_table[mask.long()].unsqueeze(1)

    def autocast(self):
        return torch.autocast(device_type="cuda") if self.use_amp else nullcontext()

    def make_optimizer(self, nets: Iterable[nn.Module]) -> torch.optim.Optimizer:
        params = [p for net in nets for p in net.parameters()]
        return torch.optim.Adam(params, lr=self.opt.lr, betas=(self.opt.beta1, 0.999))

    def backward(self, loss: torch.Tensor) -> None:
        """Backpropagate ``loss`` (scaled under mixed precision)."""
        self.scaler.scale(loss).backward()

    def step(self, optimizer: torch.optim.Optimizer, nets: Iterable[nn.Module]) -> None:
        """Average the gradients of ``nets`` over ``torchrun`` ranks, then step ``optimizer``."""
        if self.world_size > 1:
            _average_gradients(nets, self.world_size)
        self.scaler.step(optimizer)

    def end_step(self) -> None:
        """Call once per iteration after every optimizer stepped (gradient-scaler update)."""
        self.scaler.update()

    def broadcast_parameters(self) -> None:
        """Copy rank 0's weights to every rank (under ``torchrun``)."""
        if self.world_size > 1:
            for net in self.networks().values():
                for tensor in list(net.parameters()) + list(net.buffers()):
                    dist.broadcast(tensor.data, src=0)

    def setup_schedulers(self, lr_lambda: Callable[[int], float]) -> None:
        """One ``LambdaLR`` per optimizer, stepped once per epoch by :meth:`update_learning_rate`."""
        self.schedulers = [torch.optim.lr_scheduler.LambdaLR(o, lr_lambda) for o in self.optimizers]

    def update_learning_rate(self) -> float:
        """Step the schedulers; returns the learning rate used in the epoch that ended."""
        lr = self.optimizers[0].param_groups[0]["lr"] if self.optimizers else float("nan")
        for scheduler in self.schedulers:
            scheduler.step()
        return lr

    def train(self) -> None:
        for net in self.networks().values():
            net.train()

    def eval(self) -> None:
        for net in self.networks().values():
            net.eval()

    def test(self) -> None:
        """Forward without gradients (for validation and visuals)."""
        with torch.no_grad(), self.autocast():
            self.forward()

    def get_current_losses(self) -> dict[str, float]:
        names = [n for n in self.loss_names if hasattr(self, f"loss_{n}")]
        return {n: float(torch.as_tensor(getattr(self, f"loss_{n}")).detach()) for n in names}

    def get_current_visuals(self) -> dict[str, torch.Tensor]:
        """``{name: (N, C, H, W) or (N, H, W) tensor}`` on the CPU, detached."""
        return {n: getattr(self, n).detach().float().cpu() for n in self.visual_names if hasattr(self, n)}

    def parameter_counts(self) -> dict[str, int]:
        return {n: sum(p.numel() for p in net.parameters()) for n, net in self.networks().items()}

    # ---------------------------------------------------------------------------------------
    # saving and loading

    def _payload(self, kind: str, extra: Mapping | None) -> dict:
        names = self.inference_names if kind == "model" else self.active_model_names
        return {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "kind": kind,
            "model": self.name,
            "options": to_plain(dataclasses.asdict(self.opt)),
            "networks": {
                n: {k: v.detach().cpu().clone() for k, v in unwrap(getattr(self, f"net{n}")).state_dict().items()}
                for n in names
            },
            "extra": to_plain(dict(extra or {})),
        }

    def save(self, path: str | os.PathLike, extra: Mapping | None = None) -> Path:
        """Write a model checkpoint (inference networks, options, ``extra``) atomically."""
        return _save(path, self._payload("model", extra))

    def save_training_state(
        self, path: str | os.PathLike, *, epoch: int, history: list | None = None, extra: Mapping | None = None
    ) -> Path:
        """Write everything needed to resume training (``last.pt``) atomically."""
        payload = self._payload("training_state", extra)
        payload.update(
            {
                "epoch": int(epoch),
                "optimizers": [o.state_dict() for o in self.optimizers],
                "schedulers": [s.state_dict() for s in self.schedulers],
                "scaler": self.scaler.state_dict() if self.use_amp else None,
                "rng": _rng_states(),
                "history": to_plain(list(history or [])),
            }
        )
        return _save(path, payload)

    def load(self, path: str | os.PathLike, *, restore_rng: bool = True) -> dict:
        """Load a checkpoint of this model into this instance.

        A model checkpoint fills the inference networks; a training state fills every network
        and, when training, the optimizers, schedulers and gradient scaler (and the random
        generators with ``restore_rng``).

        Returns:
            ``{"kind", "epoch", "history", "extra", "options", "path"}``.

        Raises:
            InputError: Not one of our files, a checkpoint of another model, options that build
                other networks, or weights that do not fit.
        """
        path = Path(path)
        return self._load_payload(path, read_gan_file(path, model=self.name), restore_rng)

    def _load_payload(self, path: Path, payload: dict, restore_rng: bool) -> dict:
        if payload.get("model") != self.name:
            raise InputError(f"{path}: holds a {payload.get('model')!r} checkpoint, expected a {self.name!r} one")
        saved = self.make_options(payload.get("options") or {})
        if _network_options(saved) != _network_options(self.opt):
            raise InputError(
                f"{path}: the checkpoint's {self.name} networks were built with {_network_options(saved)}, "
                f"this model with {_network_options(self.opt)}"
            )
        wanted = self.inference_names if payload["kind"] == "model" else self.active_model_names
        networks = payload.get("networks") or {}
        try:
            for n in wanted:
                if n not in networks:
                    raise KeyError(f"network {n!r} missing")
                unwrap(getattr(self, f"net{n}")).load_state_dict(networks[n], strict=True)
            if payload["kind"] == "training_state" and self.is_train:
                for optimizer, state in zip(self.optimizers, payload.get("optimizers") or []):
                    optimizer.load_state_dict(state)
                for scheduler, state in zip(self.schedulers, payload.get("schedulers") or []):
                    scheduler.load_state_dict(state)
                if self.use_amp and payload.get("scaler"):
                    self.scaler.load_state_dict(payload["scaler"])
        except (RuntimeError, KeyError, ValueError) as exc:
            first = str(exc).strip().splitlines()[0]
            raise InputError(f"{path}: saved state does not fit this {self.name} model: {first}") from None
        for net in self.networks().values():
            net.to(self.device)
        if payload["kind"] == "training_state" and restore_rng:
            _set_rng_states(payload.get("rng") or {})
        return {
            "kind": payload["kind"],
            "epoch": int(payload.get("epoch", 0) or 0),
            "history": list(payload.get("history") or []),
            "extra": payload.get("extra") or {},
            "options": payload.get("options") or {},
            "path": str(path),
        }


_TRAINING_ONLY_OPTIONS = {
    "lr",
    "beta1",
    "class_weights",
    "gan_mode",
    "lambda_l1",
    "lambda_cycle",
    "lambda_identity",
    "pool_size",
    "cycle_weighting",
    "background_weight",
}


def _network_options(opt: Any) -> dict:
    """The options that shape the networks (the rest may change between runs)."""
    return {k: v for k, v in dataclasses.asdict(opt).items() if k not in _TRAINING_ONLY_OPTIONS}


def _average_gradients(nets: Iterable[nn.Module], world_size: int) -> None:
    grads = [p.grad for net in nets for p in net.parameters() if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= world_size
    offset = 0
    for g in grads:
        g.copy_(flat[offset : offset + g.numel()].view_as(g))
        offset += g.numel()


def _save(path: str | os.PathLike, payload: dict) -> Path:
    path = Path(path)
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return path


def read_gan_file(
    path: str | os.PathLike, *, model: str | None = None, kind: str | None = None, device: str | torch.device = "cpu"
) -> dict:
    """Load and check one of our GAN files with ``weights_only=True``.

    Args:
        path: The file.
        model: When given, the model name the file must hold.
        kind: When given, ``model``, ``training_state`` or ``encoder``.

    Raises:
        InputError: Missing, unreadable or foreign file, a newer format, another model or kind.
    """
    path = Path(path)
    payload = load_weights_only(path, device, "cardiac_mi GAN checkpoint")
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        other = payload.get("format") if isinstance(payload, dict) else None
        hint = f" (it is a {other!r} file: a segmentation network?)" if other else ""
        raise InputError(f"{path}: not a cardiac_mi GAN checkpoint (no '{FORMAT}' format marker){hint}")
    version = payload.get("version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise InputError(
            f"{path}: GAN checkpoint format version {version!r} is newer than this code reads ({FORMAT_VERSION})"
        )
    if payload.get("kind") not in KINDS:
        raise InputError(f"{path}: malformed GAN checkpoint (kind {payload.get('kind')!r})")
    if kind is not None and payload["kind"] != kind:
        raise InputError(f"{path}: a GAN file of kind {payload['kind']!r}, expected kind {kind!r}")
    if model is not None and payload.get("model") != model:
        raise InputError(
            f"{path}: holds a {payload.get('model')!r} checkpoint, expected a {model!r} one "
            f"(train one with 'cardiac-mi gan train --model {model}')"
        )
    return payload


# --------------------------------------------------------------------------------------------
# finding models by name


def available_models() -> tuple[str, ...]:
    """Names of the models in this package: every ``gan/<name>_model.py`` (no import needed)."""
    files = _PACKAGE_DIR.glob("*_model.py")
    return tuple(sorted(p.name.removesuffix("_model.py") for p in files if p.name != "base_model.py"))


def find_model(name: str) -> type[BaseModel]:
    """The :class:`BaseModel` subclass of ``gan/<name>_model.py`` whose ``name`` is ``name``.

    Raises:
        InputError: No such model (the message lists the available ones).
    """
    choices = available_models()
    if name not in choices:
        raise InputError(f"unknown GAN model {name!r}; choose from {', '.join(choices)}")
    module = importlib.import_module(f"{__package__}.{name}_model")
    for value in vars(module).values():
        if isinstance(value, type) and issubclass(value, BaseModel) and value is not BaseModel and value.name == name:
            return value
    raise InputError(f"gan/{name}_model.py defines no BaseModel subclass named {name!r}")


def create_model(name: str, options: Any = None, **kwargs: Any) -> BaseModel:
    """Build model ``name`` with ``options``; ``kwargs`` as for :class:`BaseModel`."""
    return find_model(name)(options, **kwargs)


def load_model(
    path: str | os.PathLike, model: str | None = None, device: str | torch.device = "cpu"
) -> tuple[BaseModel, dict]:
    """Rebuild the model of a checkpoint (``best.pt`` or ``last.pt``) for inference, in eval mode.

    Args:
        path: The checkpoint.
        model: When given, the model the checkpoint must hold (``pix2pix``, ``cyclegan``).
        device: Where the networks go.

    Returns:
        ``(model, meta)``, ``meta`` as :meth:`BaseModel.load` returns it plus ``model``.

    Raises:
        InputError: As :func:`read_gan_file`, or weights that do not fit.
    """
    payload = read_gan_file(path, model=model)
    if payload["kind"] == "encoder":
        raise InputError(f"{path}: a feature-extractor encoder, not a GAN model checkpoint")
    instance = create_model(payload.get("model", ""), payload.get("options") or {}, device=device, is_train=False)
    meta = instance._load_payload(Path(path), payload, restore_rng=False)
    instance.eval()
    meta["model"] = instance.name
    return instance, meta
