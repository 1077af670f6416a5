#!/usr/bin/env python
"""Rewrite a VLMEvalKit prediction file so exact matching can score <answer>X</answer> outputs.

    python scripts/extract_answers.py IN.xlsx OUT.xlsx [--mode auto|letter|yesno] [--no-fallback] [--report R.json]

IN and OUT may be the same file (the raw outputs stay in the ``raw_prediction`` column, and a second run reads
from there). Then run VLMEvalKit with ``--mode eval --judge exact_matching``. Rows without an answer are written
as ``Z`` and score wrong; their count is printed. See ``verl_ext/evaluation/extract.py`` for the parsing rules.
"""

import sys

from verl_ext.evaluation.predictions import main

if __name__ == "__main__":
    sys.exit(main())
