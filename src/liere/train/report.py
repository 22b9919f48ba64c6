"""Tables and plots of a comparison, rendered from ``results.json`` alone (so ``liere report`` can redo them).

Outputs in the comparison directory:

* ``results.csv``    one row per run (method, seed, fraction, accuracy at every size, timings)
* ``summary.md``     Markdown tables: accuracy (mean ± std over seeds) per method and resolution;
                     data efficiency (accuracy per training fraction); training efficiency
                     (steps and training seconds to reach the target accuracy)
* ``accuracy_by_method.png``, ``accuracy_by_resolution.png``, ``learning_curves.png``,
  ``data_efficiency.png`` (with several fractions), ``time_to_target.png`` (with a target)
"""

from __future__ import annotations

import csv
import json
import math
import statistics
from pathlib import Path

__all__ = ["render", "summary_rows", "load_results", "mean_std", "time_to_target", "noise_lines"]


def target_accuracy_of(meta: dict) -> float:
    return float(meta["target_accuracy"])


#: What every comparison's results.json holds (and ``render`` reads).
_META_KEYS = ("task", "image_size", "eval_sizes", "seeds")
_RUN_KEYS = ("label", "train_fraction", "eval", "val_acc", "train_time")


def load_results(path: str | Path) -> dict:
    """The results of ``liere compare`` (or ``liere study``), checked: a ConfigError naming the file otherwise."""
    from .config import ConfigError

    path = Path(path)
    if path.is_dir():
        path = path / "results.json"
    if not path.is_file():
        raise ConfigError(f"results: {path} does not exist (run `liere compare` first)")
    try:
        results = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(f"results: {path} is not a text file (expected the results.json of liere compare)") from None
    except json.JSONDecodeError as e:
        raise ConfigError(f"results: {path} is not valid JSON ({e})") from None
    except OSError as e:
        raise ConfigError(f"results: {path} cannot be read ({e.strerror or e})") from None
    problem = _results_problem(results)
    if problem:
        raise ConfigError(f"results: {path} is not the results.json of liere compare or liere study ({problem})")
    return results


def _results_problem(results) -> str | None:
    """What is missing from a results mapping, or None when it can be rendered."""
    if not isinstance(results, dict):
        return f"expected a JSON object, got {type(results).__name__}"
    meta, runs = results.get("meta"), results.get("runs")
    if not isinstance(meta, dict):
        return "no 'meta' object"
    if not isinstance(runs, list) or not all(isinstance(r, dict) for r in runs):
        return "no 'runs' list"
    if not runs:
        return "no finished runs"
    if "cells" in meta:  # a study: liere.train.study_report checks its own fields
        missing = [k for k in ("name", "title", "claim") if k not in meta]
        return f"meta lacks {', '.join(missing)}" if missing else None
    missing = [k for k in _META_KEYS if k not in meta]
    if missing:
        return f"meta lacks {', '.join(missing)}"
    if not isinstance(meta["eval_sizes"], list) or not isinstance(meta["seeds"], list):
        return "meta.eval_sizes and meta.seeds must be lists"
    for i, r in enumerate(runs):
        missing = [k for k in _RUN_KEYS if k not in r]
        if missing:
            return f"run {i} lacks {', '.join(missing)}"
        if not isinstance(r["eval"], dict):
            return f"run {i}: 'eval' must be an object"
    return None


def mean_std(values) -> tuple[float, float]:
    values = [v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    if not values:
        return float("nan"), float("nan")
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def fmt(m: float, s: float, scale: float = 100.0, digits: int = 1, sep: str = " ± ") -> str:
    if math.isnan(m):
        return "–"
    return f"{m * scale:.{digits}f}{sep}{s * scale:.{digits}f}"


def time_to_target(curve: list[dict], target: float | None) -> tuple[int | None, float | None]:
    """(steps, training seconds) at the first validation with val_acc >= target, or (None, None)."""
    if target is None:
        return None, None
    for p in curve:
        if p.get("val_acc") is not None and p["val_acc"] >= target:
            return p["step"], p["train_time"]
    return None, None


def _methods(results: dict) -> list[str]:
    seen = []
    for r in results["runs"]:
        if r["label"] not in seen:
            seen.append(r["label"])
    return seen


def _full_fraction(results: dict) -> float:
    return max(r["train_fraction"] for r in results["runs"])


def summary_rows(results: dict) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the main table: accuracy per evaluation size (mean ± std), at the full fraction."""
    meta = results["meta"]
    sizes = [str(s) for s in meta["eval_sizes"]]
    unit = "ctx" if meta.get("kind") == "text" else "px"
    target = meta.get("target_accuracy")
    full = _full_fraction(results)
    header = ["method", *[f"acc@{s}{unit}" + (" (train)" if int(s) == meta["image_size"] else "") for s in sizes],
              "positions", "params", "train s"]
    if target is not None:
        header += [f"steps to {target:.0%}", f"train s to {target:.0%}"]
    rows = []
    for label in _methods(results):
        runs = [r for r in results["runs"] if r["label"] == label and r["train_fraction"] == full]
        row = [label]
        for s in sizes:
            row.append(fmt(*mean_std([r["eval"].get(s, {}).get("acc") for r in runs])))
        row.append(str(runs[0].get("convention") or "–") if runs else "–")
        row.append(f"{runs[0]['params'] / 1e3:.0f}k" if runs else "–")
        row.append(fmt(*mean_std([r["train_time"] for r in runs]), scale=1.0, digits=0))
        if target is not None:
            steps = [r.get("steps_to_target") for r in runs]
            secs = [r.get("time_to_target") for r in runs]
            reached = sum(s is not None for s in steps)
            suffix = "" if reached == len(runs) else f" ({reached}/{len(runs)} reached)"
            row.append((fmt(*mean_std(steps), scale=1.0, digits=0) if reached else "not reached") + suffix)
            row.append((fmt(*mean_std(secs), scale=1.0, digits=0) if reached else "not reached") + suffix)
        rows.append(row)
    return header, rows


def noise_lines(results: dict) -> list[str]:
    """Which methods the seeds cannot tell from the best, at the training size (full data).

    A method is *within noise* of the best when the difference of mean accuracies is
    at most twice its standard error, sqrt(s_best²/n_best + s²/n) over seeds.
    """
    meta, full = results["meta"], _full_fraction(results)
    size = str(meta["image_size"])
    stats = {}
    for label in _methods(results):
        accs = [r["eval"].get(size, {}).get("acc") for r in results["runs"]
                if r["label"] == label and r["train_fraction"] == full]
        accs = [a for a in accs if a is not None]
        if accs:
            stats[label] = (*mean_std(accs), len(accs))
    if len(stats) < 2:
        return []
    best = max(stats, key=lambda k: stats[k][0])
    mb, sb, nb = stats[best]
    if nb < 2:
        return [f"Best at the training size: {best}; with one seed, no difference can be called beyond noise."]
    tied, below = [], []
    for label, (m, sd, n) in stats.items():
        if label == best:
            continue
        delta, se = mb - m, math.sqrt(sb**2 / nb + sd**2 / max(n, 1))
        (tied if delta <= 2 * se else below).append(f"{label} (−{100 * delta:.1f} ± {100 * se:.1f})")
    lines = [f"Best at the training size: {best} ({100 * mb:.1f} ± {100 * sb:.1f}%, {nb} seeds)."]
    lines.append("Within noise of it (difference ≤ 2 standard errors): " + (", ".join(tied) if tied else "none") + ".")
    lines.append("Below it beyond noise: " + (", ".join(below) if below else "none") + ".")
    return lines


def fraction_rows(results: dict) -> tuple[list[str], list[list[str]]]:
    fractions = sorted({r["train_fraction"] for r in results["runs"]})
    header = ["method", *[f"{f:g} of data" for f in fractions]]
    rows = []
    for label in _methods(results):
        row = [label]
        for f in fractions:
            runs = [r for r in results["runs"] if r["label"] == label and r["train_fraction"] == f]
            row.append(fmt(*mean_std([r["val_acc"] for r in runs])))
        rows.append(row)
    return header, rows


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def write_csv(results: dict, path: Path) -> None:
    sizes = [str(s) for s in results["meta"]["eval_sizes"]]
    cols = ["label", "method", "block_size", "seed", "train_fraction", "train_samples", "params", "steps",
            "train_time", "wall_time", "val_acc", "val_loss", *[f"acc@{s}" for s in sizes],
            *[f"loss@{s}" for s in sizes], "steps_to_target", "time_to_target"]
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(cols)
        for r in results["runs"]:
            ev = r["eval"]
            w.writerow([r.get(c) for c in cols[:12]] + [ev.get(s, {}).get("acc") for s in sizes]
                       + [ev.get(s, {}).get("loss") for s in sizes] + [r.get("steps_to_target"), r.get("time_to_target")])


def _save(fig, path):
    """Lay out, write as a 120-dpi PNG and close ``fig``; returns ``path``."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _plots(results: dict, out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    meta, runs = results["meta"], results["runs"]
    methods, full = _methods(results), _full_fraction(results)
    sizes = [str(s) for s in meta["eval_sizes"]]
    unit = "context length" if meta.get("kind") == "text" else "image size (px)"
    paths = []

    # Accuracy against method, one bar per evaluation size.
    fig, ax = plt.subplots(figsize=(max(6, 1.3 * len(methods)), 4))
    width = 0.8 / max(1, len(sizes))
    for j, s in enumerate(sizes):
        stats = [mean_std([r["eval"].get(s, {}).get("acc") for r in runs if r["label"] == m
                           and r["train_fraction"] == full]) for m in methods]
        xs = [i + (j - (len(sizes) - 1) / 2) * width for i in range(len(methods))]
        ax.bar(xs, [100 * m for m, _ in stats], width, yerr=[100 * sd for _, sd in stats], capsize=3,
               label=f"{s}" + (" (train)" if int(s) == meta["image_size"] else ""))
    ax.set_xticks(range(len(methods)), methods, rotation=20)
    ax.set_ylabel("validation accuracy (%)")
    ax.set_title(f"{meta['task']}: accuracy by method and {unit}")
    ax.legend(title=unit, fontsize=8)
    lo = min([100 * r["eval"][s]["acc"] for r in runs for s in sizes if s in r["eval"]] or [0])
    ax.set_ylim(max(0, lo - 10), 100)
    paths.append(_save(fig, out / "accuracy_by_method.png"))

    # Accuracy against resolution, one line per method.
    fig, ax = plt.subplots(figsize=(6, 4))
    xs = [int(s) for s in sizes]
    for m in methods:
        stats = [mean_std([r["eval"].get(s, {}).get("acc") for r in runs if r["label"] == m
                           and r["train_fraction"] == full]) for s in sizes]
        ax.errorbar(xs, [100 * a for a, _ in stats], yerr=[100 * sd for _, sd in stats], marker="o", capsize=3, label=m)
    ax.axvline(meta["image_size"], color="grey", ls=":", lw=1)
    ax.set_xlabel(unit + " (dotted: training)")
    ax.set_ylabel("validation accuracy (%)")
    ax.set_xticks(xs)
    ax.set_title("resolution generalisation")
    ax.legend(fontsize=8)
    paths.append(_save(fig, out / "accuracy_by_resolution.png"))

    # Learning curves: validation accuracy against steps and training seconds (mean over seeds).
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for m in methods:
        curves = [r["curve"] for r in runs if r["label"] == m and r["train_fraction"] == full and r["curve"]]
        if not curves:
            continue
        n = min(len(c) for c in curves)
        steps = [curves[0][i]["step"] for i in range(n)]
        secs = [statistics.fmean(c[i]["train_time"] for c in curves) for i in range(n)]
        acc = [100 * statistics.fmean(c[i]["val_acc"] for c in curves) for i in range(n)]
        axes[0].plot(steps, acc, marker=".", label=m)
        axes[1].plot(secs, acc, marker=".", label=m)
    target = meta.get("target_accuracy")
    for ax, xl in zip(axes, ("optimizer steps", "training time (s)")):
        if target is not None:
            ax.axhline(100 * target, color="grey", ls=":", lw=1)
        ax.set_xlabel(xl)
        ax.set_ylabel("validation accuracy (%)")
        ax.legend(fontsize=8)
    fig.suptitle("learning curves" + (f" (dotted: target {target:.0%})" if target is not None else ""))
    paths.append(_save(fig, out / "learning_curves.png"))

    fractions = sorted({r["train_fraction"] for r in runs})
    if len(fractions) > 1:
        fig, ax = plt.subplots(figsize=(6, 4))
        for m in methods:
            stats = [mean_std([r["val_acc"] for r in runs if r["label"] == m and r["train_fraction"] == f])
                     for f in fractions]
            ax.errorbar(fractions, [100 * a for a, _ in stats], yerr=[100 * sd for _, sd in stats], marker="o",
                        capsize=3, label=m)
        ax.set_xscale("log")
        ax.set_xticks(fractions, [f"{f:g}" for f in fractions])
        ax.set_xlabel("fraction of the training data")
        ax.set_ylabel("validation accuracy (%)")
        ax.set_title("data efficiency")
        ax.legend(fontsize=8)
        paths.append(_save(fig, out / "data_efficiency.png"))

    if target is not None:
        fig, ax = plt.subplots(figsize=(max(6, 1.3 * len(methods)), 4))
        stats = [mean_std([r.get("time_to_target") for r in runs if r["label"] == m and r["train_fraction"] == full])
                 for m in methods]
        vals = [0 if math.isnan(a) else a for a, _ in stats]
        ax.bar(range(len(methods)), vals, yerr=[0 if math.isnan(s) else s for _, s in stats], capsize=3)
        for i, (a, _) in enumerate(stats):
            if math.isnan(a):
                ax.text(i, 0, "not\nreached", ha="center", va="bottom", fontsize=8)
        ax.set_xticks(range(len(methods)), methods, rotation=20)
        ax.set_ylabel(f"training seconds to {target:.0%} val accuracy")
        ax.set_title("training efficiency")
        paths.append(_save(fig, out / "time_to_target.png"))
    return paths


def render(results: dict, out: str | Path, console=None) -> dict:
    """Write results.csv, summary.md and the PNG plots into ``out``; print the table. Returns the paths."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for r in results["runs"]:  # recompute from the curve, so a new target in `liere report` works
        r["steps_to_target"], r["time_to_target"] = time_to_target(r.get("curve", []),
                                                                   results["meta"].get("target_accuracy"))
    write_csv(results, out / "results.csv")
    header, rows = summary_rows(results)
    meta = results["meta"]
    md = [f"# {meta['task']}: position encodings compared", "",
          f"Trained at {meta['image_size']} ({meta.get('model', '')}), {len(meta['seeds'])} seed(s): "
          f"{', '.join(map(str, meta['seeds']))}. Accuracy in % (mean ± std over seeds) on the validation set.", "",
          markdown_table(header, rows), ""]
    noise = noise_lines(results)
    if noise:
        md += [" ".join(noise), ""]
    if len({r["train_fraction"] for r in results["runs"]}) > 1:
        fh, fr = fraction_rows(results)
        md += ["## Data efficiency (accuracy at the training resolution)", "", markdown_table(fh, fr), ""]
    (out / "summary.md").write_text("\n".join(md))
    plots = _plots(results, out)
    if console is not None:
        from rich.table import Table

        # Two narrow tables (accuracy, then efficiency) fit an 80-column terminal.
        compact = [[c.replace(" ± ", "±").replace(" reached)", ")").replace("not reached", "–") for c in row]
                   for row in rows]
        n_acc = 1 + len(meta["eval_sizes"])
        table = Table(title=f"{meta['task']}: validation accuracy (%, mean±std over {len(meta['seeds'])} seed(s))",
                      caption="* training size; positions: the convention of each method")
        for h in header[:n_acc] + ["positions"]:
            table.add_column(h.replace("acc@", "").replace(" (train)", "*"), justify="left" if h == "method" else "right",
                             no_wrap=True)
        for row in compact:
            table.add_row(*row[:n_acc], row[n_acc])
        console.print(table)
        for line in noise:
            console.print(line, soft_wrap=True)
        eff = Table(title="training cost" + (f" and efficiency (to {target_accuracy_of(meta):.0%} val accuracy)"
                                            if meta.get("target_accuracy") is not None else ""))
        for h in ["method", "params", "train s", *header[n_acc + 3:]]:
            eff.add_column(h, justify="left" if h == "method" else "right", no_wrap=True)
        for row in compact:
            eff.add_row(row[0], *row[n_acc + 1 :])
        console.print(eff)
        if len({r["train_fraction"] for r in results["runs"]}) > 1:
            fh, fr = fraction_rows(results)
            t2 = Table(title="data efficiency: accuracy (%) by fraction of training data")
            for h in fh:
                t2.add_column(h)
            for row in fr:
                t2.add_row(*row)
            console.print(t2)
    return {"csv": out / "results.csv", "markdown": out / "summary.md", "plots": plots}


