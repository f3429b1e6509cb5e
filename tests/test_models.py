"""Model construction, checkpoint loading and its errors, the small CNN's reproducible training."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from olafhe.core.errors import ConfigError, DataError
from olafhe.models import DEFAULT_CHECKPOINTS, MODEL_NAMES, build_model, load_state_dict
from olafhe.models.resnet import CifarResNet
from olafhe.models.small_cnn import (
    TRAINING,
    VERSION,
    accuracy,
    augment,
    settings_hash,
    small_cnn_checkpoint,
    train_small_cnn,
)


def _n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_model_names() -> None:
    assert MODEL_NAMES == ("resnet20", "resnet32", "resnet44", "resnet56", "resnet110", "small_cnn")


def test_unknown_model_lists_known_names() -> None:
    with pytest.raises(ConfigError, match="unknown model 'resnet18'; known models: resnet20, resnet32, .*small_cnn"):
        build_model("resnet18", None)


def test_pretrained_resnets_load_from_relative_paths(data_dir: Path) -> None:
    for name, params in (("resnet20", 269_722), ("resnet32", 464_154)):
        model = build_model(name, DEFAULT_CHECKPOINTS[name], data_dir)
        assert not model.training and next(model.parameters()).dtype == torch.float32
        assert _n_params(model) == params  # the parameter counts of the published checkpoints
        raw = torch.load(data_dir / DEFAULT_CHECKPOINTS[name], map_location="cpu", weights_only=True)
        torch.testing.assert_close(model.layer1[0].conv1.weight, raw["state_dict"]["module.layer1.0.conv1.weight"],
                                   rtol=0, atol=0)


def test_resnet_block_counts_and_bad_depth() -> None:
    for depth in (20, 32, 44, 56, 110):
        model = CifarResNet(depth)
        assert len(model.layer1) == len(model.layer3) == (depth - 2) // 6
        assert sum(isinstance(m, torch.nn.ReLU) for m in model.modules()) == 1 + 2 * 3 * (depth - 2) // 6
    with pytest.raises(ConfigError, match="6n\\+2"):
        CifarResNet(21)


def test_option_a_shortcut_pads_channels() -> None:
    block = CifarResNet(20).layer2[0]
    x = torch.randn(2, 16, 32, 32)
    out = block.shortcut(x)
    assert tuple(out.shape) == (2, 32, 16, 16)
    torch.testing.assert_close(out[:, 8:24], x[:, :, ::2, ::2], rtol=0, atol=0)
    assert out[:, :8].abs().sum() == 0 and out[:, 24:].abs().sum() == 0


def test_missing_checkpoint(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=rf"checkpoint for resnet20 not found at {tmp_path / 'nope.th'}: put"):
        build_model("resnet20", "nope.th", tmp_path)


def test_corrupt_checkpoint(tmp_path: Path) -> None:
    bad = tmp_path / "bad.th"
    bad.write_bytes(b"\x00garbage" * 10)
    with pytest.raises(DataError, match=f"checkpoint {bad} is corrupt"):
        build_model("resnet20", bad)
    torch.save([1, 2, 3], bad)
    with pytest.raises(DataError, match="holds no state dict"):
        build_model("resnet20", bad)


def test_checkpoint_for_another_model(data_dir: Path) -> None:
    with pytest.raises(DataError, match=r"does not match model 'resnet32': \d+ missing key\(s\) e\.g\. \['layer1\.3"):
        build_model("resnet32", DEFAULT_CHECKPOINTS["resnet20"], data_dir)


def test_checkpoint_shape_mismatch_and_prefix_free_file(tmp_path: Path, data_dir: Path) -> None:
    state = load_state_dict(data_dir / DEFAULT_CHECKPOINTS["resnet20"])
    assert not any(k.startswith("module.") for k in state)
    plain = tmp_path / "plain.pt"
    torch.save(state, plain)  # a bare state dict without the prefix loads as well
    model = build_model("resnet20", plain)
    torch.testing.assert_close(model.linear.bias, state["linear.bias"], rtol=0, atol=0)
    state["linear.weight"] = torch.zeros(100, 64)
    torch.save({"state_dict": state}, plain)
    with pytest.raises(DataError, match=r"shape mismatch.*linear\.weight: file \(100, 64\) vs model \(10, 64\)"):
        build_model("resnet20", plain)


def test_deep_resnets_need_a_checkpoint_or_seed() -> None:
    with pytest.raises(DataError, match="no pre-trained checkpoint ships for resnet44: set model.checkpoint"):
        build_model("resnet44", None)
    a = build_model("resnet20", None, seed=3)  # a seed means random weights, even where a default exists
    b = build_model("resnet20", "", seed=3)
    c = build_model("resnet20", None, seed=4)
    torch.testing.assert_close(a.state_dict(), b.state_dict(), rtol=0, atol=0)
    assert not torch.equal(a.conv1.weight, c.conv1.weight)
    assert not a.training and not torch.allclose(a.bn1.running_var, torch.ones(16))


def test_small_cnn_checkpoint_is_cached_and_used(small_cnn, data_dir: Path) -> None:
    path = small_cnn_checkpoint(data_dir)
    assert path.name == f"small_cnn-{VERSION}-{settings_hash()}.pt" and path.is_file()
    assert small_cnn_checkpoint(data_dir) == path
    expected = load_state_dict(path)
    assert not any(k.endswith("num_batches_tracked") for k in expected)
    loaded = {k: v for k, v in small_cnn.model.state_dict().items() if k in expected}
    assert len(loaded) == len(expected) == 12
    torch.testing.assert_close(loaded, expected, rtol=0, atol=0)
    assert settings_hash(dict(TRAINING, epochs=1)) != settings_hash()


def test_small_cnn_learns(small_cnn, cifar_test: tuple) -> None:
    x, y = cifar_test
    correct = accuracy(small_cnn.model, x[::10], y[::10])
    assert correct / len(y[::10]) > 0.50  # 56.95 % on the full test set; chance is 10 %


def test_small_cnn_training_is_deterministic(data_dir: Path) -> None:
    quick = dict(TRAINING, epochs=1, batch_size=500, augment="crop+flip")
    a = train_small_cnn(data_dir, quick)
    b = train_small_cnn(data_dir, quick)
    torch.testing.assert_close(a.state_dict(), b.state_dict(), rtol=0, atol=0)
    assert not a.training


def test_small_cnn_augmentation_is_seeded_and_keeps_shapes() -> None:
    x = torch.arange(2 * 3 * 32 * 32, dtype=torch.float32).reshape(2, 3, 32, 32)
    assert augment(x, "none", torch.Generator()) is x
    for kind in ("flip", "crop+flip"):
        a, b = (augment(x, kind, torch.Generator().manual_seed(3)) for _ in range(2))
        assert a.shape == x.shape and torch.equal(a, b)
    flipped = augment(x, "flip", torch.Generator().manual_seed(0))
    assert all(torch.equal(f, i) or torch.equal(f, i.flip(2)) for f, i in zip(flipped, x, strict=True))
    with pytest.raises(ValueError, match="unknown augmentation 'rotate'"):
        augment(x, "rotate", torch.Generator())
