"""Tests for lgemri.training.engine: the hook contract on a toy task (a line fit), what the engine
owns (run folder, best by the task's score direction, resume, time budget, epochs warning)."""

from __future__ import annotations

import dataclasses
import json
import logging

import pytest
import torch

from lgemri.errors import InputError
from lgemri.training import run_folder
from lgemri.training.config import BaseTrainConfig
from lgemri.training.engine import Curve, Panel, Trainer, lr_lambda


class _Line(torch.utils.data.Dataset):
    """y = 3x + 1 with noise from the epoch's generators (as augmentation would draw)."""

    sample_weights = None

    def __init__(self, n: int) -> None:
        self.x = torch.linspace(-1, 1, n).unsqueeze(1)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def describe(self) -> dict:
        return {"slices": len(self.x)}

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i):
        return self.x[i], 3 * self.x[i] + 1


@dataclasses.dataclass(kw_only=True)
class _LineConfig(BaseTrainConfig):
    lr: float = 0.1
    minutes: float | None = None


class _LineTrainer(Trainer):
    score_mode = "min"
    loss_keys = ("train_mse",)
    label = "line"

    def prepare(self):
        return _Line(12), _Line(5)

    def build(self):
        self.net = torch.nn.Linear(1, 1)
        self.opt = torch.optim.SGD(self.net.parameters(), lr=self.config.lr)
        self.sched = torch.optim.lr_scheduler.LambdaLR(self.opt, self.lr_lambda)

    def load_state(self, path):
        state = torch.load(path, weights_only=True)
        self.net.load_state_dict(state["net"])
        self.opt.load_state_dict(state["opt"])
        self.sched.load_state_dict(state["sched"])
        return state

    def train_mode(self):
        self.net.train()

    def train_step(self, batch):
        x, y = batch
        loss = torch.nn.functional.mse_loss(self.net(x + 0.01 * torch.randn_like(x)), y)
        self.opt.zero_grad()
        loss.backward()
        self.opt.step()
        return {"train_mse": loss}, len(x)

    def step_schedule(self):
        lr = self.opt.param_groups[0]["lr"]
        self.sched.step()
        return lr

    def validate(self):
        with torch.no_grad():
            x, y = self.val_ds.x, 3 * self.val_ds.x + 1
            return {"val_mse": float(torch.nn.functional.mse_loss(self.net(x), y))}

    def score(self, metrics):
        return metrics["val_mse"]

    def save_best(self, path, extra):
        torch.save({"net": self.net.state_dict(), "extra": extra}, path)

    def save_last(self, path, epoch, history, extra):
        state = {"net": self.net.state_dict(), "opt": self.opt.state_dict(), "sched": self.sched.state_dict()}
        torch.save({**state, "epoch": epoch, "history": history, "extra": extra}, path)

    def history_record(self):
        return {"best": self.best, "epochs": self.history}

    def curve_panels(self):
        return [Panel("line: loss", "MSE", [Curve("train_mse", "train"), Curve("val_mse", "validation")], yscale="log")]

    def epoch_message(self, metrics):
        return f"val MSE {metrics['val_mse']:.4f}"

    def out_of_time(self, elapsed_s):
        return self.config.minutes is not None and elapsed_s / 60 >= self.config.minutes

    def summary_extra(self):
        return {"task": "line"}


def _fit(out, **kwargs) -> dict:
    kwargs = {"data": ["toy"], "out": str(out), "epochs": 4, "batch_size": 4, "progress": False, **kwargs}
    return _LineTrainer.fit(_LineConfig(**kwargs))


def test_a_subclass_gets_the_run_folder_best_by_its_score_and_resume(tmp_path):
    whole = _fit(tmp_path / "whole")
    names = (run_folder.BEST, run_folder.LAST, run_folder.HISTORY, run_folder.CURVES, run_folder.CONFIG)
    assert all((tmp_path / "whole" / name).is_file() for name in names)
    history = json.loads((tmp_path / "whole" / run_folder.HISTORY).read_text())["epochs"]
    assert [h["epoch"] for h in history] == [1, 2, 3, 4] and all(h["steps"] == 3 for h in history)
    assert whole["best_score"] == min(h["val_mse"] for h in history) and whole["task"] == "line"
    config = json.loads((tmp_path / "whole" / run_folder.CONFIG).read_text())
    assert config["config"]["lr"] == 0.1 and config["resumed_after_epoch"] is None
    # interrupted by the time budget after the first epoch, then resumed: the same weights
    first = _fit(tmp_path / "parts", minutes=1e-9)
    assert first["epochs_completed"] == 1 and first["stopped_early"]
    with pytest.raises(InputError, match="already holds a training run"):
        _fit(tmp_path / "parts")
    second = _fit(tmp_path / "parts", resume=True)
    assert second["epochs_completed"] == 4 and second["best_epoch"] == whole["best_epoch"]
    a = torch.load(tmp_path / "whole" / run_folder.LAST, weights_only=True)["net"]
    b = torch.load(tmp_path / "parts" / run_folder.LAST, weights_only=True)["net"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_resuming_with_other_epochs_warns(tmp_path, caplog):
    _fit(tmp_path / "run", stop_after=1)
    with caplog.at_level(logging.WARNING, logger="lgemri.training.engine"):
        _fit(tmp_path / "run", resume=True, epochs=2)
    assert "the run was started with 4" in caplog.text
    with pytest.raises(InputError, match="nothing to resume"):
        _fit(tmp_path / "none", resume=True)


def test_lr_schedules():
    assert [round(lr_lambda("linear", 4)(e), 3) for e in range(5)] == [1.0, 1.0, 1.0, 0.5, 0.0]
    assert lr_lambda("cosine", 4)(4) == pytest.approx(0.0) and lr_lambda("poly", 4)(0) == 1.0
    assert lr_lambda("constant", 4)(3) == 1.0
    with pytest.raises(InputError, match="unknown LR schedule 'linear'; choose from cosine, poly, constant"):
        _LineConfig(data=["toy"], out="x", lr_schedule="linear").validate()
