"""The small, stable core: interfaces, plugin manager, config, plan, graph, calibration, engine."""
