"""Engine + simulator: compilation, level flow, and agreement of the op-by-op and fast batch paths."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from numpy.polynomial import chebyshev as C

from olafhe.backends.simulator import SimulatorBackend, simulate_logits
from olafhe.core.compiler.compile import compile_program
from olafhe.core.compiler.runtime import encrypted_inference
from olafhe.core.contract.backend import KeyRequest
from olafhe.core.contract.ckks import CKKSParams
from olafhe.core.errors import CapabilityError, OlafheError, OutOfLevelsError
from olafhe.core.graph.ir import Graph, Node
from olafhe.core.planning.plan import Plan, PlanCKKS, PlanLayer
from olafhe.core.poly.approximation import Approximation


def tiny_graph(seed: int = 0) -> Graph:
    """conv(s2) -> act1 -> conv + skip(act1) -> act2 -> avgpool -> flatten -> dense (a mini ResNet)."""
    rng = np.random.default_rng(seed)
    nodes = [
        Node("x", "input", (), (3, 8, 8)),
        Node("conv1", "conv2d", ("x",), (4, 4, 4), dict(weight=rng.normal(0, 0.4, (4, 3, 3, 3)),
             bias=rng.normal(0, 0.1, 4), stride=(2, 2), padding=(1, 1))),
        Node("act1", "activation", ("conv1",), (4, 4, 4), dict(kind="relu")),
        Node("conv2", "conv2d", ("act1",), (4, 4, 4), dict(weight=rng.normal(0, 0.3, (4, 4, 3, 3)),
             bias=rng.normal(0, 0.1, 4), stride=(1, 1), padding=(1, 1))),
        Node("add", "add", ("conv2", "act1"), (4, 4, 4)),
        Node("act2", "activation", ("add",), (4, 4, 4), dict(kind="relu")),
        Node("pool", "avgpool2d", ("act2",), (4, 1, 1), dict(kernel=(4, 4), stride=(4, 4))),
        Node("flat", "flatten", ("pool",), (4,)),
        Node("fc", "dense", ("flat",), (3,), dict(weight=rng.normal(0, 1, (3, 4)), bias=rng.normal(0, 0.1, 3))),
    ]
    return Graph("tiny", nodes, "fc")


def relu_fit(a: float, b: float, degree: int, layer: str) -> Approximation:
    x = np.linspace(a, b, 2001)
    t = (2 * x - (a + b)) / (b - a)
    return Approximation("relu", "test", (a, b), (C.chebfit(t, np.maximum(x, 0), degree),), layer=layer)


def activation_ranges(graph: Graph) -> dict[str, tuple[float, float]]:
    seen: dict[str, tuple[float, float]] = {}
    graph.forward(images(), hook=lambda n, v: seen.__setitem__(n, (float(v.min()), float(v.max()))))
    return seen


def tiny_plan(degree: int = 7, boot: tuple[bool, bool] = (False, False), levels: tuple[int, int] = (9, 5)) -> Plan:
    ranges = activation_ranges(tiny_graph())
    approx = {n: relu_fit(lo - 0.2 * (hi - lo), hi + 0.2 * (hi - lo), degree, n) for n, (lo, hi) in ranges.items()}
    layers = [PlanLayer(n, approx[n], lv, bt, approx[n].depth) for n, lv, bt in zip(("act1", "act2"), levels, boot,
                                                                                     strict=True)]
    return Plan("tiny", "test", "test", layers, input_level=levels[0] + 1, ckks=PlanCKKS())


def images(n: int = 4) -> torch.Tensor:
    return torch.from_numpy(np.random.default_rng(1).normal(0, 1, (n, 3, 8, 8))).float()


def leveled_run(graph: Graph, plan: Plan):  # noqa: ANN201 - (program, client, server)
    """The plan compiled for a noiseless leveled simulator with 12 levels, and its keys."""
    backend = SimulatorBackend(CKKSParams(ring_dimension=1024, levels=12, bootstrap=False, insecure=True,
                                          extra={"noise": False}))
    program = compile_program(graph, {ly.name: ly for ly in plan.layers}, backend.capabilities().slots,
                              plan.input_level)
    client, server = backend.keygen(program.key_request())
    return program, client, server


def test_op_by_op_matches_fast_path_and_exact_polynomials() -> None:
    graph, plan = tiny_graph(), tiny_plan()
    program, client, server = leveled_run(graph, plan)
    x = images()
    fast = simulate_logits(graph, plan, x)
    exact = graph.forward(x.double(), {n: (lambda f: lambda v: torch.from_numpy(f(v.numpy())))(a)
                                       for n, a in plan.approximations().items()}).numpy()
    for i in range(len(x)):
        logits, report = encrypted_inference(program, client, server, x[i].numpy())
        np.testing.assert_allclose(logits, exact[i], atol=1e-9)
        np.testing.assert_allclose(fast[i], exact[i], atol=2e-4)
    # the input linear layer starts at the encryption level; activations run at their plan levels
    acts = [s for s in report.steps if s["kind"] == "activation"]
    assert [s["level_in"] for s in acts] == [9, 5]
    assert acts[0]["level_out"] == 9 - plan.layers[0].depth


def test_linear_layers_settle_their_input_once() -> None:
    """Each linear step hands its input to ``settle`` once, before its rotations and products."""
    graph, plan = tiny_graph(), tiny_plan()
    program, client, server = leveled_run(graph, plan)
    settled: list[int] = []
    server.settle = lambda ct: settled.append(server.level(ct)) or ct  # type: ignore[method-assign]
    _, report = encrypted_inference(program, client, server, images(1)[0].numpy())
    linear = [s for s in report.steps if s["kind"] == "linear"]
    assert settled == [s["level_in"] for s in linear] and len(linear) >= 3


def test_level_flow_and_out_of_levels() -> None:
    graph = tiny_graph()
    plan = tiny_plan(degree=15, levels=(3, 0))  # act2 cannot have its depth at level 0
    backend = SimulatorBackend(CKKSParams(ring_dimension=1024, levels=12, bootstrap=False, insecure=True))
    program = compile_program(graph, {ly.name: ly for ly in plan.layers}, 512, 4)
    client, server = backend.keygen(program.key_request())
    with pytest.raises(OlafheError):
        encrypted_inference(program, client, server, images(1)[0].numpy())
    ct = client.encrypt(np.ones(4), level=1)
    ct = server.multiply_plain(ct, np.ones(4))
    with pytest.raises(OutOfLevelsError):
        server.multiply(ct, ct)


def test_bootstrap_refreshes_and_counts() -> None:
    graph = tiny_graph()
    plan = tiny_plan(degree=7, boot=(False, True), levels=(4, 6))
    backend = SimulatorBackend(CKKSParams(ring_dimension=1024, levels=6, bootstrap=True, insecure=True,
                                          extra={"noise": False}))
    program = compile_program(graph, {ly.name: ly for ly in plan.layers}, 512, plan.layers[0].level_in + 1)
    assert program.bootstraps == 1
    client, server = backend.keygen(program.key_request())
    logits, report = encrypted_inference(program, client, server, images(1)[0].numpy())
    assert server.counter.total("bootstrap") == 1
    np.testing.assert_allclose(logits, simulate_logits(graph, plan, images(1))[0], atol=2e-4)
    leveled = SimulatorBackend(CKKSParams(ring_dimension=1024, levels=6, bootstrap=False, insecure=True))
    with pytest.raises(CapabilityError):
        leveled.keygen(program.key_request())


def test_bootstrap_real_doubles_and_the_series_reads_it_halved() -> None:
    backend = SimulatorBackend(CKKSParams(ring_dimension=1024, levels=6, bootstrap=True, insecure=True,
                                          extra={"noise": False}))
    client, ev = backend.keygen(KeyRequest(bootstrap=True))
    x = np.linspace(-1.0, 1.0, 512)
    u = ev.bootstrap_real(client.encrypt(x, 0))
    assert ev.level(u) == 6
    np.testing.assert_allclose(client.decrypt(u), 2.0 * x)
    coeffs = np.array([0.1, 0.5, 0.3, -0.2])
    out = ev.chebyshev(u, coeffs, doubled=True)
    assert ev.level(out) == 6 - 2
    np.testing.assert_allclose(client.decrypt(out), C.chebval(x, coeffs))


def test_simulated_bootstrap_errs_on_the_slots_mean_like_openfhe() -> None:
    params = CKKSParams(ring_dimension=65536, scale_bits=59, first_mod_bits=60, levels=6, bootstrap=True,
                        slots=16384)
    backend = SimulatorBackend(params)
    k = backend.capabilities().bootstrap_cubic
    assert k == pytest.approx(1.004e-4, rel=1e-3)  # measured on OpenFHE at these parameters: 1.00e-4
    assert SimulatorBackend(params.with_(bootstrap=False)).capabilities().bootstrap_cubic == 0.0
    client, ev = backend.keygen(KeyRequest(bootstrap=True))
    for c in (0.4, 0.6):
        err = client.decrypt(ev.bootstrap(client.encrypt(np.full(16384, c), 0))) - c
        assert err.mean() == pytest.approx(-k * c**3, rel=0.05)
    zero_mean = np.linspace(-0.6, 0.6, 16384)
    err = client.decrypt(ev.bootstrap(client.encrypt(zero_mean, 0))) - zero_mean
    assert abs(err.mean()) < 1e-7


def test_noise_injection_magnitude() -> None:
    backend = SimulatorBackend(CKKSParams(ring_dimension=2**16, levels=9, insecure=False,
                                          extra={"noise": True, "bootstrap_precision_bits": 17.6}))
    client, server = backend.keygen(program_free_request())
    x = np.random.default_rng(0).uniform(-1, 1, backend.capabilities().slots)
    ct = client.encrypt(x)
    err_fresh = np.std(client.decrypt(ct) - x)
    err_boot = np.std(client.decrypt(server.bootstrap(ct)) - x)
    assert err_fresh < 1e-12
    assert 0.5 * 2**-17.6 < err_boot < 2 * 2**-17.6


def program_free_request():
    from olafhe.core.contract.backend import KeyRequest

    return KeyRequest(bootstrap=True)


def test_rotation_needs_key_and_layout_report() -> None:
    graph, plan = tiny_graph(), tiny_plan()
    program = compile_program(graph, {ly.name: ly for ly in plan.layers}, 512, plan.input_level)
    report = program.linear_report()
    # global pooling folds into fc (rotate-and-add, no level); the classifier reads the 4 channel anchors
    assert [r["name"] for r in report] == ["conv1", "conv2", "fc"]
    assert report[-1]["nodes"] == ["pool", "flat", "fc"] and report[-1]["presum_rotations"] == 4
    assert all(r["diagonals"] > 0 for r in report)
    backend = SimulatorBackend(CKKSParams(ring_dimension=1024, levels=12, bootstrap=False, insecure=True))
    _, server = backend.keygen(program.key_request())
    missing = next(k for k in range(1, 512) if k not in program.rotations)
    ct = backend.keygen(program.key_request())[0].encrypt(np.ones(8))
    with pytest.raises(OlafheError, match="rotation key"):
        server.rotate(ct, missing)


def test_rotation_key_budget_uses_power_of_two_chains() -> None:
    graph, plan = tiny_graph(), tiny_plan()
    layers = {ly.name: ly for ly in plan.layers}
    full = compile_program(graph, layers, 512, plan.input_level)
    budget = compile_program(graph, layers, 512, plan.input_level, max_rotation_keys=4)
    assert len(full.rotations) > 4 and budget.chains is not None
    assert all(k & (k - 1) == 0 or (512 - k) & (512 - k - 1) == 0 for k in budget.rotations)  # +-2^i only
    assert len(budget.rotations) < len(full.rotations)
    backend = SimulatorBackend(CKKSParams(ring_dimension=1024, levels=12, bootstrap=False, insecure=True,
                                          extra={"noise": False}))
    x = images(1)[0].numpy()
    out = {}
    for name, program in (("full", full), ("budget", budget)):
        client, server = backend.keygen(program.key_request())  # the server only has these keys
        out[name], _ = encrypted_inference(program, client, server, x)
        out[name + "_rotations"] = server.counter.total("rotate") + server.counter.total("rotate_hoisted")
    np.testing.assert_allclose(out["budget"], out["full"], atol=1e-9)
    assert out["budget_rotations"] > out["full_rotations"]  # chains trade rotations for key memory


def test_linear_structure_only_compile() -> None:
    """``layers=None``: the same linear steps (layouts, diagonals, rotations) as with a plan, and no run."""
    graph, plan = tiny_graph(), tiny_plan()
    full = compile_program(graph, {ly.name: ly for ly in plan.layers}, 512, plan.input_level)
    bare = compile_program(graph, None, 512, plan.input_level)
    assert bare.linear_report() == full.linear_report()
    assert [(s.kind, s.out) for s in bare.steps] == [(s.kind, s.out) for s in full.steps]
    assert bare.rotations == full.rotations and bare.bootstraps == 0
    for a, b in zip(bare.steps, full.steps, strict=True):
        if a.kind == "linear":
            np.testing.assert_array_equal(a.offsets, b.offsets)
        if a.kind == "activation":
            assert (a.depth, a.level_in, a.bootstrap_before, a.approximation) == (0, 0, False, None)
    backend = SimulatorBackend(CKKSParams(ring_dimension=1024, levels=12, bootstrap=False, insecure=True))
    client, server = backend.keygen(bare.key_request())
    with pytest.raises(OlafheError, match="linear structure only"):
        encrypted_inference(bare, client, server, images(1)[0].numpy())
