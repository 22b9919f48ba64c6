"""The runs of a sweep (``liere compare``, ``liere study``): which finished, where they execute, what is pending.

A plan is a list of ``(label, TrainConfig)`` whose configs carry their own run directory
(``cfg.out``). A launcher runs it: ``launcher.run(plan, record)`` calls ``record(i, result)``
for each run that finishes and returns a ``Launched`` (runs still pending, runs that failed).
This module holds the interface, this machine's launcher (one run after another, or a pool
of spawned single-thread processes) and ``launch.json`` for sweeps left pending; the cluster
engines (submitit, Ray) live above it in ``liere.launch``. Results are always read back from
the run directories, so a result gathered by ``liere report`` hours later is the one recorded
while waiting.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from .config import TrainConfig

__all__ = ["Launched", "Launcher", "LocalLauncher", "GatherLauncher", "payload", "cores", "default_jobs",
           "run_parallel", "finished_result", "identity", "note_launch", "LAUNCH_FILE", "read_launch"]

LAUNCH_FILE = "launch.json"
# Settings that do not change what a run computes: left out of its identity.
# How a run executes, not what it computes (compiling, like the thread count, moves results only by
# rounding): left out of run keys, so committed study records stay valid when these change.
_NOT_IDENTITY = {"out", "progress", "resume", "logger", "threads", "num_workers", "checkpoints",
                 "checkpoint_every_n_steps", "archive", "data_root", "compile"}


def identity(cfg_dict: dict) -> dict:
    """The settings of a run that change its result, JSON-normalised."""
    return json.loads(json.dumps({k: v for k, v in cfg_dict.items() if k not in _NOT_IDENTITY}, default=str))


def finished_result(cfg: TrainConfig) -> dict | None:
    """The result of a run that already finished with this very configuration, else None."""
    path = Path(cfg.out) / "result.json"
    if not path.is_file():
        return None
    try:
        result = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return result if identity(result.get("config", {})) == identity(cfg.to_dict()) else None


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
        from .run import fit

        if not plan:
            return Launched()
        jobs = default_jobs(plan[0][1], len(plan)) if self.jobs is None else max(1, int(self.jobs))
        if jobs == 1:
            for i, (label, cfg) in enumerate(plan):
                if console is not None:
                    console.print(f"[dim]\\[{i + 1}/{len(plan)}] training {label} seed {cfg.seed}...[/dim]")
                record(i, fit(cfg, quiet=not show_progress))
        else:
            run_parallel(plan, jobs, record, console if show_progress else None)
        return Launched(where="this machine")


class GatherLauncher(Launcher):
    """Launches nothing: ``liere report`` uses it to gather the runs that finished; the others stay pending."""

    name = "gather"

    def run(self, plan, record, *, console=None, show_progress: bool = True) -> Launched:
        return Launched(pending=list(range(len(plan))))


def default_jobs(base: TrainConfig, num_runs: int) -> int:
    """Parallel single-thread runs on CPU: one per core. Small models scale badly over threads, and
    OpenMP threads that wait on each other collapse when anything else uses the cores."""
    import torch

    from .run import default_threads

    on_cpu = base.accelerator == "cpu" or (base.accelerator == "auto" and not torch.cuda.is_available())
    single = base.devices in (1, "1", [0]) and base.num_nodes == 1
    return max(1, min(default_threads(1), num_runs)) if on_cpu and single else 1


class _QueueProgress:
    """Lightning callback (built lazily, so this module imports without Lightning) reporting to a queue."""

    def __new__(cls, queue, index: int, every: int = 5):
        import lightning as L

        class QueueProgress(L.Callback):
            def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
                step = trainer.global_step
                if step % every == 0:
                    queue.put((index, "step", step, trainer.max_epochs * trainer.num_training_batches))

            def on_validation_end(self, trainer, pl_module):
                acc = trainer.callback_metrics.get("val/acc")
                if acc is not None and not trainer.sanity_checking:
                    queue.put((index, "val", trainer.global_step, float(acc)))

        return QueueProgress()


def _worker(cfg_dict: dict, index: int, threads: int, queue):
    """One run in a worker process (spawned: no inherited thread pools or CUDA state)."""
    import logging
    import warnings

    import torch

    from ..allocator import tune_if_requested
    from .config import config_from
    from .run import fit

    tune_if_requested()
    warnings.filterwarnings("ignore")
    for name in ("lightning.pytorch", "lightning.fabric", "lightning"):
        logging.getLogger(name).setLevel(logging.ERROR)
    torch.set_num_threads(threads)
    cfg = config_from(cfg_dict)
    cfg.threads = threads
    return fit(cfg, callbacks=[_QueueProgress(queue, index)], quiet=True)


def run_parallel(plan, jobs: int, record, console) -> None:
    """Run the plan on ``jobs`` spawned single-thread workers, with a live progress bar per running run."""
    import multiprocessing as mp
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    from .run import default_threads

    threads = max(1, default_threads(1) // jobs)
    ctx = mp.get_context("spawn")
    with ctx.Manager() as manager, ProcessPoolExecutor(max_workers=jobs, mp_context=ctx) as pool:
        queue = manager.Queue()
        futures = {pool.submit(_worker, cfg.to_dict(), i, threads, queue): i for i, (_, cfg) in enumerate(plan)}
        progress, tasks = None, {}
        if console is not None:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                TextColumn("{task.fields[acc]}"), TimeElapsedColumn(), console=console,
                                transient=True)
            progress.start()
        try:
            pending = set(futures)
            while pending:
                done, pending = wait(pending, timeout=0.5, return_when=FIRST_COMPLETED)
                while not queue.empty():
                    i, kind, step, value = queue.get()
                    if progress is None:
                        continue
                    if i not in tasks:
                        label, cfg = plan[i]
                        tasks[i] = progress.add_task(f"{label} seed {cfg.seed}", total=None, acc="")
                    if kind == "step":
                        progress.update(tasks[i], completed=step, total=value)
                    else:
                        progress.update(tasks[i], acc=f"val acc {100 * value:.1f}%")
                for fut in done:
                    i = futures[fut]
                    if i in tasks:
                        progress.remove_task(tasks.pop(i))
                    record(i, fut.result())
        finally:
            if progress is not None:
                progress.stop()


def read_launch(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def note_launch(out, sweep: dict, launcher, launched, plan, console=None) -> dict:
    """Write (or remove) ``OUT/launch.json`` after a launcher returned; print what is pending or failed.

    ``plan`` is the list of ``(label, cfg)`` the launcher got; returns {"pending", "failed", "where"}.
    """
    path = Path(out) / LAUNCH_FILE
    before = {r.get("run_dir"): r for r in read_launch(path).get("pending", []) if isinstance(r, dict)}
    pending = []
    for i in launched.pending:
        label, cfg = plan[i]
        old = before.get(str(cfg.out), {})
        pending.append({"label": label, "seed": cfg.seed, "run_dir": str(cfg.out),
                        "job": launched.jobs.get(i, old.get("job")), "log": launched.logs.get(i, old.get("log"))})
    failed = [msg for _, msg in launched.failed]
    if pending:
        previous = read_launch(path)
        record = {**sweep, "cwd": previous.get("cwd", os.getcwd()),
                  "launcher": previous.get("launcher", launcher.name) if launcher.name == "gather" else launcher.name,
                  "where": launched.where or previous.get("where", ""),
                  "submitted": (previous.get("submitted") if launcher.name == "gather"
                                else time.strftime("%Y-%m-%d %H:%M:%S")),
                  "pending": pending}
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(record, indent=1, default=str))
        os.replace(tmp, path)
    elif path.is_file():
        path.unlink()
    if console is not None:
        for msg in failed:
            console.print(f"[red]failed[/red]: {msg}", soft_wrap=True, highlight=False)
        if pending:
            where = launched.where or read_launch(path).get("where", "")
            if launcher.name == "gather":
                jobs = ", ".join(str(p["job"]) for p in pending[:6] if p["job"]) + (" ..." if len(pending) > 6 else "")
                console.print(f"{len(pending)} run(s) still pending" + (f" on {where}" if where else "")
                              + (f" (jobs {jobs})" if jobs else "") + f"; `liere report {out}` again gathers them",
                              soft_wrap=True, highlight=False)
            else:
                console.print(f"{len(pending)} run(s) pending" + (f" on {where}" if where else "")
                              + f"; `liere report {out}` gathers the finished ones, and running this command again "
                                f"resubmits only runs that are neither finished nor queued", soft_wrap=True,
                              highlight=False)
    return {"pending": len(pending), "failed": failed, "where": launched.where}
