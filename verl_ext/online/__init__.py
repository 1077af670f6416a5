"""Puzzles made on the fly during training, and the adaptive difficulty curriculum that steers them.

* :mod:`verl_ext.online.pictures`: the training pictures of a built dataset, decoded once and stored (the
  *picture index*), so the loader only decodes small JPEGs and the leakage guard can read their content ids.
* :mod:`verl_ext.online.dataset`: ``OnlinePuzzleDataset``, the ``data.custom_cls`` verl loads: each (seed,
  epoch, picture) gives one fixed puzzle, made by the builder's own code.
* :mod:`verl_ext.online.state`: how the curriculum's state travels from the controller (in the trainer's
  replay buffer) to the loader workers and across a resume: one small JSON file per training step.
"""

# The value of data.train_files that selects online puzzles (validation files stay parquet files).
ONLINE_FILES = "online"
