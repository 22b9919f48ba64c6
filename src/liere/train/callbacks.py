"""Callbacks: learning-curve recording (with training wall time), CPU thread setup, crash injection for tests."""

from __future__ import annotations

import os
import signal
import time

import lightning as L

__all__ = ["CurveRecorder", "KillAtStep"]


class CurveRecorder(L.Callback):
    """Record, at every validation, (epoch, step, samples, train seconds, train loss, val loss, val acc).

    ``train_time`` is wall time spent in the training loop, validation excluded, so
    "time to reach accuracy X" compares methods fairly. ``train_cpu`` is the CPU time of
    the same spans: on a shared machine (parallel runs, a study beside other work) it
    measures the run's own compute where wall time also counts the neighbours. The records are part of the
    checkpoint, so a resumed run keeps its whole curve (times continue from the saved value).
    """

    def __init__(self):
        self.points: list[dict] = []
        self.train_time = 0.0
        self.train_cpu = 0.0
        self._t0: float | None = None
        self._c0 = 0.0
        self._loss_sum, self._loss_n = 0.0, 0

    def state_dict(self) -> dict:
        return {"points": self.points, "train_time": self.train_time + self._running(),
                "train_cpu": self.train_cpu + self._running_cpu(),
                "loss_sum": self._loss_sum, "loss_n": self._loss_n}

    def load_state_dict(self, state: dict) -> None:
        self.points, self.train_time = list(state["points"]), float(state["train_time"])
        self.train_cpu = float(state.get("train_cpu", 0.0))
        self._loss_sum, self._loss_n = float(state.get("loss_sum", 0.0)), int(state.get("loss_n", 0))

    def _running(self) -> float:
        return 0.0 if self._t0 is None else time.perf_counter() - self._t0

    def _running_cpu(self) -> float:
        return 0.0 if self._t0 is None else time.process_time() - self._c0

    def _start(self):
        self._t0, self._c0 = time.perf_counter(), time.process_time()

    def _pause(self):
        self.train_time += self._running()
        self.train_cpu += self._running_cpu()
        self._t0 = None

    def on_train_epoch_start(self, trainer, pl_module):
        self._start()

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if self._t0 is None:
            self._start()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        if loss is not None:
            self._loss_sum += float(loss.detach())
            self._loss_n += 1

    def on_validation_start(self, trainer, pl_module):
        self._pause()

    def on_validation_end(self, trainer, pl_module):
        if trainer.sanity_checking:
            return
        metrics = trainer.callback_metrics
        point = {
            "epoch": trainer.current_epoch,
            "step": trainer.global_step,
            "samples": trainer.global_step * pl_module.cfg.batch_size * trainer.world_size,
            "train_time": round(self.train_time, 4),
            "train_cpu": round(self.train_cpu, 4),
            "train_loss": self._loss_sum / self._loss_n if self._loss_n else None,
            "val_loss": float(metrics["val/loss"]) if "val/loss" in metrics else None,
            "val_acc": float(metrics["val/acc"]) if "val/acc" in metrics else None,
        }
        self._loss_sum, self._loss_n = 0.0, 0
        self.points.append(point)

    def on_train_epoch_end(self, trainer, pl_module):
        self._pause()

    def on_train_end(self, trainer, pl_module):
        self._pause()


class KillAtStep(L.Callback):
    """Test hook: SIGKILL this process after optimizer step ``step`` (no cleanup, like a node failure)."""

    def __init__(self, step: int):
        self.step = step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.global_step >= self.step:
            os.kill(os.getpid(), signal.SIGKILL)
