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
        data = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"--config: {p} is not valid YAML ({str(e).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"--config: {p} must hold a mapping of config keys")
    return data


def _positive(name: str, value, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise ConfigError(f"--{name.replace('_', '-')}: expected a positive number, got {value!r}")


def validate(cfg: TrainConfig) -> TrainConfig:
    """Check values that need no data; raise ConfigError naming the argument."""
    from liere.data import DATASETS
    from liere.encodings import canonical_name
    from liere.models import SIZES

    if cfg.task not in DATASETS:
        raise ConfigError(f"--task: unknown dataset {cfg.task!r}; known: {', '.join(sorted(DATASETS))}")
    try:
        cfg.method = canonical_name(cfg.method)
    except (ValueError, TypeError) as e:
        raise ConfigError(f"--method: {str(e).split(': ', 1)[-1]}") from None
    if cfg.size not in SIZES:
        raise ConfigError(f"--size: unknown model size {cfg.size!r}; known: {', '.join(SIZES)}")
    for name in ("epochs", "batch_size", "lr", "num_nodes", "context_length", "val_every"):
        _positive(name, getattr(cfg, name))
    for name in ("image_size", "num_frames", "train_samples", "val_samples", "checkpoint_every_n_steps", "threads",
                 "dim", "depth", "num_heads", "block_size"):
        _positive(name, getattr(cfg, name), allow_none=True)
    if not 0 < cfg.train_fraction <= 1:
        raise ConfigError(f"--train-fraction: expected a fraction in (0, 1], got {cfg.train_fraction}")
    if cfg.val_every > 1:
        raise ConfigError(f"--val-every: expected a fraction of an epoch in (0, 1], got {cfg.val_every}")
    if cfg.optimizer not in ("adam", "adamw"):
        raise ConfigError(f"--optimizer: expected 'adam' or 'adamw', got {cfg.optimizer!r}")
    if cfg.pool not in ("cls", "mean"):
        raise ConfigError(f"--pool: expected 'cls' or 'mean', got {cfg.pool!r}")
    if cfg.logger not in ("csv", "tensorboard", "none"):
        raise ConfigError(f"--logger: expected csv, tensorboard or none, got {cfg.logger!r}")
    if cfg.progress not in ("rich", "tqdm", "none"):
        raise ConfigError(f"--progress: expected rich, tqdm or none, got {cfg.progress!r}")
    from liere.positions import SCALINGS

    if not isinstance(cfg.eval_scalings, (list, tuple)) or any(s not in SCALINGS for s in cfg.eval_scalings):
        raise ConfigError(f"--eval-scalings: expected a list of {', '.join(SCALINGS)}, got {cfg.eval_scalings!r}")
    if (isinstance(cfg.position_jitter, bool) or not isinstance(cfg.position_jitter, (int, float))
            or not 0 <= cfg.position_jitter < float("inf")):
        raise ConfigError(f"--position-jitter: expected a finite sigma >= 0, got {cfg.position_jitter!r}")
    if cfg.convention is not None and cfg.convention not in ("liere", "centers", "index"):
        raise ConfigError(f"--convention: expected liere, centers or index, got {cfg.convention!r}")
    if cfg.precision not in ("auto", "32", "32-true", "bf16-mixed", "16-mixed", "bf16-true", "64-true", "64"):
        raise ConfigError(f"--precision: expected auto, 32-true, bf16-mixed or 16-mixed, got {cfg.precision!r}")
    dim, depth, heads = SIZES[cfg.size]
    dim, depth, heads = cfg.dim or dim, cfg.depth or depth, cfg.num_heads or heads
    if dim % heads:
        raise ConfigError(f"--dim: {dim} is not divisible by --num-heads {heads}")
    head_dim = dim // heads
    if cfg.block_size is not None and not 2 <= cfg.block_size <= head_dim:
        raise ConfigError(f"--block-size: expected 2 <= block size <= head_dim={head_dim}, got {cfg.block_size}")
    if cfg.task != "text":
        patch = [cfg.patch_size] if isinstance(cfg.patch_size, int) else list(cfg.patch_size)
        if not patch or any(isinstance(p, bool) or not isinstance(p, int) or p < 1 for p in patch):
            raise ConfigError(f"--patch-size: expected positive integers, got {cfg.patch_size!r}")
        spatial = patch[-1]
        for name, size in [("image_size", cfg.image_size)] + [("eval_sizes", s) for s in cfg.eval_sizes]:
            if size is None:
                continue
            _positive(name, size)
            if size % spatial:
                raise ConfigError(
                    f"--{name.replace('_', '-')}: {size} is not divisible by the patch size {spatial} "
                    f"(the patch grid must tile the image)"
                )
    else:
        for s in cfg.eval_sizes:
            _positive("eval_sizes", s)
    return cfg
