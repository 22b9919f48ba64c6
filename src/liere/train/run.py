"""``fit(cfg)``: one training run, end to end, returning (and writing) its results.

Run directory layout (``cfg.out``)::

    config.yaml        the full resolved config
    checkpoints/       last.ckpt (also every N steps), best.ckpt (best val/acc); atomic writes
    logs/version_*/    metrics.csv (and TensorBoard events with --logger tensorboard)
    result.json        final metrics, the learning curve, accuracy at each evaluation size, timings
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import asdict
from pathlib import Path

import torch

from .checkpoint import AtomicCheckpointIO, read_checkpoint, resolve_resume
from .config import ConfigError, TrainConfig, validate
from .data import DataModule, build_split
from .jsonio import write_json

__all__ = ["fit", "evaluate", "resolve_precision", "default_threads"]


def resolve_precision(precision: str, accelerator: str = "auto") -> str:
    """"auto": bf16-mixed on GPUs that support it, else full fp32 (CPU bf16 autocast is slow on most CPUs)."""
    if precision != "auto":
        return {"32": "32-true", "64": "64-true"}.get(precision, precision)
    if accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available() and torch.cuda.is_bf16_supported():
        return "bf16-mixed"
    return "32-true"


def default_threads(processes: int = 1) -> int:
    """CPU threads per process: the cores this process may use, split between processes."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        cores = os.cpu_count() or 1
    return max(1, cores // max(1, processes))


@torch.no_grad()
def evaluate(module, dataset, batch_size: int = 256, precision: str = "32-true") -> dict:
    """Loss and accuracy of a ``LieRETask`` on a dataset (single process, eval mode)."""
    device = module.device
    was_training = module.training
    module.eval()
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size)
    sums = torch.zeros(3, dtype=torch.float64)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision.startswith("bf16"))
    with autocast:
        for x, y in loader:
            loss, correct = module._loss(x.to(device), y.to(device))
            sums += torch.tensor([loss.double().sum().item(), correct.double().sum().item(), loss.numel()])
    module.train(was_training)
    return {"loss": float(sums[0] / sums[2]), "acc": float(sums[1] / sums[2]), "n": int(sums[2])}


def check_checkpoint_fits(path: str, module) -> None:
    """ConfigError unless the checkpoint's weights have the names and shapes of ``module``'s (same model)."""
    try:
        saved = read_checkpoint(path)["state_dict"]
    except ValueError as e:
        raise ConfigError(f"--resume: checkpoint {path} cannot be used: {e}") from None
    want = {k: tuple(v.shape) for k, v in module.state_dict().items()}
    have = {k: tuple(getattr(v, "shape", ())) for k, v in saved.items()}
    missing, extra = sorted(set(want) - set(have)), sorted(set(have) - set(want))
    differ = sorted(k for k in set(want) & set(have) if want[k] != have[k])
    if missing or extra or differ:
        first = (f"missing {missing[0]}" if missing else f"unexpected {extra[0]}" if extra
                 else f"{differ[0]} is {have[differ[0]]}, the model has {want[differ[0]]}")
        raise ConfigError(f"--resume: checkpoint {path} was saved by a different model than this config builds "
                          f"({len(missing) + len(extra) + len(differ)} weights differ, e.g. {first}); resume with "
                          "the run's own config (drop flags that change the model)")


def _progress_callback(kind: str):
    if kind == "rich":
        from lightning.pytorch.callbacks import RichProgressBar

        return RichProgressBar(leave=True)
    if kind == "tqdm":
        from lightning.pytorch.callbacks import TQDMProgressBar

        return TQDMProgressBar()
    return None


def _logger(cfg: TrainConfig, run_dir: Path):
    if cfg.logger == "none":
        return False
    if cfg.logger == "tensorboard":
        try:
            from lightning.pytorch.loggers import TensorBoardLogger

            return TensorBoardLogger(save_dir=str(run_dir), name="logs")
        except ModuleNotFoundError as e:
            raise ConfigError(f"--logger: tensorboard is not installed ({e})") from None
    from lightning.pytorch.loggers import CSVLogger

    return CSVLogger(save_dir=str(run_dir), name="logs")


def fit(cfg: TrainConfig, *, callbacks=(), run_dir: str | os.PathLike | None = None, quiet: bool = False) -> dict | None:
    """Train one model. Returns the result dict on rank 0 (None on other ranks).

    On CPU, torch's thread count is set for the run (``cfg.threads``, default: the cores
    divided among the processes) and restored afterwards.
    """
    cfg = validate(cfg)
    run_dir = Path(run_dir or cfg.out or f"runs/train-{cfg.method}-{time.strftime('%Y%m%d-%H%M%S')}")
    devices = cfg.devices
    processes = (devices if isinstance(devices, int) else 1) * cfg.num_nodes
    on_cpu = cfg.accelerator == "cpu" or (cfg.accelerator == "auto" and not torch.cuda.is_available())
    threads_before = torch.get_num_threads()
    if on_cpu:
        torch.set_num_threads(cfg.threads or default_threads(processes))
    try:
        return _fit(cfg, callbacks, run_dir, quiet)
    finally:
        torch.set_num_threads(threads_before)


def _fit(cfg: TrainConfig, callbacks, run_dir: Path, quiet: bool) -> dict | None:
    import lightning as L
    from lightning.pytorch.callbacks import ModelCheckpoint

    from .callbacks import CurveRecorder
    from .module import LieRETask

    precision = resolve_precision(cfg.precision, cfg.accelerator)
    devices = cfg.devices
    # Everything that can be checked is checked before the run directory is touched (config.yaml, logs).
    point = resolve_resume(run_dir, cfg.resume)
    resume = None if point is None else point.path
    datamodule = DataModule(cfg)

    recorder = CurveRecorder()
    cbs = [recorder, *callbacks]
    if cfg.checkpoints:
        ckpt_dir = run_dir / "checkpoints"
        cbs.append(ModelCheckpoint(dirpath=ckpt_dir, filename="step{step}", save_last=True, save_top_k=0,
                                   every_n_train_steps=cfg.checkpoint_every_n_steps, auto_insert_metric_name=False))
        cbs.append(ModelCheckpoint(dirpath=ckpt_dir, filename="best", monitor="val/acc", mode="max", save_top_k=1,
                                   auto_insert_metric_name=False))
    bar = None if quiet else _progress_callback(cfg.progress)
    if bar is not None:
        cbs.append(bar)
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    # The model is built (and a resumed checkpoint checked against it) before the Trainer, which prints.
    try:
        module = LieRETask(cfg.to_dict(), asdict(datamodule.info), 1)
    except (ValueError, TypeError) as e:  # a method/option the task's model cannot take
        raise ConfigError(f"--method {cfg.method}: cannot build the model for the {cfg.task} task ({e})") from None
    if resume is not None:
        check_checkpoint_fits(resume, module)
    trainer = L.Trainer(
        accelerator=cfg.accelerator, devices=devices, num_nodes=cfg.num_nodes, strategy=cfg.strategy,
        precision=precision, max_epochs=cfg.epochs, max_steps=cfg.max_steps, callbacks=cbs,
        logger=_logger(cfg, run_dir), plugins=[AtomicCheckpointIO()], use_distributed_sampler=False,
        val_check_interval=cfg.val_every, gradient_clip_val=cfg.grad_clip, num_sanity_val_steps=0,
        enable_progress_bar=bar is not None, enable_model_summary=False, enable_checkpointing=cfg.checkpoints,
        default_root_dir=str(run_dir), log_every_n_steps=10,
    )
    world = trainer.world_size
    steps_per_epoch = math.ceil(math.ceil(len(datamodule.train_set) / world) / cfg.batch_size)
    module.steps_per_epoch = module.hparams["steps_per_epoch"] = steps_per_epoch  # known once the world size is
    if trainer.global_rank == 0:
        run_dir.mkdir(parents=True, exist_ok=True)
        import yaml

        (run_dir / "config.yaml").write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
    t0 = time.perf_counter()
    trainer.fit(module, datamodule=datamodule, ckpt_path=resume)
    wall = time.perf_counter() - t0
    if trainer.global_rank != 0:
        return None

    info = datamodule.info
    train_size = info.input_shape[0] if info.kind == "text" else info.input_shape[-1]
    sizes = sorted({train_size, *[int(s) for s in cfg.eval_sizes]})
    module.to(trainer.strategy.root_device)
    evals = {}
    model = module.model
    for size in sizes:
        ds, _ = build_split(cfg, "val", size=size, num_samples=cfg.val_samples)
        evals[str(size)] = evaluate(module, ds, max(256, cfg.batch_size), precision)
        # Other placements of the same grid ("48@rescale"); only rotary image models place grids.
        if size != train_size and info.kind != "text" and cfg.eval_scalings:
            if getattr(model.pe, "rotary", False):
                for scaling in cfg.eval_scalings:
                    model.position_scaling = scaling
                    evals[f"{size}@{scaling}"] = evaluate(module, ds, max(256, cfg.batch_size), precision)
                model.position_scaling = "convention"
            elif getattr(model.pe, "additive", False) and "rescale" in cfg.eval_scalings:
                evals[f"{size}@rescale"] = evals[str(size)]  # an interpolated table is a rescaled one
    final = recorder.points[-1] if recorder.points else {}
    result = {
        "config": cfg.to_dict(),
        "method": cfg.method,
        "seed": cfg.seed,
        "train_fraction": cfg.train_fraction,
        "train_size": train_size,
        "params": sum(p.numel() for p in module.model.parameters()),
        # What a method does with positions: a grid convention (rotary), or a resized table (absolute).
        "convention": (module.model.convention if module.model.pe.rotary
                       else "table" if module.model.pe.additive else "none"),
        "train_samples": len(datamodule.train_set),
        "steps": trainer.global_step,
        "train_time": recorder.train_time,
        "train_cpu": recorder.train_cpu,
        "compile_s": module.compile_s,
        "wall_time": wall,
        "val_acc": evals[str(train_size)]["acc"],
        "val_loss": evals[str(train_size)]["loss"],
        "eval": evals,
        "curve": recorder.points,
        "final_point": final,
        "resumed_from": resume,
        "run_dir": str(run_dir),
    }
    write_json(run_dir / "result.json", result, indent=2)
    return result
