"""The client/server split through files: keygen, encrypt, compute (evaluation keys only), decrypt.

The simulator backend (its "keys" are its parameters) runs the mismatch and corruption checks fast; OpenFHE
runs the whole flow with its own serialization. Small CNN at an INSECURE small ring (small_cnn.toml opts out).
"""

from __future__ import annotations

import json
import stat
from pathlib import Path

import numpy as np
import pytest

from olafhe import cli
from olafhe.backends.openfhe.serialize import PUBLIC_FILES
from olafhe.core.config import load_config
from olafhe.core.errors import ConfigError
from olafhe.core.planning.plan import Plan
from olafhe.jobs import workspace
from olafhe.jobs.predict import predict
from olafhe.serve.artefacts import Manifest, pack, unpack

CONFIG = "configs/small_cnn.toml"
IMAGES = 3


def olafhe(capsys: pytest.CaptureFixture, *args: str | Path) -> tuple[int, str, str]:
    code = cli.main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture(scope="module")
def simulator_classes(small_cnn_plan_file: Path, small_cnn_sets: list[str]) -> list[int]:
    """The fast simulator's classes for the first IMAGES class-balanced test images."""
    config = load_config(CONFIG, small_cnn_sets[1::2])
    loaded = workspace.load(config)
    x, _ = workspace.test_set(loaded.data_dir, IMAGES)
    return [int(v) for v in predict(loaded.graph, x, 100, Plan.load(small_cnn_plan_file)).argmax(1)]


@pytest.fixture(scope="module")
def common(small_cnn_plan_file: Path, small_cnn_sets: list[str]):  # noqa: ANN201
    def args(command: str, backend: str, plan: Path | None = None) -> list[str]:
        return [command, CONFIG, *small_cnn_sets, "--plan", str(plan or small_cnn_plan_file), "--backend", backend,
                "--no-progress"]
    return args


def _flow(root: Path, common, backend: str) -> dict[str, Path]:  # noqa: ANN001
    """keygen, encrypt IMAGES images, compute; the paths of each artefact."""
    paths = {"keys": root / "keys", "inputs": root / "inputs", "outputs": root / "outputs"}
    assert cli.main([*common("keygen", backend), "--out", str(paths["keys"])]) == 0
    assert cli.main([*common("encrypt", backend), "--keys", str(paths["keys"]), "--limit", str(IMAGES),
                     "--out", str(paths["inputs"])]) == 0
    assert cli.main([*common("compute", backend), "--keys", str(paths["keys"] / "public"), str(paths["inputs"]),
                     "--out", str(paths["outputs"])]) == 0
    return paths


@pytest.fixture(scope="module")
def simulated(tmp_path_factory: pytest.TempPathFactory, common) -> dict[str, Path]:  # noqa: ANN001
    return _flow(tmp_path_factory.mktemp("sim"), common, "simulator")


@pytest.fixture(scope="module")
def openfhe_files(tmp_path_factory: pytest.TempPathFactory, common) -> dict[str, Path]:  # noqa: ANN001
    return _flow(tmp_path_factory.mktemp("openfhe"), common, "openfhe")


@pytest.mark.parametrize("backend", ["simulator", "openfhe"])
def test_files_round_trip_gives_the_simulators_classes(backend, simulated, openfhe_files, common,
                                                        simulator_classes, capsys) -> None:
    paths = simulated if backend == "simulator" else openfhe_files
    code, out, _ = olafhe(capsys, *common("decrypt", backend), "--keys", paths["keys"], paths["outputs"], "--json")
    assert code == 0
    result = json.loads(out)
    assert result["classes"] == simulator_classes
    assert all(len(r["logits"]) == 10 and r["server_seconds"] > 0 for r in result["outputs"])
    labels = json.loads((paths["inputs"] / "labels.json").read_text())
    assert len(labels["images"]) == IMAGES and labels["key_id"] == result["key_id"]


def test_key_directory_keeps_the_secret_apart(openfhe_files, small_cnn_plan_file) -> None:
    keys = openfhe_files["keys"]
    secret, public = Manifest.read(keys / "secret"), Manifest.read(keys / "public")
    assert stat.S_IMODE((keys / "secret").stat().st_mode) == 0o700
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in (keys / "secret").iterdir())
    assert "secret-key.bin" in secret.files and set(public.files) <= PUBLIC_FILES
    assert not (keys / "public" / "secret-key.bin").exists()
    assert secret.key_id == public.key_id and public.kind == "public" and secret.kind == "secret"
    assert public.plan_sha256 == Plan.load(small_cnn_plan_file).digest()
    assert public.ckks["ring_dimension"] == 8192 and public.ckks["insecure"] is True
    assert public.rotations and public.relinearization and not public.bootstrap
    header, _ = unpack((openfhe_files["inputs"] / "image-000.olct").read_bytes())
    assert header["plan_sha256"] == public.plan_sha256 and header["key_id"] == public.key_id
    assert header["ckks"] == public.ckks and header["role"] == "input"


def test_keygen_refuses_a_folder_with_keys(simulated, common, capsys) -> None:
    code, _, err = olafhe(capsys, *common("keygen", "simulator"), "--out", simulated["keys"])
    assert code == 2 and "not an empty folder" in err and err.count("\n") == 1


def test_compute_refuses_the_secret_half(simulated, common, capsys, tmp_path) -> None:
    code, _, err = olafhe(capsys, *common("compute", "simulator"), "--keys", simulated["keys"] / "secret",
                          simulated["inputs"], "--out", tmp_path)
    assert code == 2 and "never accepts a secret key" in err


def test_ciphertexts_of_another_key_set_are_refused_before_any_work(simulated, common, capsys, tmp_path) -> None:
    assert olafhe(capsys, *common("keygen", "simulator"), "--out", tmp_path / "other")[0] == 0
    out = tmp_path / "out"
    code, _, err = olafhe(capsys, *common("compute", "simulator"), "--keys", tmp_path / "other" / "public",
                          simulated["inputs"], "--out", out)
    assert code == 2 and "belongs to key set" in err and err.startswith("olafhe: error: ")
    assert not out.exists()  # refused before any output was written
    code, _, err = olafhe(capsys, *common("decrypt", "simulator"), "--keys", tmp_path / "other", simulated["outputs"])
    assert code == 2 and "belongs to key set" in err


def test_another_plan_is_refused(simulated, common, capsys, tmp_path, small_cnn_plan_file) -> None:
    doc = json.loads(small_cnn_plan_file.read_text())
    doc["predicted"]["latency_s"] = 123.0  # any change makes another plan
    other = tmp_path / "other-plan.json"
    other.write_text(json.dumps(doc))
    code, _, err = olafhe(capsys, *common("compute", "simulator", other), "--keys", simulated["keys"] / "public",
                          simulated["inputs"], "--out", tmp_path / "out")
    assert code == 2 and "belongs to plan" in err
    assert olafhe(capsys, *common("keygen", "simulator", other), "--out", tmp_path / "k2")[0] == 0
    code, _, err = olafhe(capsys, *common("decrypt", "simulator", other), "--keys", tmp_path / "k2",
                          simulated["outputs"])
    assert code == 2 and "ciphertext file" in err and "belongs to plan" in err


def test_other_ckks_parameters_are_refused(simulated, common, capsys, tmp_path) -> None:
    args = common("compute", "simulator")
    args[2:2] = ["--set", "backend.ckks.ring_dimension=16384"]
    code, _, err = olafhe(capsys, *args, "--keys", simulated["keys"] / "public", simulated["inputs"],
                          "--out", tmp_path)
    assert code == 2 and "other CKKS parameters (ring_dimension 8192, here 16384)" in err


@pytest.mark.parametrize("damage, message", [
    (lambda b: b[:-50] + bytes([b[-50] ^ 0xFF]) + b[-49:], "corrupt (payload sha256"),
    (lambda b: b[: len(b) // 2], "truncated"),
    (lambda b: b"hello" * 100, "not an olafhe ciphertext"),
    (lambda b: b[:13] + b"{" + b[14:], "corrupt header"),
])
def test_damaged_ciphertext_files_are_refused(simulated, common, capsys, tmp_path, damage, message) -> None:
    bad = tmp_path / "bad.olct"
    bad.write_bytes(damage((simulated["inputs"] / "image-000.olct").read_bytes()))
    code, _, err = olafhe(capsys, *common("compute", "simulator"), "--keys", simulated["keys"] / "public", bad,
                          "--out", tmp_path / "out")
    assert code == 2 and message in err and err.count("\n") == 1


def _copy_keys(src: Path, dst: Path) -> Path:
    dst.mkdir()
    for p in src.iterdir():
        (dst / p.name).symlink_to(p) if p.stat().st_size > 10_000_000 else (dst / p.name).write_bytes(p.read_bytes())
    return dst


@pytest.mark.parametrize("name, damage, message", [
    ("eval-mult.bin", lambda b: b[:100] + bytes([b[100] ^ 1]) + b[101:], "is corrupt (sha256 differs"),
    ("context.bin", lambda b: b[:-10], "truncated?"),
])
def test_damaged_key_files_are_refused(openfhe_files, common, capsys, tmp_path, name, damage, message) -> None:
    public = _copy_keys(openfhe_files["keys"] / "public", tmp_path / "public")
    (public / name).write_bytes(damage((public / name).read_bytes()))
    code, _, err = olafhe(capsys, *common("compute", "openfhe"), "--keys", public, openfhe_files["inputs"],
                          "--out", tmp_path / "out")
    assert code == 2 and message in err


def test_openfhe_refuses_a_forged_key_set_id(openfhe_files, common, capsys, tmp_path) -> None:
    """A ciphertext of another OpenFHE key set relabelled with this key set's id: the key tag gives it away."""
    assert olafhe(capsys, *common("keygen", "openfhe"), "--out", tmp_path / "other")[0] == 0
    assert olafhe(capsys, *common("encrypt", "openfhe"), "--keys", tmp_path / "other", "--limit", "1",
                  "--out", tmp_path / "in")[0] == 0
    header, payload = unpack((tmp_path / "in" / "image-000.olct").read_bytes())
    header["key_id"] = Manifest.read(openfhe_files["keys"] / "public").key_id
    forged = tmp_path / "forged.olct"
    forged.write_bytes(pack(header, payload))
    code, _, err = olafhe(capsys, *common("compute", "openfhe"), "--keys", openfhe_files["keys"] / "public", forged,
                          "--out", tmp_path / "out")
    assert code == 2 and "encrypted under another key set" in err


def test_envelope_round_trip() -> None:
    payload = np.arange(10.0).tobytes()
    header, back = unpack(pack({"role": "input", "key_id": "k"}, payload))
    assert back == payload and header["payload_bytes"] == len(payload) and header["format"] == "olafhe-ciphertext"


def test_serve_refuses_a_secret_key_folder_before_listening(simulated, common, capsys) -> None:
    code, _, err = olafhe(capsys, *common("serve", "simulator"), "--keys", simulated["keys"] / "secret", "--port", "0")
    assert code == 2 and "is a secret key set: the server never accepts a secret key" in err


def test_a_plan_of_another_checkpoint_is_refused_before_keygen(common, capsys, tmp_path, monkeypatch,
                                                               small_cnn_plan_file) -> None:
    """The plan's fingerprint names the checkpoint it was made for; keygen (and serve) refuse another."""
    import torch

    from olafhe.backends.simulator import SimulatorBackend
    from olafhe.serve.sides import prepare

    def refuse(*_args, **_kwargs):
        raise AssertionError("keys were generated for a plan of another checkpoint")

    monkeypatch.setattr(SimulatorBackend, "keygen", refuse)
    loaded = workspace.load(load_config(CONFIG))
    state = {k: v.clone() for k, v in loaded.model.state_dict().items()}
    state["fc.bias"] += 1e-3
    torch.save({"state_dict": state}, tmp_path / "other.pt")
    args = common("keygen", "simulator")
    args[2:2] = ["--set", f"model.checkpoint={tmp_path / 'other.pt'}"]
    code, _, err = olafhe(capsys, *args, "--out", tmp_path / "keys")
    assert code == 2 and err.count("\n") == 1
    assert err.startswith("olafhe: error: plan was made for small_cnn (graph ") and "checkpoint" in err
    assert not (tmp_path / "keys").exists()
    config = load_config(CONFIG, ["model.checkpoint=" + str(tmp_path / "other.pt")])
    with pytest.raises(ConfigError, match="but the config loads small_cnn"):  # serve prepares the same way
        prepare(config, Plan.load(small_cnn_plan_file), "simulator")
