"""Run outputs: orbax checkpoints, metrics writers, plots."""
