"""absl launchers: ``experiments.train`` and ``experiments.evaluate``."""
