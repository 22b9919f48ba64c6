"""``liere study NAME``: a published claim, tested by a sweep described as data.

A study is a YAML file in ``liere/studies/`` (or any path)::

    name: grid
    title: Grid size
    claim: As the patch grid grows, RoPE-Mixed degrades, LieRE holds, absolute and axial fail.
    source: Ostmeier et al. 2024 (LieRE), Table 3
    base: {task: pointing, epochs: 10, ...}        # TrainConfig keys shared by every run
    methods: [absolute, rope_mixed, "liere:8"]      # NAME, NAME:BLOCK, or {label, method, block_size, config}
    seeds: [0, 1, 2]
    cells:                                          # the sweep: a label and config overrides each
      - {label: 4x4, image_size: 32, patch_size: 8}
    columns: [...]                                  # what the tables show (default: each cell at its training size)
    paper: {columns: [...], values: {method: [...]}, note: ...}   # the paper's numbers, for the side-by-side table
    checks: [...]                                   # the claim's parts; each gets a verdict (see ``study_report``)
    smoke: {base: {...}, seeds: [0], methods: [...], cells: 1}    # the tiny version (``--smoke``), for CI

Every run is one ``fit`` of a fully resolved ``TrainConfig``. Its directory is named
by a hash of the settings that change its result (the run key), under a shared pool
(``--runs-dir``), so a rerun skips finished runs (their ``result.json`` is read
back), a killed run continues from its ``last.ckpt``, and two studies that need the
same run (the full-data runs of ``efficiency`` are those of ``resolution``) train
it once. Each record in ``results.json`` carries its run key, so committed results
alone let a fresh checkout continue a study where it stopped. ``results.json`` is rewritten after every run; the tables, plots and
verdicts are rendered from it (``liere report`` re-renders them).
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

from .config import ConfigError, TrainConfig, config_from, validate
from .jsonio import write_json
from .runs import _NOT_IDENTITY, LocalLauncher, finished_result, note_launch

__all__ = ["STUDY_DIR", "list_studies", "load_study", "plan_study", "run_study", "run_key"]

STUDY_DIR = Path(__file__).resolve().parent.parent / "studies"
_STUDY_KEYS = {"name", "title", "claim", "source", "base", "methods", "seeds", "cells", "columns", "paper",
               "checks", "smoke", "notes", "target_of"}



def list_studies() -> list[dict]:
    """The shipped studies: name, title, claim."""
    return [load_study(p.stem) for p in sorted(STUDY_DIR.glob("*.yaml"))]


def load_study(name_or_path: str) -> dict:
    """Read and check a study; ``name_or_path`` is a shipped study's name or a YAML path."""
    import yaml

    path = Path(name_or_path)
    if not path.is_file():
        path = STUDY_DIR / f"{name_or_path}.yaml"
    if not path.is_file():
        known = ", ".join(p.stem for p in sorted(STUDY_DIR.glob("*.yaml")))
        raise ConfigError(f"study: no study named {name_or_path!r}; shipped studies: {known}")
    try:
        spec = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise ConfigError(f"study: {path} is not valid YAML ({str(e).splitlines()[0]})") from None
    if not isinstance(spec, dict):
        raise ConfigError(f"study: {path} must hold a mapping")
    unknown = sorted(set(spec) - _STUDY_KEYS)
    if unknown:
        raise ConfigError(f"study: {path}: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(_STUDY_KEYS))}")
    for key in ("name", "claim", "base", "methods"):
        if key not in spec:
            raise ConfigError(f"study: {path}: missing key {key!r}")
    spec.setdefault("title", spec["name"])
    spec.setdefault("seeds", [0, 1, 2])
    spec.setdefault("cells", [{"label": "main"}])
    spec.setdefault("checks", [])
    spec["path"] = str(path)
    for cell in spec["cells"]:
        if not isinstance(cell, dict) or "label" not in cell:
            raise ConfigError(f"study: {path}: every cell needs a label, got {cell!r}")
    return spec


def _method_entry(entry) -> dict:
    from .compare import parse_method

    if isinstance(entry, str):
        label, method, block = parse_method(entry)
        return {"label": label, "method": method, "block_size": block, "config": {}}
    if isinstance(entry, dict) and "method" in entry:
        label, method, block = parse_method(str(entry["method"]))
        return {"label": str(entry.get("label", label)), "method": method,
                "block_size": entry.get("block_size", block), "config": dict(entry.get("config", {}))}
    raise ConfigError(f"study: a method is NAME, NAME:BLOCK or a mapping with 'method', got {entry!r}")


def smoke_version(spec: dict) -> dict:
    """The study's tiny version: its ``smoke`` overrides on fewer seeds, methods and cells."""
    smoke = dict(spec.get("smoke") or {})
    spec = dict(spec)
    spec["base"] = {**spec["base"], **smoke.get("base", {})}
    spec["seeds"] = smoke.get("seeds", spec["seeds"][:1])
    if "methods" in smoke:
        spec["methods"] = smoke["methods"]
    if "cells" in smoke:
        spec["cells"] = spec["cells"][: int(smoke["cells"])]
    spec["smoke"] = True
    return spec


def run_key(cfg: TrainConfig) -> str:
    """A short hash of everything that changes what a run computes."""
    identity = {k: v for k, v in cfg.to_dict().items() if k not in _NOT_IDENTITY}
    return hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()[:12]


def plan_study(spec: dict, runs_dir: str | Path) -> list[tuple[dict, TrainConfig]]:
    """Every run of the study, validated, as (tags, config); configs carry their run directory."""
    methods = [_method_entry(m) for m in spec["methods"]]
    plan = []
    # Seed-major order: a study stopped part-way has every method and cell on its first seeds.
    for seed in spec["seeds"]:
        for cell in spec["cells"]:
            overrides = {k: v for k, v in cell.items() if k != "label"}
            for m in methods:
                values = {**spec["base"], **overrides, **m["config"], "method": m["method"],
                          "block_size": m["block_size"], "seed": int(seed)}
                try:
                    cfg = validate(config_from(values), files=False)  # data is checked when a run starts
                except ConfigError as e:
                    raise ConfigError(f"study {spec['name']}, cell {cell['label']}, {m['label']}: {e}") from None
                cfg.out = str(Path(runs_dir) / f"{m['label'].replace(':', '-b')}-{run_key(cfg)}")
                cfg.resume = "auto"
                tags = {"label": m["label"], "method": m["method"], "block_size": m["block_size"],
                        "cell": cell["label"], "seed": int(seed)}
                plan.append((tags, cfg))
    return plan


def _record(tags: dict, r: dict, key: str) -> dict:
    keep = ("train_samples", "params", "convention", "steps", "train_time", "train_cpu", "wall_time", "val_acc",
            "val_loss", "eval", "curve", "run_dir", "train_fraction")
    return {**tags, "key": key, **{k: r.get(k) for k in keep}}


def recorded_runs(results_root: Path) -> dict[str, dict]:
    """Run records of every study's results.json under ``results_root``, by run key.

    Committed results are enough to resume a study on a fresh checkout: the run
    directories (checkpoints, logs) need not survive, the records do.
    """
    found: dict[str, dict] = {}
    for path in sorted(Path(results_root).glob("*/results.json")):
        try:
            runs = json.loads(path.read_text()).get("runs", [])
        except (OSError, ValueError, AttributeError):
            continue
        for r in runs if isinstance(runs, list) else []:
            if isinstance(r, dict) and isinstance(r.get("key"), str):
                found.setdefault(r["key"], r)
    return found


def run_study(spec: dict, out: str | Path, runs_dir: str | Path, *, jobs: int | None = None, console=None,
              command: str = "", launcher=None) -> dict:
    """Run (or finish) a study and render its report; returns the results dict.

    ``launcher`` (``liere.launch``) says where the runs execute (default: the local pool of ``jobs``);
    ``results["launch"]`` tells which runs are still pending (submitted, not waited for) or failed.
    """

    from .study_report import render_study

    out, runs_dir = Path(out), Path(runs_dir)
    plan = plan_study(spec, runs_dir)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out: {out} is a file, expected a directory")
    out.mkdir(parents=True, exist_ok=True)
    runs_dir.mkdir(parents=True, exist_ok=True)
    meta = {k: spec.get(k) for k in ("name", "title", "claim", "source", "columns", "paper", "checks", "notes",
                                     "target_of", "seeds")}
    meta.update(cells=[c["label"] for c in spec["cells"]], methods=[_method_entry(m)["label"] for m in spec["methods"]],
                base=spec["base"], smoke=bool(spec.get("smoke") is True), command=command,
                created=time.strftime("%Y-%m-%d %H:%M:%S"))
    previous = out / "results.json"
    if previous.is_file():  # keep the wall time already spent by earlier (killed) invocations
        try:
            meta["wall_time_before"] = float(json.loads(previous.read_text())["meta"].get("wall_time", 0.0))
        except (OSError, ValueError, KeyError, TypeError):
            pass
    results = {"meta": meta, "runs": []}
    done: dict[int, dict] = {}
    todo = []
    recorded = recorded_runs(out.parent)
    for i, (tags, cfg) in enumerate(plan):
        key = run_key(cfg)
        r = finished_result(cfg)
        if r is not None:
            done[i] = _record(tags, r, key)
        elif key in recorded:  # finished elsewhere (another session, another study): its record is enough
            done[i] = {**recorded[key], **tags}
        else:
            todo.append(i)
    t0 = time.perf_counter()

    def save() -> None:
        results["runs"] = [done[k] for k in sorted(done)]
        meta["wall_time"] = meta.get("wall_time_before", 0.0) + time.perf_counter() - t0
        meta["runs_planned"], meta["runs_done"] = len(plan), len(done)
        write_json(out / "results.json", results)

    if console is not None:
        console.print(f"[bold]liere study {spec['name']}[/bold]{' (smoke)' if meta['smoke'] else ''}: "
                      f"{len(plan)} runs, {len(plan) - len(todo)} already finished -> {out}", soft_wrap=True)
    save()

    def record(j: int, r: dict | None) -> None:
        i = todo[j]
        if r is None:
            return
        tags, cfg = plan[i]
        done[i] = _record(tags, r, run_key(cfg))
        save()
        if console is not None:
            console.print(f"{tags['label']} {tags['cell']} seed {tags['seed']}: val acc {100 * r['val_acc']:.1f}%  "
                          f"[dim]{r['steps']} steps, {r['train_time']:.0f} s; {len(done)}/{len(plan)} done, "
                          f"{(time.perf_counter() - t0) / 60:.1f} min[/dim]")

    sub = [(plan[i][0]["label"], plan[i][1]) for i in todo]
    launcher = launcher or LocalLauncher(jobs)
    local = isinstance(launcher, LocalLauncher)
    launched = launcher.run(sub, record, console=None if local else console, show_progress=not local)
    save()
    sweep = {"kind": "study", "spec": spec, "runs_dir": str(runs_dir), "command": command}
    launch = note_launch(out, sweep, launcher, launched, sub, console)
    results["outputs"] = render_study(results, out, console)
    results["launch"] = launch
    return results
