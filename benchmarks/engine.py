"""ICDPO engine benchmark (naive pipeline vs ours vs one plain ICL sample): see icdpo_eval/report/bench.py.

    python benchmarks/engine.py --json --max-new-tokens 64
"""

import sys

from icdpo_eval.report.bench import main

if __name__ == "__main__":
    sys.exit(main())
