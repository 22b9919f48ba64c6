"""Where runs execute: local processes, submitit (SLURM), Ray; one interface.

``liere compare`` and ``liere study`` build a plan of runs, each with its own run
directory; a launcher runs the plan (``liere.train.runs.Launcher.run``). Runs that finished are
skipped before anything is launched, and results are always read back from the run
directories, so ``liere report`` gathers a sweep submitted hours earlier (``sweep``).
"""

from __future__ import annotations

from liere.train.runs import GatherLauncher, Launched, Launcher, LocalLauncher
from .options import LAUNCHERS, LaunchError, LaunchOptions, add_launch_args, check_config, options_from_args

__all__ = ["LAUNCHERS", "LaunchError", "LaunchOptions", "Launched", "Launcher", "LocalLauncher", "GatherLauncher",
           "add_launch_args", "options_from_args", "check_config", "make_launcher"]


def make_launcher(opts: LaunchOptions, folder=None) -> Launcher:
    """The launcher of ``opts``; ``folder`` holds submitit's job files and logs."""
    if opts.launcher == "submitit":
        from .submitit_launcher import SubmititLauncher

        return SubmititLauncher(opts, opts.submitit_dir or folder)
    if opts.launcher == "ray":
        from .ray_launcher import RayLauncher

        return RayLauncher(opts)
    return LocalLauncher(opts.jobs)
