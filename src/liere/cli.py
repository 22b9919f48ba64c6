"""The ``liere`` command: ``train``, ``compare``, ``study``, ``report``, ``inspect``, ``bench``.

    liere compare                                   # the offline demo: 6 encodings on the pointing task
    liere compare --task text --methods rope,liere:8
    liere train --config cifar100 --method liere --devices 4
    liere train --task pointing --method rope_mixed --epochs 5 --out runs/rm --checkpoint-every-n-steps 50
    liere train --out runs/rm --resume              # continue an interrupted run from its last.ckpt
    liere study --list                              # the studies: each tests one published claim
    liere study grid                                # run (or finish) one; results/grid/summary.md has the verdict
    liere report runs/compare-20250101-120000       # re-render tables and plots from results.json
    liere study grid --launcher submitit --slurm-partition gpu --gpus-per-run 1   # one SLURM job per run
    liere report results/grid                       # gather the runs that finished (README: On a cluster)
    liere inspect runs/rm                           # commutators, relativity, frequencies of a trained encoding
    liere bench                                     # speed benchmarks (liere.bench)

Bad arguments (unknown method or dataset, missing data, sizes the patch grid cannot
tile) are reported on one line, with exit code 2 and no traceback.
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
import time
import warnings
from pathlib import Path

from liere._argtypes import positive_int as _positive_int

__all__ = ["main", "build_parser"]

# The offline demo (`liere compare` with no arguments) and the text comparison are defined once, in the
# shipped recipes liere/configs/pointing.yaml and text.yaml (their `compare:` sections name methods and seeds).
DEMO_RECIPES = {None: "pointing", "pointing": "pointing", "text": "text"}


class CLIError(Exception):
    """Raised for a bad argument; ``main`` prints it and returns 2."""


class _Parser(argparse.ArgumentParser):
    """argparse, but an error is one line (``liere train: error: argument --lr: ...``), not the usage block."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


# ----- argument types: each raises ArgumentTypeError, which argparse turns into "argument --x: ..." and exit 2
def _int_list(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.replace(" ", "").split(",") if v]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not values or min(values) < 0:
        raise argparse.ArgumentTypeError(f"expected non-negative integers, got {text!r}")
    return values


def _finite(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def _int_arg(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None


def _float_list(text: str) -> list[float]:
    try:
        values = [float(v) for v in text.replace(" ", "").split(",") if v]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None
    if not values:
        raise argparse.ArgumentTypeError("expected at least one number")
    if not all(math.isfinite(v) for v in values):
        raise argparse.ArgumentTypeError(f"expected finite numbers, got {text!r}")
    return values


def _str_list(text: str) -> list[str]:
    values = [v for v in text.replace(" ", "").split(",") if v]
    if not values:
        raise argparse.ArgumentTypeError("expected at least one name")
    return values


def _patch(text: str):
    values = _int_list(text)
    if min(values) < 1 or len(values) not in (1, 2, 3):
        raise argparse.ArgumentTypeError(f"expected a size like 4 or 2,16,16, got {text!r}")
    return values[0] if len(values) == 1 else values


def _devices(text: str):
    if text == "auto":
        return text
    if "," in text:
        return _int_list(text)
    try:
        return _positive_int(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"expected auto, a positive number of devices or a list of ids like 0,1, "
                                         f"got {text!r}") from None


def _bool(text: str) -> bool:
    if text.lower() in ("1", "true", "yes", "on"):
        return True
    if text.lower() in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def _add_train_args(p: argparse.ArgumentParser, compare: bool) -> None:
    """Flags shared by train and compare; defaults are None so YAML/config values are kept unless given."""
    from liere.encodings import ALIASES, METHODS
    from liere.positions import CONVENTIONS
    from liere.train.compare import DEFAULT_METHODS, TEXT_METHODS

    S = argparse.SUPPRESS
    g = p.add_argument_group("data")
    g.add_argument("--config", help="YAML recipe (a path, or a shipped one: cifar100, imagenet, ucf101, pointing)")
    g.add_argument("--task", help="dataset: pointing (default), moving, cifar10, cifar100, imagefolder, "
                                  "videoframes, volumes, text")
    g.add_argument("--data-root", help="data directory (cifar*/imagefolder/videoframes/volumes) or text file")
    g.add_argument("--archive", help="cifar10 only: a JPEG class-folder archive such as cifar10-jpg.tgz")
    g.add_argument("--image-size", type=_positive_int, help="training resolution in pixels")
    g.add_argument("--num-frames", type=_positive_int, help="frames per clip (video tasks)")
    g.add_argument("--context-length", type=_positive_int, help="text: training sequence length")
    g.add_argument("--eval-sizes", type=_int_list,
                   help="also evaluate at these resolutions (text: context lengths), e.g. 32,48,64")
    g.add_argument("--eval-scalings", type=_str_list,
                   help="also evaluate other sizes with positions placed by these rules: extend, rescale")
    g.add_argument("--train-samples", type=_positive_int, help="cap on training items")
    g.add_argument("--val-samples", type=_positive_int, help="cap on validation items")
    g.add_argument("--augment", help="default (the dataset's), none, flip, crop_flip, randaugment")
    if compare:
        g.add_argument("--train-fraction", type=_float_list,
                       help="fractions of the training data, e.g. 0.1,0.3,1.0 (data efficiency)")
    else:
        g.add_argument("--train-fraction", type=_finite, help="use this fraction of the training data")
    g = p.add_argument_group("model")
    if compare:
        g.add_argument("--methods", type=_str_list,
                       help=f"comma-separated encodings, NAME or NAME:BLOCK (default: {','.join(DEFAULT_METHODS)}; "
                            f"text: {','.join(TEXT_METHODS)})")
    else:
        aliases = ", ".join(f"{alias} = {name}" for alias, name in ALIASES.items())
        g.add_argument("--method", help=f"position encoding: {', '.join(METHODS)} (aliases: {aliases})")
        g.add_argument("--block-size", type=_positive_int, help="rotation block size (liere: 2..head_dim)")
    g.add_argument("--size", help="model size: micro, nano, tiny (22M), base (86M), large")
    g.add_argument("--dim", type=_positive_int, help=S)
    g.add_argument("--depth", type=_positive_int, help=S)
    g.add_argument("--num-heads", type=_positive_int, help=S)
    g.add_argument("--patch-size", type=_patch, help="patch size, or T,H,W tubelet for video (e.g. 2,16,16)")
    g.add_argument("--pool", help="cls or mean")
    g.add_argument("--num-registers", type=_int_arg, help="register tokens")
    g.add_argument("--share-layers", type=_bool, help="true: one set of generators for all layers")
    g.add_argument("--convention", help=f"position convention: {', '.join(CONVENTIONS)} (default: the method's)")
    g.add_argument("--position-jitter", type=_finite, metavar="SIGMA",
                   help="ComRoPE's training-time jitter of patch coordinates, in patch spacings (default 0: off)")
    g = p.add_argument_group("optimisation")
    g.add_argument("--epochs", type=_positive_int)
    g.add_argument("--max-steps", type=_int_arg, help=S)
    g.add_argument("--batch-size", type=_positive_int, help="per-device batch size")
    g.add_argument("--lr", type=_finite, help="peak learning rate")
    g.add_argument("--optimizer", help="adam or adamw")
    g.add_argument("--weight-decay", type=_finite)
    g.add_argument("--warmup-epochs", type=_finite)
    g.add_argument("--label-smoothing", type=_finite, help=S)
    if not compare:
        g.add_argument("--seed", type=int)
    else:
        g.add_argument("--seeds", type=_int_list, help="comma-separated seeds (default: the recipe's compare.seeds, else 0)")
        g.add_argument("--target-accuracy", type=_finite,
                       help="report steps and training seconds to reach this validation accuracy (e.g. 0.8)")
    g = p.add_argument_group("system")
    g.add_argument("--devices", type=_devices, help="devices per node (int, list or auto)")
    g.add_argument("--num-nodes", type=_positive_int)
    g.add_argument("--accelerator", help="auto, cpu, gpu")
    g.add_argument("--strategy", help="auto, ddp, ddp_spawn, fsdp, ...")
    g.add_argument("--precision", help="auto (bf16-mixed on capable GPUs, else 32-true), 32-true, bf16-mixed")
    g.add_argument("--num-workers", type=_int_arg, help="DataLoader workers")
    g.add_argument("--threads", type=_positive_int, help="CPU threads per process")
    g.add_argument("--compile", action="store_true", default=None,
                   help="torch.compile the model (inductor); the first step's compile time is reported as compile_s")
    if compare:
        g.add_argument("--jobs", type=_positive_int,
                       help="runs in parallel (default on CPU: one single-thread run per core)")
    g = p.add_argument_group("output")
    g.add_argument("--out", help="output directory" + (" (default runs/compare-<time>)" if compare
                                                       else " (default runs/train-<method>-<time>)"))
    g.add_argument("--logger", help="csv (default), tensorboard, none")
    g.add_argument("--progress", help="rich (default), tqdm, none")
    g.add_argument("--val-every", type=_finite, help="validate every this fraction of an epoch")
    if compare:
        g.add_argument("--checkpoints", action="store_true", default=None, help="also save checkpoints of each run")
    else:
        g.add_argument("--checkpoint-every-n-steps", type=_positive_int, help="save last.ckpt every N steps")
        g.add_argument("--no-checkpoints", dest="checkpoints", action="store_false", default=None)
        g.add_argument("--resume", nargs="?", const="auto",
                       help="continue from CHECKPOINT, or (no value) from --out's checkpoints/last.ckpt")
        g.add_argument("--kill-at-step", type=_int_arg, help=S)  # tests: SIGKILL self after this step


_NOT_CONFIG = {"config", "command", "methods", "seeds", "target_accuracy", "kill_at_step", "train_fraction", "jobs"}


def _overrides(args: argparse.Namespace) -> dict:
    return {k: v for k, v in vars(args).items() if v is not None and k not in _NOT_CONFIG}


def _make_config(args, defaults: dict | None = None):
    """Config of a command: TrainConfig defaults < ``defaults`` < the --config YAML < flags."""
    from liere.train.config import config_from, load_config

    if args.config:
        return load_config(args.config, defaults=defaults, **_overrides(args))
    return config_from(defaults, **_overrides(args))


def _quiet_lightning() -> None:
    for name in ("lightning.pytorch", "lightning.fabric", "lightning"):
        logging.getLogger(name).setLevel(logging.WARNING)
    for pattern in (".*does not have many workers.*", ".*LeafSpec.*", ".*log_every_n_steps.*",
                    ".*litlogger.*", ".*val_check_interval.*", ".*Checkpoint directory .* exists and is not empty.*",
                    ".*is smaller than the logging interval.*"):
        warnings.filterwarnings("ignore", message=pattern)


def cmd_train(args) -> int:
    from rich.console import Console

    from liere.train import fit
    from liere.train.callbacks import KillAtStep
    from liere.train.checkpoint import resolve_resume
    from liere.train.config import validate

    console = Console()
    if args.resume == "auto" and not args.out:
        raise CLIError("--resume: give the run to continue with --out DIR (or a checkpoint: --resume PATH)")
    saved = Path(args.out) / "config.yaml" if args.out else None
    use_saved = args.resume and not args.config and saved is not None and saved.is_file()
    if use_saved:
        # Resuming continues the run as it was configured; flags given now still override.
        args.config = str(saved)
    cfg = _make_config(args)
    if args.train_fraction is not None:
        cfg.train_fraction = args.train_fraction
    validate(cfg)
    from liere.launch import check_config

    check_config(cfg)  # strategy/devices that cannot run here (FSDP on a CPU, ...): exit 2 before anything is written
    if cfg.resume is not None:
        # Which checkpoint, checked to load, before the run directory is touched; never a silent restart.
        run_dir = Path(cfg.out) if cfg.out else None
        point = resolve_resume(run_dir or Path("."), cfg.resume, required=True)
        cfg.resume = point.path
        console.print(point.describe(run_dir) + (f", with the run's saved config {saved}" if use_saved else ""),
                      soft_wrap=True)
    callbacks = [KillAtStep(args.kill_at_step)] if args.kill_at_step else []
    result = fit(cfg, callbacks=callbacks)
    if result is None:
        return 0
    evals = "  ".join(f"{s}: {100 * v['acc']:.2f}%" for s, v in result["eval"].items())
    console.print(f"[bold]{result['method']}[/bold] on {cfg.task}: val accuracy {evals}  "
                  f"(val loss {result['val_loss']:.4f}; {result['steps']} steps, {result['train_time']:.0f} s training)")
    console.print(f"run directory: {result['run_dir']}")
    return 0


def resolve_compare(args):
    """(config, methods, seeds, target accuracy) of `liere compare`: recipe < flags, the demo with no arguments."""
    from liere.train.compare import DEFAULT_METHODS, TEXT_METHODS
    from liere.train.config import compare_section

    if args.config is None and args.task in DEMO_RECIPES:
        args.config = DEMO_RECIPES[args.task]
    recipe = compare_section(args.config) if args.config else {}
    cfg = _make_config(args, {"progress": "rich", "eval_sizes": []})
    cfg.checkpoints = bool(args.checkpoints)
    if cfg.task == "text" and args.eval_sizes is None and args.context_length:
        cfg.eval_sizes = [args.context_length * k for k in (1, 2, 4)]
    if cfg.task != "text" and not cfg.eval_sizes and cfg.image_size:
        cfg.eval_sizes = [cfg.image_size]
    methods = args.methods or recipe.get("methods") or list(TEXT_METHODS if cfg.task == "text" else DEFAULT_METHODS)
    seeds = args.seeds or recipe.get("seeds") or [0]
    target = args.target_accuracy if args.target_accuracy is not None else recipe.get("target_accuracy")
    return cfg, list(methods), list(seeds), target


def cmd_compare(args) -> int:
    from rich.console import Console

    from liere.launch import check_config, make_launcher, options_from_args
    from liere.train.compare import run_compare

    launch = options_from_args(args)
    cfg, methods, seeds, target = resolve_compare(args)
    out = args.out or f"runs/compare-{time.strftime('%Y%m%d-%H%M%S')}"
    check_config(cfg, launch)
    launcher = make_launcher(launch, Path(out) / "submitit")
    launcher.open()
    console = Console()
    console.print(f"[bold]liere compare[/bold]: {', '.join(methods)} on [bold]{cfg.task}[/bold] "
                  f"({cfg.size} model, {cfg.epochs} epochs, seeds {', '.join(map(str, seeds))}) -> {out}",
                  soft_wrap=True)
    t0 = time.perf_counter()
    try:
        results = run_compare(cfg, methods, seeds, args.train_fraction or [1.0], target,
                              out, console, show_progress=cfg.progress != "none", jobs=args.jobs, launcher=launcher)
    finally:
        launcher.close()
    status = 1 if results["launch"]["failed"] else 0
    if not results["runs"]:
        return status
    outputs = results["outputs"]
    # Paths are printed unwrapped, so they can be copied from any terminal.
    console.print(f"results: {out}/results.json, {outputs['csv']}, {outputs['markdown']}", soft_wrap=True)
    console.print("plots:   " + ", ".join(outputs["plots"]), soft_wrap=True)
    console.print(f"total wall time {(time.perf_counter() - t0) / 60:.1f} min")
    return status


def cmd_study(args) -> int:
    from rich.console import Console

    from liere.launch import check_config, make_launcher, options_from_args
    from liere.train.study import list_studies, load_study, plan_study, run_study, smoke_version

    console = Console()
    launch = options_from_args(args)
    if args.list:
        for spec in list_studies():
            console.print(f"[bold]{spec['name']:<11}[/bold] {spec['title']}: {' '.join(spec['claim'].split())}",
                          soft_wrap=True)
        return 0
    if not args.name:
        raise CLIError("study: give a study name (see `liere study --list`)")
    spec = load_study(args.name)
    if args.smoke:
        spec = smoke_version(spec)
    if args.archive:
        spec["base"] = {**spec["base"], "archive": args.archive}
    name = spec["name"]
    out = args.out or (f"runs/smoke-{name}" if args.smoke else f"results/{name}")
    runs_dir = args.runs_dir or ("runs/smoke-runs" if args.smoke else "runs/study-runs")
    for flag, path in (("--out", out), ("--runs-dir", runs_dir)):
        if Path(path).exists() and not Path(path).is_dir():
            raise CLIError(f"{flag}: {path} is a file, expected a directory")
    command = "liere study " + " ".join(sys.argv[2:]) if sys.argv[1:2] == ["study"] else f"liere study {args.name}"
    for _, cfg in plan_study(spec, runs_dir):
        check_config(cfg, launch)
    launcher = make_launcher(launch, Path(runs_dir) / "submitit")
    launcher.open()
    t0 = time.perf_counter()
    try:
        results = run_study(spec, out, runs_dir, jobs=args.jobs, console=console, command=command, launcher=launcher)
    finally:
        launcher.close()
    outputs = results["outputs"]
    console.print(f"results: {out}/results.json, {outputs['csv']}, {outputs['markdown']}", soft_wrap=True)
    if outputs["plots"]:
        console.print("plots:   " + ", ".join(map(str, outputs["plots"])), soft_wrap=True)
    console.print(f"verdict: {outputs['verdict']}; wall time {(time.perf_counter() - t0) / 60:.1f} min")
    return 1 if results["launch"]["failed"] else 0


def cmd_report(args) -> int:
    from rich.console import Console

    from liere.launch.sweep import gather
    from liere.train.report import load_results, render

    src = Path(args.results)
    gathered = gather(src if src.is_dir() else src.parent, Console())  # a sweep submitted earlier: collect its runs
    if gathered is not None and not gathered["runs"]:
        return 0
    if gathered is not None and args.out is None and args.target_accuracy is None:
        outputs = gathered["outputs"]
        print(f"wrote {outputs['csv']}, {outputs['markdown']}, " + ", ".join(map(str, outputs["plots"])))
        return 1 if gathered["launch"]["failed"] else 0
    results = load_results(args.results)
    if args.target_accuracy is not None and not 0 < args.target_accuracy <= 1:
        raise CLIError(f"--target-accuracy: expected a fraction in (0, 1], got {args.target_accuracy}")
    src = Path(args.results)
    out = Path(args.out) if args.out else (src if src.is_dir() else src.parent)
    if out.exists() and not out.is_dir():
        raise CLIError(f"--out: {out} is a file, expected a directory")
    try:
        if "cells" in results["meta"]:  # a study's results
            from liere.train.study_report import render_study

            outputs = render_study(results, out, Console())
        else:
            if args.target_accuracy is not None:
                results["meta"]["target_accuracy"] = args.target_accuracy
            outputs = render(results, out, Console())
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as e:
        raise CLIError(f"results: {args.results} holds values liere report cannot read "
                       f"({type(e).__name__}: {' '.join(str(e).split())[:160]})") from None
    print(f"wrote {outputs['csv']}, {outputs['markdown']}, " + ", ".join(map(str, outputs["plots"])))
    return 0


def cmd_inspect(args) -> int:
    from rich.console import Console

    from liere.train.inspect import inspect_path

    result = inspect_path(args.path, args.out)
    console = Console()
    console.print(result["table"], soft_wrap=True, highlight=False)
    console.print(f"wrote {', '.join(result['paths'].values())}", soft_wrap=True, highlight=False)
    return 0


def cmd_bench(args, rest: list[str]) -> int:
    try:
        from liere import bench
    except ImportError as e:
        raise CLIError(f"liere bench: the benchmark module liere.bench is not available ({e})") from None
    return int(bench.main(rest) or 0)


def build_parser() -> argparse.ArgumentParser:
    from liere.launch.options import add_launch_args

    parser = _Parser(prog="liere", description="Train and compare rotary position encodings "
                                     "(LieRE, RoPE-Mixed, axial RoPE, ComRoPE, STRING, spherical, absolute).",
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n\n")[1])
    sub = parser.add_subparsers(dest="command", metavar="{train,compare,study,report,inspect,bench}")
    p = sub.add_parser("train", help="train one model", description="Train one ViT (or text LM) with one "
                       "position encoding. Flags override the --config YAML, which overrides the defaults.")
    _add_train_args(p, compare=False)
    p = sub.add_parser("compare", help="compare position encodings x seeds on one task (the demo)",
                       description="Train each method for each seed (and training fraction), evaluate at several "
                       "resolutions, and write results.json, results.csv, summary.md and PNG plots. With no "
                       "arguments: the offline demo on the embedded pointing task (~10 min on 2 CPU cores).")
    _add_train_args(p, compare=True)
    add_launch_args(p)
    p = sub.add_parser("study", help="test a published claim: a sweep of runs with seeds, tables and a verdict",
                       description="Run a study (a YAML sweep shipped in liere/studies, or a path), or finish one: runs "
                       "that already finished are skipped, a killed run continues from its last checkpoint. Writes "
                       "results.json, results.csv, summary.md (the paper's numbers beside ours and a verdict) and "
                       "PNG plots.")
    p.add_argument("name", nargs="?", help="a shipped study (see --list) or a YAML file")
    p.add_argument("--list", action="store_true", help="list the shipped studies and their claims")
    p.add_argument("--smoke", action="store_true", help="a tiny version of the study (under 2 minutes), for CI")
    p.add_argument("--out", help="results directory (default results/NAME, or runs/smoke-NAME with --smoke)")
    p.add_argument("--runs-dir", help="where the runs live, shared by studies (default runs/study-runs)")
    p.add_argument("--jobs", type=_positive_int, help="runs in parallel (default on CPU: one per core)")
    p.add_argument("--archive", help="the CIFAR-10 JPEG archive for the CIFAR studies (default "
                                     "../shared/data/cifar10-jpg.tgz)")
    add_launch_args(p)
    p = sub.add_parser("report", help="re-render tables and plots from results.json",
                       description="Re-render results.csv, summary.md and the plots of a comparison.")
    p.add_argument("results", help="a results.json, or the comparison directory holding it")
    p.add_argument("--target-accuracy", type=_finite, help="recompute steps/time to this accuracy")
    p.add_argument("--out", help="output directory (default: next to results.json)")
    p = sub.add_parser("inspect", help="diagnose a trained encoding: commutators, relativity, frequencies",
                       description="Per layer and head: how far the generators are from commuting, how far the "
                       "encoding is from relative (largest logit change under a common shift of both positions), "
                       "and the rotation frequencies against RoPE's. Writes report.json and PNGs, prints a table.")
    p.add_argument("path", help="a run directory (its checkpoints/best.ckpt or last.ckpt) or a checkpoint file")
    p.add_argument("--out", help="output directory (default: RUN_DIR/inspect)")
    sub.add_parser("bench", help="speed benchmarks (arguments go to liere.bench)", add_help=False,
                   description="Speed benchmarks; run `liere bench --help` for their options.")
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    from liere.allocator import tune_if_requested

    tune_if_requested()  # before the first large allocation; see liere/allocator.py
    parser = build_parser()
    if argv and argv[0] == "bench":
        try:
            return cmd_bench(None, argv[1:])
        except CLIError as e:
            print(f"liere: error: {e}", file=sys.stderr)
            return 2
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    _quiet_lightning()
    from liere.train.config import ConfigError

    try:
        if args.command == "train":
            return cmd_train(args)
        if args.command == "compare":
            return cmd_compare(args)
        if args.command == "study":
            return cmd_study(args)
        if args.command == "inspect":
            return cmd_inspect(args)
        return cmd_report(args)
    except (ConfigError, CLIError) as e:
        print(f"liere {args.command}: error: {' '.join(str(e).split())}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"liere {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
