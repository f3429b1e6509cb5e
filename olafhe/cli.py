"""The ``olafhe`` command line (see docs/contract.md for the commands and JSON outputs).

Every command exits non-zero with a one-line ``olafhe: error: ...`` message on bad input; ``--json``
prints exactly one JSON object on stdout (progress bars and logs go to stderr).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from olafhe.cli_common import add_common_arguments, emit, load_command_config, load_plan, log, print_olafhe_warnings
from olafhe.core.errors import ConfigError, OlafheError


def cmd_plugins(args: argparse.Namespace) -> int:
    from olafhe.core.contract.registry import registry

    sources = registry().sources()
    if args.json:
        print(json.dumps(sources))
        return 0
    for kind, regs in sources.items():
        print(f"{kind}:")
        for name, src in regs.items():
            cls = registry().get(kind, name)
            print(f"  {name:<20} {src:<12} {getattr(cls, 'description', '')}")
    return 0


def cmd_calibrate(args: argparse.Namespace) -> int:
    from olafhe.jobs.workspace import run_calibration

    config = load_command_config(args)
    result = run_calibration(config, args.out, progress=not args.no_progress, log=log)
    print(f"{'layer':<20} {'min':>9} {'max':>9} {'mean':>9} {'std':>9}")
    for s in result.layers:
        print(f"{s.name:<20} {s.min:9.3f} {s.max:9.3f} {s.mean:9.3f} {s.std:9.3f}")
    print(f"{len(result.layers)} layers, {result.images} images, {result.seconds:.1f} s")
    return 0


def cmd_candidates(args: argparse.Namespace) -> int:
    from olafhe.approximators.table import candidate_table, format_table
    from olafhe.jobs.backend import approximator_for
    from olafhe.jobs.workspace import get_calibration, load

    config = load_command_config(args)
    loaded = load(config)
    calib = get_calibration(config, loaded, log, progress=not args.no_progress)
    approx = approximator_for(config, args.approximator)
    degrees = [int(d) for d in args.degrees.split(",")] if args.degrees else approx.default_degrees()
    rows = candidate_table(approx, calib, degrees)
    if args.json:
        print(json.dumps(rows))
    else:
        print(format_table(rows))
    return 0


def format_plan(plan) -> str:  # noqa: ANN001
    lines = [f"{'layer':<18} {'deg':>4} {'interval':>19} {'wmse':>10} {'depth':>5} {'lvl in':>6} {'boot':>4}"]
    for ly in plan.layers:
        a = ly.approximation
        lines.append(f"{ly.name:<18} {a.degree:>4} [{a.interval[0]:8.3f},{a.interval[1]:8.3f}] "
                     f"{a.weighted_mse:10.2e} {ly.depth:>5} {ly.level_in:>6} {'yes' if ly.bootstrap_before else '':>4}")
    pred = plan.predicted
    latency = float("nan") if pred.latency_s is None else pred.latency_s
    quality = f"predicted test-set drop {pred.test_drop:.2f} points (at most {pred.max_test_drop})" \
        if pred.test_drop is not None else f"accuracy on tuning images {pred.accuracy}"
    lines.append(f"bootstraps {plan.bootstraps}, levels after bootstrap {plan.ckks.levels}, input level "
                 f"{plan.input_level}; predicted latency {latency:.1f} s, {quality}")
    return "\n".join(lines)


def cmd_optimize(args: argparse.Namespace) -> int:
    from olafhe.jobs.optimize import run_optimize

    config = load_command_config(args)
    result = run_optimize(config, args.approximator, args.optimizer, log=log, progress=not args.no_progress)
    out = Path(args.out or f"results/{config.model.name}-{result.plan.approximator}-{result.plan.optimizer}.json")
    result.plan.save(out)
    print(format_plan(result.plan))
    print(f"plan written to {out} ({result.seconds:.1f} s)")
    if args.png:
        from olafhe.report.plots import plot_degrees

        plot_degrees({f"{result.plan.approximator}/{result.plan.optimizer}": result.plan}, args.png)
        print(f"degrees plot written to {args.png}")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from olafhe.jobs.evaluate import run_evaluate

    config = load_command_config(args)
    plan = load_plan(args.plan)
    result = run_evaluate(config, plan, args.limit, progress=not args.no_progress,
                          backend=args.backend or "simulator", plan_path=args.plan or None)
    if "accuracy" in result:
        result = {k: result[k] for k in ("images", "correct", "accuracy", "backend", "plan")} | \
            {k: result[k] for k in ("seconds", "safety") if k in result}
    for failure in (result.get("safety") or {}).get("failures", []):
        log(f"olafhe: warning: numeric safety: {failure}")
    emit(result, args.json, json.dumps(result, indent=1))
    return 0


def cmd_infer(args: argparse.Namespace) -> int:
    from olafhe.jobs.infer import run_infer

    config = load_command_config(args)
    plan = load_plan(args.plan)
    result = run_infer(config, plan, args.limit or config.run.infer_images or 1, args.backend,
                       progress=not args.no_progress, log=log)
    emit(result, args.json, json.dumps(result, indent=1))
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from olafhe.jobs.run import run_main_job

    config = load_command_config(args)
    report = run_main_job(config, Path(args.out or config.run.out), log,
                          show_plan=lambda plan: print(format_plan(plan)))
    enc = report["encrypted"]
    print(json.dumps({k: v for k, v in report.items() if k != "encrypted"} | {
        "encrypted": None if enc is None else {k: enc[k] for k in ("images", "correct", "agree_with_simulator",
                                                                   "seconds_per_image", "peak_rss_mb",
                                                                   "security_bits", "bootstraps")}}, indent=1))
    return 0


def cmd_costs(args: argparse.Namespace) -> int:
    from olafhe.jobs.quick_costs import run_costs

    config = load_command_config(args)
    levels = [int(v) for v in args.levels.split(",")] if args.levels else None
    slots = [int(v) for v in args.slots.split(",")] if args.slots else None
    table, path, merged = run_costs(config, args.backend, args.quick, levels, slots, args.out, log=log,
                                    progress=not args.no_progress)
    print(f"cost table for machine {table.machine_key} written to {path}"
          f"{' (merged into the table already there)' if merged else ''}")
    seconds = table.params.get("calibration", {}).get("seconds")
    if seconds is not None:
        print(f"quick calibration took {seconds:.0f} s")
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from olafhe.report.bench import run_bench

    run_bench(args.configs, Path(args.out), set_overrides=args.set, log=log, encrypted=args.encrypted,
              limit=args.limit, readme=args.readme,
              backends=[b.strip() for b in args.backends.split(",") if b.strip()] if args.backends else None,
              plans_dir=args.plans, measured=args.measured, progress=not args.no_progress,
              combos=[_combo(c) for c in args.combo] or None)
    return 0


def _combo(text: str) -> tuple[str, str]:
    """``APPROXIMATOR/OPTIMIZER`` (e.g. ``composite-minimax/published``) as a pair."""
    approx, sep, opt = text.partition("/")
    if not sep or not approx.strip() or not opt.strip():
        raise ConfigError(f"--combo expects APPROXIMATOR/OPTIMIZER (e.g. composite-minimax/published), got {text!r}")
    return approx.strip(), opt.strip()


def _add_plan_commands(sub: argparse._SubParsersAction) -> None:
    """calibrate, candidates, optimize: from a model to a plan."""
    sp = sub.add_parser("calibrate", help="record activation input statistics")
    add_common_arguments(sp)
    sp.add_argument("--out")
    sp.set_defaults(fn=cmd_calibrate)

    sp = sub.add_parser("candidates", help="table of candidate approximations per layer and degree")
    add_common_arguments(sp)
    sp.add_argument("--approximator")
    sp.add_argument("--degrees", help="comma-separated degrees")
    sp.add_argument("--json", action="store_true")
    sp.set_defaults(fn=cmd_candidates)

    sp = sub.add_parser("optimize", help="choose degrees, bootstraps and levels; write a plan")
    add_common_arguments(sp)
    sp.add_argument("--approximator")
    sp.add_argument("--optimizer")
    sp.add_argument("--out")
    sp.add_argument("--png", help="save a plot of degrees per layer")
    sp.set_defaults(fn=cmd_optimize)


def _add_run_commands(sub: argparse._SubParsersAction) -> None:
    """evaluate, infer, run, costs: running plans and measuring backends."""
    for name, fn, helptext in (("evaluate", cmd_evaluate, "accuracy on the test set (plaintext or simulator)"),
                               ("infer", cmd_infer, "encrypted inference of a few test images")):
        sp = sub.add_parser(name, help=helptext)
        add_common_arguments(sp)
        sp.add_argument("--plan", required=(name == "infer"))
        sp.add_argument("--backend")
        sp.add_argument("--limit", type=int)
        sp.add_argument("--json", action="store_true")
        sp.set_defaults(fn=fn)

    sp = sub.add_parser("run", help="the main job: calibrate, optimize, evaluate, encrypted inference, report")
    add_common_arguments(sp)
    sp.add_argument("--out")
    sp.set_defaults(fn=cmd_run)

    sp = sub.add_parser("costs", help="measure this machine's per-operation cost table")
    add_common_arguments(sp)
    sp.add_argument("--backend")
    sp.add_argument("--quick", action="store_true",
                    help="measure only what plans are priced with (minutes at N=2^16; see olafhe.jobs.quick_costs)")
    sp.add_argument("--levels", help="comma-separated levels to measure (full calibration)")
    sp.add_argument("--slots", help="comma-separated slot counts to bootstrap over (--quick; default 2^14 and N/2)")
    sp.add_argument("--out", help="write here instead of this machine's table ($OLAFHE_COSTS/<machine key>/)")
    sp.set_defaults(fn=cmd_costs)


def _add_bench_command(sub: argparse._SubParsersAction) -> None:
    sp = sub.add_parser("bench", help="side-by-side comparison of approximators x optimizers x backends")
    sp.add_argument("configs", nargs="+")
    sp.add_argument("--out", default="results")
    sp.add_argument("--set", action="append", default=[])
    sp.add_argument("--encrypted", action="store_true", help="also measure encrypted latency (slow)")
    sp.add_argument("--limit", type=int, help="test images for the simulator accuracy (default all)")
    sp.add_argument("--readme", help="also rewrite the Results section of this README")
    sp.add_argument("--backends", help="comma-separated HE backends side by side, e.g. openfhe,tenseal "
                    "(default: the config's backend)")
    sp.add_argument("--no-progress", action="store_true", help="no progress bars")
    sp.add_argument("--plans", help="reuse the plans a previous bench saved in this folder instead of optimizing")
    sp.add_argument("--combo", action="append", default=[], metavar="APPROXIMATOR/OPTIMIZER",
                    help="a combination to bench, repeatable; the first is the speedup baseline (default: "
                         "composite-minimax/uniform, composite-minimax/published, wls/uniform, wls/greedy, wls/dp)")
    sp.add_argument("--measured", action="append", default=[], metavar="PATH",
                    help="saved `olafhe infer --json` outputs (file or folder) whose measured latency fills the "
                         "rows of the same plans")
    sp.set_defaults(fn=cmd_bench)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="olafhe", description="Encrypted CNN inference with layerwise polynomials")
    sub = p.add_subparsers(dest="command", required=True)
    sp = sub.add_parser("plugins", help="list backends, approximators and optimizers")
    sp.add_argument("--json", action="store_true")
    sp.set_defaults(fn=cmd_plugins)
    _add_plan_commands(sub)
    _add_run_commands(sub)
    _add_bench_command(sub)
    from olafhe.cli_split import add_split_commands

    add_split_commands(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    print_olafhe_warnings()
    try:
        return int(args.fn(args) or 0)
    except OlafheError as exc:
        print(f"olafhe: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("olafhe: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
