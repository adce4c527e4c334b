"""Layer 6, engine: where time passes (the runs table, planning, the step's way, the runner, pruning,
refinement, and `sweep.run`, which strings the layers together)."""
