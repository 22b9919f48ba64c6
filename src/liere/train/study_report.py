"""Tables, verdicts and plots of a study, rendered from its ``results.json`` alone.

A *measure* picks one number per run: ``{method, cell, eval, metric, at, target_of}``

* ``eval``: "train" (the training size, default), a size ("48"), or a size and a
  placement ("48@rescale", "48@extend");
* ``metric``: ``acc`` (default, higher is better), ``loss`` or ``bpc`` (lower is
  better), or ``steps_to`` / ``cpu_to`` (lower is better): optimizer steps or CPU
  seconds of training until the validation accuracy first reaches the mean final
  accuracy of method ``target_of`` in the same cell. A run that never gets there
  counts with its whole training (a lower bound), and the table says how many did;
* ``at``: read the learning curve at this fraction of training instead of the end.

A *check* is one part of a claim: ``better: MEASURE, than: MEASURE`` (A beats B),
or ``holds: MEASURE, to: MEASURE, tolerance: T`` (B is not worse than A by more than
T). With the difference of means Δ (oriented so that > 0 favours the claim) and its
standard error SE = sqrt(s_A²/n_A + s_B²/n_B) over seeds, a check is

* ``holds``             Δ > 2 SE,
* ``holds (within noise)``   0 < Δ ≤ 2 SE,
* ``not seen (within noise)`` -2 SE ≤ Δ ≤ 0,
* ``reversed``          Δ < -2 SE,
* ``too few seeds``     either side has fewer than 2 finished seeds: with one value
  there is no spread, so no standard error and no verdict (a partial study shows Δ
  but does not call it).

The claim is *reproduced* when every check holds beyond noise, *partly* when some
do (or all only within noise), *not reproduced* when none does, and *incomplete*
while some parts have no runs yet or too few seeds.
"""

from __future__ import annotations

import csv
import math
import statistics
import textwrap
from pathlib import Path

from .report import markdown_table, mean_std

__all__ = ["render_study", "measure_values", "evaluate_check", "column_cells"]

LOWER_IS_BETTER = {"loss", "bpc", "steps_to", "cpu_to"}


def _runs(results: dict, method: str, cell: str) -> list[dict]:
    return [r for r in results["runs"] if r["label"] == method and r["cell"] == cell]


def _default_cell(results: dict) -> str:
    return results["meta"]["cells"][0]


def _from_point(point: dict, metric: str):
    if metric == "acc":
        return point.get("val_acc")
    loss = point.get("val_loss")
    if loss is None:
        return None
    return loss / math.log(2.0) if metric == "bpc" else loss


def _final(run: dict, key: str, metric: str):
    if key == "train":
        ev = {"acc": run.get("val_acc"), "loss": run.get("val_loss")}
    else:
        ev = (run.get("eval") or {}).get(key)
        if ev is None:
            return None
    if metric == "acc":
        return ev.get("acc")
    loss = ev.get("loss")
    return None if loss is None else (loss / math.log(2.0) if metric == "bpc" else loss)


def _steps_to(run: dict, target: float, metric: str) -> tuple[float | None, bool]:
    curve = run.get("curve") or []
    for p in curve:
        if p.get("val_acc") is not None and p["val_acc"] >= target:
            return (p["step"] if metric == "steps_to" else p.get("train_cpu", p.get("train_time"))), True
    if not curve:
        return None, False
    last = curve[-1]
    return (last["step"] if metric == "steps_to" else last.get("train_cpu", last.get("train_time"))), False


def measure_values(results: dict, m: dict) -> tuple[list[float], int, int]:
    """(values over seeds, runs that reached the target, runs) of one measure."""
    cell = str(m.get("cell", _default_cell(results)))
    metric = m.get("metric", "acc")
    key = str(m.get("eval", "train"))
    runs = _runs(results, m["method"], cell)
    values, reached = [], 0
    if metric in ("steps_to", "cpu_to"):
        target_runs = _runs(results, m["target_of"], cell)
        finals = [r["val_acc"] for r in target_runs if r.get("val_acc") is not None]
        if not finals:
            return [], 0, len(runs)
        target = statistics.fmean(finals)
        for r in runs:
            v, ok = _steps_to(r, target, metric)
            if v is not None:
                values.append(float(v))
                reached += ok
        return values, reached, len(runs)
    for r in runs:
        if "at" in m:
            curve = r.get("curve") or []
            want = float(m["at"]) * (r.get("steps") or 0)
            point = next((p for p in curve if p["step"] >= want), curve[-1] if curve else None)
            v = None if point is None else _from_point(point, metric)
        else:
            v = _final(r, key, metric)
        if v is not None and not (isinstance(v, float) and math.isnan(v)):
            values.append(float(v))
    return values, len(values), len(runs)


MIN_SEEDS = 2  # a standard error needs a spread


def _format(values: list[float], metric: str, reached: int | None = None, n: int | None = None,
            planned: int | None = None) -> str:
    """mean ± std; one value alone is marked "(1 seed)", and fewer seeds than planned "(k of n seeds)"."""
    if not values:
        return "–"
    m, s = mean_std(values)
    spread = len(values) >= MIN_SEEDS
    if metric == "acc":
        text = f"{100 * m:.1f}" + (f" ± {100 * s:.1f}" if spread else "")
    elif metric in ("loss", "bpc"):
        text = f"{m:.3f}" + (f" ± {s:.3f}" if spread else "")
    else:
        text = f"{m:.0f}" + (f" ± {s:.0f}" if spread else "")
        if reached is not None and n is not None and reached < n:
            text = f"≥ {text} ({reached}/{n} reached)"
    if not spread:
        text += " (1 seed)"
    elif planned and len(values) < planned:
        text += f" ({len(values)} of {planned} seeds)"
    return text


def _planned(results: dict) -> int | None:
    return len(results["meta"].get("seeds") or []) or None


def _seeds_phrase(results: dict) -> str:
    meta, planned = results["meta"], _planned(results)
    if planned and meta.get("runs_done", len(results["runs"])) < meta.get("runs_planned", 0):
        return f"mean ± std over the seeds finished so far, of {planned} planned"
    return f"mean ± std over {planned} seeds" if planned else "mean ± std over seeds"


def column_cells(results: dict) -> list[dict]:
    """The table's columns: the study's own, or each cell at its training size."""
    cols = results["meta"].get("columns")
    if cols:
        return [dict(c) for c in cols]
    return [{"label": c, "cell": c} for c in results["meta"]["cells"]]


def main_table(results: dict) -> tuple[list[str], list[list[str]]]:
    cols = column_cells(results)
    header = ["method", *[c["label"] for c in cols]]
    rows = []
    for method in results["meta"]["methods"]:
        row = [method]
        for c in cols:
            vals, reached, n = measure_values(results, {**c, "method": method})
            row.append(_format(vals, c.get("metric", "acc"), reached, n, _planned(results)))
        rows.append(row)
    return header, rows


def paper_table(results: dict) -> tuple[list[str], list[list[str]]] | None:
    paper = results["meta"].get("paper")
    if not paper:
        return None
    cols = {c["label"]: c for c in column_cells(results)}
    labels = paper["columns"]
    header = ["method"]
    for label in labels:
        header += [f"{label}: paper", f"{label}: ours"]
    rows = []
    for method, numbers in paper["values"].items():
        ours_label = paper.get("ours", {}).get(method, method)
        row = [method if ours_label == method else f"{method} (ours: {ours_label})"]
        for label, number in zip(labels, numbers):
            row.append("–" if number is None else f"{number:g}")
            c = cols.get(label)
            if c is None or ours_label not in results["meta"]["methods"]:
                row.append("–")
                continue
            vals, reached, n = measure_values(results, {**c, "method": ours_label})
            row.append(_format(vals, c.get("metric", "acc"), reached, n, _planned(results)))
        rows.append(row)
    return header, rows


def evaluate_check(results: dict, check: dict) -> dict:
    """Δ, its standard error and the verdict of one check (see the module docstring)."""
    if "better" in check:
        a, b, tol = check["better"], check["than"], 0.0
    else:
        a, b, tol = check["holds"], check["to"], float(check.get("tolerance", 0.0))
    metric = a.get("metric", "acc")
    va, ra, na = measure_values(results, a)
    vb, rb, nb = measure_values(results, b)
    planned = _planned(results)
    out = {"text": check.get("text", ""), "a": _format(va, metric, ra, na, planned),
           "b": _format(vb, metric, rb, nb, planned)}
    if len(va) == 0 or len(vb) == 0:
        return {**out, "delta": None, "se": None, "verdict": "no data"}
    (ma, sa), (mb, sb) = mean_std(va), mean_std(vb)
    sign = -1.0 if metric in LOWER_IS_BETTER else 1.0
    if "better" in check:
        delta = sign * (ma - mb)
    else:  # "holds": B may fall short of A by at most the tolerance
        delta = sign * (mb - ma) + tol
    se = math.sqrt(sa**2 / len(va) + sb**2 / len(vb))
    scale = 100.0 if metric == "acc" else 1.0
    if min(len(va), len(vb)) < MIN_SEEDS:
        return {**out, "delta": delta * scale, "se": None, "verdict": "too few seeds"}
    if delta > 2 * se:
        verdict = "holds"
    elif delta > 0:
        verdict = "holds (within noise)"
    elif delta >= -2 * se:
        verdict = "not seen (within noise)"
    else:
        verdict = "reversed"
    return {**out, "delta": delta * scale, "se": se * scale, "verdict": verdict}


def _delta_text(check: dict) -> str:
    if check["delta"] is None:
        return "–"
    return f"{check['delta']:+.2f}" + ("" if check["se"] is None else f" ± {check['se']:.2f}")


def overall_verdict(checks: list[dict]) -> str:
    if not checks or all(c["verdict"] == "no data" for c in checks):
        return "no data"
    missing = sum(c["verdict"] in ("no data", "too few seeds") for c in checks)
    if missing:
        return f"incomplete ({len(checks) - missing} of {len(checks)} parts measured on 2 or more seeds)"
    strong = sum(c["verdict"] == "holds" for c in checks)
    weak = sum(c["verdict"].startswith("holds") for c in checks)
    if strong == len(checks):
        return "reproduced"
    if weak:
        return "partly reproduced"
    return "not reproduced"


def write_csv(results: dict, path: Path) -> None:
    keys = sorted({k for r in results["runs"] for k in (r.get("eval") or {})}, key=lambda k: (len(k), k))
    cols = ["label", "method", "block_size", "cell", "seed", "train_fraction", "train_samples", "params", "steps",
            "train_time", "train_cpu", "val_acc", "val_loss"]
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(cols + [f"acc@{k}" for k in keys] + [f"loss@{k}" for k in keys])
        for r in results["runs"]:
            ev = r.get("eval") or {}
            w.writerow([r.get(c) for c in cols] + [ev.get(k, {}).get("acc") for k in keys]
                       + [ev.get(k, {}).get("loss") for k in keys])


def _plots(results: dict, out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .report import _save

    meta, paths = results["meta"], []
    methods, cols = meta["methods"], column_cells(results)
    metric = cols[0].get("metric", "acc") if cols else "acc"
    cols = [c for c in cols if c.get("metric", "acc") == metric]  # one axis: the first column's metric
    if cols:
        fig, ax = plt.subplots(figsize=(max(7, 0.9 * len(cols) * max(1, len(methods)) / 3), 4.2))
        width = 0.8 / max(1, len(methods))
        scale = 100.0 if metric == "acc" else 1.0
        for j, method in enumerate(methods):
            stats = [mean_std(measure_values(results, {**c, "method": method})[0]) for c in cols]
            xs = [i + (j - (len(methods) - 1) / 2) * width for i in range(len(cols))]
            ax.bar(xs, [0 if math.isnan(m) else scale * m for m, _ in stats], width,
                   yerr=[0 if math.isnan(s) else scale * s for _, s in stats], capsize=2, label=method)
        ax.set_xticks(range(len(cols)), [c["label"] for c in cols], rotation=20 if len(cols) > 5 else 0)
        ax.set_ylabel({"acc": "validation accuracy (%)", "loss": "validation loss (nats)", "bpc": "bits per character",
                       "steps_to": "optimizer steps", "cpu_to": "CPU seconds"}[metric])
        ax.set_title(f"{meta['title']}: {_seeds_phrase(results)}", fontsize=10)
        ax.legend(fontsize=7, ncol=min(4, len(methods)))
        paths.append(_save(fig, out / "study_bars.png"))

    cells = meta["cells"]
    fig, axes = plt.subplots(1, len(cells), figsize=(4.2 * len(cells), 3.6), squeeze=False)
    text = metric in ("loss", "bpc")  # language models: loss curves; classifiers: accuracy curves
    for ax, cell in zip(axes[0], cells):
        for method in methods:
            curves = [r["curve"] for r in _runs(results, method, cell) if r.get("curve")]
            if not curves:
                continue
            n = min(len(c) for c in curves)
            steps = [curves[0][i]["step"] for i in range(n)]
            key = "val_loss" if text else "val_acc"
            ys = [[c[i][key] for c in curves] for i in range(n)]
            mean = [statistics.fmean(y) * (1 if text else 100) for y in ys]
            sd = [(statistics.stdev(y) if len(y) > 1 else 0.0) * (1 if text else 100) for y in ys]
            line, = ax.plot(steps, mean, label=method, lw=1.2)
            ax.fill_between(steps, [m - s for m, s in zip(mean, sd)], [m + s for m, s in zip(mean, sd)],
                            color=line.get_color(), alpha=0.15, lw=0)
        ax.set_title(str(cell), fontsize=9)
        ax.set_xlabel("optimizer steps")
        ax.set_ylabel("validation loss" if text else "validation accuracy (%)")
    axes[0][0].legend(fontsize=7)
    # one cell makes a narrow figure: wrap the title to its width instead of clipping it
    width = max(30, int(11 * 4.2 * len(cells)))
    fig.suptitle("\n".join(textwrap.wrap(f"{meta['title']}: learning curves (mean ± std over seeds)", width)),
                 fontsize=10)
    paths.append(_save(fig, out / "study_curves.png"))
    return paths


def render_study(results: dict, out: str | Path, console=None) -> dict:
    """Write results.csv, summary.md (tables and verdicts) and the plots; print the tables."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    meta = results["meta"]
    write_csv(results, out / "results.csv")
    header, rows = main_table(results)
    checks = [evaluate_check(results, c) for c in meta.get("checks") or []]
    verdict = overall_verdict(checks)
    seeds = meta.get("seeds") or []
    wall = meta.get("wall_time", 0.0) / 60
    md = [f"# Study `{meta['name']}`: {meta['title']}", "",
          f"**Claim.** {meta['claim'].strip()}", ""]
    if meta.get("source"):
        md += [f"**Source.** {meta['source'].strip()}", ""]
    done, planned = meta.get("runs_done", len(results["runs"])), meta.get("runs_planned", "?")
    # wall_time adds up every session that ran part of the study (a resumed study keeps the earlier time).
    wall_text = f"Wall time {wall:.0f} min" if done == planned else f"Wall time so far {wall:.0f} min"
    md += [f"**Runs.** {done} of {planned} finished; "
           f"seeds {', '.join(map(str, seeds))}; mean ± std over seeds. {wall_text} (all sessions)."
           + (" SMOKE version: tiny budget, not evidence." if meta.get("smoke") else ""), ""]
    if meta.get("command"):
        md += [f"**Command.** `{meta['command']}`", ""]
    md += ["## Results", "", markdown_table(header, rows), ""]
    paper = paper_table(results)
    if paper is not None:
        md += ["## The paper's numbers beside ours", "", markdown_table(*paper), ""]
        if meta["paper"].get("note"):
            md += [meta["paper"]["note"].strip(), ""]
    if checks:
        md += [f"## Verdict: **{verdict}**", "",
               markdown_table(["part of the claim", "A", "B", "Δ (favouring the claim)", "verdict"],
                              [[c["text"], c["a"], c["b"],
                                _delta_text(c), c["verdict"]]
                               for c in checks]), "",
               "Δ ± SE: difference of means over seeds and its standard error; 'holds' needs Δ > 2 SE. A part "
               "with fewer than 2 finished seeds on a side shows Δ alone and gets no verdict ('too few seeds').", ""]
    if meta.get("notes"):
        md += ["## Notes", "", meta["notes"].strip(), ""]
    (out / "summary.md").write_text("\n".join(md))
    plots = _plots(results, out) if results["runs"] else []
    if console is not None:
        from rich.table import Table

        table = Table(title=f"{meta['title']} ({_seeds_phrase(results)})")
        for h in header:
            table.add_column(h, justify="left" if h == "method" else "right")
        for row in rows:
            table.add_row(*row)
        console.print(table)
        if checks:
            t2 = Table(title=f"verdict: {verdict}")
            for h in ("part of the claim", "Δ ± SE", "verdict"):
                t2.add_column(h)
            for c in checks:
                t2.add_row(c["text"], _delta_text(c), c["verdict"])
            console.print(t2)
    return {"csv": out / "results.csv", "markdown": out / "summary.md", "plots": plots, "verdict": verdict}
