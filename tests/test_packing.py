"""Several images per ciphertext: interleaving, the packed evaluator on every backend, and the jobs that
batch (infer, the client/server split, pricing). Small insecure rings only."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from olafhe.backends.openfhe.backend import OpenFHEBackend
from olafhe.backends.simulator import SimulatorBackend
from olafhe.backends.tenseal.backend import TenSEALBackend
from olafhe.core.compiler.packing import PackedEvaluator, Packing, packed
from olafhe.core.compiler.runtime import packing_of, run_program
from olafhe.core.config import load_config
from olafhe.core.contract.backend import KeyRequest
from olafhe.core.contract.ckks import CKKSParams
from olafhe.core.errors import ConfigError, DataError, ShapeError
from olafhe.core.planning.ckks import images_per_ciphertext
from olafhe.core.planning.costs import load_cost_table
from olafhe.core.planning.plan import Plan
from olafhe.jobs import workspace
from olafhe.jobs.infer import run_infer
from olafhe.jobs.predict import predict

CONFIG = "configs/small_cnn.toml"
SETS = ["data.calibration_images=600", "optimizer.eval_images=300", "optimizer.accuracy_drop=18"]
RING = "backend.ckks.ring_dimension=16384"   # 8192 slots: two small-CNN images (4096 slots each)
STEPS = (1, 3, -2)


def test_interleave_and_split_round_trip() -> None:
    packing = Packing(4, 8)
    rng = np.random.default_rng(0)
    images = [rng.normal(size=8) for _ in range(3)]
    physical = packing.interleave(images)
    assert physical.shape == (32,)
    assert np.array_equal(physical[1::4], images[1])   # image b sits at stride 4 from slot b
    back = packing.split(physical)
    assert all(np.array_equal(a, b) for a, b in zip(back[:3], images, strict=True))
    assert not back[3].any()                           # the missing fourth image is zeros
    assert np.array_equal(packing.spread(np.arange(8.0))[:8], [0, 0, 0, 0, 1, 1, 1, 1])


def test_bad_packings_are_refused() -> None:
    with pytest.raises(ShapeError, match="power of two"):
        Packing(3, 8)
    with pytest.raises(ShapeError, match="1 to 2 images"):
        Packing(2, 8).interleave([np.zeros(8)] * 3)
    with pytest.raises(ShapeError, match="8 slots"):
        Packing(2, 8).interleave([np.zeros(9)])
    sim = SimulatorBackend(CKKSParams(ring_dimension=64, slots=32, insecure=True))
    _, ev = sim.keygen(KeyRequest())
    with pytest.raises(ShapeError, match="needs a backend with 64 slots"):
        PackedEvaluator(ev, Packing(4, 16))


def test_key_request_scales_rotations_by_the_batch() -> None:
    request = Packing(2, 8).key_request(KeyRequest(rotations=frozenset({1, 7}), bootstrap=True))
    assert request.rotations == frozenset({2, 14}) and request.bootstrap


def _per_image_oracle(images: list[np.ndarray], plain: np.ndarray) -> list[np.ndarray]:
    """What every packed image must hold after the sequence in :func:`_run_ops`, computed per image."""
    out = []
    for x in images:
        h = sum(np.roll(x, -s) for s in STEPS)
        y = np.roll(x, -5) * plain + 0.25 * plain
        out.append(h * 0.5 + y)
    return out


def _run_ops(ev, ct):  # noqa: ANN001, ANN202
    rotated = ev.rotate_hoisted(ct, list(STEPS))
    h = rotated[STEPS[0]]
    for s in STEPS[1:]:
        h = ev.add(h, rotated[s])
    return h, ev.rotate(ct, 5)


def _check_backend(backend, packing: Packing, atol: float, bootstrap: bool = False) -> None:  # noqa: ANN001
    rng = np.random.default_rng(3)
    images = [rng.uniform(-0.5, 0.5, packing.slots) for _ in range(packing.batch)]
    plain = rng.uniform(-1, 1, packing.slots)
    logical = KeyRequest(rotations=frozenset(s % packing.slots for s in (*STEPS, 5)), bootstrap=bootstrap)
    client, raw = backend.keygen(packing.key_request(logical))
    ev = packed(raw, packing)
    assert ev.capabilities.slots == packing.slots
    ct = client.encrypt(packing.interleave(images))
    h, r5 = _run_ops(ev, ct)
    y = ev.add_plain(ev.multiply_plain(r5, plain), 0.25 * plain)
    if bootstrap:
        y = ev.bootstrap(y)
    out = ev.add(ev.multiply_scalar(h, 0.5), y)
    got = packing.split(client.decrypt(out))
    for g, want in zip(got, _per_image_oracle(images, plain), strict=True):
        np.testing.assert_allclose(g, want, atol=atol)


def test_packed_simulator_matches_each_image() -> None:
    backend = SimulatorBackend(CKKSParams(ring_dimension=256, slots=128, insecure=True, extra={"noise": False}))
    _check_backend(backend, Packing(4, 32), atol=1e-12)


@pytest.mark.openfhe
def test_packed_openfhe_with_bootstrap_matches_each_image() -> None:
    params = CKKSParams(ring_dimension=4096, levels=3, level_budget=(1, 1), slots=128, insecure=True)
    _check_backend(OpenFHEBackend(params), Packing(2, 64), atol=2e-3, bootstrap=True)


def test_packed_tenseal_matches_each_image() -> None:
    params = CKKSParams(ring_dimension=8192, scale_bits=40, first_mod_bits=60, levels=4, bootstrap=False,
                        slots=1024, insecure=True)
    _check_backend(TenSEALBackend(params), Packing(4, 256), atol=1e-4)


@pytest.fixture(scope="module")
def loaded():  # noqa: ANN201
    return workspace.load(load_config(CONFIG, SETS))


def test_images_per_ciphertext_is_automatic_and_overridable(loaded) -> None:  # noqa: ANN001
    def batch(*sets: str, images: int | None = None, plan: Plan | None = None) -> int:
        return images_per_ciphertext(load_config(CONFIG, [*SETS, RING, *sets]), loaded.graph, plan, images)

    assert batch(images=4) == 2 and batch(images=1) == 1 and batch() == 1
    assert images_per_ciphertext(load_config(CONFIG, SETS), loaded.graph, None, 4) == 1  # 4096 slots: one image
    assert batch("backend.ckks.batch=2") == 2
    with pytest.raises(ConfigError, match="power of two <= 2"):
        batch("backend.ckks.batch=4")
    with pytest.raises(ConfigError, match="power of two"):
        batch("backend.ckks.batch=3")


def test_cost_table_prices_per_image() -> None:
    table = load_cost_table("openfhe", 65536)
    full, sparse = table.for_slots(32768), table.for_slots(16384)
    per_image = full.per_image(2)
    assert per_image.bootstrap_cost(6) == pytest.approx(full.bootstrap_cost(6) / 2)
    assert per_image.cost("rotate", 4) == pytest.approx(full.cost("rotate", 4) / 2)
    # the premise of packing on this table: one full-slot bootstrap costs less than two sparse ones
    assert full.bootstrap_cost(6) < 2 * sparse.bootstrap_cost(6)


@pytest.mark.openfhe
def test_infer_packs_two_images_with_the_single_image_classes(loaded, small_cnn_plan_file: Path) -> None:  # noqa: ANN001
    plan = Plan.load(small_cnn_plan_file)
    packed_run = run_infer(load_config(CONFIG, [*SETS, RING]), plan, 4, "openfhe", progress=False, loaded=loaded)
    single = run_infer(load_config(CONFIG, [*SETS, RING, "backend.ckks.batch=1"]), plan, 4, "openfhe",
                       progress=False, loaded=loaded)
    assert packed_run["images_per_ciphertext"] == 2 and len(packed_run["seconds"]) == 2
    assert single["images_per_ciphertext"] == 1 and len(single["seconds"]) == 4
    assert packed_run["slots"] == 2 * single["slots"] == 8192   # the plan's 4096 slots per image, twice
    assert packed_run["encrypted_classes"] == single["encrypted_classes"]
    assert packed_run["agree_with_simulator"] == 1.0 and packed_run["max_logit_error"] < 1e-3
    assert packed_run["seconds_per_image"] == pytest.approx(sum(packed_run["seconds"]) / 4)
    assert packed_run["predicted_seconds_per_ciphertext"] == pytest.approx(
        2 * packed_run["predicted_seconds_per_image"])


def test_split_flow_packs_images_into_fewer_ciphertexts(loaded, small_cnn_plan_file: Path, tmp_path: Path) -> None:  # noqa: ANN001
    from olafhe.serve.split import run_compute, run_decrypt, run_encrypt, run_keygen

    config = load_config(CONFIG, [*SETS, RING, "backend.ckks.batch=2"])
    plan = Plan.load(small_cnn_plan_file)
    keys = tmp_path / "keys"
    run_keygen(config, plan, keys, "simulator")
    enc = run_encrypt(config, plan, keys, 3, tmp_path / "in", "simulator")
    assert len(enc["files"]) == 2                           # images 0-1 and image 2
    run_compute(config, plan, keys / "public", [str(tmp_path / "in")], tmp_path / "out", "simulator")
    result = run_decrypt(config, plan, keys, [str(tmp_path / "out")], "simulator")
    x, _ = workspace.test_set(loaded.data_dir, 3)
    assert result["classes"] == [int(v) for v in predict(loaded.graph, x, 100, plan).argmax(1)]
    assert [r["slot"] for r in result["outputs"]] == [0, 1, 0]


def test_packed_program_refuses_an_unpacked_evaluator(loaded, small_cnn_plan_file: Path) -> None:  # noqa: ANN001
    from olafhe.serve.sides import ClientSide, ServerSide, prepare

    config = load_config(CONFIG, [*SETS, RING, "backend.ckks.batch=2"])
    setup = prepare(config, Plan.load(small_cnn_plan_file), "simulator", loaded)
    assert setup.batch == 2 and setup.caps.slots == 2 * setup.program.slots
    client, raw = setup.backend.keygen(setup.request)
    with pytest.raises(ShapeError, match="PackedEvaluator"):
        run_program(setup.program, raw, client.encrypt(np.zeros(setup.caps.slots)))
    assert packing_of(packed(raw, setup.packing), setup.program).batch == 2
    side = ClientSide(setup, client, "k")
    with pytest.raises(DataError, match="1 to 2 image"):
        side.encrypt_batch([np.zeros((3, 32, 32))] * 3)
    assert isinstance(ServerSide(setup, packed(raw, setup.packing), None).evaluator, PackedEvaluator)  # type: ignore[arg-type]


def test_optimize_prices_a_plan_per_image_of_a_packed_batch(loaded, small_cnn_plan_file: Path) -> None:  # noqa: ANN001
    from olafhe.jobs.optimize import run_optimize

    single = Plan.load(small_cnn_plan_file)
    result = run_optimize(load_config(CONFIG, [*SETS, RING, "backend.ckks.batch=2"]), loaded=loaded, progress=False)
    plan = result.plan
    assert plan.ckks.batch == 2 and plan.ckks.slots == 4096          # priced for two images of 4096 slots
    assert single.ckks.batch is None and "batch" not in single.ckks.to_dict()
    assert Plan.from_dict(plan.to_dict()).ckks.batch == 2
    config = load_config(CONFIG, [*SETS, RING])
    assert images_per_ciphertext(config, loaded.graph, plan) == 2    # runs as it was priced
