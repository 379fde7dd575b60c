"""Measured performance of the trainer, the k-NN evaluation, the data loader and the study engine.

``python -m benchmarks.run`` (the command line, ``run.py``) prints a table and writes every figure
as JSON under ``benchmarks/results/``. One module per section: ``step`` (the training step per
precision and compile variant), ``knn``, ``gpu`` (ViT-S/16 per GPU, with the loader alongside),
``loader`` (decode + crop per core), ``study`` (what the engine adds to its runs), ``ledger``
(the engine on a synthetic 10,000-run ledger), ``learn`` (same k-NN, fast vs plain); ``measure`` holds the timers,
counters and synthetic data they share, ``report`` the Markdown table.
"""
