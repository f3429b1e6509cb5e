"""Encrypted batch inference on a real local Ray (no mocks): the actor pool, a killed actor, the secret key.

Small CNN on OpenFHE at an INSECURE small ring (small_cnn.toml opts out); one local Ray with 2 CPUs and one
key set per module.
"""

from __future__ import annotations

from pathlib import Path

import pytest

ray = pytest.importorskip("ray")

from olafhe import cli  # noqa: E402
from olafhe.core.config import load_config  # noqa: E402
from olafhe.core.errors import DataError, OlafheError  # noqa: E402
from olafhe.core.planning.plan import Plan  # noqa: E402
from olafhe.jobs import workspace  # noqa: E402
from olafhe.jobs.predict import predict  # noqa: E402
from olafhe.serve.artefacts import Manifest  # noqa: E402
from olafhe.serve.ray_infer import run_ray_infer  # noqa: E402
from olafhe.serve.ray_pool import ActorPool, ActorSpec, KeyedEvaluator, actor_resources  # noqa: E402
from olafhe.serve.split import run_keygen  # noqa: E402

CONFIG = "configs/small_cnn.toml"
IMAGES = 16


@pytest.fixture(scope="module")
def local_ray():  # noqa: ANN201
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


def _setting(plan_file: Path, sets: list[str], extra: list[str], keys: Path) -> tuple:
    """Config, plan, a key set made for them, and the simulator's classes of the first IMAGES test images."""
    config = load_config(CONFIG, [*sets[1::2], *extra])
    plan = Plan.load(plan_file)
    run_keygen(config, plan, keys, "openfhe")
    loaded = workspace.load(config)
    x, _ = workspace.test_set(loaded.data_dir, IMAGES)
    return config, plan, keys, [int(v) for v in predict(loaded.graph, x, 100, plan).argmax(1)]


@pytest.fixture(scope="module")
def setting(small_cnn_plan_file: Path, small_cnn_sets: list[str], tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201
    """One image per ciphertext (N = 8192: one image fills the slots)."""
    return _setting(small_cnn_plan_file, small_cnn_sets, [], tmp_path_factory.mktemp("ray") / "keys")


@pytest.fixture(scope="module")
def packed(small_cnn_plan_file: Path, small_cnn_sets: list[str], tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201
    """Two images per ciphertext (N = 16384, still INSECURE): one envelope per batch of two."""
    extra = ["backend.ckks.ring_dimension=16384", "backend.ckks.batch=2"]
    return _setting(small_cnn_plan_file, small_cnn_sets, extra, tmp_path_factory.mktemp("ray2") / "keys")


def _check_complete(result: dict, sim: list[int], per_batch: int = 1) -> None:
    """16 results, each batch decrypted exactly once, every class the simulator's."""
    batches = IMAGES // per_batch
    assert result["images"] == IMAGES and result["batches"] == batches and result["decrypted"] == batches
    assert result["images_per_ciphertext"] == per_batch
    assert [r["batch"] for r in result["rows"]] == list(range(batches))
    assert all(len(r["images"]) == len(r["classes"]) == per_batch for r in result["rows"])
    assert sorted(i for r in result["rows"] for i in r["images"]) == list(range(IMAGES))
    assert result["duplicates_dropped"] == 0
    assert result["classes"] == sim and result["agree_with_simulator"] == 1.0


def test_two_actors_give_the_simulators_classes(local_ray, packed) -> None:
    config, plan, keys, sim = packed
    seen: list[ActorSpec] = []
    result = run_ray_infer(config, plan, keys, IMAGES, 2, backend_name="openfhe", progress=False,
                           after_result=lambda pool, _b, _a: seen.append(pool.spec))
    _check_complete(result, sim, per_batch=2)  # 8 envelopes of two images
    assert all(r["attempts"] == 1 for r in result["rows"]) and not result["retries"]
    assert {r["actor"] for r in result["rows"]} == {"actor-0", "actor-1"}  # both actors worked
    assert result["actors_started"] == 2 and result["threads_per_actor"] == 1
    assert set(result["actor_peak_rss_mb"]) == {"actor-0", "actor-1"}
    assert all(mb > 100 for mb in result["actor_peak_rss_mb"].values())
    assert result["images_per_second"] > 0 and result["correct"] == sum(
        c == y for c, y in zip(result["classes"], result["labels"], strict=True))
    # the actors were given the public half only
    assert Path(seen[0].public) == (keys / "public").resolve()
    assert Manifest.read(Path(seen[0].public)).kind == "public"


def test_a_killed_actor_loses_no_batch(local_ray, setting) -> None:
    config, plan, keys, sim = setting
    killed: list[str] = []

    def kill_once(pool: ActorPool, _batch: int, actor: str) -> None:
        if not killed:  # the actor just got its next batch: kill it mid-run
            killed.append(actor)
            ray.kill(pool.actors[actor])

    result = run_ray_infer(config, plan, keys, IMAGES, 2, backend_name="openfhe", progress=False,
                           after_result=kill_once)
    _check_complete(result, sim)
    assert result["actors_lost"] == 1 and result["actors_started"] == 3
    [retry] = result["retries"]
    assert retry["actor"] == killed[0] and retry["error"] in ("ActorDiedError", "RayActorError")
    assert retry["replacement"] == "actor-2"
    [again] = [r for r in result["rows"] if r["batch"] == retry["batch"]]
    assert again["attempts"] == 2 and again["actor"] != killed[0]
    assert sum(r["attempts"] for r in result["rows"]) == IMAGES + 1


def test_actors_never_take_the_secret_key(local_ray, setting) -> None:
    config, plan, keys, _ = setting
    spec = ActorSpec(config, plan.to_dict(), plan.digest(), "openfhe", str(keys / "secret"))
    with pytest.raises(DataError, match="is a secret key set: Ray actors take the evaluation keys"):
        ActorPool(spec, 1)  # refused by the driver before any actor starts
    actor = ray.remote(KeyedEvaluator).options(num_cpus=0.5).remote(spec)  # and by the actor itself
    info = ray.get(actor.describe.remote())
    assert "is a secret key set" in info["error"] and info["key_id"] is None
    with pytest.raises(DataError, match="is a secret key set"):
        ray.get(actor.run.remote(0, b""))
    ray.kill(actor)


@pytest.mark.parametrize("extra, message", [
    (["--keys", "{keys}/public"], "has no public/ folder"),
    (["--keys", "{keys}/missing"], "does not exist"),
    (["--keys", "{keys}", "--public", "{keys}/secret"], "is a secret key set"),
    (["--keys", "{keys}", "--address", "127.0.0.1:1"], "cannot reach the Ray cluster at 127.0.0.1:1"),
])
def test_ray_infer_refuses_bad_input_in_one_line(setting, small_cnn_plan_file, small_cnn_sets, capsys,
                                                 extra, message) -> None:
    keys = setting[2]
    code = cli.main(["ray-infer", CONFIG, *small_cnn_sets, "--plan", str(small_cnn_plan_file), "--backend",
                     "openfhe", "--limit", "2", *[a.format(keys=keys) for a in extra]])
    err = capsys.readouterr().err
    assert code == 2 and message in err and err.startswith("olafhe: error: ") and err.count("\n") == 1


def test_ray_infer_refuses_another_plan(setting, small_cnn_plan_file, small_cnn_sets, capsys, tmp_path) -> None:
    doc = Plan.load(small_cnn_plan_file).to_dict()
    doc["predicted"]["latency_s"] = 123.0  # any change makes another plan
    other = Plan.from_dict(doc).save(tmp_path / "other-plan.json")
    code = cli.main(["ray-infer", CONFIG, *small_cnn_sets, "--plan", str(other), "--backend", "openfhe",
                     "--keys", str(setting[2]), "--limit", "2"])
    err = capsys.readouterr().err
    assert code == 2 and "belongs to plan" in err and err.count("\n") == 1


def test_all_actors_dead_is_one_clear_error(local_ray, setting) -> None:
    config, plan, keys, _ = setting
    spec = ActorSpec(config, plan.to_dict(), plan.digest(), "openfhe", str(keys / "public"))
    pool = ActorPool(spec, 1, num_cpus=0.5, replace=False)
    ray.kill(pool.actors["actor-0"])
    replies: list[int] = []
    with pytest.raises(OlafheError, match=r"all Ray actors died; 2 of 2 batches not run \(1 actors lost\)"):
        pool.run(2, lambda _b: b"never computed", lambda b, _r: replies.append(b))
    assert not replies and pool.report.retries[0]["actor"] == "actor-0"


@pytest.mark.parametrize("cpus, actors, threads_set, expected", [
    (2, 2, 0, (1, 1.0)), (2, 1, 0, (2, 2.0)), (2, 4, 0, (1, 0.5)), (16, 2, 4, (4, 4.0)),
])
def test_threads_and_cpus_per_actor(cpus, actors, threads_set, expected) -> None:
    config = load_config(CONFIG, [f"backend.ckks.threads={threads_set}"])
    assert actor_resources(config, actors, cpus) == expected
