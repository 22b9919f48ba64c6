"""``liere compare``: train a list of position encodings x seeds (x training fractions) on one task.

Every run has the same data, schedule and model size; only the position encoding
and the seed change. Each trained model is evaluated at the training resolution
and at the other ``eval_sizes`` (for text: other context lengths), which measures
resolution (length) generalisation. The seed paper's two efficiency claims are
measured too:

* data efficiency: ``train_fractions`` (e.g. 0.1, 0.3, 1.0) trains on nested
  subsets of the training set and reports accuracy against the fraction;
* training efficiency: the steps and the training seconds (validation excluded)
  each method needs before its validation accuracy first reaches ``target_accuracy``.

Method specs are names with an optional block size, ``liere:8`` = LieRE with 8x8
blocks; the spec is the label in tables and plots. ``results.json`` is rewritten
after every run, so an interrupted comparison keeps what it finished, and
``liere report`` re-renders everything from it.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

from .config import ConfigError, TrainConfig, validate
from .jsonio import write_json
from .runs import LocalLauncher, default_jobs, finished_result, note_launch

__all__ = ["DEFAULT_METHODS", "parse_method", "run_compare", "default_jobs"]

DEFAULT_METHODS = ("absolute", "rope_axial", "rope_mixed", "comrope_ld", "liere:8", "spherical")
TEXT_METHODS = ("absolute", "rope", "liere:8")


def parse_method(spec: str) -> tuple[str, str, int | None]:
    """"liere:8" -> (label "liere:8", canonical name "liere", block size 8)."""
    from liere.encodings import canonical_name

    name, _, block = spec.strip().partition(":")
    try:
        method = canonical_name(name)
    except (ValueError, TypeError) as e:
        raise ConfigError(f"--methods: {str(e).split(': ', 1)[-1]}") from None
    if block:
        if not block.isdigit() or int(block) < 2:
            raise ConfigError(f"--methods: block size in {spec!r} must be an integer >= 2")
        return spec.strip(), method, int(block)
    return spec.strip(), method, None


def run_compare(base: TrainConfig, methods, seeds, fractions=(1.0,), target_accuracy: float | None = None,
                out: str | Path = "runs/compare", console=None, show_progress: bool = True,
                jobs: int | None = None, launcher=None) -> dict:
    """Run the grid, write results.json after each run, render the report; returns the results dict.

    ``launcher`` (``liere.launch``) says where the runs execute (default: the local pool of ``jobs``); runs whose
    directory already holds a result of the same config are not run again. ``results["launch"]`` tells which
    runs are still pending (submitted, not waited for) or failed.
    """
    from .report import render, time_to_target

    specs = [parse_method(m) for m in methods]
    if not specs:
        raise ConfigError("--methods: give at least one method")
    seeds = [int(s) for s in seeds] or [0]
    fractions = sorted({float(f) for f in fractions}) or [1.0]
    for f in fractions:
        if not 0 < f <= 1:
            raise ConfigError(f"--train-fraction: expected fractions in (0, 1], got {f}")
    if target_accuracy is not None and not 0 < target_accuracy <= 1:
        raise ConfigError(f"--target-accuracy: expected a fraction in (0, 1], got {target_accuracy}")
    # Validate every method's config before the first (long) run starts.
    cfgs = []
    for f in reversed(fractions):
        for seed in seeds:
            for label, method, block in specs:
                cfg = dataclasses.replace(base, method=method, block_size=block, seed=seed, train_fraction=f,
                                          pe_options=dict(base.pe_options))
                cfgs.append((label, validate(cfg)))
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out: {out} is a file, expected a directory")
    from .data import build_split

    _, info = build_split(base, "train", num_samples=base.train_samples)  # bad data fails before out/ is made
    build_split(base, "val", num_samples=base.val_samples)
    out.mkdir(parents=True, exist_ok=True)
    train_size = info.input_shape[0] if info.kind == "text" else info.input_shape[-1]
    eval_sizes = sorted({train_size, *[int(s) for s in base.eval_sizes]})
    meta = {
        "task": base.task, "kind": info.kind, "image_size": train_size, "eval_sizes": eval_sizes,
        "methods": [s[0] for s in specs], "seeds": seeds, "fractions": fractions,
        "target_accuracy": target_accuracy, "model": f"{base.size} ViT" if info.kind != "text" else f"{base.size} LM",
        "epochs": base.epochs, "created": time.strftime("%Y-%m-%d %H:%M:%S"), "config": base.to_dict(),
    }
    results = {"meta": meta, "runs": []}
    plan = []
    for label, cfg in cfgs:
        name = f"{label.replace(':', '-b')}-seed{cfg.seed}" + (f"-frac{cfg.train_fraction:g}" if len(fractions) > 1 else "")
        plan.append((label, dataclasses.replace(cfg, out=str(out / "runs" / name), eval_sizes=eval_sizes)))
    jobs = default_jobs(base, len(plan)) if jobs is None else max(1, int(jobs))
    meta["jobs"] = jobs
    t_start = time.perf_counter()
    finished: dict[int, dict] = {}

    def record(i: int, r: dict | None, quiet: bool = False) -> None:
        if r is None:  # a non-zero DDP rank: rank 0 writes the results
            return
        label, cfg = plan[i]
        steps, secs = time_to_target(r["curve"], target_accuracy)
        finished[i] = {"label": label, "method": cfg.method, "block_size": cfg.block_size, "seed": cfg.seed,
                       "train_fraction": cfg.train_fraction, "train_samples": r["train_samples"],
                       "params": r["params"], "convention": r.get("convention"), "steps": r["steps"], "train_time": r["train_time"],
                       "wall_time": r["wall_time"], "val_acc": r["val_acc"], "val_loss": r["val_loss"],
                       "eval": r["eval"], "curve": r["curve"], "steps_to_target": steps, "time_to_target": secs,
                       "run_dir": r["run_dir"]}
        results["runs"] = [finished[k] for k in sorted(finished)]
        meta["wall_time"] = time.perf_counter() - t_start
        write_json(out / "results.json", results)
        if console is not None and not quiet:
            accs = "  ".join(f"{s}: {100 * r['eval'][str(s)]['acc']:.1f}%" for s in eval_sizes)
            console.print(f"[bold]{label}[/bold] seed {cfg.seed}"
                          + (f" fraction {cfg.train_fraction:g}" if len(fractions) > 1 else "")
                          + f"  accuracy {accs}   [dim]{r['steps']} steps, {r['train_time']:.0f} s training, "
                            f"{len(finished)}/{len(plan)} runs done, {(time.perf_counter() - t_start) / 60:.1f} min[/dim]")

    todo = []
    for i, (_, cfg) in enumerate(plan):
        r = finished_result(cfg)
        if r is not None:
            record(i, r, quiet=True)
        else:
            todo.append(i)
    if console is not None and len(todo) < len(plan):
        console.print(f"{len(plan) - len(todo)} of {len(plan)} runs already finished in {out / 'runs'}", soft_wrap=True)
    launcher = launcher or LocalLauncher(jobs)
    meta["launcher"] = launcher.name
    launched = launcher.run([plan[i] for i in todo], lambda j, r: record(todo[j], r), console=console,
                            show_progress=show_progress)
    sweep = {"kind": "compare", "base": base.to_dict(), "methods": list(methods), "seeds": seeds,
             "fractions": fractions, "target_accuracy": target_accuracy}
    launch = note_launch(out, sweep, launcher, launched, [plan[i] for i in todo], console)
    if not results["runs"]:
        return {**results, "launch": launch}
    meta["wall_time"] = time.perf_counter() - t_start
    write_json(out / "results.json", results)
    results["outputs"] = {k: (str(v) if not isinstance(v, list) else [str(p) for p in v])
                          for k, v in render(results, out, console).items()}
    results["launch"] = launch
    return results
