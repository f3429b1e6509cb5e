"""One ResNet stage-3 convolution on OpenFHE at N = 2^16: rotated copies against the plain diagonal method.

Run: ``.venv/bin/python -m pytest benchmarks/bench_multiplex.py -o addopts="" --benchmark-only -p no:cacheprovider``
(about 2 minutes, ~4 GB). The convolution is ResNet-20's ``layer3.1.conv2`` shape: 64 channels of 8 x 8,
3 x 3 kernels, in the gapped multiplexed layout that fills 4,096 of the 2^14 slots. ``plain`` reads a
replicated input (today's diagonal method); ``rotated-copies`` reads the input held in four rotated copies
and adds the partial sums with two rotations. Both start at level 4 of a leveled 128-bit context (2^14
slots, 59-bit scale), and both must give the same tensor.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from olafhe.backends.openfhe.backend import OpenFHEBackend
from olafhe.backends.openfhe.common import load_openfhe
from olafhe.core.compiler.layout import grid_layout, plan_bsgs, replica_sum_steps, tile
from olafhe.core.compiler.multiplex import rotated_copies
from olafhe.core.compiler.program import Encoding, LinearStep, Program
from olafhe.core.compiler.runtime import apply_linear
from olafhe.core.contract.backend import KeyRequest
from olafhe.core.contract.ckks import CKKSParams

load_openfhe()

SLOTS = 2**14
LEVEL = 4
SHAPE = (64, 8, 8)


def _conv(rng: np.random.Generator) -> sp.csr_matrix:
    c, hw = SHAPE[0], SHAPE[1]
    w = rng.normal(0, 0.05, size=(c, c, 3, 3))
    return sp.csr_matrix(sum(sp.kron(sp.csr_matrix(w[:, :, dy + 1, dx + 1]),
                                     sp.kron(sp.eye(hw, k=dy), sp.eye(hw, k=dx)))
                             for dy in (-1, 0, 1) for dx in (-1, 0, 1)))


def _program(matrix: sp.csr_matrix, copies: bool) -> Program:
    rep = grid_layout(SHAPE, (32, 32), 4, 16)
    lay_in = rotated_copies(rep, SLOTS) if copies else rep
    from olafhe.core.compiler.layout import diagonals

    offs = diagonals(matrix, lay_in, rep, with_values=False).offsets
    step = LinearStep("y", "x", ("conv",), matrix, np.zeros(matrix.shape[0]), lay_in, rep, offs,
                      plan_bsgs(offs, lay_in.period), postsum=replica_sum_steps(lay_in, rep))
    return Program("bench", [step], SLOTS, "x", lay_in, Encoding(), "y", rep, LEVEL, {"x": lay_in, "y": rep})


@pytest.fixture(scope="module")
def setup():
    rng = np.random.default_rng(0)
    matrix = _conv(rng)
    programs = {name: _program(matrix, name == "rotated-copies") for name in ("plain", "rotated-copies")}
    rotations = frozenset().union(*(p.rotations for p in programs.values()))
    params = CKKSParams(ring_dimension=65536, scale_bits=59, first_mod_bits=60, levels=LEVEL, bootstrap=False,
                        slots=SLOTS)
    client, ev = OpenFHEBackend(params).keygen(KeyRequest(rotations=rotations))
    x = rng.uniform(-1, 1, matrix.shape[1])
    inputs = {name: client.encrypt(tile(p.input_layout.scatter(x), SLOTS), level=LEVEL)
              for name, p in programs.items()}
    return client, ev, programs, inputs, matrix @ x


@pytest.mark.parametrize("method", ["plain", "rotated-copies"])
def test_stage3_convolution(benchmark, setup, method):
    client, ev, programs, inputs, expected = setup
    program = programs[method]
    step = program.steps[0]
    out = benchmark.pedantic(lambda: apply_linear(program, step, ev, inputs[method]), rounds=2, iterations=1,
                             warmup_rounds=1)
    benchmark.extra_info.update(diagonals=step.diagonal_count, rotations=step.bsgs.rotation_count + len(step.postsum))
    got = program.decode_output(client.decrypt(out))
    np.testing.assert_allclose(got, expected, atol=1e-3)
