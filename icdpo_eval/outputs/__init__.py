"""Saved outputs scored without generating them: the formats they are read from (:mod:`.formats`), their matching
to a task's documents (:mod:`.matching`) and ``icdpo-eval score`` (:mod:`.score`). May import every layer, the
preflight and the foundation; only ``cli.py`` and the leaderboard (a spec's ``outputs:`` rows) import it."""
