"""Sweeps left running: ``launch.json`` next to ``results.json``, and ``liere report`` gathering them.

When a launcher returns with runs still pending (SLURM jobs submitted without ``--wait``),
``OUT/launch.json`` records the sweep (the compare's base config, methods and seeds, or
the study's spec) and each pending run's directory, job and log. ``liere report OUT``
reads it, collects every run whose ``result.json`` now exists into ``results.json`` and
re-renders the tables and plots; once nothing is pending the file is removed.
"""

from __future__ import annotations

from pathlib import Path

from liere.train.runs import LAUNCH_FILE, note_launch
from liere.train.runs import read_launch as _read

__all__ = ["LAUNCH_FILE", "note_launch", "gather"]



def gather(directory, console=None) -> dict | None:
    """Collect the finished runs of the sweep pending in ``directory``; None if nothing was pending there."""
    from liere.train.runs import GatherLauncher

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
