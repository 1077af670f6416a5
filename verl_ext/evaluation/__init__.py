"""Measuring what training changed: puzzle accuracy, downstream benchmarks, leakage checks and plots.

Modules: ``extract`` (the option letter in a ``<answer>`` tag), ``predictions`` (rewriting VLMEvalKit prediction
files), ``collect`` (VLMEvalKit score files → one table), ``puzzle_eval``/``puzzle_report`` (held-out puzzle
accuracy through verl's validation), ``leakage`` (training images vs benchmark images), ``plots`` (TensorBoard
scalars → PNG).
"""
