"""One flat, typed configuration for a training run, loadable from YAML and overridable from the CLI.

Precedence: dataclass defaults < a command's own defaults < YAML file (``--config``) < command-line
flags. Every key
of a YAML recipe must be a field of ``TrainConfig``; a typo is an error that names it.
Checks that need no data (sizes divisible by the patch, known method and dataset,
positive numbers) run in ``validate`` before anything is built, so a bad argument
fails in a second with a one-line message instead of a traceback minutes later.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

__all__ = ["TrainConfig", "ConfigError", "load_config", "compare_section", "validate", "config_from"]


class ConfigError(ValueError):
    """A bad argument or config value; the CLI prints it on one line and exits with code 2."""


@dataclass
class TrainConfig:
    # ----- data
    task: str = "pointing"                 # a liere.data dataset name
    data_root: str | None = None           # root= for cifar*/imagefolder/volumes/videoframes, path= for text
    archive: str | None = None             # cifar10 from a JPEG class-folder archive (.tgz)
    data_options: dict = field(default_factory=dict)  # further build_dataset options (num_frames, channels, ...)
    image_size: int | None = None          # training resolution (None: the dataset's own)
    num_frames: int | None = None          # video clips: frames per clip
    context_length: int = 128              # text: training sequence length
    train_samples: int | None = None       # cap on training items (None: all / dataset default)
    val_samples: int | None = None         # cap on validation items
    train_fraction: float = 1.0            # use this fraction of the training items (data-efficiency curves)
    augment: str | None = "default"        # "default" (the dataset's), "none", "flip", "crop_flip", "randaugment"
    eval_sizes: list = field(default_factory=list)  # extra evaluation resolutions (text: context lengths)
    eval_scalings: list = field(default_factory=list)  # also evaluate other sizes with positions "extend"-ed/"rescale"-d
    # ----- model
    size: str = "micro"                    # micro | nano | tiny | base | large
    dim: int | None = None                 # override the named size
    depth: int | None = None
    num_heads: int | None = None
    patch_size: Any = 4                    # int, or [t, h, w] tubelets for video
    method: str = "liere"
    block_size: int | None = None          # rotation block size (liere: 2..head_dim; None: method default)
    share_layers: bool = False
    share_heads: bool = False
    convention: str | None = None          # position convention (None: the method's)
    pool: str = "cls"                      # cls | mean
    num_registers: int = 0
    drop_path: float = 0.0
    position_jitter: float = 0.0           # ComRoPE's training-time jitter of patch coordinates (patch spacings)
    pe_options: dict = field(default_factory=dict)
    # ----- optimisation
    optimizer: str = "adamw"               # adam | adamw
    lr: float = 1e-3
    weight_decay: float = 0.05
    betas: list = field(default_factory=lambda: [0.9, 0.999])
    epochs: int = 10
    max_steps: int = -1
    batch_size: int = 128
    warmup_epochs: float = 1.0
    min_lr_ratio: float = 0.01             # cosine decays to lr * min_lr_ratio
    grad_clip: float | None = 1.0
    label_smoothing: float = 0.0
    # ----- system
    seed: int = 0                          # model init, augmentation and data order
    data_seed: int = 0                     # which synthetic samples / subset (fixed across model seeds)
    precision: str = "auto"                # auto | 32-true | bf16-mixed | 16-mixed
    accelerator: str = "auto"
    devices: Any = 1
    num_nodes: int = 1
    strategy: str = "auto"
    num_workers: int = 0
    threads: int | None = None             # torch threads per process (None: cores / processes)
    compile: bool = False                  # torch.compile the model (inductor); result.json reports compile_s
    # ----- output
    out: str | None = None                 # run directory (default runs/train-<method>-<time>)
    logger: str = "csv"                    # csv | tensorboard | none
    progress: str = "rich"                 # rich | tqdm | none
    val_every: float = 1.0                 # validation interval, as a fraction of an epoch
    checkpoint_every_n_steps: int | None = None  # also save last.ckpt every N optimizer steps (mid-epoch resume)
    checkpoints: bool = True
    resume: str | None = None              # "auto" (the run's last.ckpt) or a checkpoint path

    def to_dict(self) -> dict:
        return asdict(self)


FIELDS = {f.name: f for f in fields(TrainConfig)}


def config_from(mapping: dict | None = None, **overrides) -> TrainConfig:
    """A config from a dict (e.g. YAML) and keyword overrides; unknown keys raise ConfigError."""
    values = {**(mapping or {}), **overrides}
    unknown = sorted(set(values) - set(FIELDS))
    if unknown:
        raise ConfigError(f"unknown config key(s) {', '.join(unknown)}; known keys: {', '.join(FIELDS)}")
    return dataclasses.replace(TrainConfig(), **values)


#: Keys a recipe may hold besides TrainConfig's: what ``liere compare`` runs with it (the demo's definition).
COMPARE_KEYS = ("methods", "seeds", "target_accuracy")


METHOD_BOUND_KEYS = ("block_size", "pe_options")


def load_config(path: str | Path, defaults: dict | None = None, **overrides) -> TrainConfig:
    """Read a YAML recipe. ``path`` may be a file, or the name of a shipped recipe (``cifar100``).

    Precedence: TrainConfig's own defaults < ``defaults`` < the YAML < ``overrides`` (the flags).
    """
    data = _read_recipe(path)
    data.pop("compare", None)
    if overrides.get("method") not in (None, data.get("method")):
        # A recipe's block size and options belong to its own method: `--config pointing --method
        # rope_mixed` must not hand LieRE's block size 8 to a method of fixed 2x2 blocks.
        for key in METHOD_BOUND_KEYS:
            if key not in overrides:
                data.pop(key, None)
    return config_from({**(defaults or {}), **data}, **overrides)


def compare_section(path: str | Path) -> dict:
    """The recipe's ``compare:`` mapping (methods, seeds, target_accuracy), checked; {} if it has none."""
    section = _read_recipe(path).get("compare") or {}
    if not isinstance(section, dict) or set(section) - set(COMPARE_KEYS):
        raise ConfigError(f"--config: {path}: 'compare' may hold only {', '.join(COMPARE_KEYS)}, got {section!r}")
    return section


def _read_recipe(path: str | Path) -> dict:
    import yaml

    p = Path(path)
    if not p.is_file():
        shipped = Path(__file__).resolve().parent.parent / "configs" / f"{p.stem}.yaml"
        if p.parent == Path(".") or str(path).startswith("liere/configs"):
            p = shipped if shipped.is_file() else p
    if not p.is_file():
        known = sorted(q.stem for q in (Path(__file__).resolve().parent.parent / "configs").glob("*.yaml"))
        raise ConfigError(f"--config: no such file {str(path)!r}; shipped recipes: {', '.join(known)}")
    try:
        text = p.read_text(encoding="utf-8")
        data = yaml.safe_load(text)
    except UnicodeDecodeError:
        raise ConfigError(f"--config: {p} is not a text file (expected a YAML recipe)") from None
    except OSError as e:
        raise ConfigError(f"--config: {p} cannot be read ({e.strerror or e})") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"--config: {p} is not valid YAML ({str(e).splitlines()[0]})") from None
    if data is None:
        raise ConfigError(f"--config: {p} is empty (expected a YAML mapping of config keys)")
    if not isinstance(data, dict):
        raise ConfigError(f"--config: {p} must hold a mapping of config keys")
    return data


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _positive(name: str, value, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if not _is_number(value) or not math.isfinite(value) or value <= 0:
        raise ConfigError(f"{_flag(name)}: expected a positive number, got {value!r}")


def _int(name: str, value, minimum: int | None = 1, allow_none: bool = False) -> None:
    """An integer (not a bool, not a float) >= ``minimum``."""
    if value is None and allow_none:
        return
    if not isinstance(value, int) or isinstance(value, bool) or (minimum is not None and value < minimum):
        what = "an integer" if minimum is None else "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
        raise ConfigError(f"{_flag(name)}: expected {what}, got {value!r}")


def _real(name: str, value, low: float = -math.inf, high: float = math.inf, *, low_open: bool = False,
          high_open: bool = False, allow_none: bool = False) -> None:
    """A finite number in [low, high] (open ends where asked)."""
    if value is None and allow_none:
        return
    ok = _is_number(value) and math.isfinite(value)
    ok = ok and (value > low if low_open else value >= low) and (value < high if high_open else value <= high)
    if not ok:
        lo = "(" if low_open else "["
        hi = ")" if high_open else "]"
        rng = f" in {lo}{low:g}, {high:g}{hi}" if math.isfinite(low) or math.isfinite(high) else ""
        raise ConfigError(f"{_flag(name)}: expected a finite number{rng}, got {value!r}")


def _choice(name: str, value, choices, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if not isinstance(value, str) or value not in choices:
        raise ConfigError(f"{_flag(name)}: expected one of {', '.join(map(str, choices))}, got {value!r}")


def _bool_value(name: str, value) -> None:
    if not isinstance(value, bool):
        raise ConfigError(f"{_flag(name)}: expected true or false, got {value!r}")


#: Position axes of the shipped datasets (a method must fit them: 1-D RoPE cannot encode an image).
TASK_POS_DIMS = {"pointing": 2, "cifar10": 2, "cifar100": 2, "imagefolder": 2, "moving": 3, "videoframes": 3,
                 "volumes": 3, "text": 1}
PRECISIONS = ("auto", "32", "32-true", "bf16-mixed", "16-mixed", "bf16-true", "16-true", "64-true", "64")
ACCELERATORS = ("auto", "cpu", "gpu", "cuda", "mps")


def _check_system(cfg: TrainConfig) -> None:
    """Accelerator, devices, strategy and precision: what Lightning would otherwise reject with a traceback."""
    import torch

    _choice("accelerator", cfg.accelerator, ACCELERATORS)
    if cfg.accelerator in ("gpu", "cuda") and not torch.cuda.is_available():
        raise ConfigError(f"--accelerator: {cfg.accelerator!r} needs a CUDA GPU and this machine has none "
                          "(torch.cuda.is_available() is False); use --accelerator cpu or auto")
    if cfg.accelerator == "mps" and not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
        raise ConfigError("--accelerator: 'mps' is not available on this machine; use --accelerator cpu or auto")
    devices = cfg.devices
    if isinstance(devices, str) and devices != "auto":
        try:
            devices = int(devices)
        except ValueError:
            raise ConfigError(f"--devices: expected auto, a positive integer or a list of device ids, "
                              f"got {cfg.devices!r}") from None
    if isinstance(devices, (list, tuple)):
        if not devices or any(not isinstance(d, int) or isinstance(d, bool) or d < 0 for d in devices):
            raise ConfigError(f"--devices: expected a list of device ids >= 0, got {cfg.devices!r}")
        if len(set(devices)) != len(devices):
            raise ConfigError(f"--devices: device ids repeat in {cfg.devices!r}")
    elif devices != "auto":
        _int("devices", devices)
    on_gpu = cfg.accelerator in ("gpu", "cuda") or (cfg.accelerator == "auto" and torch.cuda.is_available())
    if on_gpu:
        have = torch.cuda.device_count()
        wanted = max(devices) + 1 if isinstance(devices, (list, tuple)) else devices
        if isinstance(wanted, int) and wanted > have:
            raise ConfigError(f"--devices: {cfg.devices!r} asks for more GPUs than the {have} this machine has")
    elif isinstance(devices, (list, tuple)):
        raise ConfigError(f"--devices: a list of device ids ({cfg.devices!r}) needs GPUs; on CPU give a number "
                          "of processes")
    _choice("precision", cfg.precision, PRECISIONS)
    if not isinstance(cfg.strategy, str):
        raise ConfigError(f"--strategy: expected a strategy name, got {cfg.strategy!r}")
    if cfg.strategy != "auto":
        from lightning.pytorch.strategies import StrategyRegistry

        known = StrategyRegistry.available_strategies()
        if cfg.strategy not in known:
            raise ConfigError(f"--strategy: unknown strategy {cfg.strategy!r}; known: auto, {', '.join(known)}")


def _check_augment(cfg: TrainConfig) -> None:
    from collections.abc import Mapping

    from liere.data.transforms import AUGMENTATIONS

    value = cfg.augment
    names = ("default", *AUGMENTATIONS)
    if value is None or (isinstance(value, str) and value.lower() in names):
        return
    if isinstance(value, Mapping):
        unknown = sorted(set(value) - set(AUGMENTATIONS["none"]))
        if not unknown:
            return
        raise ConfigError(f"--augment: unknown augmentation option(s) {', '.join(map(str, unknown))}; "
                          f"known: {', '.join(AUGMENTATIONS['none'])}")
    raise ConfigError(f"--augment: expected one of {', '.join(names)}, got {value!r}")


def _check_archive(flag: str, path: str) -> None:
    """An existing tar archive; a truncated one is caught when it is read (liere.train.data.build_split)."""
    import tarfile

    archive = Path(path).expanduser()
    if not archive.exists():
        raise ConfigError(f"{flag}: {path} does not exist")
    if not archive.is_file():
        raise ConfigError(f"{flag}: {path} is not a file (expected a .tar/.tgz archive)")
    try:
        ok = archive.stat().st_size > 0 and tarfile.is_tarfile(archive)
    except (OSError, EOFError) as e:
        raise ConfigError(f"{flag}: {path} cannot be read ({getattr(e, 'strerror', None) or e})") from None
    if not ok:
        raise ConfigError(f"{flag}: {path} is not a tar archive (expected a .tar/.tgz of class folders)")


def _check_paths(cfg: TrainConfig) -> None:
    """--out must be (or become) a directory; --archive a readable tar; --data-root of text a non-empty file."""
    for name in ("out", "data_root", "archive", "resume"):
        value = getattr(cfg, name)
        if value is not None and (not isinstance(value, str) or not value.strip()):
            raise ConfigError(f"{_flag(name)}: expected a path, got {value!r}")
    if cfg.out is not None:
        out = Path(cfg.out).expanduser()
        if out.exists() and not out.is_dir():
            raise ConfigError(f"--out: {cfg.out} is a file, expected a run directory")
        parent = out.parent
        while not parent.exists() and parent != parent.parent:
            parent = parent.parent
        if parent.exists() and not parent.is_dir():
            raise ConfigError(f"--out: {parent} is a file, so {cfg.out} cannot be a directory")
    if cfg.task == "imagefolder" and cfg.data_root is not None and Path(cfg.data_root).expanduser().is_file():
        _check_archive("--data-root", cfg.data_root)
    if cfg.archive is not None:
        _check_archive("--archive", cfg.archive)
    if cfg.data_root is not None:
        root = Path(cfg.data_root).expanduser()
        if not root.exists():
            raise ConfigError(f"--data-root: {cfg.data_root} does not exist")
        if cfg.task == "text":
            if not root.is_file():
                raise ConfigError(f"--data-root: {cfg.data_root} is not a file (the text task reads one text file)")
            if root.stat().st_size == 0:
                raise ConfigError(f"--data-root: {cfg.data_root} is empty (expected a text file)")
        elif cfg.task in ("cifar10", "cifar100", "volumes", "videoframes") and not root.is_dir():
            raise ConfigError(f"--data-root: {cfg.data_root} is not a directory")


def _check_method_fits(cfg: TrainConfig, dim: int, depth: int, heads: int) -> None:
    """Build the position encoding alone (cheap) so a method that cannot serve the task fails now, on one line."""
    import liere

    pos_dims = TASK_POS_DIMS.get(cfg.task)
    if pos_dims is None:  # a dataset registered by the user: its axes are known only once it is built
        return
    options = dict(cfg.pe_options)
    if cfg.method == "absolute":
        options.setdefault("grid_shape", (1,) * pos_dims)
    try:
        liere.build(cfg.method, pos_dims=pos_dims, head_dim=dim // heads, num_heads=heads,
                    block_size=cfg.block_size, num_layers=depth, share_layers=cfg.share_layers,
                    share_heads=cfg.share_heads, **options)
    except (ValueError, TypeError) as e:
        message = str(e)
        arg, _, rest = message.partition(": ")
        flag = {"block_size": "--block-size", "pos_dims": "--method", "head_dim": "--dim",
                "num_heads": "--num-heads", "num_layers": "--depth"}.get(arg)
        if flag is None:  # an option of the method (theta, init_scale, ...): it came from pe_options
            flag = f"pe_options.{arg}" if arg in options else "--method"
        raise ConfigError(f"{flag}: {rest or message} (--method {cfg.method} on the {cfg.task} task, "
                          f"whose positions are {pos_dims}-D)") from None


def validate(cfg: TrainConfig, *, files: bool = True) -> TrainConfig:
    """Check every value that needs no data; raise ConfigError naming the argument.

    ``files=False`` skips the checks of paths (--out, --archive, --data-root), for plans
    whose runs may never start (a study whose runs all finished needs no data).

    Types are checked as well as ranges, so a YAML recipe with ``eval_sizes: 32`` or
    ``lr: .nan`` fails here, on one line, instead of deep inside Lightning or a loader.
    """
    from liere.data import DATASETS
    from liere.encodings import canonical_name
    from liere.models import SIZES
    from liere.positions import CONVENTIONS, SCALINGS

    if not isinstance(cfg.task, str) or cfg.task not in DATASETS:
        raise ConfigError(f"--task: unknown dataset {cfg.task!r}; known: {', '.join(sorted(DATASETS))}")
    try:
        cfg.method = canonical_name(cfg.method)
    except (ValueError, TypeError) as e:
        raise ConfigError(f"--method: {str(e).split(': ', 1)[-1]}") from None
    if not isinstance(cfg.size, str) or cfg.size not in SIZES:
        raise ConfigError(f"--size: unknown model size {cfg.size!r}; known: {', '.join(SIZES)}")
    for name in ("data_options", "pe_options"):
        if not isinstance(getattr(cfg, name), dict):
            raise ConfigError(f"{name}: expected a mapping of options, got {getattr(cfg, name)!r}")
    for name in ("epochs", "batch_size", "num_nodes", "context_length"):
        _int(name, getattr(cfg, name))
    for name in ("image_size", "num_frames", "train_samples", "val_samples", "checkpoint_every_n_steps", "threads",
                 "dim", "depth", "num_heads", "block_size"):
        _int(name, getattr(cfg, name), allow_none=True)
    _int("num_registers", cfg.num_registers, 0)
    _int("num_workers", cfg.num_workers, 0)
    _int("max_steps", cfg.max_steps, -1)
    if cfg.max_steps == 0:
        raise ConfigError("--max-steps: expected a positive number of steps, or -1 (no limit), got 0")
    for name in ("seed", "data_seed"):
        _int(name, getattr(cfg, name), 0)
        if getattr(cfg, name) > 2**32 - 1:
            raise ConfigError(f"{_flag(name)}: expected an integer in [0, 2**32 - 1], got {getattr(cfg, name)}")
    _positive("lr", cfg.lr)
    _real("train_fraction", cfg.train_fraction, 0, 1, low_open=True)
    _real("val_every", cfg.val_every, 0, 1, low_open=True)
    _real("weight_decay", cfg.weight_decay, 0)
    _real("warmup_epochs", cfg.warmup_epochs, 0)
    _real("min_lr_ratio", cfg.min_lr_ratio, 0, 1)
    _real("label_smoothing", cfg.label_smoothing, 0, 1, high_open=True)
    _real("drop_path", cfg.drop_path, 0, 1, high_open=True)
    _real("position_jitter", cfg.position_jitter, 0)
    _real("grad_clip", cfg.grad_clip, 0, low_open=True, allow_none=True)
    if (not isinstance(cfg.betas, (list, tuple)) or len(cfg.betas) != 2
            or not all(_is_number(b) and 0 <= b < 1 for b in cfg.betas)):
        raise ConfigError(f"--betas: expected two numbers in [0, 1), got {cfg.betas!r}")
    for name in ("share_layers", "share_heads", "checkpoints", "compile"):
        _bool_value(name, getattr(cfg, name))
    _choice("optimizer", cfg.optimizer, ("adam", "adamw"))
    _choice("pool", cfg.pool, ("cls", "mean"))
    _choice("logger", cfg.logger, ("csv", "tensorboard", "none"))
    _choice("progress", cfg.progress, ("rich", "tqdm", "none"))
    _choice("convention", cfg.convention, CONVENTIONS, allow_none=True)
    if cfg.logger == "tensorboard":
        import importlib.util

        if importlib.util.find_spec("tensorboard") is None and importlib.util.find_spec("tensorboardX") is None:
            raise ConfigError("--logger: tensorboard is not installed (pip install 'liere[tensorboard]'); "
                              "use --logger csv")
    if not isinstance(cfg.eval_scalings, (list, tuple)) or any(s not in SCALINGS for s in cfg.eval_scalings):
        raise ConfigError(f"--eval-scalings: expected a list of {', '.join(SCALINGS)}, got {cfg.eval_scalings!r}")
    if not isinstance(cfg.eval_sizes, (list, tuple)):
        raise ConfigError(f"--eval-sizes: expected a list of sizes (e.g. [32, 48]), got {cfg.eval_sizes!r}")
    for s in cfg.eval_sizes:
        if not isinstance(s, int) or isinstance(s, bool) or s < 1:
            raise ConfigError(f"--eval-sizes: expected positive integers, got {s!r} in {list(cfg.eval_sizes)!r}")
    if cfg.resume is not None and not isinstance(cfg.resume, str):
        raise ConfigError(f"--resume: expected 'auto' or a checkpoint path, got {cfg.resume!r}")
    _check_augment(cfg)
    _check_system(cfg)
    if files:
        _check_paths(cfg)
    dim, depth, heads = SIZES[cfg.size]
    dim, depth, heads = cfg.dim or dim, cfg.depth or depth, cfg.num_heads or heads
    if dim % heads:
        raise ConfigError(f"--dim: {dim} is not divisible by --num-heads {heads}")
    head_dim = dim // heads
    if cfg.block_size is not None and not 2 <= cfg.block_size <= head_dim:
        raise ConfigError(f"--block-size: expected 2 <= block size <= head_dim={head_dim}, got {cfg.block_size}")
    if cfg.task != "text":
        patch = [cfg.patch_size] if isinstance(cfg.patch_size, int) else cfg.patch_size
        if (not isinstance(patch, (list, tuple)) or len(patch) not in (1, 2, 3)
                or any(isinstance(p, bool) or not isinstance(p, int) or p < 1 for p in patch)):
            raise ConfigError(f"--patch-size: expected a positive integer or 2-3 of them (T,H,W), got {cfg.patch_size!r}")
        spatial = patch[-1]
        for name, size in [("image_size", cfg.image_size)] + [("eval_sizes", s) for s in cfg.eval_sizes]:
            if size is None:
                continue
            if size % spatial:
                raise ConfigError(
                    f"{_flag(name)}: {size} is not divisible by the patch size {spatial} "
                    f"(the patch grid must tile the image)"
                )
    _check_method_fits(cfg, dim, depth, heads)
    return cfg
