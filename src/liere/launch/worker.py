"""The function a SLURM job or a Ray task runs: one ``fit`` of one config, skipped if it already finished."""

from __future__ import annotations

import logging
import os
import warnings

__all__ = ["run_payload"]


def run_payload(payload: dict) -> dict | None:
    """Train one run (see ``base.payload``); returns its result on rank 0, None on other ranks."""
    import torch

    from liere.allocator import tune_if_requested
    from liere.train.config import config_from
    from liere.train.run import fit
    from liere.train.runs import finished_result

    tune_if_requested()
    os.chdir(payload["cwd"])  # relative run directories and data paths mean what they meant where the sweep started
    warnings.filterwarnings("ignore")
    for name in ("lightning.pytorch", "lightning.fabric", "lightning"):
        logging.getLogger(name).setLevel(logging.ERROR)
    cfg = config_from(payload["config"])
    if payload.get("threads"):
        cfg.threads = int(payload["threads"])
        torch.set_num_threads(cfg.threads)
    done = finished_result(cfg)  # a requeued or duplicated job finds its run finished
    if done is not None:
        return done
    return fit(cfg, quiet=True)
