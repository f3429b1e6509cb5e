"""CIFAR-10 ResNets of depth 6n+2 with option-A (parameter-free) shortcuts, after He et al. 2016.

Module names follow the layout of the widely used pre-trained CIFAR checkpoints (``conv1``, ``bn1``,
``layer1.0.conv1`` ... ``linear``), so those state dicts load directly once their ``module.`` prefix is
stripped. Each ReLU is its own ``nn.ReLU`` module (``relu`` at the stem, ``layerS.B.relu1`` /
``relu2`` in the blocks) so activation layers get meaningful, stable names in the imported graph.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from olafhe.core.errors import ConfigError

DEPTHS = (20, 32, 44, 56, 110)
STAGE_WIDTHS = (16, 32, 64)


class ChannelPadShortcut(nn.Module):
    """Option-A downsampling shortcut: keep every other pixel, zero-pad channels on both sides.

    Written with exactly ``x[:, :, ::2, ::2]`` and ``F.pad`` so torch.fx traces it into a strided
    slice and a channel pad, which the graph importer maps to ``subsample`` and ``pad_channels``.
    """

    def __init__(self, planes: int) -> None:
        super().__init__()
        self.pad = planes // 4

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, self.pad, self.pad))


class BasicBlock(nn.Module):
    """conv3x3-BN-ReLU-conv3x3-BN, plus the shortcut, then ReLU."""

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu2 = nn.ReLU()
        needs_projection = stride != 1 or in_planes != planes
        self.shortcut: nn.Module = ChannelPadShortcut(planes) if needs_projection else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu2(out + self.shortcut(x))


class CifarResNet(nn.Module):
    """ResNet-``depth`` for 32x32 inputs: a 16-channel stem, three stages, global pool, linear."""

    def __init__(self, depth: int, num_classes: int = 10) -> None:
        super().__init__()
        if depth < 8 or (depth - 2) % 6:
            raise ConfigError(f"CIFAR ResNet depth must be 6n+2 with n >= 1 (e.g. 20, 32, 44, 56, 110), got {depth}")
        blocks = (depth - 2) // 6
        self.depth = depth
        self.conv1 = nn.Conv2d(3, STAGE_WIDTHS[0], 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(STAGE_WIDTHS[0])
        self.relu = nn.ReLU()
        in_planes = STAGE_WIDTHS[0]
        stages = []
        for i, planes in enumerate(STAGE_WIDTHS):
            strides = [1 if i == 0 else 2] + [1] * (blocks - 1)
            layers = []
            for stride in strides:
                layers.append(BasicBlock(in_planes, planes, stride))
                in_planes = planes
            stages.append(nn.Sequential(*layers))
        self.layer1, self.layer2, self.layer3 = stages
        self.linear = nn.Linear(STAGE_WIDTHS[-1], num_classes)
        for module in self.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(module.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.layer3(self.layer2(self.layer1(out)))
        out = F.avg_pool2d(out, out.size()[3])
        out = out.view(out.size(0), -1)
        return self.linear(out)


def resnet(depth: int, num_classes: int = 10) -> CifarResNet:
    """Build an untrained CIFAR ResNet of the given depth (weights from torch's current RNG)."""
    return CifarResNet(depth, num_classes)
