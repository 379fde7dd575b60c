"""Measured performance of the trainer, the k-NN evaluation and the study engine.

``python -m benchmarks.run`` prints a table and writes every figure as JSON under
``benchmarks/results/``; see ``benchmarks/run.py``.
"""
