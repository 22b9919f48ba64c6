"""`liere study`: every shipped study's smoke version end to end, resume after a kill, verdict arithmetic."""

import json
import math
import os
import signal
import subprocess
import sys
import time

import pytest

from liere.train.study import list_studies, load_study, plan_study, smoke_version
from liere.train.study_report import evaluate_check, main_table, measure_values, overall_verdict

from .conftest import CIFAR_ARCHIVE, run_cli

STUDIES = ["grid", "resolution", "efficiency", "text", "video"]


def test_list_names_every_study_and_its_claim(tmp_path):
    proc = run_cli(["study", "--list"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    for name in STUDIES:
        assert name in proc.stdout
    assert "RoPE-Mixed degrades" in proc.stdout.replace("\n", " ")


@pytest.mark.parametrize("name", STUDIES)
def test_full_study_plans_at_least_three_seeds(name, tmp_path):
    spec = load_study(name)
    plan = plan_study(spec, tmp_path)
    assert len(spec["seeds"]) >= 3
    assert len(plan) == len(spec["seeds"]) * len(spec["cells"]) * len(spec["methods"])
    assert len({cfg.out for _, cfg in plan}) == len(plan)  # every run has its own directory


def test_efficiency_shares_its_full_data_runs_with_resolution(tmp_path):
    res = {cfg.out for _, cfg in plan_study(load_study("resolution"), tmp_path)}
    eff = [(t, cfg.out) for t, cfg in plan_study(load_study("efficiency"), tmp_path)]
    full = [out for t, out in eff if t["cell"] == "100%"]
    assert full and all(out in res for out in full)
    assert not any(out in res for t, out in eff if t["cell"] != "100%")


def test_unknown_study_is_a_one_line_error(tmp_path):
    proc = run_cli(["study", "gird"], tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "'gird'" in proc.stderr and "grid" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


@pytest.mark.slow
@pytest.mark.parametrize("name", STUDIES)
def test_smoke_study_end_to_end(name, tmp_path):
    needs_cifar = load_study(name)["base"].get("task") == "cifar10"
    if needs_cifar and not CIFAR_ARCHIVE.is_file():
        pytest.skip(f"{CIFAR_ARCHIVE} is not here")
    args = ["study", name, "--smoke", "--out", "out", "--runs-dir", "runs"]
    if needs_cifar:
        args += ["--archive", str(CIFAR_ARCHIVE)]
    t0 = time.perf_counter()
    proc = run_cli(args, tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert time.perf_counter() - t0 < 180  # the bound is 2 minutes on the 2-core machine; slack for CI load
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    spec = smoke_version(load_study(name))
    assert len(results["runs"]) == len(spec["seeds"]) * len(spec["cells"]) * len(spec["methods"])
    summary = (tmp_path / "out" / "summary.md").read_text()
    assert "## Results" in summary and "SMOKE" in summary
    if load_study(name).get("checks"):
        assert "## Verdict" in summary
    for png in ("study_bars.png", "study_curves.png"):
        assert (tmp_path / "out" / png).stat().st_size > 1000
    # A second invocation finds everything done and trains nothing.
    again = run_cli(args, tmp_path, timeout=120)
    assert again.returncode == 0 and f"{len(results['runs'])} already finished" in again.stdout


@pytest.mark.slow
def test_killed_study_resumes_with_only_the_missing_runs(tmp_path):
    args = [sys.executable, "-m", "liere.cli", "study", "grid", "--smoke", "--out", "out", "--runs-dir", "runs",
            "--jobs", "1"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    proc = subprocess.Popen(args, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    results = tmp_path / "out" / "results.json"
    deadline = time.time() + 120
    done = 0
    while time.time() < deadline and proc.poll() is None:
        if results.is_file():
            try:
                done = len(json.loads(results.read_text())["runs"])
            except (ValueError, KeyError):
                done = 0
            if done >= 2:
                break
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert 2 <= done < 12, f"the sweep should be killed part-way, it had {done} runs"
    finished = len(json.loads(results.read_text())["runs"])
    resumed = run_cli(["study", "grid", "--smoke", "--out", "out", "--runs-dir", "runs", "--jobs", "1"], tmp_path,
                      timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert f"12 runs, {finished} already finished" in resumed.stdout
    assert len(json.loads(results.read_text())["runs"]) == 12
    # A fresh checkout keeps results/, not the run directories: the records alone resume the study.
    import shutil

    shutil.rmtree(tmp_path / "runs")
    again = run_cli(["study", "grid", "--smoke", "--out", "out", "--runs-dir", "runs"], tmp_path, timeout=120)
    assert again.returncode == 0 and "12 runs, 12 already finished" in again.stdout


# ----- verdict arithmetic, against numbers worked out by hand -------------------------------------
def _results(values: dict[str, list[float]], cell: str = "main") -> dict:
    runs = [{"label": m, "cell": cell, "seed": i, "val_acc": v, "val_loss": 1 - v, "eval": {}, "curve": [],
             "steps": 100} for m, vs in values.items() for i, v in enumerate(vs)]
    return {"meta": {"cells": [cell], "methods": list(values)}, "runs": runs}


def test_check_holds_beyond_noise():
    r = _results({"a": [0.90, 0.92, 0.94], "b": [0.50, 0.52, 0.54]})
    c = evaluate_check(r, {"text": "", "better": {"method": "a"}, "than": {"method": "b"}})
    # Δ = 40 points; s = 2 points each, SE = sqrt(4/3 + 4/3) = 1.633 points.
    assert c["delta"] == pytest.approx(40.0) and c["se"] == pytest.approx(math.sqrt(8 / 3))
    assert c["verdict"] == "holds"
    flipped = evaluate_check(r, {"better": {"method": "b"}, "than": {"method": "a"}})
    assert flipped["verdict"] == "reversed"


def test_check_within_noise_both_ways():
    r = _results({"a": [0.60, 0.70, 0.80], "b": [0.58, 0.68, 0.78]})  # Δ = 2, SE = 8.2 points
    assert evaluate_check(r, {"better": {"method": "a"}, "than": {"method": "b"}})["verdict"] == "holds (within noise)"
    assert evaluate_check(r, {"better": {"method": "b"}, "than": {"method": "a"}})["verdict"] == "not seen (within noise)"


def test_lower_is_better_for_loss_and_tolerance_for_holds():
    r = _results({"a": [0.90, 0.91, 0.92], "b": [0.80, 0.81, 0.82]})  # losses 0.1 vs 0.2
    assert evaluate_check(r, {"better": {"method": "a", "metric": "loss"},
                              "than": {"method": "b", "metric": "loss"}})["verdict"] == "holds"
    # b falls 10 points short of a: within a 15-point tolerance it "holds", within 5 it is "reversed".
    assert evaluate_check(r, {"holds": {"method": "a"}, "to": {"method": "b"}, "tolerance": 0.15})["verdict"] == "holds"
    assert evaluate_check(r, {"holds": {"method": "a"}, "to": {"method": "b"}, "tolerance": 0.05})["verdict"] == "reversed"


def test_steps_to_target_counts_unreached_runs_as_lower_bounds():
    curve_fast = [{"step": 10, "val_acc": 0.5}, {"step": 20, "val_acc": 0.8}]
    curve_slow = [{"step": 10, "val_acc": 0.5}, {"step": 20, "val_acc": 0.6}]
    r = {"meta": {"cells": ["main"], "methods": ["fast", "base"]}, "runs": [
        {"label": "fast", "cell": "main", "val_acc": 0.8, "curve": curve_fast},
        {"label": "base", "cell": "main", "val_acc": 0.7, "curve": curve_slow},
    ]}
    # base's final accuracy 0.7 is the target: fast reaches it at step 20; base never does (counted as 20, 0/1).
    assert measure_values(r, {"method": "fast", "metric": "steps_to", "target_of": "base"}) == ([20.0], 1, 1)
    assert measure_values(r, {"method": "base", "metric": "steps_to", "target_of": "base"}) == ([20.0], 0, 1)


def test_one_seed_gets_no_verdict_and_tables_say_how_many_seeds():
    # One value per side has no spread: the old code called +40 points with SE 0 "holds".
    r = _results({"a": [0.90], "b": [0.50]})
    c = evaluate_check(r, {"text": "", "better": {"method": "a"}, "than": {"method": "b"}})
    assert c["verdict"] == "too few seeds" and c["se"] is None and c["delta"] == pytest.approx(40.0)
    assert c["a"] == "90.0 (1 seed)"
    assert overall_verdict([c, {"verdict": "holds"}]).startswith("incomplete")
    # Two of three planned seeds: mean ± std, marked.
    r = _results({"a": [0.90, 0.92], "b": [0.50]})
    r["meta"]["seeds"] = [0, 1, 2]
    header, rows = main_table(r)
    assert rows == [["a", "91.0 ± 1.4 (2 of 3 seeds)"], ["b", "50.0 (1 seed)"]]


def test_overall_verdict():
    assert overall_verdict([{"verdict": "holds"}, {"verdict": "holds"}]) == "reproduced"
    assert overall_verdict([{"verdict": "holds"}, {"verdict": "reversed"}]) == "partly reproduced"
    assert overall_verdict([{"verdict": "holds (within noise)"}]) == "partly reproduced"
    assert overall_verdict([{"verdict": "not seen (within noise)"}, {"verdict": "reversed"}]) == "not reproduced"
    assert overall_verdict([{"verdict": "holds"}, {"verdict": "no data"}]).startswith("incomplete")


def test_shipped_studies_are_listed():
    assert sorted(s["name"] for s in list_studies()) == sorted(STUDIES)
