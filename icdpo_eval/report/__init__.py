"""Tools around the harness: leaderboard, compare and the gates, bench, demo NLL, rank-set building, borrowing,
show-prompt. Any layer may be imported here; nothing outside ``report/`` and ``cli.py`` imports ``report/``."""
