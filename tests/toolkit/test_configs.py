"""Shipped YAML recipes: they load, validate, and hold the LieRE paper's settings; CLI flags override them."""

from pathlib import Path

import pytest

import liere
from liere.cli import _make_config, build_parser
from liere.train.config import ConfigError, config_from, load_config, validate

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
