"""Judges: reward models (the paper's OpenAssistant RM, the offline proxy, any HF RM), the pairwise and listwise
LLM judges and their on-disk verdict cache. May import ``data/`` and the foundation; never ``engine/`` or
``method/``."""
