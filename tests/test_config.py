"""Config loading: shipped configs, ``--set`` overrides, and one-line errors naming the bad key or file.

The CLI checks use ``olafhe.cli.main`` in-process with a data directory that does not exist, so a
command that validated its input late (after loading data) would fail with the wrong message instead
of hanging on a model load.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from olafhe.core.config import Config, load_config, parse_override
from olafhe.core.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "configs"


# ------------------------------------------------------------------------------------------------
# shipped configs
# ------------------------------------------------------------------------------------------------


def test_resnet20_config() -> None:
    config = load_config(CONFIGS / "resnet20.toml")
    assert isinstance(config, Config)
    assert config.source == str(CONFIGS / "resnet20.toml")
    assert config.model.name == "resnet20"
    assert config.model.checkpoint.endswith(".th")
    assert config.data.calibration_images == 3000
    assert config.approximation.approximator == "wls"
    assert config.optimizer.name == "dp" and config.optimizer.eval_images == 2000
    assert config.backend.name == "openfhe"
    ckks = config.backend.ckks
    assert (ckks.ring_dimension, ckks.levels, ckks.level_budget, ckks.insecure) == (65536, 6, [3, 3], False)


def test_resnet32_config() -> None:
    config = load_config(CONFIGS / "resnet32.toml")
    assert config.model.name == "resnet32"
    assert "resnet32" in config.model.checkpoint
    assert config.backend.ckks.ring_dimension == 65536 and not config.backend.ckks.insecure


def test_small_cnn_config_is_labelled_insecure_and_leveled() -> None:
    config = load_config(CONFIGS / "small_cnn.toml")
    assert config.model.name == "small_cnn"
    assert config.approximation.degrees == [3, 5, 7, 9, 11, 13, 15]
    assert config.optimizer.leveled is True and config.optimizer.accuracy_drop == 5.0
    assert config.backend.ckks.ring_dimension == 8192
    assert config.backend.ckks.insecure is True and config.backend.ckks.bootstrap is False
    assert config.run.evaluate_limit == 1000


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("*.toml")), ids=lambda p: p.name)
def test_every_shipped_config_loads(path: Path) -> None:
    config = load_config(path)
    assert config.model.name == path.stem


def test_defaults_without_a_file() -> None:
    config = load_config(None)
    assert config.source == ""
    assert config.approximation.approximator == "wls" and config.backend.name == "simulator"
    assert config.to_dict()["backend"]["ckks"]["ring_dimension"] == 65536


# ------------------------------------------------------------------------------------------------
# --set overrides
# ------------------------------------------------------------------------------------------------


def test_overrides_are_parsed_as_toml_literals() -> None:
    config = load_config(CONFIGS / "small_cnn.toml", [
        "data.batch_size=128",                      # int
        "optimizer.leveled=false",                  # bool
        "approximation.degrees=[7, 15, 31]",        # list
        "model.name=resnet44",                      # bare word: string fallback
        "model.checkpoint=checkpoints/resnet44.th",  # path: string fallback
        "backend.name='simulator'",                 # quoted string
        "backend.ckks.ring_dimension=8192",         # nested section
        "optimizer.accuracy_drop=2",                # int accepted where a float is declared
        "approximation.approximator_params={margin = 0.1, floor = 0.02}",  # inline table
    ])
    assert config.data.batch_size == 128 and isinstance(config.data.batch_size, int)
    assert config.optimizer.leveled is False
    assert config.approximation.degrees == [7, 15, 31]
    assert config.model.name == "resnet44"
    assert config.model.checkpoint == "checkpoints/resnet44.th"
    assert config.backend.name == "simulator"
    assert config.backend.ckks.ring_dimension == 8192
    assert config.optimizer.accuracy_drop == 2.0 and isinstance(config.optimizer.accuracy_drop, float)
    assert config.approximation.approximator_params == {"margin": 0.1, "floor": 0.02}
    assert config.backend.ckks.insecure is True  # untouched keys keep the file's values


def test_later_override_wins_and_values_may_contain_equals() -> None:
    config = load_config(None, ["run.out=first", "run.out=second", "model.checkpoint=a=b.th"])
    assert config.run.out == "second"
    assert config.model.checkpoint == "a=b.th"
    assert parse_override(" backend.ckks.levels = 12") == (["backend", "ckks", "levels"], 12)


@pytest.mark.parametrize(("override", "named"), [
    ("model.nme=resnet20", "'model.nme'"),
    ("modle.name=resnet20", "'modle'"),
    ("backend.ckks.ringdim=8192", "'backend.ckks.ringdim'"),
])
def test_unknown_key_names_the_dotted_key(override: str, named: str) -> None:
    with pytest.raises(ConfigError, match="unknown config key") as err:
        load_config(CONFIGS / "small_cnn.toml", [override])
    assert named in str(err.value)
    assert "known in this section" in str(err.value)


@pytest.mark.parametrize(("override", "named"), [
    ("data.batch_size=big", "'data.batch_size'"),
    ("optimizer.leveled=1", "'optimizer.leveled'"),
    ("backend.ckks.ring_dimension=8192.5", "'backend.ckks.ring_dimension'"),
    ("approximation.degrees=7", "'approximation.degrees'"),
    ('approximation.degrees=[7, "x"]', "'approximation.degrees[1]'"),
    ("model.name=3", "'model.name'"),
])
def test_wrong_type_names_the_key(override: str, named: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(CONFIGS / "small_cnn.toml", [override])
    assert named in str(err.value)


def test_override_through_a_value_is_refused() -> None:
    with pytest.raises(ConfigError, match="'name' is not a section"):
        load_config(CONFIGS / "small_cnn.toml", ["model.name.x=1"])
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        load_config(None, ["model.name"])
    with pytest.raises(ConfigError, match="empty key"):
        load_config(None, ["model..name=x"])


def test_invalid_values_are_refused_after_typing() -> None:
    with pytest.raises(ConfigError, match="data.batch_size must be positive"):
        load_config(None, ["data.batch_size=0"])
    with pytest.raises(ConfigError, match="level_budget must have two entries"):
        load_config(None, ["backend.ckks.level_budget=[1, 2, 3]"])
    with pytest.raises(ConfigError, match=r"optimizer.accuracy_margin must be in \[0, 1\)"):
        load_config(None, ["optimizer.accuracy_margin=1"])


def test_plans_are_tuned_to_the_allowed_drop_less_its_margin() -> None:
    assert load_config(None).optimizer.tuning_target == pytest.approx(0.15)  # 0.3 points, half held back
    assert load_config(None, ["optimizer.accuracy_drop=1", "optimizer.accuracy_margin=0"]).optimizer.tuning_target == 1


# ------------------------------------------------------------------------------------------------
# plugin hooks: defaults under the user's values, checks after the built-in ones
# ------------------------------------------------------------------------------------------------


class _Hooks:
    """A ConfigHooks stand-in: fixed default documents, and a record of what it validated."""

    def __init__(self, *defaults: dict) -> None:
        self.defaults = list(defaults)
        self.seen: list[Config] = []

    def config_defaults(self, config: Config) -> list[dict]:
        return self.defaults

    def validate_config(self, config: Config) -> None:
        self.seen.append(config)


def test_plugin_defaults_go_under_the_file_and_the_overrides() -> None:
    hooks = _Hooks({"approximation": {"approximator_params": {"margin": 0.2, "floor": 0.01}}},
                   {"optimizer": {"optimizer_params": {"degree": 7}}, "run": {"out": "plugin-out"}})
    config = load_config(CONFIGS / "small_cnn.toml", ["approximation.approximator_params={margin = 0.1}"], hooks)
    assert config.approximation.approximator_params == {"margin": 0.1, "floor": 0.01}  # merged key by key
    assert config.optimizer.optimizer_params == {"degree": 7}
    assert config.run.out == "plugin-out"
    assert config.optimizer.name == "dp" and config.approximation.degrees[-1] == 15  # the file's values stay
    assert hooks.seen == [config]  # validated once, with the defaults applied
    assert load_config(CONFIGS / "small_cnn.toml", ["run.out=mine"], hooks).run.out == "mine"


def test_plugin_defaults_are_checked_like_the_file() -> None:
    with pytest.raises(ConfigError, match="'optimizer.budget'"):
        load_config(None, hooks=_Hooks({"optimizer": {"budget": 3}}))
    with pytest.raises(ConfigError, match="plugins give config key 'run.out' two defaults"):
        load_config(None, hooks=_Hooks({"run": {"out": "a"}}, {"run": {"out": "b"}}))
    hooks = _Hooks({"data": {"batch_size": 0}})
    with pytest.raises(ConfigError, match="data.batch_size must be positive"):
        load_config(None, hooks=hooks)
    assert hooks.seen == []  # built-in checks first


# ------------------------------------------------------------------------------------------------
# files
# ------------------------------------------------------------------------------------------------


def test_missing_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    with pytest.raises(ConfigError, match="does not exist") as err:
        load_config(missing)
    assert str(missing) in str(err.value)


def test_invalid_toml(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[model]\nname = resnet20\n")  # unquoted string
    with pytest.raises(ConfigError, match="not valid TOML") as err:
        load_config(bad)
    assert str(bad) in str(err.value)


def test_errors_in_the_file_name_the_key(tmp_path: Path) -> None:
    path = tmp_path / "typed.toml"
    path.write_text("[backend.ckks]\nring_dimension = \"big\"\n")
    with pytest.raises(ConfigError, match="'backend.ckks.ring_dimension'"):
        load_config(path)
    path.write_text("[optimizer]\nbudget = 3\n")
    with pytest.raises(ConfigError, match="'optimizer.budget'"):
        load_config(path)


# ------------------------------------------------------------------------------------------------
# the CLI: exit 2, one line on stderr
# ------------------------------------------------------------------------------------------------


def _cli_error(capsys: pytest.CaptureFixture, argv: list[str]) -> str:
    from olafhe.cli import main

    assert main(argv) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("olafhe: error: ")
    assert captured.out == ""
    return lines[0]


def test_cli_bad_set_key(capsys: pytest.CaptureFixture) -> None:
    line = _cli_error(capsys, ["optimize", str(CONFIGS / "small_cnn.toml"), "--set", "model.nme=x"])
    assert "'model.nme'" in line


def test_cli_missing_config(capsys: pytest.CaptureFixture, tmp_path: Path) -> None:
    line = _cli_error(capsys, ["evaluate", str(tmp_path / "missing.toml")])
    assert "missing.toml" in line and "does not exist" in line


@pytest.mark.parametrize(("flag", "kind"), [("--optimizer", "optimizer"), ("--approximator", "approximator")])
def test_cli_unknown_plugin_fails_before_touching_data(capsys: pytest.CaptureFixture, tmp_path: Path,
                                                        flag: str, kind: str) -> None:
    argv = ["optimize", str(CONFIGS / "small_cnn.toml"), flag, "nope", "--no-progress",
            "--set", f"data.dir={tmp_path / 'no-data-here'}"]
    line = _cli_error(capsys, argv)
    assert f"unknown {kind} 'nope'" in line
    assert "known:" in line


def test_cli_bench_unknown_backend_fails_before_touching_data(capsys: pytest.CaptureFixture, tmp_path: Path) -> None:
    argv = ["bench", str(CONFIGS / "small_cnn.toml"), "--backends", "openfhe, nope", "--out", str(tmp_path / "out"),
            "--set", f"data.dir={tmp_path / 'no-data-here'}", "--no-progress"]
    line = _cli_error(capsys, argv)
    assert "unknown backend 'nope'" in line
    assert not (tmp_path / "out").exists()


def test_cli_bench_missing_measured_runs(capsys: pytest.CaptureFixture, tmp_path: Path) -> None:
    argv = ["bench", str(CONFIGS / "small_cnn.toml"), "--measured", str(tmp_path / "no-runs"), "--out",
            str(tmp_path / "out"), "--set", f"data.dir={tmp_path / 'no-data-here'}", "--no-progress"]
    line = _cli_error(capsys, argv)
    assert "no-runs" in line and "does not exist" in line
