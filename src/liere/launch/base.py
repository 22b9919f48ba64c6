"""One interface for where runs execute.

``launcher.run(plan, record)`` takes a plan of ``(label, TrainConfig)`` whose configs carry
their own run directory (``cfg.out``) and calls ``record(i, result)`` for each run that
finishes, in the order they finish. It returns a ``Launched``: the runs still pending
(submitted to SLURM and not waited for) and the runs that failed. Results are read
back from the run directories (``result.json``), so a result gathered by ``liere report``
hours later is the same as one recorded while waiting.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

__all__ = ["Launched", "Launcher", "LocalLauncher", "GatherLauncher", "payload", "cores"]


@dataclass
class Launched:
    pending: list = field(default_factory=list)     # plan indices submitted and not finished
    failed: list = field(default_factory=list)      # (plan index, one-line reason)
    jobs: dict = field(default_factory=dict)        # plan index -> job id
    logs: dict = field(default_factory=dict)        # plan index -> log file
    where: str = ""                                 # "SLURM", "the local submitit cluster", ...


def cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def payload(cfg, threads: int | None) -> dict:
    """What a remote worker needs: the config, the directory relative paths start from, and its thread count."""
    return {"config": cfg.to_dict(), "cwd": os.getcwd(), "threads": cfg.threads or threads}


class Launcher:
    name = "local"

    def open(self) -> None:
        """Connect (Ray) or check the engine; called before anything is written."""

    def close(self) -> None:
        pass

    def run(self, plan, record, *, console=None, show_progress: bool = True) -> Launched:
        raise NotImplementedError


class LocalLauncher(Launcher):
    """This machine: one run after another, or a pool of ``jobs`` spawned single-thread processes."""

    name = "local"

    def __init__(self, jobs: int | None = None):
        self.jobs = jobs

    def run(self, plan, record, *, console=None, show_progress: bool = True) -> Launched:
        from liere.train.compare import _run_parallel, default_jobs
        from liere.train.run import fit

        if not plan:
            return Launched()
        jobs = default_jobs(plan[0][1], len(plan)) if self.jobs is None else max(1, int(self.jobs))
        if jobs == 1:
            for i, (label, cfg) in enumerate(plan):
                if console is not None:
                    console.print(f"[dim]\\[{i + 1}/{len(plan)}] training {label} seed {cfg.seed}...[/dim]")
                record(i, fit(cfg, quiet=not show_progress))
        else:
            _run_parallel(plan, jobs, record, console if show_progress else None)
        return Launched(where="this machine")


class GatherLauncher(Launcher):
    """Launches nothing: ``liere report`` uses it to gather the runs that finished; the others stay pending."""

    name = "gather"

    def run(self, plan, record, *, console=None, show_progress: bool = True) -> Launched:
        return Launched(pending=list(range(len(plan))))
