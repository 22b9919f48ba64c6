"""Shipped YAML recipes: they load, validate, and hold the LieRE paper's settings; CLI flags override them."""

from pathlib import Path

import pytest

import liere
from liere.cli import _make_config, build_parser
from liere.train.config import ConfigError, TrainConfig, config_from, load_config, validate

CONFIGS = sorted((Path(liere.__file__).parent / "configs").glob("*.yaml"))


def test_recipes_are_shipped():
    assert {p.stem for p in CONFIGS} >= {"cifar100", "cifar10", "imagenet", "ucf101", "pointing", "text"}


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_recipe_loads_and_validates(path):
    cfg = validate(load_config(path))
    assert cfg.epochs >= 1 and cfg.batch_size >= 1


def test_cifar100_recipe_is_the_papers():
    cfg = load_config("liere/configs/cifar100.yaml")  # the path form used in the README
    assert (cfg.task, cfg.size, cfg.patch_size, cfg.image_size) == ("cifar100", "base", 4, 32)
    assert (cfg.optimizer, cfg.lr, cfg.epochs, cfg.batch_size) == ("adam", 1e-4, 200, 512)
    assert cfg.augment == "randaugment" and cfg.weight_decay == 0.0


def test_video_recipe_uses_tubelets():
    cfg = load_config("ucf101")
    assert cfg.task == "videoframes" and cfg.num_frames == 8 and cfg.image_size == 224
    assert list(cfg.patch_size) == [2, 16, 16]


def test_cli_flags_override_yaml():
    args = build_parser().parse_args(["train", "--config", "liere/configs/cifar100.yaml", "--method", "rope_mixed",
                                      "--epochs", "3", "--batch-size", "64"])
    cfg = _make_config(args)
    assert (cfg.method, cfg.epochs, cfg.batch_size, cfg.lr, cfg.size) == ("rope_mixed", 3, 64, 1e-4, "base")


def test_unknown_yaml_key_is_named(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("task: pointing\nlearning_rate: 0.1\n")
    with pytest.raises(ConfigError, match="learning_rate"):
        load_config(bad)


@pytest.mark.parametrize("kw,flag", [
    (dict(method="rope_vit"), None),
    (dict(image_size=36, patch_size=8), "--image-size"),
    (dict(train_fraction=0.0), "--train-fraction"),
    (dict(dim=30, num_heads=4), "--dim"),
    (dict(epochs=0), "--epochs"),
    (dict(optimizer="sgd"), "--optimizer"),
])
def test_validate(kw, flag):
    if flag is None:
        assert validate(config_from(**kw)).method == "rope_axial"  # aliases resolve to canonical names
    else:
        with pytest.raises(ConfigError, match=flag):
            validate(config_from(**kw))


def _compare(argv):
    from liere.cli import resolve_compare

    return resolve_compare(build_parser().parse_args(["compare", *argv]))


def test_demo_is_the_pointing_recipe_as_written():
    import yaml

    recipe = yaml.safe_load((Path(liere.__file__).parent / "configs" / "pointing.yaml").read_text())
    cfg, methods, seeds, target = _compare([])
    assert cfg.epochs == recipe["epochs"] and cfg.train_samples == recipe["train_samples"]  # nothing overrides it
    assert methods == recipe["compare"]["methods"] and seeds == recipe["compare"]["seeds"] == [0, 1, 2]
    assert target == recipe["compare"]["target_accuracy"]


def test_compare_precedence_flags_over_recipe_over_command_defaults():
    cfg, methods, seeds, _ = _compare(["--epochs", "3", "--methods", "rope_mixed", "--seeds", "4"])
    assert (cfg.epochs, methods, seeds) == (3, ["rope_mixed"], [4])
    assert cfg.lr == 1e-3 and cfg.patch_size == 8  # still the recipe's
    cfg, *_ = _compare(["--task", "moving"])  # no recipe: the command's defaults, then TrainConfig's
    assert cfg.task == "moving" and cfg.epochs == TrainConfig().epochs and cfg.progress == "rich"


def test_recipe_compare_section_is_checked(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("task: pointing\ncompare: {method: [liere]}\n")
    with pytest.raises(ConfigError, match="'compare' may hold only methods, seeds, target_accuracy"):
        _compare(["--config", str(bad)])


@pytest.mark.parametrize("method", ["rope_mixed", "rope_axial", "spherical", "comrope_ld", "absolute"])
def test_recipe_block_size_stays_with_the_recipes_method(method):
    """pointing.yaml says `method: liere, block_size: 8`; choosing another method on the command line
    must not hand it LieRE's block size (2x2-block methods reject 8)."""
    args = build_parser().parse_args(["train", "--config", "pointing", "--method", method])
    cfg = validate(_make_config(args))
    assert cfg.method == method and cfg.block_size is None
    args = build_parser().parse_args(["train", "--config", "pointing", "--method", "liere"])
    assert _make_config(args).block_size == 8                           # same method: the recipe's block size
    args = build_parser().parse_args(["train", "--config", "pointing", "--method", "comrope_ld",
                                      "--block-size", "2"])
    assert _make_config(args).block_size == 2                           # an explicit flag always wins
