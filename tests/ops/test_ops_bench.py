"""Smoke test of ``liere bench`` (liere.bench.main): tiny shapes, no timing assertions."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from liere import bench
from liere.ops import cpu_kernel


def test_quick_tiny_run_has_every_row(tmp_path, capsys):
    pytest.importorskip("rotary_embedding_torch")
    out = tmp_path / "bench.json"
    assert bench.main(["--quick", "--tiny", "--case", "vit", "--repeats", "1", "--warmup", "0",
                       "--json", str(out)]) == 0
    table = capsys.readouterr().out
    labels = [*bench.PEERS, *(label for label, _, _ in bench.LIERE_ROWS)]
    for label in labels:
        assert any(line.startswith(label) for line in table.splitlines()), label
    result = json.loads(out.read_text())["results"][0]
    rows = {r["label"]: r for r in result["rows"]}
    assert set(rows) == set(labels)
    assert all(r["error"] is None and r["median_ms"] > 0 and r["peak_mb"] is not None for r in rows.values())
    assert {t["row"] for t in result["targets"]} == {row for row, _, _ in bench.TARGETS}


def test_quick_tiny_3d_and_expm(capsys):
    pytest.importorskip("rotary_embedding_torch")
    assert bench.main(["--quick", "--tiny", "--case", "3d", "--repeats", "1", "--warmup", "0", "--no-memory"]) == 0
    assert bench.main(["--quick", "--case", "expm", "--repeats", "1", "--warmup", "0"]) == 0
    text = capsys.readouterr().out
    assert "== 3d" in text and "== expm" in text and "spherical b=3" in text


def test_step_case_tiny_every_method(capsys, tmp_path):
    """``liere bench --case step`` on a tiny ViT: every row, both batch sizes, ratios to RoPE-Mixed, peaks."""
    out = tmp_path / "step.json"
    assert bench.main(["--case", "step", "--tiny", "--repeats", "1", "--warmup", "0", "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "== step" in text
    # Columns stay apart: the ratio, then the paired ratio and its quartiles (they once ran together).
    row = next(line.split() for line in text.splitlines() if line.startswith("rope_mixed"))
    assert row[3:7] == ["1.00", "1.000", "[1.000,", "1.000]"]
    result = json.loads(out.read_text())["results"][0]
    rows = {(r["label"], r["batch"]): r for r in result["rows"]}
    labels = [label for label, *_ in bench.STEP_ROWS]
    assert set(rows) == {(label, b) for label in labels for b in bench.STEP_TINY.batches}
    assert all(r["median_ms"] > 0 and r["peak_mb"] is not None and r["ratio"] > 0 for r in rows.values())
    assert rows[("rope_mixed", 2)]["ratio"] == 1.0 and rows[("rope_mixed", 2)]["paired_ratio"] == 1.0
    assert {(t["row"], t["batch"]) for t in result["targets"]} == set()  # targets are for the full case's batches
    assert all(r["faults_per_step"] is None or r["faults_per_step"] >= 0 for r in rows.values())
    assert result["allocator"] and "Allocator: " in text


def test_step_case_methods_filter(capsys):
    assert bench.main(["--case", "step", "--tiny", "--repeats", "1", "--warmup", "0", "--no-memory",
                       "--batch", "3", "--methods", "liere b=8"]) == 0
    lines = [line.split()[0] for line in capsys.readouterr().out.splitlines()[3:]
             if line and not line.startswith(("target", "CPU kernels", "Allocator"))]
    assert lines == ["rope_mixed", "liere"]
    with pytest.raises(SystemExit):
        bench.main(["--case", "step", "--tiny", "--methods", "nope"])


def test_step_case_no_kernel_rows_run_with_the_kernels_off(capsys, monkeypatch):
    """'<row> no-kernel' is the same row with the CPU kernels off; rows without blocks have no such variant."""
    from liere.ops import cpu_kernel

    seen = []
    real = bench._train_step
    monkeypatch.setattr(bench, "_train_step", lambda *a: seen.append(cpu_kernel._state["override"]) or real(*a))
    assert bench.main(["--case", "step", "--tiny", "--repeats", "1", "--warmup", "0", "--no-memory",
                       "--batch", "3", "--methods", "liere b=8", "liere b=8 no-kernel"]) == 0
    out = capsys.readouterr().out
    rows = [line.split("  ")[0] for line in out.splitlines()[3:] if line.startswith(("rope", "liere"))]
    assert rows == ["rope_mixed", "liere b=8", "liere b=8 no-kernel"]
    assert sorted(seen, key=str) == [False, None, None]  # one step each; only the no-kernel row turned the kernels off
    assert "CPU kernels: " in out
    with pytest.raises(SystemExit, match="unknown row"):
        bench.main(["--case", "step", "--tiny", "--methods", "rope_axial no-kernel"])


def test_paired_ratio_cancels_drift_between_rounds():
    # The machine runs 2x slower in round 2: the medians' ratio (2/1.2 over 1/1) would say 1.2, 1.25 or
    # whatever the slow round does to each median; every round's own ratio is 1.1.
    method, reference = [1.1, 2.2, 1.1, 1.1], [1.0, 2.0, 1.0, 1.0]
    assert bench.paired_ratio(method, reference) == pytest.approx((1.1, 1.1, 1.1))
    # Ratios 0.9, 1.0, 1.2, 1.5: median 1.1; inclusive quartiles 0.975 and 1.275 (worked by hand).
    assert bench.paired_ratio([0.9, 2.0, 3.6, 6.0], [1.0, 2.0, 3.0, 4.0]) == pytest.approx((1.1, 0.975, 1.275))
    with pytest.raises(ValueError, match="paired_ratio"):
        bench.paired_ratio([1.0], [1.0, 2.0])


def test_rounds_rotate_the_order_of_the_rows():
    labels = ["rope_mixed", "a", "b"]
    orders = [bench.round_order(labels, r) for r in range(4)]
    assert orders == [["rope_mixed", "a", "b"], ["a", "b", "rope_mixed"], ["b", "rope_mixed", "a"],
                      ["rope_mixed", "a", "b"]]
    assert [o[0] for o in orders[:3]] == labels  # every row leads one round in three


def test_rotation_in_step_benchmark_runs_every_method():
    """benchmarks/rotation_in_step.py at a tiny batch, one round: a line per method, each timed."""
    script = Path(__file__).resolve().parents[2] / "benchmarks" / "rotation_in_step.py"
    done = subprocess.run([sys.executable, str(script), "--batch", "2", "--rounds", "1", "--kept-inputs"],
                          capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr
    rows = [line.split() for line in done.stdout.splitlines() if line.startswith("  ")]
    blocks = ["spherical:3", "comrope_ap:4", "comrope_ld:4", "liere:8"]
    assert [r[0] for r in rows] == ["none", "rope_mixed", *blocks, *(m + "/kept-inputs" for m in blocks)]
    assert all(float(r[1]) > 0 for r in rows)


@pytest.mark.skipif(not cpu_kernel.available(), reason="no CPU kernels")
def test_block_kernel_benchmark_checks_its_results():
    """benchmarks/block_kernel.py for a banded and a lane-wide size: each line's own check against einsum."""
    script = Path(__file__).resolve().parents[2] / "benchmarks" / "block_kernel.py"
    done = subprocess.run([sys.executable, str(script), "3", "8"], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr
    lines = [line.split() for line in done.stdout.splitlines() if line.startswith("b=")]
    assert [line[0] for line in lines] == ["b=3", "b=8"]
    assert all(float(line[-3]) < 1e-4 and float(line[-1]) < 1e-4 for line in lines)
