"""The `liere` command: help for every subcommand, one-line errors with exit code 2, compare and report end to end."""

import json

import pytest

from liere.cli import main

from .conftest import TINY, run_cli


@pytest.mark.parametrize("command", ["train", "compare", "report"])
def test_help_for_every_subcommand(command, capsys):
    with pytest.raises(SystemExit) as exc:
        main([command, "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: liere {command}")
    assert ("--methods" in out) == (command == "compare")


def test_train_help_lists_every_method_and_convention_from_the_registry(capsys):
    import liere

    with pytest.raises(SystemExit):
        main(["train", "--help"])
    out = " ".join(capsys.readouterr().out.split())  # argparse wraps long help lines
    for name in [*liere.METHODS, *liere.ALIASES, *liere.positions.CONVENTIONS]:
        assert name in out, name


def test_top_level_help(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for command in ("train", "compare", "report", "bench"):
        assert command in out


def _error(argv, capsys) -> str:
    code = main(argv)
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    return err


@pytest.mark.parametrize("argv,names", [
    (["train", "--method", "lire"], ["--method", "'lire'", "liere", "rope_mixed", "visionllama"]),
    (["compare", "--methods", "rope_axial,lire"], ["--methods", "'lire'", "comrope_ld"]),
    (["train", "--task", "imagenot"], ["--task", "'imagenot'", "pointing", "cifar100"]),
    (["train", "--image-size", "30", "--patch-size", "4"], ["--image-size", "30", "patch size 4"]),
    (["compare", "--eval-sizes", "32,50"], ["--eval-sizes", "50"]),
    (["train", "--size", "gigantic"], ["--size", "gigantic", "base"]),
    (["train", "--task", "imagefolder", "--data-root", "/nonexistent/imagenet"], ["--data-root", "/nonexistent/imagenet"]),
    (["train", "--task", "imagefolder"], ["--data-root"]),
    (["train", "--task", "cifar10", "--archive", "/nonexistent/c10.tgz"], ["--archive", "/nonexistent/c10.tgz"]),
    (["train", "--config", "/nonexistent/recipe.yaml"], ["--config", "cifar100"]),
    (["train", "--block-size", "64", "--method", "liere"], ["--block-size", "head_dim=16"]),
    (["train", "--resume", "/nonexistent/last.ckpt"], ["--resume"]),
    (["compare", "--train-fraction", "0.5,1.5"], ["--train-fraction", "1.5"]),
    (["report", "/nonexistent/results.json"], ["results.json"]),
])
def test_bad_arguments_are_one_line_errors(argv, names, capsys):
    err = _error(argv + ["--progress", "none"] if argv[0] != "report" else argv, capsys)
    for name in names:
        assert name in err, (name, err)


def test_argparse_type_errors_exit_2(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["train", "--epochs", "zero"])
    assert exc.value.code == 2
    assert "--epochs" in capsys.readouterr().err


def test_console_script_reports_errors_without_traceback(tmp_path):
    proc = run_cli(["train", "--method", "nope"], tmp_path, timeout=120)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and "--method" in proc.stderr and "liere" in proc.stderr


def test_compare_and_report_end_to_end(tmp_path, capsys):
    out = tmp_path / "cmp"
    argv = ["compare", *TINY, "--methods", "rope_axial,absolute", "--seeds", "0,1", "--epochs", "1",
            "--train-samples", "64", "--val-samples", "64", "--eval-sizes", "16,24", "--target-accuracy", "0.01",
            "--out", str(out), "--val-every", "0.5", "--jobs", "2"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "rope_axial" in printed and "absolute" in printed and "accuracy_by_resolution.png" in printed
    results = json.loads((out / "results.json").read_text())
    runs = results["runs"]
    assert [(r["label"], r["seed"]) for r in runs] == [("rope_axial", 0), ("absolute", 0), ("rope_axial", 1),
                                                      ("absolute", 1)]
    for r in runs:
        assert set(r["eval"]) == {"16", "24"} and 0.0 <= r["eval"]["24"]["acc"] <= 1.0
        assert r["steps"] == 2 and len(r["curve"]) == 2
        assert r["steps_to_target"] == 1  # any accuracy >= 1% at the first validation
    csv_lines = (out / "results.csv").read_text().splitlines()
    assert len(csv_lines) == 5 and csv_lines[0].startswith("label,method,block_size,seed")
    md = (out / "summary.md").read_text()
    assert "| rope_axial |" in md and "acc@24px" in md
    pngs = {p.name for p in out.glob("*.png")}
    assert {"accuracy_by_method.png", "accuracy_by_resolution.png", "learning_curves.png",
            "time_to_target.png"} <= pngs
    for p in out.glob("*.png"):
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        p.unlink()
    (out / "summary.md").unlink()
    # report re-renders everything from results.json alone, with a new target.
    assert main(["report", str(out / "results.json"), "--target-accuracy", "0.99"]) == 0
    assert {p.name for p in out.glob("*.png")} == pngs
    assert "steps to 99%" in (out / "summary.md").read_text()
