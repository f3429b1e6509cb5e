"""CIFAR ResNets (option-A shortcuts) and a small CNN for fast tests, built by name.

``build_model(name, checkpoint, data_dir)`` is the one entry point the CLI and configs use. Checkpoint
resolution: an absolute path is used as is, a relative one resolves against the data directory, and
``None`` (or ``""``) means the model's default: the shipped pre-trained file for ResNet-20/32, the
project-trained cached weights for ``small_cnn``. Deeper ResNets have no default; pass a checkpoint, or
``seed=`` for reproducible random weights (cost benchmarks, graph tests).
"""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path

import torch
from torch import nn

from olafhe.core.config import resolve_data_dir
from olafhe.core.errors import ConfigError, DataError
from olafhe.models.resnet import DEPTHS, CifarResNet, resnet
from olafhe.models.small_cnn import SmallCNN, small_cnn_checkpoint

MODEL_NAMES: tuple[str, ...] = (*(f"resnet{d}" for d in DEPTHS), "small_cnn")

DEFAULT_CHECKPOINTS: dict[str, str] = {
    "resnet20": "checkpoints/resnet20-12fca82f.th",
    "resnet32": "checkpoints/resnet32-d509ac18.th",
}
"""Pre-trained checkpoints in the data directory, used when no checkpoint is given."""


def _architecture(name: str) -> nn.Module:
    if name == "small_cnn":
        return SmallCNN()
    return resnet(int(name.removeprefix("resnet")))


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"


def load_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Read a checkpoint's state dict (a bare dict or ``{'state_dict': ...}``), ``module.`` stripped.

    Loads with ``weights_only=True``: a checkpoint is data, never code.
    """
    try:
        doc = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile,
            AttributeError, TypeError) as exc:
        raise DataError(f"checkpoint {path} is corrupt or not a torch checkpoint ({_one_line(exc)})") from exc
    state = doc.get("state_dict", doc) if isinstance(doc, dict) else None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise DataError(f"checkpoint {path} holds no state dict of tensors (got {type(doc).__name__})")
    return {k.removeprefix("module."): v for k, v in state.items()}


def _load_into(model: nn.Module, path: Path, name: str) -> None:
    state = load_state_dict(path)
    expected = {k: v for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}
    state = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = sorted(k for k in set(expected) & set(state) if tuple(expected[k].shape) != tuple(state[k].shape))
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing key(s) e.g. {missing[:3]}")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected key(s) e.g. {unexpected[:3]}")
    if wrong:
        k = wrong[0]
        shapes = f"file {tuple(state[k].shape)} vs model {tuple(expected[k].shape)}"
        problems.append(f"{len(wrong)} shape mismatch(es) e.g. {k}: {shapes}")
    if problems:
        raise DataError(f"checkpoint {path} does not match model {name!r}: {'; '.join(problems)}")
    model.load_state_dict(state, strict=False)


def randomize(model: nn.Module, seed: int, input_shape: tuple[int, ...] = (3, 32, 32)) -> nn.Module:
    """Give ``model`` seeded random weights and realistic batch-norm statistics, in eval mode.

    Convolutions and linear layers get Kaiming-normal weights and batch-norm layers random scales in
    [0.5, 1.5] and small shifts. The running statistics are then estimated from one seeded batch of
    Gaussian images, so activations stay O(1) through deep networks (plain random statistics make a
    ResNet-110's logits explode) and BN folding is exercised with non-trivial means and variances.
    """
    gen = torch.Generator().manual_seed(seed)
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                fan_in = module.weight[0].numel()
                module.weight.copy_(torch.randn(module.weight.shape, generator=gen) * (2.0 / fan_in) ** 0.5)
                if module.bias is not None:
                    module.bias.copy_(0.1 * torch.randn(module.bias.shape, generator=gen))
        momenta = [bn.momentum for bn in norms]
        for bn in norms:
            if bn.affine:
                bn.weight.copy_(0.5 + torch.rand(bn.num_features, generator=gen))
                bn.bias.copy_(0.1 * torch.randn(bn.num_features, generator=gen))
            bn.reset_running_stats()
            bn.momentum = None  # cumulative average: the statistics of exactly this batch
        model.train()
        model(torch.randn((16, *input_shape), generator=gen))
        for bn, momentum in zip(norms, momenta, strict=True):
            bn.momentum = momentum
    return model.eval()


def build_model(
    name: str,
    checkpoint: str | Path | None,
    data_dir: Path | None = None,
    *,
    seed: int | None = None,
) -> nn.Module:
    """Build model ``name`` (one of :data:`MODEL_NAMES`) in eval mode, float32, with its weights.

    ``checkpoint``: a path (relative paths resolve against ``data_dir``, itself defaulting to
    :func:`~olafhe.core.config.resolve_data_dir`), or ``None``/``""`` for the model's default weights.
    ``seed`` (only with no checkpoint): seeded random weights instead of trained ones.
    """
    if name not in MODEL_NAMES:
        raise ConfigError(f"unknown model {name!r}; known models: {', '.join(MODEL_NAMES)}")
    model = _architecture(name)
    if not checkpoint:
        if seed is not None:
            return randomize(model, seed).float().eval()
        if name == "small_cnn":
            checkpoint = small_cnn_checkpoint(data_dir)
        elif name in DEFAULT_CHECKPOINTS:
            checkpoint = DEFAULT_CHECKPOINTS[name]
        else:
            raise DataError(
                f"no pre-trained checkpoint ships for {name}: set model.checkpoint to a .th/.pt file "
                f"with its state dict"
            )
    path = Path(checkpoint).expanduser()
    if not path.is_absolute():
        path = (data_dir if data_dir is not None else resolve_data_dir()) / path
    if not path.is_file():
        raise DataError(f"checkpoint for {name} not found at {path}: put the {name} state-dict file there")
    _load_into(model, path, name)
    return model.float().eval()


__all__ = [
    "DEFAULT_CHECKPOINTS",
    "MODEL_NAMES",
    "CifarResNet",
    "SmallCNN",
    "build_model",
    "load_state_dict",
    "randomize",
    "small_cnn_checkpoint",
]
