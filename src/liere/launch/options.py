"""The launcher flags of ``liere compare`` and ``liere study``, and the checks that run before anything is written.

A combination that cannot work (FSDP on a CPU, a SLURM flag with the local pool, a
multi-node run on Ray, a missing engine) is a ``LaunchError``: the CLI prints it on one
line and exits with code 2 before it creates a directory.
"""

from __future__ import annotations

import argparse
import re
import shutil
from dataclasses import dataclass, field, fields

from liere._argtypes import count as _count
from liere._argtypes import positive_int as _positive
from liere.train.config import ConfigError

__all__ = ["LAUNCHERS", "LaunchError", "LaunchOptions", "add_launch_args", "options_from_args", "check_config",
           "device_count", "parse_timeout"]

LAUNCHERS = ("local", "submitit", "ray")
EXTRA = {"submitit": "pip install 'liere[submitit]'", "ray": "pip install 'liere[ray]'"}


class LaunchError(ConfigError):
    """A launcher flag, or a combination of flags, that cannot work; exit code 2."""


@dataclass
class LaunchOptions:
    launcher: str = "local"
    jobs: int | None = None              # runs at once (local pool size; SLURM array parallelism; Ray tasks in flight)
    wait: bool = False                   # submitit: wait for the jobs and gather (local and Ray always wait)
    gpus_per_run: int | None = None
    cpus_per_run: int | None = None
    mem_gb: float | None = None
    timeout_min: int | None = None       # per run (SLURM --time); default 24 h on SLURM
    slurm_partition: str | None = None
    slurm_account: str | None = None
    slurm_qos: str | None = None
    slurm_constraint: str | None = None
    slurm_setup: list = field(default_factory=list)    # shell lines run before each job (module load ...)
    slurm_extra: dict = field(default_factory=dict)    # further sbatch options, KEY=VALUE
    submitit_cluster: str = "slurm"      # slurm, or local: submitit runs the jobs as processes on this machine
    submitit_dir: str | None = None      # submitit's job files and logs
    ray_address: str | None = None       # an existing Ray cluster ("auto", "ray://host:10001"); default: start one here


_DESTS = [f.name for f in fields(LaunchOptions) if f.name != "jobs"]


def parse_timeout(text: str) -> int:
    """Minutes from "90", "90m", "4h", "1h30m", "2:30:00" or "1-12:00:00" (days-hours:minutes:seconds)."""
    t = text.strip().lower()
    m = re.fullmatch(r"(?:(\d+)-)?(\d+):(\d{1,2})(?::(\d{1,2}))?", t)
    if m:
        days, h, mins, secs = (int(g) if g else 0 for g in m.groups())
        minutes = days * 1440 + h * 60 + mins + (1 if secs else 0)
    else:
        m = re.fullmatch(r"(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m?)?", t)
        if not t or not m or not any(m.groups()):
            raise argparse.ArgumentTypeError(f"expected minutes or a duration like 90m, 4h, 2:30:00, got {text!r}")
        days, h, mins = (int(g) if g else 0 for g in m.groups())
        minutes = days * 1440 + h * 60 + mins
    if minutes < 1:
        raise argparse.ArgumentTypeError(f"expected a positive duration, got {text!r}")
    return minutes


def _gb(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected gigabytes, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number of gigabytes, got {text!r}")
    return value


def _key_value(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not re.fullmatch(r"[a-z][a-z0-9_-]*", key.strip()):
        raise argparse.ArgumentTypeError(f"expected an sbatch option as KEY=VALUE (e.g. reservation=lab), got {text!r}")
    return key.strip().replace("-", "_"), value


def add_launch_args(p: argparse.ArgumentParser) -> None:
    """The launcher group of ``liere compare`` / ``liere study`` (their --jobs stays theirs)."""
    g = p.add_argument_group("launcher", "where the runs execute; README: On a cluster")
    g.add_argument("--launcher", choices=LAUNCHERS, default=None,
                   help="local: a pool of processes here (default); submitit: one SLURM job per run; "
                        "ray: one Ray task per run")
    g.add_argument("--wait", action="store_true", default=None,
                   help="submitit: wait for the jobs and gather their results (default: return once submitted; "
                        "`liere report OUT` gathers later). local and ray always wait")
    g.add_argument("--gpus-per-run", type=_count, metavar="N", help="GPUs each run asks for (submitit, ray)")
    g.add_argument("--cpus-per-run", type=_positive, metavar="N", help="CPU cores each run asks for (submitit, ray)")
    g.add_argument("--mem-gb", type=_gb, metavar="GB", help="memory each run asks for, in GB (submitit, ray)")
    g.add_argument("--timeout", dest="timeout_min", type=parse_timeout, metavar="DURATION",
                   help="time limit of each run: minutes, 4h, 2:30:00 (submitit; default 24h)")
    g.add_argument("--slurm-partition", metavar="NAME", help="SLURM partition")
    g.add_argument("--slurm-account", metavar="NAME", help="SLURM account")
    g.add_argument("--slurm-qos", metavar="NAME", help="SLURM quality of service")
    g.add_argument("--slurm-constraint", metavar="FEATURES", help="SLURM node constraint (e.g. a100)")
    g.add_argument("--slurm-setup", action="append", metavar="LINE",
                   help="a shell line each job runs first, e.g. 'module load cuda' (repeatable)")
    g.add_argument("--slurm-extra", action="append", type=_key_value, metavar="KEY=VALUE",
                   help="any other sbatch option, e.g. reservation=lab (repeatable)")
    g.add_argument("--submitit-cluster", choices=("slurm", "local"), default=None,
                   help="slurm (default), or local: submitit runs the jobs as processes on this machine")
    g.add_argument("--submitit-dir", metavar="DIR",
                   help="submitit's job files and logs (default OUT/submitit, or RUNS-DIR/submitit for a study)")
    g.add_argument("--ray-address", metavar="ADDRESS",
                   help="join this Ray cluster (auto, or ray://HOST:10001); default: start one here")


def options_from_args(args: argparse.Namespace) -> LaunchOptions:
    """Take the launcher flags out of ``args`` (so they never reach the training config) and check them."""
    given = {}
    for name in _DESTS:
        value = getattr(args, name, None)
        if hasattr(args, name):
            delattr(args, name)
        if value is not None:
            given[name] = value
    flags = {name: "--" + ("timeout" if name == "timeout_min" else name.replace("_", "-")) for name in _DESTS}
    launcher = given.get("launcher", "local")
    only = {"submitit": ("timeout_min", "slurm_partition", "slurm_account", "slurm_qos", "slurm_constraint",
                         "slurm_setup", "slurm_extra", "submitit_cluster", "submitit_dir"),
            "ray": ("ray_address",), "submitit,ray": ("gpus_per_run", "cpus_per_run", "mem_gb")}
    for launchers, names in only.items():
        for name in names:
            if name in given and launcher not in launchers.split(","):
                raise LaunchError(f"{flags[name]}: only with --launcher {' or '.join(launchers.split(','))} "
                                  f"(this is --launcher {launcher})")
    if "slurm_extra" in given:
        given["slurm_extra"] = dict(given["slurm_extra"])
    opts = LaunchOptions(**given, jobs=getattr(args, "jobs", None))
    _check_engine(opts)
    return opts


def _check_engine(opts: LaunchOptions) -> None:
    if opts.launcher == "local":
        return
    try:
        __import__(opts.launcher)
    except ImportError:
        raise LaunchError(f"--launcher {opts.launcher}: {opts.launcher} is not installed; "
                          f"{EXTRA[opts.launcher]}") from None
    if opts.launcher == "submitit" and opts.submitit_cluster == "slurm" and shutil.which("sbatch") is None:
        raise LaunchError("--launcher submitit: no SLURM here (sbatch is not on PATH); submit from a SLURM login node, "
                          "or add --submitit-cluster local to run the jobs as processes on this machine")


def device_count(cfg) -> int:
    """Processes per node of a run: ``--devices`` as a count (a list of device ids counts its entries)."""
    if isinstance(cfg.devices, int):
        return cfg.devices
    return len(cfg.devices) if isinstance(cfg.devices, list) else 1


def _fsdp(strategy) -> bool:
    return isinstance(strategy, str) and strategy.startswith("fsdp")


def check_config(cfg, opts: LaunchOptions | None = None, where: str = "") -> None:
    """Strategy, devices and launcher that cannot work together.

    ``opts`` None: a run on this machine (``liere train``); ``where`` prefixes the message.
    """
    import torch

    opts = opts or LaunchOptions()
    prefix = f"{where}: " if where else ""
    accel = str(cfg.accelerator).lower()
    devices = device_count(cfg)
    processes = devices * cfg.num_nodes
    here = opts.launcher == "local" or (opts.launcher == "submitit" and opts.submitit_cluster == "local")
    gpu_here = torch.cuda.is_available()
    if _fsdp(cfg.strategy) and accel not in ("gpu", "cuda"):
        raise LaunchError(f"{prefix}--strategy {cfg.strategy}: Lightning runs FSDP on CUDA GPUs only; add "
                          f"--accelerator gpu (on CPUs, --strategy ddp shards the batch over processes)")
    if accel in ("gpu", "cuda") and here and not gpu_here:
        raise LaunchError(f"{prefix}--accelerator {cfg.accelerator}: this machine has no CUDA GPU")
    if opts.gpus_per_run and accel == "cpu":
        raise LaunchError(f"{prefix}--gpus-per-run {opts.gpus_per_run} with --accelerator cpu: the GPUs would sit idle")
    if opts.gpus_per_run and opts.submitit_cluster == "local" and opts.launcher == "submitit":
        if torch.cuda.device_count() < opts.gpus_per_run:
            raise LaunchError(f"--gpus-per-run {opts.gpus_per_run}: this machine has {torch.cuda.device_count()} "
                              f"CUDA GPUs (--submitit-cluster local runs the jobs here)")
    if opts.gpus_per_run and accel in ("gpu", "cuda", "auto") and devices > opts.gpus_per_run:
        raise LaunchError(f"{prefix}--devices {devices} needs --gpus-per-run {devices} or more, "
                          f"got {opts.gpus_per_run}")
    if cfg.num_nodes > 1 and opts.launcher != "submitit":
        raise LaunchError(f"{prefix}--num-nodes {cfg.num_nodes}: a multi-node run needs SLURM: --launcher submitit, or "
                          f"`srun liere train ...` (README: On a cluster)")
    if processes > 1 and (opts.launcher == "ray" or (opts.launcher == "submitit" and opts.submitit_cluster == "local")):
        raise LaunchError(f"{prefix}--devices {cfg.devices}: runs of several processes need SLURM "
                          f"(--launcher submitit), or the local pool; {'Ray tasks' if opts.launcher == 'ray' else 'local submitit jobs'} run "
                          f"one process each")
