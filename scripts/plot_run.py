#!/usr/bin/env python
"""PNG plots of a training run: reward, per-task accuracy/partial credit/format rate, flat groups, response length
and the share cut off, entropy, PPO clip fraction, KL, validation accuracy, and with the adaptive curriculum its
hardest open level and level mix per task. Prints the training-health warnings of the run (verl_ext/health.py).

    python scripts/plot_run.py LOGDIR --out DIR [--smooth 0.6]

LOGDIR is the run's TensorBoard folder (run_grpo.sh: SAVE_DIR/tensorboard). Series that are not in the log are
skipped and listed. See ``verl_ext/evaluation/plots.py`` for the metric names used.
"""

import sys

from verl_ext.evaluation.plots import main

if __name__ == "__main__":
    sys.exit(main())
