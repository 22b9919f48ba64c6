"""The LightningModule: a ViT classifier or a causal LM, trained with Adam(W) and warmup + cosine.

Learning rate at optimizer step t (T steps in all, W of warmup):

    lr(t) = lr * (t + 1) / W                                          for t < W
    lr(t) = lr * (r + (1 - r) * (1 + cos(pi * (t - W) / (T - W))) / 2)  after,   r = min_lr_ratio

Augmentation (kornia, on whole batches, on the device) and normalisation run in
``training_step``; the global RNG is re-seeded from (seed, step, rank) at every
step so a resumed run draws the same augmentations as an uninterrupted one.
Validation sums the loss and the number of correct predictions over all ranks,
so the metrics are exact whatever the number of processes.
"""

from __future__ import annotations

import math
import time

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn

from liere.models import build_model

from .config import TrainConfig, config_from

__all__ = ["LieRETask", "model_from_config", "cosine_lr"]


def cosine_lr(step: int, total: int, warmup: int, min_ratio: float) -> float:
    """Multiplier of the base learning rate at ``step`` (see the module docstring)."""
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def model_from_config(cfg: TrainConfig, info) -> nn.Module:
    """Build the model a config and a ``DatasetInfo`` describe."""
    common = dict(block_size=cfg.block_size, share_layers=cfg.share_layers, share_heads=cfg.share_heads,
                  convention=cfg.convention, drop_path=cfg.drop_path, pe_options=dict(cfg.pe_options))
    common.update({k: v for k, v in (("dim", cfg.dim), ("depth", cfg.depth), ("num_heads", cfg.num_heads)) if v})
    if info.kind == "text":
        return build_model("lm", cfg.size, cfg.method, vocab_size=info.vocab_size,
                           context_length=info.input_shape[0], **common)
    patch = cfg.patch_size if isinstance(cfg.patch_size, int) else tuple(cfg.patch_size)
    if isinstance(patch, tuple) and len(patch) == 2 and len(info.input_shape) == 3:
        patch = (1, *patch)
    return build_model("vit", cfg.size, cfg.method, input_shape=info.input_shape, patch_size=patch,
                       in_chans=info.in_chans, num_classes=info.num_classes, pool=cfg.pool,
                       num_registers=cfg.num_registers, position_jitter=cfg.position_jitter, **common)


class LieRETask(L.LightningModule):
    """Classification (image/video/volume) or next-token prediction (text), per ``info.kind``."""

    def __init__(self, config: dict, info: dict, steps_per_epoch: int):
        super().__init__()
        self.save_hyperparameters()
        from liere.data import DatasetInfo

        self.cfg = config_from(config)
        self.info = DatasetInfo(**info)
        self.steps_per_epoch = steps_per_epoch
        self.model = model_from_config(self.cfg, self.info)
        self.normalize = nn.Identity()
        self.augment = nn.Identity()
        if self.info.kind != "text":
            from liere.data.transforms import Normalize, build_train_augmentation

            self.normalize = Normalize(self.info.mean, self.info.std)
            name = self.info.default_augment if self.cfg.augment == "default" else self.cfg.augment
            if name not in (None, "none"):
                size = self.info.input_shape[-2:]
                self.augment = build_train_augmentation(name, size, video=len(self.info.input_shape) == 3)
        self._val_sums: torch.Tensor | None = None
        self.compile_s: float | None = None  # wall time of the first (compiling) training step

    # ----- steps ------------------------------------------------------------------------
    def network(self) -> nn.Module:
        """The model, or with ``compile`` its ``torch.compile`` wrapper (kept out of the state dict, so a
        checkpoint loads into a compiled or an eager run alike)."""
        if not self.cfg.compile:
            return self.model
        compiled = self.__dict__.get("_compiled")
        if compiled is None:
            compiled = self.__dict__["_compiled"] = torch.compile(self.model)
        return compiled

    def forward(self, x):
        return self.network()(x)

    def on_train_batch_start(self, batch, batch_idx):
        if self.cfg.compile and self.compile_s is None:
            self._first_step_t0 = time.perf_counter()

    def on_train_batch_end(self, outputs, batch, batch_idx):
        if self.cfg.compile and self.compile_s is None:
            self.compile_s = time.perf_counter() - self._first_step_t0

    def _loss(self, x, y, smoothing: float = 0.0):
        if self.info.kind != "text":
            x = self.normalize(x)
        logits = self.network()(x)
        if logits.ndim == 3:  # LM: (B, T, V) against (B, T)
            logits, y = logits.flatten(0, 1), y.flatten()
        loss = F.cross_entropy(logits.float(), y, label_smoothing=smoothing, reduction="none")
        correct = logits.argmax(-1) == y
        return loss, correct

    def training_step(self, batch, batch_idx):
        x, y = batch
        # Step-indexed seed: augmentation and stochastic depth do not depend on the run's history.
        torch.manual_seed(self.cfg.seed * 1_000_003 + self.global_step * max(1, self.trainer.world_size)
                          + self.global_rank)
        if not isinstance(self.augment, nn.Identity):
            with torch.no_grad():
                x = self.augment(x)
        loss, correct = self._loss(x, y, self.cfg.label_smoothing)
        loss = loss.mean()
        self.log("train/loss", loss, prog_bar=True, on_step=True, on_epoch=False)
        self.log("train/acc", correct.float().mean(), on_step=True, on_epoch=False)
        return loss

    def on_validation_epoch_start(self):
        self._val_sums = torch.zeros(3, dtype=torch.float64, device=self.device)

    def validation_step(self, batch, batch_idx):
        x, y = batch
        loss, correct = self._loss(x, y)
        self._val_sums += torch.stack([loss.double().sum(), correct.double().sum(),
                                       torch.tensor(float(loss.numel()), dtype=torch.float64, device=loss.device)])

    def on_validation_epoch_end(self):
        sums = self.trainer.strategy.reduce(self._val_sums, reduce_op="sum")
        loss, acc = (sums[0] / sums[2]).float(), (sums[1] / sums[2]).float()
        self.log("val/loss", loss, prog_bar=True, sync_dist=False)
        self.log("val/acc", acc, prog_bar=True, sync_dist=False)
        if self.info.kind == "text":
            self.log("val/bpc", loss / math.log(2.0), sync_dist=False)

    # ----- optimisation -----------------------------------------------------------------
    def configure_optimizers(self):
        cfg = self.cfg
        decay, no_decay = [], []
        # No decay for biases and norms (ndim < 2), nor for what the model declares (timm/nanoGPT's
        # ``no_weight_decay()``): its tokens and position encoding, since shrinking generators shrinks rotations.
        skip = self.model.no_weight_decay() if hasattr(self.model, "no_weight_decay") else set()
        for name, p in self.model.named_parameters():
            if p.requires_grad:
                (no_decay if p.ndim < 2 or name in skip else decay).append(p)
        groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
        betas = tuple(cfg.betas)
        if cfg.optimizer == "adam":  # weight_decay is an L2 penalty here; the LieRE CIFAR recipe sets it to 0
            opt = torch.optim.Adam(groups, lr=cfg.lr, betas=betas)
        else:
            opt = torch.optim.AdamW(groups, lr=cfg.lr, betas=betas)
        total = self.total_steps()
        warmup = min(int(round(cfg.warmup_epochs * self.steps_per_epoch)), max(0, total - 1))
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda step: cosine_lr(step, total, warmup, cfg.min_lr_ratio)
        )
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    def total_steps(self) -> int:
        # steps_per_epoch is computed by the caller from the dataset size and world size: asking the
        # trainer (estimated_stepping_batches) would build the train loader before a checkpoint is restored.
        total = self.cfg.epochs * self.steps_per_epoch
        return min(total, self.cfg.max_steps) if self.cfg.max_steps > 0 else total
