"""Sweeps left running: ``launch.json`` next to ``results.json``, and ``liere report`` gathering them.

When a launcher returns with runs still pending (SLURM jobs submitted without ``--wait``),
``OUT/launch.json`` records the sweep (the compare's base config, methods and seeds, or
the study's spec) and each pending run's directory, job and log. ``liere report OUT``
reads it, collects every run whose ``result.json`` now exists into ``results.json`` and
re-renders the tables and plots; once nothing is pending the file is removed.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

__all__ = ["LAUNCH_FILE", "note_launch", "gather"]

LAUNCH_FILE = "launch.json"


def _read(path: Path) -> dict:
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
    before = {r.get("run_dir"): r for r in _read(path).get("pending", []) if isinstance(r, dict)}
    pending = []
    for i in launched.pending:
        label, cfg = plan[i]
        old = before.get(str(cfg.out), {})
        pending.append({"label": label, "seed": cfg.seed, "run_dir": str(cfg.out),
                        "job": launched.jobs.get(i, old.get("job")), "log": launched.logs.get(i, old.get("log"))})
    failed = [msg for _, msg in launched.failed]
    if pending:
        previous = _read(path)
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
            where = launched.where or _read(path).get("where", "")
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


def gather(directory, console=None) -> dict | None:
    """Collect the finished runs of the sweep pending in ``directory``; None if nothing was pending there."""
    from .base import GatherLauncher

    directory = Path(directory)
    sweep = _read(directory / LAUNCH_FILE)
    if not sweep:
        return None
    cwd = Path(sweep.get("cwd") or ".")
    if sweep.get("kind") == "compare":
        from liere.train.compare import run_compare
        from liere.train.config import config_from

        return run_compare(config_from(sweep["base"]), sweep["methods"], sweep["seeds"], sweep["fractions"],
                           sweep.get("target_accuracy"), directory, console, show_progress=False,
                           launcher=GatherLauncher())
    if sweep.get("kind") == "study":
        from liere.train.study import run_study

        runs_dir = Path(sweep["runs_dir"])
        if not runs_dir.is_absolute() and not runs_dir.is_dir():
            runs_dir = cwd / runs_dir
        return run_study(sweep["spec"], directory, runs_dir, console=console, command=sweep.get("command", ""),
                         launcher=GatherLauncher())
    return None
