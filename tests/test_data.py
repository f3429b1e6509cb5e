"""Data directory resolution, CIFAR-10 loading (npz and torchvision folder), preprocessing, subsets."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest

from olafhe.core import config as config_mod
from olafhe.core.config import resolve_data_dir
from olafhe.core.errors import ConfigError, DataError, ShapeError
from olafhe.data import MEAN, STD, balanced_subset, cache_dir, load_cifar10, require_file, to_tensor


# ------------------------------------------------------------------------------------------------ paths
def test_data_dir_from_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("OLAFHE_DATA", str(tmp_path))
    assert resolve_data_dir() == tmp_path
    # an explicit value (config data.dir) wins over the environment
    other = tmp_path / "other"
    other.mkdir()
    assert resolve_data_dir(str(other)) == other


def test_data_dir_env_pointing_nowhere_is_an_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("OLAFHE_DATA", str(tmp_path / "missing"))
    with pytest.raises(DataError, match=r"OLAFHE_DATA.*does not exist.*cifar10/test\.npz"):
        resolve_data_dir()


def test_data_dir_default_is_shared_data_next_to_repo(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OLAFHE_DATA", raising=False)
    expected = config_mod.REPO_ROOT.parent / "shared" / "data"
    assert resolve_data_dir() == expected
    assert (expected / "cifar10" / "test.npz").is_file()


def test_no_data_dir_says_what_to_set(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("OLAFHE_DATA", raising=False)
    monkeypatch.setattr(config_mod, "REPO_ROOT", tmp_path / "repo")
    with pytest.raises(DataError) as info:
        resolve_data_dir()
    message = str(info.value)
    assert "OLAFHE_DATA" in message and "data.dir" in message and "checkpoints" in message
    assert "\n" not in message


def test_cache_dir_from_env_is_created(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    target = tmp_path / "a" / "cache"
    monkeypatch.setenv("OLAFHE_CACHE", str(target))
    assert cache_dir() == target and target.is_dir()


def test_require_file_names_what_to_put_where(tmp_path: Path) -> None:
    missing = tmp_path / "x.npz"
    with pytest.raises(DataError, match=rf"CIFAR-10 test set not found at {missing}: put test\.npz there"):
        require_file(missing, "CIFAR-10 test set", "test.npz")
    missing.write_bytes(b"")
    assert require_file(missing, "anything") == missing


# ------------------------------------------------------------------------------------------------ npz data
def test_shared_splits_shapes_and_balance(cifar_test: tuple, cifar_train_subset: tuple) -> None:
    for (x, y), n in ((cifar_test, 10000), (cifar_train_subset, 5000)):
        assert x.shape == (n, 32, 32, 3) and x.dtype == np.uint8
        assert y.shape == (n,) and y.dtype == np.int64
        assert np.bincount(y, minlength=10).tolist() == [n // 10] * 10
    # calibration data and test data are disjoint
    test_rows = {row.tobytes() for row in cifar_test[0]}
    assert not any(row.tobytes() in test_rows for row in cifar_train_subset[0][:500])


def test_unknown_split(data_dir: Path) -> None:
    with pytest.raises(ConfigError, match="unknown CIFAR-10 split 'val'; known splits: test, train_subset, train"):
        load_cifar10("val", data_dir)


def test_missing_split_names_both_layouts(tmp_path: Path) -> None:
    with pytest.raises(DataError) as info:
        load_cifar10("test", tmp_path)
    message = str(info.value)
    assert "test.npz" in message and str(tmp_path / "cifar10") in message and "cifar-10-batches-py" in message


def test_corrupt_and_misshapen_npz(tmp_path: Path) -> None:
    (tmp_path / "cifar10").mkdir()
    bad = tmp_path / "cifar10" / "test.npz"
    bad.write_bytes(b"not a zip file")
    with pytest.raises(DataError, match="not a readable npz"):
        load_cifar10("test", tmp_path)
    np.savez(bad, x=np.zeros((4, 3, 32, 32), np.uint8), y=np.zeros(4, np.int64))
    with pytest.raises(ShapeError, match=r"uint8 \(N, 32, 32, 3\)"):
        load_cifar10("test", tmp_path)
    np.savez(bad, x=np.zeros((4, 32, 32, 3), np.uint8))
    with pytest.raises(DataError, match="lacks key"):
        load_cifar10("test", tmp_path)


# ------------------------------------------------------------------------------------------------ torchvision folder
def _write_batch(path: Path, x_nhwc: np.ndarray, y: np.ndarray) -> None:
    data = x_nhwc.transpose(0, 3, 1, 2).reshape(len(x_nhwc), -1)  # CHW-flattened rows, as CIFAR ships
    with path.open("wb") as fh:
        pickle.dump({b"data": data, b"labels": [int(v) for v in y], b"batch_label": b"synthetic"}, fh)


def _fake_folder(folder: Path, per_batch: int = 20) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(1)
    folder.mkdir(parents=True)
    made = {}
    for name in ("test_batch", *(f"data_batch_{i}" for i in range(1, 6))):
        x = rng.integers(0, 256, size=(per_batch, 32, 32, 3), dtype=np.uint8)
        y = np.arange(per_batch) % 10
        _write_batch(folder / name, x, y)
        made[name] = (x, y)
    return made


@pytest.mark.parametrize("layout", ["cifar-10-batches-py", "cifar10/cifar-10-batches-py"])
def test_torchvision_folder(tmp_path: Path, layout: str) -> None:
    made = _fake_folder(tmp_path / layout)
    x, y = load_cifar10("test", tmp_path)
    np.testing.assert_array_equal(x, made["test_batch"][0])  # CHW rows come back as HWC images
    np.testing.assert_array_equal(y, made["test_batch"][1])
    assert y.dtype == np.int64 and x.flags.c_contiguous
    xt, yt = load_cifar10("train", tmp_path)
    assert xt.shape == (100, 32, 32, 3)
    np.testing.assert_array_equal(xt[20:40], made["data_batch_2"][0])
    xs, ys = load_cifar10("train_subset", tmp_path)  # fewer than 5000: all of them, balanced
    assert len(xs) == 100 and np.bincount(ys).tolist() == [10] * 10


def test_torchvision_folder_with_missing_batch(tmp_path: Path) -> None:
    _fake_folder(tmp_path / "cifar-10-batches-py")
    (tmp_path / "cifar-10-batches-py" / "data_batch_3").unlink()
    with pytest.raises(DataError, match=r"data_batch_3 not found at .*data_batch_3: put"):
        load_cifar10("train", tmp_path)


# ------------------------------------------------------------------------------------------------ preprocessing
def test_to_tensor_matches_totensor_normalize_exactly(test_images) -> None:
    raw = test_images.raw[:8]
    t = to_tensor(raw)
    assert t.dtype.is_floating_point and t.dtype.itemsize == 4 and tuple(t.shape) == (8, 3, 32, 32)
    x = raw.transpose(0, 3, 1, 2).astype(np.float32) / np.float32(255)
    mean = np.asarray(MEAN, np.float32).reshape(1, 3, 1, 1)
    std = np.asarray(STD, np.float32).reshape(1, 3, 1, 1)
    np.testing.assert_array_equal(t.numpy(), (x - mean) / std)


def test_to_tensor_rejects_wrong_input() -> None:
    with pytest.raises(ShapeError, match=r"uint8 images \(N, H, W, 3\)"):
        to_tensor(np.zeros((2, 32, 32, 3), np.float32))
    with pytest.raises(ShapeError):
        to_tensor(np.zeros((2, 3, 32, 32), np.uint8))


# ------------------------------------------------------------------------------------------------ subsets
def test_balanced_subset_is_balanced_sorted_and_deterministic(cifar_test: tuple) -> None:
    _, y = cifar_test
    idx = balanced_subset(y, 100, seed=0)
    assert np.bincount(y[idx], minlength=10).tolist() == [10] * 10
    assert np.all(np.diff(idx) > 0) and idx.dtype == np.int64
    np.testing.assert_array_equal(idx, balanced_subset(y, 100, seed=0))
    assert not np.array_equal(idx, balanced_subset(y, 100, seed=1))
    odd = balanced_subset(y, 105, seed=0)
    assert np.bincount(y[odd], minlength=10).tolist() == [11] * 5 + [10] * 5


def test_balanced_subset_with_a_short_class() -> None:
    y = np.array([0] * 2 + [1] * 10 + [2] * 10)
    idx = balanced_subset(y, 12)
    assert len(idx) == 12 and np.bincount(y[idx]).tolist()[0] == 2  # the short class gives its share away


def test_balanced_subset_bad_input() -> None:
    with pytest.raises(ConfigError, match="between 1 and 3"):
        balanced_subset(np.arange(3), 4)
    with pytest.raises(ShapeError, match="1-D labels"):
        balanced_subset(np.zeros((2, 2)), 1)
