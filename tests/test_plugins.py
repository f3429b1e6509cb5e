"""The plugin manager: built-in names, errors, run-time registration, config hooks, and a real entry-point install.

The entry-point test installs ``examples/olafhe-example-plugin`` with pip into a temporary folder
(offline, no build isolation, ~3 s) and puts that folder on ``sys.path``: olafhe then finds the plugin
exactly as it finds any installed third-party package, through ``importlib.metadata`` entry points.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tomli

from olafhe.core.config import Config, load_config
from olafhe.core.contract.hookspecs import hookimpl
from olafhe.core.contract.interfaces import DegreeOptimizer, OptimizationProblem, Solution
from olafhe.core.contract.registry import PluginRegistry, registry, reset_registry
from olafhe.core.errors import ConfigError, PluginError

REPO = Path(__file__).resolve().parents[1]
SMALL_CNN = str(REPO / "configs" / "small_cnn.toml")
EXAMPLE = REPO / "examples" / "olafhe-example-plugin"
EXAMPLE_DIST = "olafhe-example-plugin"

BUILTINS = {
    "backends": {"simulator", "openfhe", "tenseal"},
    "approximators": {"wls", "minimax", "composite-minimax"},
    "optimizers": {"dp", "greedy", "uniform", "published"},
}


@pytest.fixture
def fresh_registry():
    """A fresh process-wide registry for the test, and a fresh one again afterwards."""
    reset_registry()
    yield registry()
    reset_registry()


def _builtin(sources: dict[str, dict[str, str]]) -> dict[str, set[str]]:
    return {kind: {n for n, src in regs.items() if src == "builtin"} for kind, regs in sources.items()}


# ------------------------------------------------------------------------------------------------
# built-ins and errors
# ------------------------------------------------------------------------------------------------


def test_builtin_names_match_the_contract(fresh_registry: PluginRegistry) -> None:
    sources = fresh_registry.sources()
    assert set(sources) == set(BUILTINS)
    assert _builtin(sources) == BUILTINS
    for kind, names in BUILTINS.items():
        for name in names:
            cls = fresh_registry.get(kind, name)
            assert cls.name == name
            assert fresh_registry.get(kind.rstrip("s"), name) is cls  # singular kind works too


def test_unknown_name_lists_the_known_ones(fresh_registry: PluginRegistry) -> None:
    with pytest.raises(PluginError) as err:
        fresh_registry.get("optimizers", "nope")
    message = str(err.value)
    assert "unknown optimizer 'nope'" in message
    assert all(name in message for name in BUILTINS["optimizers"])
    with pytest.raises(PluginError, match="unknown backend 'gpu'.*openfhe"):
        fresh_registry.get("backends", "gpu")
    with pytest.raises(PluginError, match="unknown plugin kind 'widgets'"):
        fresh_registry.get("widgets", "x")


class _RuntimeOptimizer(DegreeOptimizer):
    name = "runtime-test"
    description = "registered at run time by the tests"

    def optimize(self, problem: OptimizationProblem, budget: float) -> Solution:
        raise NotImplementedError("registration tests never optimize")


class _ClashingOptimizer(_RuntimeOptimizer):
    name = "dp"  # already a built-in


class _Plugin:
    """A plugin object: any object with hookimpl-marked methods works, like a module."""

    def __init__(self, *classes: type) -> None:
        self.classes = list(classes)

    @hookimpl
    def olafhe_optimizers(self) -> list[type]:
        return self.classes


def test_duplicate_name_is_an_error_naming_both_sources() -> None:
    reg = PluginRegistry(load_entry_points=False)
    reg.register(_Plugin(_ClashingOptimizer), name="clash-plugin")
    with pytest.raises(PluginError) as err:
        reg.names("optimizers")
    message = str(err.value)
    assert "'dp'" in message and "twice" in message
    assert "builtin" in message and "clash-plugin" in message


def test_plugin_without_a_name_is_refused() -> None:
    class Nameless(_RuntimeOptimizer):
        name = ""

    reg = PluginRegistry(load_entry_points=False)
    reg.register(_Plugin(Nameless), name="nameless-plugin")
    with pytest.raises(PluginError, match="has no name"):
        reg.sources()


def test_runtime_registration_through_the_process_registry(fresh_registry: PluginRegistry) -> None:
    assert "runtime-test" not in fresh_registry.names("optimizers")
    registry().register(_Plugin(_RuntimeOptimizer), name="my-runtime-plugin")
    assert registry().get("optimizers", "runtime-test") is _RuntimeOptimizer
    assert registry().sources()["optimizers"]["runtime-test"] == "my-runtime-plugin"
    assert _builtin(registry().sources()) == BUILTINS  # built-ins unaffected
    reset_registry()
    assert "runtime-test" not in registry().names("optimizers")  # a reset forgets run-time plugins


# ------------------------------------------------------------------------------------------------
# config hooks: plugin defaults and checks, applied as the config loads
# ------------------------------------------------------------------------------------------------


class _ConfigPlugin:
    """An optimizer plugin with a default ``steps`` parameter and a check on it."""

    @hookimpl
    def olafhe_optimizers(self) -> list[type]:
        return [_RuntimeOptimizer]

    @hookimpl
    def olafhe_config_defaults(self, config: Config) -> dict | None:
        if config.optimizer.name != _RuntimeOptimizer.name:
            return None  # optimizer_params belongs to another optimizer
        return {"optimizer": {"optimizer_params": {"steps": 4}}}

    @hookimpl
    def olafhe_validate_config(self, config: Config) -> None:
        steps = config.optimizer.optimizer_params.get("steps")
        if config.optimizer.name == _RuntimeOptimizer.name and (not isinstance(steps, int) or steps < 1):
            raise ConfigError(f"optimizer.optimizer_params.steps must be a positive integer for runtime-test, "
                              f"got {steps!r}")


def test_config_hooks_give_defaults_and_refuse_bad_values() -> None:
    reg = PluginRegistry(load_entry_points=False)
    reg.register(_ConfigPlugin(), name="config-plugin")
    selected = "optimizer.name=runtime-test"
    assert load_config(SMALL_CNN, [selected], hooks=reg).optimizer.optimizer_params == {"steps": 4}
    assert load_config(SMALL_CNN, [selected]).optimizer.optimizer_params == {}  # no hooks, no plugin defaults
    mine = load_config(SMALL_CNN, [selected, "optimizer.optimizer_params={steps = 9}"], hooks=reg)
    assert mine.optimizer.optimizer_params == {"steps": 9}  # the user's value wins
    other = load_config(SMALL_CNN, hooks=reg)
    assert other.optimizer.name == "dp" and other.optimizer.optimizer_params == {}  # not selected: untouched
    with pytest.raises(ConfigError) as err:
        load_config(SMALL_CNN, [selected, "optimizer.optimizer_params={steps = 0}"], hooks=reg)
    assert str(err.value) == "optimizer.optimizer_params.steps must be a positive integer for runtime-test, got 0"


def test_config_hook_errors_reach_the_cli_as_one_line(fresh_registry: PluginRegistry, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture) -> None:
    from olafhe.cli import main

    fresh_registry.register(_ConfigPlugin(), name="config-plugin")
    argv = ["optimize", SMALL_CNN, "--optimizer", "runtime-test", "--no-progress",  # chosen by flag, seen by hooks
            "--set", "optimizer.optimizer_params={steps = -2}", "--set", f"data.dir={tmp_path / 'no-data-here'}"]
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == ("olafhe: error: optimizer.optimizer_params.steps must be a positive integer for "
                            "runtime-test, got -2\n")


def test_config_defaults_must_be_a_table() -> None:
    class Broken:
        @hookimpl
        def olafhe_config_defaults(self) -> list:  # fewer arguments than the spec is fine; a list is not
            return ["margin"]

    reg = PluginRegistry(load_entry_points=False)
    reg.register(Broken(), name="broken")
    with pytest.raises(PluginError, match="olafhe_config_defaults must return a table"):
        load_config(None, hooks=reg)


# ------------------------------------------------------------------------------------------------
# a real third-party package, discovered through its entry point
# ------------------------------------------------------------------------------------------------


def _install_example(target: Path, work: Path) -> None:
    """``pip install`` the example into ``target`` from a copy (keeps build files out of the repo).

    Without setuptools (pip could not build offline) write the same ``*.dist-info`` pip would:
    ``METADATA`` plus ``entry_points.txt`` generated from the package's own pyproject.toml.
    """
    src = work / "src"
    shutil.copytree(EXAMPLE, src, ignore=shutil.ignore_patterns("__pycache__", "build", "*.egg-info"))
    if importlib.util.find_spec("setuptools") is not None:
        cmd = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
               "--no-index", "--disable-pip-version-check", "--target", str(target), str(src)]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, f"pip install failed:\n{done.stdout}\n{done.stderr}"
        return
    project = tomli.loads((src / "pyproject.toml").read_text())["project"]
    shutil.copytree(src / "olafhe_example", target / "olafhe_example")
    info = target / f"{project['name'].replace('-', '_')}-{project['version']}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {project['name']}\nVersion: {project['version']}\n")
    lines = ["[olafhe]"] + [f"{k} = {v}" for k, v in project["entry-points"]["olafhe"].items()]
    (info / "entry_points.txt").write_text("\n".join(lines) + "\n")


@pytest.fixture(scope="module")
def example_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder holding the installed example distribution (installed once for this module)."""
    work = tmp_path_factory.mktemp("example-plugin")
    target = work / "site"
    _install_example(target, work)
    return target


@pytest.fixture
def with_example(example_site: Path, monkeypatch: pytest.MonkeyPatch):
    """The example installed and importable; afterwards sys.path, modules and registry are restored."""
    monkeypatch.syspath_prepend(str(example_site))
    reset_registry()
    yield example_site
    for mod in [m for m in sys.modules if m == "olafhe_example" or m.startswith("olafhe_example.")]:
        del sys.modules[mod]
    reset_registry()


def test_installed_package_registers_through_its_entry_point(with_example: Path) -> None:
    dist_infos = list(with_example.glob("olafhe_example_plugin-*.dist-info"))
    assert len(dist_infos) == 1 and (dist_infos[0] / "entry_points.txt").is_file()
    sources = registry().sources()
    assert sources["approximators"]["chebyshev-interp"] == EXAMPLE_DIST
    assert sources["optimizers"]["max-degree"] == EXAMPLE_DIST
    assert _builtin(sources) == BUILTINS
    cls = registry().get("approximators", "chebyshev-interp")
    assert Path(sys.modules[cls.__module__].__file__).is_relative_to(with_example)  # the installed copy


def test_config_selects_the_plugin_approximator_and_it_fits(with_example: Path, tmp_path: Path) -> None:
    from olafhe.core.calibration.stats import ActivationStats
    from olafhe.core.config import load_config
    from olafhe.jobs.backend import approximator_for, optimizer_for

    path = tmp_path / "plugin.toml"
    path.write_text('[approximation]\napproximator = "chebyshev-interp"\napproximator_params = { margin = 0.1 }\n'
                    '[optimizer]\nname = "max-degree"\n')
    config = load_config(path)
    approx = approximator_for(config)
    assert type(approx) is registry().get("approximators", "chebyshev-interp")
    assert type(optimizer_for(config)) is registry().get("optimizers", "max-degree")

    samples = np.random.default_rng(1).normal(0.5, 2.0, 50_000)
    stats = ActivationStats.from_samples("layer1", samples, bins=256)
    fit15, fit3 = approx.fit(stats, 15), approx.fit(stats, 3)
    assert fit15.degree == 15 and fit15.method == "chebyshev-interp" and fit15.layer == "layer1"
    width = stats.max - stats.min
    assert fit15.interval == pytest.approx((stats.min - 0.1 * width, stats.max + 0.1 * width))
    assert 0 < fit15.weighted_mse < fit3.weighted_mse
    assert fit15.outside_fraction == 0.0
    x = np.linspace(stats.min, stats.max, 1001)
    assert fit15.max_error == pytest.approx(np.max(np.abs(fit15(x) - np.maximum(x, 0))), rel=0.05)
    assert fit15.max_error < 0.05 * width  # a usable ReLU approximation, not just a finite number


def test_cli_plugins_json_includes_the_plugin(with_example: Path, capsys: pytest.CaptureFixture) -> None:
    from olafhe.cli import main

    assert main(["plugins", "--json"]) == 0
    out = capsys.readouterr().out
    assert out.count("\n") == 1  # exactly one JSON object, on one line
    doc = json.loads(out)
    assert set(doc) == {"backends", "approximators", "optimizers"}
    assert doc["approximators"]["chebyshev-interp"] == EXAMPLE_DIST
    assert doc["optimizers"]["max-degree"] == EXAMPLE_DIST
    assert {n for n, s in doc["backends"].items() if s == "builtin"} == BUILTINS["backends"]


def test_example_plugin_config_hooks(with_example: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from olafhe.cli import main

    chosen = ["approximation.approximator=chebyshev-interp"]
    assert load_config(SMALL_CNN, chosen, hooks=registry()).approximation.approximator_params == {"margin": 0.2}
    assert load_config(SMALL_CNN, hooks=registry()).approximation.approximator_params == {}  # wls: untouched
    argv = ["optimize", SMALL_CNN, "--approximator", "chebyshev-interp", "--no-progress",
            "--set", "approximation.approximator_params={margin = -1}", "--set", f"data.dir={tmp_path / 'none'}"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err == ("olafhe: error: approximation.approximator_params.margin must be a number >= 0 for "
                   "chebyshev-interp, got -1\n")

