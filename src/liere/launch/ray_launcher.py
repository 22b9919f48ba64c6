"""Ray: one task per run, with the CPUs, GPUs and memory it asks for.

``--ray-address`` joins a running cluster (``auto`` or ``ray://HOST:10001``); without it a
Ray instance starts on this machine with ``--jobs`` CPUs (default: every core). Ray tasks
end with the driver, so the command always waits; the runs that finished before an
interruption are kept in their run directories and skipped next time. Workers must see
the same filesystem (run directories and data) as the command.
"""

from __future__ import annotations

import logging

from liere.train.runs import Launched, Launcher, cores, payload
from .options import LaunchError, LaunchOptions

__all__ = ["RayLauncher"]


class RayLauncher(Launcher):
    name = "ray"

    def __init__(self, opts: LaunchOptions):
        self.opts = opts
        self._started = False

    def open(self) -> None:
        import ray

        if ray.is_initialized():
            return
        kwargs = dict(include_dashboard=False, logging_level=logging.WARNING, log_to_driver=False,
                      configure_logging=True)
        try:
            if self.opts.ray_address:
                ray.init(address=self.opts.ray_address, **kwargs)
            else:
                ray.init(num_cpus=self.opts.jobs or cores(), **kwargs)
        except (ConnectionError, RuntimeError, ValueError) as e:
            raise LaunchError(f"--ray-address {self.opts.ray_address or '(local)'}: cannot start or join Ray "
                              f"({str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__})") from None
        self._started = True
        gpus = ray.cluster_resources().get("GPU", 0)
        if self.opts.gpus_per_run and gpus < self.opts.gpus_per_run:
            self.close()
            raise LaunchError(f"--gpus-per-run {self.opts.gpus_per_run}: the Ray cluster has {gpus:g} GPUs")

    def close(self) -> None:
        if self._started:
            import ray

            ray.shutdown()
            self._started = False

    @property
    def where(self) -> str:
        return f"the Ray cluster at {self.opts.ray_address}" if self.opts.ray_address else "a local Ray instance"

    def run(self, plan, record, *, console=None, show_progress: bool = True) -> Launched:
        import ray

        from liere.train.runs import finished_result

        from .worker import run_payload

        out = Launched(where=self.where)
        if not plan:
            return out
        self.open()
        o = self.opts
        cpus = o.cpus_per_run or 1
        task = ray.remote(run_payload).options(num_cpus=cpus, num_gpus=o.gpus_per_run or 0, max_retries=1,
                                               **({"memory": int(o.mem_gb * 2**30)} if o.mem_gb else {}))
        limit = o.jobs or len(plan)
        queue = list(range(len(plan)))
        running: dict = {}
        if console is not None:
            console.print(f"sending {len(plan)} run(s) to {self.where} ({cpus} CPU"
                          + (f", {o.gpus_per_run} GPU" if o.gpus_per_run else "") + " each)", soft_wrap=True)
        try:
            while queue or running:
                while queue and len(running) < limit:
                    i = queue.pop(0)
                    running[task.remote(payload(plan[i][1], cpus))] = i
                done, _ = ray.wait(list(running), num_returns=1, timeout=1.0)
                for ref in done:
                    i = running.pop(ref)
                    label, cfg = plan[i]
                    out.jobs[i] = ref.task_id().hex()
                    try:
                        r = ray.get(ref)
                    except Exception as e:  # RayTaskError wraps the run's exception
                        lines = [ln for ln in str(e).strip().splitlines() if ln.strip()]
                        out.failed.append((i, f"{label} seed {cfg.seed}: Ray task failed: "
                                              f"{lines[-1] if lines else type(e).__name__}"))
                        continue
                    record(i, finished_result(cfg) or r)
        finally:
            for ref in running:
                ray.cancel(ref, force=True)
        return out
