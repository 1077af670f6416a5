"""Measuring what training changed: puzzle accuracy, downstream benchmarks, leakage checks and plots.

Modules: ``extract`` (the option letter in a ``<answer>`` tag), ``instruction`` (the instruction downstream
benchmarks give), ``predictions`` (rewriting VLMEvalKit prediction files), ``downstream`` (VLMEvalKit configs,
prediction files and score files), ``lmms_questions`` and ``lmms_tasks/`` (the project's lmms-eval task variants),
``lmms_eval_run`` (lmms-eval's command line, runs and results), ``downstream_table`` (one table from both tools),
``puzzle_eval`` / ``puzzle_report`` / ``eval_reward`` (held-out puzzle accuracy through verl's validation),
``leakage`` (training images vs benchmark images), ``plots`` (TensorBoard scalars → PNG).
"""
