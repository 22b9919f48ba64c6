"""Same seed, same machine, same numbers: the demo's way of running (parallel single-thread workers) twice."""

import json

import pytest

from .conftest import run_cli


@pytest.mark.slow
def test_compare_twice_gives_identical_numbers(tmp_path, tiny_args):
    args = ["compare", *[a for a in tiny_args if a not in ("--threads", "1")], "--methods", "rope_mixed,liere:4",
            "--seeds", "0,1", "--epochs", "2", "--jobs", "2", "--eval-sizes", "16,24"]
    runs = []
    for name in ("a", "b"):
        proc = run_cli([*args, "--out", name], tmp_path, timeout=300)
        assert proc.returncode == 0, proc.stderr[-2000:]
        runs.append(json.loads((tmp_path / name / "results.json").read_text())["runs"])
    key = lambda r: (r["label"], r["seed"])  # noqa: E731 - completion order differs between invocations
    a, b = sorted(runs[0], key=key), sorted(runs[1], key=key)
    assert [key(r) for r in a] == [key(r) for r in b] and len(a) == 4
    for ra, rb in zip(a, b):
        assert ra["eval"] == rb["eval"]  # accuracy and loss at every size, to the last bit
        assert [p["val_loss"] for p in ra["curve"]] == [p["val_loss"] for p in rb["curve"]]
    assert a[0]["eval"] != a[1]["eval"]  # and the seeds really differ
