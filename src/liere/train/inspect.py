"""``liere inspect``: load a trained model from a run directory or checkpoint and diagnose its encoding.

A run directory is what ``liere train`` (or ``liere compare --checkpoints``) writes: its
``checkpoints/best.ckpt`` is used, else ``last.ckpt``. The model is rebuilt from the
checkpoint's own config and dataset description, so no data is needed. The numbers and
pictures come from ``liere.diagnostics``.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from .config import ConfigError

__all__ = ["find_checkpoint", "load_trained_model", "inspect_path"]


def find_checkpoint(path: str | os.PathLike) -> Path:
    """The checkpoint a path names: the file itself, or a run directory's best.ckpt / last.ckpt."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{path}: no such file or directory")
    if path.is_file():
        return path
    for candidate in (path / "checkpoints" / "best.ckpt", path / "checkpoints" / "last.ckpt",
                      path / "best.ckpt", path / "last.ckpt"):
        if candidate.is_file():
            return candidate
    runs = sorted(p.parent.parent.name for p in path.glob("*/checkpoints/*.ckpt"))
    hint = f"; it holds runs with checkpoints: {', '.join(sorted(set(runs)))}" if runs else (
        "; train with checkpoints (liere train saves them by default, liere compare needs --checkpoints)")
    raise ConfigError(f"{path}: no checkpoint (checkpoints/best.ckpt or last.ckpt) in this directory{hint}")


def load_trained_model(path: str | os.PathLike):
    """(model in eval mode, checkpoint path) from a checkpoint or run directory."""
    from liere.data import DatasetInfo

    from .config import config_from
    from .module import model_from_config

    ckpt_path = find_checkpoint(path)
    try:
        ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=False)
    except Exception as e:  # noqa: BLE001 - any unreadable file is the same user error
        raise ConfigError(f"{ckpt_path}: not a readable PyTorch checkpoint ({type(e).__name__})") from None
    hp = ckpt.get("hyper_parameters") if isinstance(ckpt, dict) else None
    if not isinstance(hp, dict) or "config" not in hp or "info" not in hp or "state_dict" not in ckpt:
        raise ConfigError(f"{ckpt_path}: not a liere training checkpoint (no config, dataset info or weights)")
    info = dict(hp["info"])
    info["input_shape"] = tuple(info["input_shape"])
    model = model_from_config(config_from(hp["config"]), DatasetInfo(**info))
    state = {k[len("model."):]: v for k, v in ckpt["state_dict"].items() if k.startswith("model.")}
    model.load_state_dict(state)
    return model.eval(), ckpt_path


def inspect_path(path: str | os.PathLike, out: str | os.PathLike | None = None) -> dict:
    """Diagnose the model at ``path``; write report.json and PNGs to ``out``. Returns report, paths, table."""
    from liere import diagnostics

    model, ckpt_path = load_trained_model(path)
    if not getattr(model.pe, "rotary", False):
        raise ConfigError(f"{ckpt_path}: method {model.pe.name!r} has no rotation generators to inspect")
    if out is None:
        run_dir = ckpt_path.parent.parent if ckpt_path.parent.name == "checkpoints" else ckpt_path.parent
        out = run_dir / "inspect"
    with torch.no_grad():
        report = diagnostics.inspect_model(model)
    report["checkpoint"] = str(ckpt_path)
    paths = diagnostics.write_report(report, out)
    return {"report": report, "paths": paths, "table": diagnostics.format_table(report), "out": str(out)}
