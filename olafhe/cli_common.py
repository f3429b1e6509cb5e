"""What every olafhe command shares: logging, config and plan loading, JSON/text output, common options."""

from __future__ import annotations

import argparse
import json
import sys
import warnings


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def print_olafhe_warnings() -> None:
    """Show olafhe's warnings as one ``olafhe: warning: ...`` line on stderr (others as Python does)."""
    shown = warnings.showwarning
    if getattr(shown, "olafhe", False):
        return

    def show(message, category, filename, lineno, file=None, line=None):  # noqa: ANN001, ANN202
        from olafhe.core.errors import OlafheWarning

        if issubclass(category, OlafheWarning):
            log(f"olafhe: warning: {message}")
        else:
            shown(message, category, filename, lineno, file, line)

    show.olafhe = True  # type: ignore[attr-defined]
    warnings.showwarning = show


def load_command_config(args: argparse.Namespace):  # noqa: ANN202
    """The command's config (file, ``--set`` values, plugins chosen by flag) with plugin defaults and checks.

    ``--approximator`` / ``--optimizer`` go into the config too, so plugin hooks see what will run.
    """
    from olafhe.core.config import load_config
    from olafhe.core.contract.registry import registry

    flags = {"approximation.approximator": getattr(args, "approximator", None),
             "optimizer.name": getattr(args, "optimizer", None)}
    chosen = [f"{key}={json.dumps(name)}" for key, name in flags.items() if name]
    return load_config(args.config, [*args.set, *chosen], hooks=registry())


def load_plan(path: str | None):  # noqa: ANN202
    from olafhe.core.planning.plan import Plan

    return Plan.load(path) if path else None


def emit(result: dict, as_json: bool, text: str) -> None:
    if as_json:
        print(json.dumps(result))
    else:
        print(text)


def add_common_arguments(sp: argparse.ArgumentParser) -> None:
    """The arguments every config-driven command takes."""
    sp.add_argument("config", help="TOML config, e.g. configs/resnet20.toml")
    sp.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config value")
    sp.add_argument("--no-progress", action="store_true", help="no progress bars")
