"""Judges: reward models (the paper's OpenAssistant RM, the offline proxy, any HF RM), the pairwise and listwise
LLM judges and their on-disk verdict cache. May import ``data/`` and ``api_client``;
never ``engine/`` or ``method/``."""
