"""Measuring what training changed: puzzle accuracy, downstream benchmarks, leakage checks and plots.

Modules: ``extract`` (the option letter in a ``<answer>`` tag), ``predictions`` (rewriting VLMEvalKit prediction
files), ``downstream`` (VLMEvalKit configs, prediction files and score files → one table), ``puzzle_eval`` /
``puzzle_report`` / ``eval_reward`` (held-out puzzle accuracy through verl's validation), ``leakage`` (training
images vs benchmark images), ``plots`` (TensorBoard scalars → PNG).
"""
