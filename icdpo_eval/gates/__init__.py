"""Regression gates on finished runs: the exactness gate on per-document outputs (:mod:`.exact`) and the
statistical gate on tables (:mod:`.compare`). Reads files only: imports ``errors``, ``stats`` and each other, no
torch, no model."""
