"""From calibration statistics to a Plan: candidates, the optimization problem, the plan itself.

``build_problem`` turns a model graph, per-layer candidate approximations, per-layer sensitivities and
a backend cost table into an :class:`~olafhe.core.contract.interfaces.OptimizationProblem`: for every
activation, the linear work that feeds it (its depth and its cost at each level, from the compiled
program's diagonal and rotation counts), the residual structure, and each candidate's depth,
distortion (sensitivity x weighted MSE) and cost per level.

The budget the optimizer gets is chosen by :mod:`olafhe.core.planning.tuning`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace

from olafhe.core.compiler.program import ActivationStep, AddStep, LinearStep, Program
from olafhe.core.compiler.rotations import RotationChains
from olafhe.core.contract.interfaces import (
    Candidate,
    LayerChoice,
    LayerSlot,
    OptimizationProblem,
    Solution,
)
from olafhe.core.errors import InfeasibleError, OlafheError
from olafhe.core.planning.costs import CostTable
from olafhe.core.planning.plan import Plan, PlanCKKS, PlanLayer, PlanPredicted
from olafhe.core.poly.approximation import Approximation


def top_level(max_level: int, bootstrap_configs: Iterable[int]) -> int:
    """The highest level any ciphertext can have: a fresh encryption's ``max_level`` or the level a
    bootstrap (one per entry of ``bootstrap_configs``, keyed by its level after bootstrap) returns."""
    return max([max_level, *bootstrap_configs])


def linear_step_seconds(step: LinearStep, costs: CostTable, level: int, chains: RotationChains | None = None) -> float:
    """Predicted seconds of one diagonal-method linear step starting at ``level``."""
    if level < 1:
        return float("inf")
    d = step.diagonal_count
    babies = [b for b in step.bsgs.babies if b]
    giants = [g for g in step.bsgs.giants if g]
    if chains is None:
        seconds = len(babies) * costs.cost("rotate_hoisted", level)
        seconds += costs.cost("hoist_precompute", level) if babies else 0.0
        seconds += len(giants) * costs.cost("rotate", level - 1)
    else:  # power-of-two key chains (rotation-key memory budget): a tree of baby steps, Horner giants
        seconds = chains.count(babies, shared=True) * costs.cost("rotate", level)
        seconds += chains.count_giants(giants) * costs.cost("rotate", level - 1)
    presum = [s for s in step.presum if s]  # rotate-and-add pooling before the diagonals
    rotations = len(presum) if chains is None else chains.count(presum, shared=False)
    seconds += rotations * costs.cost("rotate", level) + len(presum) * costs.cost("add", level)
    postsum = [s for s in step.postsum if s]  # partial sums of rotated copies, after the products
    rotations = len(postsum) if chains is None else chains.count(postsum, shared=False)
    seconds += rotations * costs.cost("rotate", level - 1) + len(postsum) * costs.cost("add", level - 1)
    # multiply_plain is measured with a raw vector, so its cost already includes encoding the diagonal
    seconds += d * costs.cost("multiply_plain", level)
    seconds += max(d - 1, 0) * costs.cost("add", level - 1) + costs.cost("add_plain", level - 1)
    return seconds


def activation_seconds(approx: Approximation, depth_of: Callable[[int], int], costs: CostTable, level: int) -> float:
    """Predicted seconds of one activation (all Chebyshev stages, plus the composite's final product)."""
    total, lv = 0.0, level
    for d in approx.stage_degrees:
        total += costs.cost(f"chebyshev_{d}", lv)
        lv -= depth_of(d)
    if approx.form == "relu-sign":
        total += costs.cost("multiply", max(lv, 1))
    return total


def candidate_depth(approx: Approximation, depth_of: Callable[[int], int]) -> int:
    return sum(depth_of(d) for d in approx.stage_degrees) + (1 if approx.form == "relu-sign" else 0)


@dataclass
class ProgramStructure:
    """Per activation: the linear steps feeding it on the main and skip paths."""

    main_steps: dict[str, list[LinearStep]]
    skip: dict[str, tuple[str, list[LinearStep]]]
    tail_steps: list[LinearStep]
    order: list[str]


def program_structure(program: Program) -> ProgramStructure:
    """Trace each activation's input back to the activations it depends on (chains and residual adds)."""
    producer = {s.out: s for s in program.steps}
    order = [s.out for s in program.steps if isinstance(s, ActivationStep)]

    def trace(value: str) -> tuple[str, list[LinearStep]]:
        steps: list[LinearStep] = []
        while value in producer and isinstance(producer[value], LinearStep):
            step = producer[value]
            steps.append(step)  # type: ignore[arg-type]
            value = step.input  # type: ignore[union-attr]
        return value, steps[::-1]

    main: dict[str, list[LinearStep]] = {}
    skip: dict[str, tuple[str, list[LinearStep]]] = {}
    prev = program.input_name
    for name in order:
        src = producer[name].input  # type: ignore[union-attr]
        origin = producer.get(src)
        if isinstance(origin, AddStep):
            branches = [trace(origin.a), trace(origin.b)]
            branches.sort(key=lambda br: br[0] != prev)
            (msrc, msteps), (ssrc, ssteps) = branches
            if msrc != prev:
                raise OlafheError(f"activation {name!r}: neither residual branch starts at the previous activation")
            main[name], skip[name] = msteps, (ssrc, ssteps)
        else:
            msrc, msteps = trace(src)
            if msrc != prev:
                raise OlafheError(f"activation {name!r} does not follow the previous activation ({prev!r})")
            main[name] = msteps
        prev = name
    src, tail = trace(program.output_name)
    if src != prev:
        raise OlafheError("the output does not follow the last activation")
    return ProgramStructure(main, skip, tail, order)


def build_problem(program: Program, candidates: dict[str, list[Candidate]], costs: CostTable,
                  max_level: int, bootstrap_configs: dict[int, float]) -> OptimizationProblem:
    struct = program_structure(program)
    chains = program.chains
    top = top_level(max_level, bootstrap_configs)
    levels = range(0, top + 1)
    slots = []
    for name in struct.order:
        steps = struct.main_steps[name]
        skip_src, skip_steps = struct.skip.get(name, (None, []))
        seconds = {lv: sum(linear_step_seconds(s, costs, lv - i, chains) for i, s in enumerate(steps))
                   + sum(linear_step_seconds(s, costs, lv - i, chains) for i, s in enumerate(skip_steps))
                   for lv in levels if lv >= len(steps)}
        seconds = {lv: v for lv, v in seconds.items() if math.isfinite(v)}
        slots.append(LayerSlot(
            name=name, candidates=tuple(candidates[name]), linear_depth=len(steps),
            linear_seconds_by_level=seconds,
            skip_from=None if skip_src in (None, program.input_name) else skip_src,
            skip_depth=len(skip_steps),
        ))
    tail = struct.tail_steps
    tail_seconds = {lv: sum(linear_step_seconds(s, costs, lv - i, chains) for i, s in enumerate(tail))
                    for lv in levels if lv >= len(tail)}
    return OptimizationProblem(
        layers=tuple(expand_stages(slots)), max_level=max_level, bootstrap_configs=dict(bootstrap_configs),
        tail_depth=len(tail), tail_seconds_by_level={k: v for k, v in tail_seconds.items() if math.isfinite(v)},
    )


STAGE_SEP = "#stage"


def expand_stages(slots: list[LayerSlot]) -> list[LayerSlot]:
    """Split layers whose approximation is a multi-stage composite into one slot per stage.

    The composite sign-ReLU of prior work needs 14+ levels, more than one bootstrap segment holds at
    128-bit security, so it must be able to bootstrap *between* its stages. Each stage becomes a slot
    of its own (no linear work before it), which lets the same exact DP place those inner bootstraps.
    Such a layer keeps one candidate (its first): the stage slots must agree on the polynomial. A last,
    depth-0 slot stands for the layer's output so that it, too, can be bootstrapped.
    """
    out: list[LayerSlot] = []
    renamed: dict[str, str] = {}
    for slot in slots:
        first = slot.candidates[0].approximation
        skip = renamed.get(slot.skip_from, slot.skip_from) if slot.skip_from else None
        if first.form != "relu-sign" or len(first.stages) < 2:
            out.append(LayerSlot(slot.name, slot.candidates, slot.linear_depth, slot.linear_seconds_by_level,
                                 skip, slot.skip_depth))
            continue
        cand = slot.candidates[0]
        k = len(first.stages)
        for j in range(k):
            depth = cand.stage_depths[j] + (1 if j == k - 1 else 0)
            seconds = {lv: v for lv, v in cand.stage_seconds[j].items() if lv >= depth}
            stage = Candidate(first, depth, cand.distortion if j == 0 else 0.0, seconds)
            name = slot.name if j == 0 else f"{slot.name}{STAGE_SEP}{j}"
            if j == 0:
                out.append(LayerSlot(name, (stage,), slot.linear_depth, slot.linear_seconds_by_level, skip,
                                     slot.skip_depth))
            else:
                out.append(LayerSlot(name, (stage,), 0, {}))
        # an identity slot after the final product: the DP may bootstrap the composite's output there,
        # before the next linear layer (its output is at level 0 when the last stage fills a segment)
        out.append(LayerSlot(f"{slot.name}{STAGE_SEP}{k}", (Candidate(first, 0, 0.0, {}),), 0, {}))
        renamed[slot.name] = f"{slot.name}{STAGE_SEP}{k}"
    return out


def make_candidates(approximations: list[Approximation], sensitivity: float, depth_of: Callable[[int], int],
                    costs: CostTable, top_level: int) -> list[Candidate]:
    out = []
    for approx in approximations:
        depth = candidate_depth(approx, depth_of)
        wmse = approx.weighted_mse if math.isfinite(approx.weighted_mse) else float("inf")
        stage_depths = tuple(depth_of(d) for d in approx.stage_degrees)
        last = len(stage_depths) - 1
        product = approx.form == "relu-sign"   # the final x * sign(x) product after the last stage
        stage_seconds = tuple(
            {lv: costs.cost(f"chebyshev_{d}", lv) + (costs.cost("multiply", max(lv - sd, 1)) if j == last and product
                                                    else 0.0)
             for lv in range(sd, top_level + 1)}
            for j, (d, sd) in enumerate(zip(approx.stage_degrees, stage_depths, strict=True)))
        out.append(Candidate(
            approximation=approx, depth=depth, distortion=sensitivity * wmse,
            seconds_by_level={lv: activation_seconds(approx, depth_of, costs, lv)
                              for lv in range(depth, top_level + 1)},
            stage_depths=stage_depths, stage_seconds=stage_seconds,
        ))
    return out


def solution_to_plan(solution: Solution, problem: OptimizationProblem, model: str, approximator: str,
                     optimizer: str, ckks: PlanCKKS) -> Plan:
    """Turn an optimizer's solution into a Plan, merging the stage slots of composite layers; ``ckks`` gets
    the solution's bootstrapping (levels after bootstrap)."""
    layers: list[PlanLayer] = []
    groups: dict[str, list[tuple[LayerSlot, LayerChoice]]] = {}
    order: list[str] = []
    for slot, choice in zip(problem.layers, solution.choices, strict=True):
        base = slot.name.split(STAGE_SEP)[0]
        if base not in groups:
            groups[base] = []
            order.append(base)
        groups[base].append((slot, choice))
    for base in order:
        members = groups[base]
        slot, choice = members[0]
        cand = slot.candidates[choice.candidate_index]
        approx = cand.approximation
        if len(members) == 1:
            layers.append(PlanLayer(base, approx, choice.level_in, choice.bootstrap_before, cand.depth))
            continue
        boots = tuple(c.bootstrap_before for _, c in members)
        levels = tuple(c.level_in for _, c in members)
        final_in = levels[-2] - (members[-2][0].candidates[0].depth - 1)  # the sign value before the product
        if choice.level_in < final_in:
            raise InfeasibleError(
                f"layer {base!r}: its input (level {choice.level_in}) would be below the composite's sign "
                f"value (level {final_in}) at the final product"
            )
        total_depth = sum(m[0].candidates[0].depth for m in members)
        layers.append(PlanLayer(base, approx, choice.level_in, choice.bootstrap_before, total_depth, boots, levels))
    if solution.level_after_bootstrap is not None:
        ckks = replace(ckks, levels=solution.level_after_bootstrap, bootstrap=True)
    else:
        ckks = replace(ckks, bootstrap=False)
    pred = PlanPredicted(latency_s=solution.predicted_seconds, distortion=solution.distortion)
    return Plan(model, approximator, optimizer, layers, solution.input_level, ckks, pred)
