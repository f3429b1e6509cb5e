"""torch.fx import: plaintext graph evaluation matches torch, structure, naming, unsupported layers."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from olafhe.core.errors import ShapeError, UnsupportedLayerError
from olafhe.core.graph.fx_import import import_model
from olafhe.core.graph.ir import linear_operator
from olafhe.models import build_model, randomize

TOL = 1e-4


def _max_diff(model: nn.Module, graph, x: torch.Tensor) -> float:
    with torch.no_grad():
        return float((model(x) - graph.forward(x)).abs().max())


# ------------------------------------------------------------------------------------------------ parity
@pytest.mark.parametrize("fixture", ["resnet20", "resnet32", "small_cnn"])
def test_graph_matches_torch_on_real_images(fixture: str, request: pytest.FixtureRequest, test_images) -> None:
    model, graph = request.getfixturevalue(fixture)
    assert len(test_images.y) >= 32
    assert _max_diff(model, graph, test_images.x) < TOL
    with torch.no_grad():
        correct = int((graph.forward(test_images.x).argmax(1).numpy() == test_images.y).sum())
    assert correct >= (32 if fixture.startswith("resnet") else 10)  # of 40: the weights really loaded


@pytest.mark.parametrize("depth", [44, 56, 110])
def test_graph_matches_torch_for_deep_random_resnets(depth: int, test_images) -> None:
    model = build_model(f"resnet{depth}", None, seed=depth)
    graph = import_model(model, name=f"resnet{depth}")
    assert len(graph.activations()) == 1 + 2 * 3 * (depth - 2) // 6
    with torch.no_grad():
        logits = model(test_images.x[:2])
    assert 0.1 < float(logits.abs().max()) < 1e3  # a non-degenerate network
    assert _max_diff(model, graph, test_images.x[:2]) < TOL


def test_forward_batches_matches_one_forward(small_cnn, test_images) -> None:
    _, graph = small_cnn
    x = test_images.x[:11]
    with torch.no_grad():
        whole = graph.forward(x).numpy()
    batched = graph.forward_batches(x, 4)
    assert batched.dtype == whole.dtype and batched.shape == whole.shape
    np.testing.assert_allclose(batched, whole, rtol=1e-5, atol=1e-5)
    halves = {a.name: (lambda t: 0.5 * t) for a in graph.activations()}
    np.testing.assert_array_equal(graph.forward_batches(x, 3, halves, progress="test"),
                                  graph.forward_batches(x, 3, halves))
    assert graph.forward_batches(x[:0], 4).shape == (0,)


# ------------------------------------------------------------------------------------------------ structure
def test_resnet20_structure(resnet20) -> None:
    graph = resnet20.graph
    names = [n.name for n in graph.activations()]
    expected = ["relu"] + [f"layer{s}.{b}.relu{r}" for s in (1, 2, 3) for b in range(3) for r in (1, 2)]
    assert names == expected
    ops = [n.op for n in graph.nodes]
    assert ops.count("conv2d") == 19 and ops.count("add") == 9 and ops.count("dense") == 1
    assert "affine" not in ops  # every batch-norm folded into its convolution
    assert graph["layer2.0.shortcut.subsample"].params["stride"] == (2, 2)
    pad = graph["layer3.0.shortcut.pad_channels"]
    assert (pad.params["before"], pad.params["after"], pad.shape) == (16, 16, (64, 8, 8))
    assert graph["avgpool2d"].params == {"kernel": (8, 8), "stride": (8, 8)}
    assert graph.output == "linear" and graph["linear"].shape == (10,)
    conv = graph["layer1.0.conv1"]
    assert conv.params["weight"].dtype == np.float64 and conv.params["bias"].shape == (16,)
    assert conv.params["stride"] == (1, 1) and conv.params["padding"] == (1, 1) and conv.params["groups"] == 1


def test_names_are_stable(resnet20) -> None:
    again = import_model(resnet20.model, name="resnet20")
    assert [n.name for n in again.nodes] == [n.name for n in resnet20.graph.nodes]


def test_linear_operators_reproduce_nodes(small_cnn) -> None:
    graph = small_cnn.graph
    assert [n.name for n in graph.activations()] == ["act1", "act2"]
    x = torch.randn(1, 3, 32, 32, dtype=torch.float64)
    values = {"input": x}
    for node in graph.nodes[1:]:
        if node.op in ("activation", "add"):
            values[node.name] = (torch.relu(values[node.inputs[0]]) if node.op == "activation"
                                 else values[node.inputs[0]] + values[node.inputs[1]])
            continue
        src = values[node.inputs[0]]
        m, b = linear_operator(node, tuple(src.shape[1:]))
        values[node.name] = torch.from_numpy(m @ src.reshape(-1).numpy() + b).reshape(1, *node.shape)
    with torch.no_grad():
        torch.testing.assert_close(values[graph.output].float(), small_cnn.model(x.float()), rtol=0, atol=TOL)


class _Mixed(nn.Module):
    """Exercises the general mechanism: every supported op outside the ResNet pattern."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, padding="same", bias=True), nn.BatchNorm2d(8), nn.GELU())
        self.dw = nn.Conv2d(8, 8, 3, stride=2, padding=1, groups=4)
        self.dw_bn = nn.BatchNorm2d(8)
        self.post_bn = nn.BatchNorm2d(8)  # after an add: cannot fold, becomes `affine`
        self.act = nn.SiLU()
        self.pool = nn.AdaptiveAvgPool2d((2, 2))
        self.drop = nn.Dropout(0.5)
        self.keep = nn.Identity()
        self.fc1 = nn.Linear(32, 16)
        self.bn1d = nn.BatchNorm1d(16)
        self.flat = nn.Flatten()
        self.fc2 = nn.Linear(16, 5, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        y = self.dw_bn(self.dw(x))
        z = F.pad(x[..., ::2, ::2], (0, 0, 0, 0, 0, 0))
        x = self.act(self.post_bn(torch.add(y, z)))
        x = F.relu(F.avg_pool2d(x, 2, stride=2))
        x = self.keep(self.drop(self.pool(x)))
        x = torch.flatten(x, 1)
        x = self.bn1d(self.fc1(x.reshape(x.shape[0], -1)))
        x = F.silu(x.view(x.size(0), -1))
        return self.fc2(self.flat(x))


def test_general_model_with_all_supported_ops() -> None:
    torch.manual_seed(0)
    model = randomize(_Mixed(), seed=1)
    graph = import_model(model, input_shape=(3, 16, 16), name="mixed")
    ops = {n.op for n in graph.nodes}
    assert {"affine", "subsample", "pad_channels", "avgpool2d", "flatten", "dense", "add"} <= ops
    assert [(n.name, n.params["kind"]) for n in graph.activations()] == [
        ("stem.2", "gelu"), ("act", "silu"), ("relu", "relu"), ("silu", "silu")]
    assert graph["dw"].params["groups"] == 4 and graph["stem.0"].params["padding"] == (1, 1)
    assert "bn1d" not in [n.name for n in graph.nodes]  # folded into fc1
    x = torch.randn(8, 3, 16, 16)
    assert _max_diff(model, graph, x) < TOL


def test_unfoldable_batchnorm_becomes_affine() -> None:
    class TwoUsers(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 3, 1)
            self.bn = nn.BatchNorm2d(3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            c = self.conv(x)
            return torch.flatten(self.bn(c) + c, 1)

    model = randomize(TwoUsers(), seed=0)
    graph = import_model(model, input_shape=(3, 4, 4))
    assert graph["bn"].op == "affine" and graph["conv"].op == "conv2d"
    assert _max_diff(model, graph, torch.randn(3, 3, 4, 4)) < TOL


def test_import_uses_eval_statistics_and_restores_mode(small_cnn, test_images) -> None:
    model = build_model("small_cnn", None)
    model.train()
    graph = import_model(model)
    assert model.training and model.bn1.training
    model.eval()
    assert _max_diff(model, graph, test_images.x[:8]) < TOL


# ------------------------------------------------------------------------------------------------ errors
class _WithMaxPool(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.pool = nn.MaxPool2d(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.conv(x))


class _WithSin(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sin(self.conv(x))


class _WithControlFlow(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x if x.sum() > 0 else -x


def test_maxpool_is_unsupported() -> None:
    expected = r"unsupported layer 'pool' \(torch\.nn\.MaxPool2d\): olafhe supports"
    with pytest.raises(UnsupportedLayerError, match=expected):
        import_model(_WithMaxPool())


def test_sin_is_unsupported() -> None:
    with pytest.raises(UnsupportedLayerError, match=r"unsupported layer 'sin' \(torch\.sin\)"):
        import_model(_WithSin())


def test_untraceable_and_misshapen_models() -> None:
    with pytest.raises(UnsupportedLayerError, match="torch.fx cannot trace _WithControlFlow"):
        import_model(_WithControlFlow())
    with pytest.raises(ShapeError, match=r"fails on input shape \(B, 1, 32, 32\)"):
        import_model(_WithSin(), input_shape=(1, 32, 32))


@pytest.mark.parametrize(
    "body, reason",
    [
        (lambda x: F.pad(x, (1, 1, 0, 0)), "only zero padding of channels"),
        (lambda x: x[:, :2], "only x\\[:, :, ::s, ::s\\]"),
        (lambda x: x + 1.0, "addition of a constant"),
        (lambda x: F.gelu(x, approximate="tanh"), "tanh-approximated GELU"),
        (lambda x: F.avg_pool2d(x, 3, padding=1), "padding"),
        (lambda x: x.view(-1), "changes the batch dimension"),
    ],
)
def test_unsupported_variants_name_the_reason(body, reason: str) -> None:
    class Wrap(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return body(x)

    with pytest.raises(UnsupportedLayerError, match=reason) as info:
        import_model(Wrap(), input_shape=(4, 8, 8))
    assert "\n" not in str(info.value)
