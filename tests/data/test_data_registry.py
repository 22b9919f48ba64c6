"""The dataset registry: names, DatasetInfo, errors, and what training code relies on."""

import dataclasses
import pickle

import pytest
import torch

from liere.data import DATASETS, DatasetInfo, build_dataset


def test_registered_names():
    expected = {"pointing", "moving", "cifar10", "cifar100", "imagefolder", "volumes", "videoframes", "text"}
    assert expected <= set(DATASETS)


def test_dataset_info_fields():
    names = {f.name for f in dataclasses.fields(DatasetInfo)}
    assert {"name", "num_classes", "in_chans", "input_shape", "pos_dims", "kind", "vocab_size", "mean", "std",
            "default_augment"} <= names


def test_unknown_name_lists_known():
    with pytest.raises(ValueError, match=r"unknown dataset 'mnist'.*cifar10.*pointing"):
        build_dataset("mnist")


def test_unknown_option_is_rejected():
    with pytest.raises(TypeError, match="colour"):
        build_dataset("pointing", num_samples=4, colour="red")


def test_pointing_example_from_docs():
    train_ds, info = build_dataset("pointing", split="train", image_size=32, num_samples=800, seed=0)
    val_ds, val_info = build_dataset("pointing", split="val", image_size=48, num_samples=100, seed=0)
    assert len(train_ds) == 800 and len(val_ds) == 100
    assert info.name == "pointing" and info.kind == "image" and info.num_classes == 2 and info.in_chans == 3
    assert info.input_shape == (32, 32) and val_info.input_shape == (48, 48) and info.pos_dims == 2
    assert info.vocab_size is None and info.default_augment == "flip"
    # One normalisation for every split and resolution.
    assert info.mean == val_info.mean and info.std == val_info.std
    assert all(0 < m < 0.2 for m in info.mean) and all(s > m for s, m in zip(info.std, info.mean))
    x, y = val_ds[3]
    assert x.shape == (3, 48, 48) and x.dtype == torch.float32 and y.dtype == torch.int64
    tr = {train_ds.scene(i)["ax"] for i in range(800)}
    assert not tr & {val_ds.scene(i)["ax"] for i in range(100)}


def test_moving_info_and_batching():
    ds, info = build_dataset("moving", split="test", image_size=16, num_samples=20, num_frames=6)
    assert info.kind == "video" and info.input_shape == (6, 16, 16) and info.pos_dims == 3
    assert info.num_classes == 8 and info.default_augment is None
    x, y = next(iter(torch.utils.data.DataLoader(ds, batch_size=8)))
    assert x.shape == (8, 3, 6, 16, 16) and y.shape == (8,) and y.dtype == torch.int64


def test_datasets_pickle_for_worker_processes():
    ds, _ = build_dataset("pointing", num_samples=10)
    ds[0]
    clone = pickle.loads(pickle.dumps(ds))
    assert torch.equal(clone[0][0], ds[0][0])


def test_default_sizes():
    ds, info = build_dataset("pointing")
    assert len(ds) == 8000 and info.input_shape == (32, 32)
    ds, _ = build_dataset("pointing", split="val")
    assert len(ds) == 2000
