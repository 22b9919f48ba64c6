"""SLURM through submitit: one job per run, submitted as one job array.

The jobs get the resources asked for (``--gpus-per-run``, ``--cpus-per-run``, ``--mem-gb``,
``--timeout``, ``--slurm-*``); a run of several processes (``--devices 4``, ``--num-nodes 2``)
gets one task per process, and Lightning reads the SLURM environment itself. A job that
hits its time limit or is preempted is requeued and continues from its run's last.ckpt
(when the runs save checkpoints). Without ``--wait`` the command returns once the jobs are
submitted; ``active.json`` in the submitit folder remembers them, so submitting the same
sweep again while they are queued or running does not submit them twice.
``--submitit-cluster local`` runs the same jobs as processes on this machine (tests, CI).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from liere.train.runs import Launched, Launcher, cores, payload
from .options import LaunchOptions, device_count

__all__ = ["SubmititLauncher"]

_ACTIVE = {"PENDING", "RUNNING", "REQUEUED", "CONFIGURING", "COMPLETING", "RESIZING", "SUSPENDED", "UNKNOWN",
           "READY", "PREEMPTED"}


def _make_job_class():
    import submitit

    from .worker import run_payload

    class LiereRun(submitit.helpers.Checkpointable):
        """A run as a submitit job; requeued on timeout or preemption, then resumed from last.ckpt."""

        def __call__(self, job_payload: dict):
            return run_payload(job_payload)

        def checkpoint(self, job_payload: dict):
            job_payload = {**job_payload, "config": {**job_payload["config"], "resume": "auto"}}
            return submitit.helpers.DelayedSubmission(self, job_payload)

    return LiereRun


class SubmititLauncher(Launcher):
    name = "submitit"

    def __init__(self, opts: LaunchOptions, folder: str | Path):
        self.opts = opts
        self.folder = Path(folder)

    @property
    def where(self) -> str:
        return "SLURM" if self.opts.submitit_cluster == "slurm" else "submitit's local cluster (processes here)"

    def _executor(self, cfg, n_runs: int):
        import submitit

        o = self.opts
        ex = submitit.AutoExecutor(folder=self.folder / "%j", cluster=o.submitit_cluster)
        devices = device_count(cfg)
        params = {"timeout_min": o.timeout_min or 24 * 60, "name": "liere", "nodes": cfg.num_nodes,
                  "tasks_per_node": devices if o.submitit_cluster == "slurm" else 1}
        if o.gpus_per_run:
            params["gpus_per_node"] = o.gpus_per_run
        if o.cpus_per_run:
            params["cpus_per_task"] = o.cpus_per_run
        if o.mem_gb:
            params["mem_gb"] = o.mem_gb
        if o.submitit_cluster == "slurm":
            for key in ("partition", "account", "qos", "constraint"):
                value = getattr(o, f"slurm_{key}")
                if value:
                    params[f"slurm_{key}"] = value
            if o.slurm_extra:
                params["slurm_additional_parameters"] = dict(o.slurm_extra)
            if o.slurm_setup:
                params["slurm_setup"] = list(o.slurm_setup)
            params["slurm_array_parallelism"] = o.jobs or n_runs
        ex.update_parameters(**params)
        return ex

    # ----- jobs submitted earlier and still queued or running: not submitted twice
    def _active_file(self) -> Path:
        return self.folder / "active.json"

    def _still_active(self) -> dict[str, str]:
        try:
            active = json.loads(self._active_file().read_text())
        except (OSError, ValueError):
            return {}
        alive = {}
        for run_dir, job_id in active.items():
            if self._alive(str(job_id)):
                alive[run_dir] = str(job_id)
        return alive

    def _alive(self, job_id: str) -> bool:
        if self.opts.submitit_cluster == "local":  # a local job's id is its controller's pid
            try:
                return b"submitit" in Path(f"/proc/{int(job_id)}/cmdline").read_bytes()
            except (OSError, ValueError):
                try:
                    os.kill(int(job_id), 0)
                except (OSError, ValueError):
                    return False
                return not Path("/proc").is_dir()
        import submitit

        try:
            return submitit.SlurmJob(folder=self.folder / "%j", job_id=job_id).state.split(" ")[0] in _ACTIVE
        except Exception:  # sacct unavailable: assume it may still run
            return True

    def _remember(self, jobs: dict[str, str]) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        tmp = self._active_file().with_suffix(".tmp")
        tmp.write_text(json.dumps(jobs, indent=1))
        os.replace(tmp, self._active_file())

    def run(self, plan, record, *, console=None, show_progress: bool = True) -> Launched:
        from liere.train.runs import finished_result

        out = Launched(where=self.where)
        if not plan:
            return out
        active = self._still_active()
        submit = [i for i, (_, cfg) in enumerate(plan) if str(cfg.out) not in active]
        jobs: dict[int, object] = {}
        for i, (_, cfg) in enumerate(plan):
            if str(cfg.out) in active:
                out.jobs[i] = active[str(cfg.out)]
        # submitit's local cluster starts every job at once; with --wait, --jobs N keeps N running.
        throttle = self.opts.submitit_cluster == "local" and self.opts.wait and self.opts.jobs
        queue = list(submit)
        if submit:
            LiereRun = _make_job_class()
            ex = self._executor(plan[submit[0]][1], len(submit))
            threads = None
            if self.opts.submitit_cluster == "local":  # every job sees every core: share them
                threads = self.opts.cpus_per_run or max(1, cores() // min(len(submit), self.opts.jobs or len(submit)))

            def launch(indices) -> None:
                with ex.batch():
                    submitted = [(i, ex.submit(LiereRun(), payload(plan[i][1], threads))) for i in indices]
                for i, job in submitted:
                    jobs[i] = job
                    out.jobs[i] = str(job.job_id)
                    out.logs[i] = str(job.paths.stderr)
                self._remember({**self._still_active(), **{str(plan[i][1].out): out.jobs[i] for i, _ in submitted}})

            first = queue[: self.opts.jobs] if throttle else queue
            queue = queue[len(first):]
            launch(first)
        if console is not None:
            ids = sorted({out.jobs[i] for i in jobs})
            again = len(plan) - len(submit)
            console.print(f"submitted {len(jobs)} run(s) to {self.where}: job(s) {', '.join(ids[:6])}"
                          + (" ..." if len(ids) > 6 else "") + f"; logs in {self.folder}"
                          + (f"; {len(queue)} more as these finish" if queue else "")
                          + (f"; {again} still queued or running from before" if again else ""), soft_wrap=True)
        if not self.opts.wait:
            out.pending = list(range(len(plan)))
            return out
        waiting = set(range(len(plan)))
        while waiting:
            running = sum(1 for i in waiting if i in jobs)
            if queue and running < self.opts.jobs:
                launch(queue[: self.opts.jobs - running])
                queue = queue[self.opts.jobs - running:]
            for i in sorted(waiting):
                if i in queue:
                    continue
                label, cfg = plan[i]
                job = jobs.get(i)
                if job is None:  # submitted by an earlier invocation: watch its run directory
                    r = finished_result(cfg)
                    if r is not None:
                        waiting.discard(i)
                        record(i, r)
                    elif not self._alive(out.jobs[i]):
                        waiting.discard(i)
                        out.failed.append((i, f"{label} seed {cfg.seed}: job {out.jobs[i]} ended without a result"))
                    continue
                if not job.done():
                    continue
                waiting.discard(i)
                try:
                    results = job.results()
                except Exception as e:  # the job raised, or was cancelled / killed
                    lines = [ln for ln in str(e).strip().splitlines() if ln.strip()]
                    out.failed.append((i, f"{label} seed {cfg.seed}: job {job.job_id} failed: "
                                          f"{lines[-1] if lines else type(e).__name__} (log: {job.paths.stderr})"))
                    continue
                r = finished_result(cfg) or next((x for x in results if x), None)
                record(i, r)
            if waiting:
                time.sleep(1.0)
        self._remember({d: j for d, j in self._still_active().items()})
        return out
