"""Reports: each study's k-NN table beside the paper, its entropy/KL plots and a verdict per row.

``python -m reports.build NAME`` (or ``--all``) rebuilds a study's report from what is recorded
(``study.json``, the optuna ledger, the sacred folders; see the ``studies`` package docstring), at
any time, also while runs are still going; ``reports.build.build_report(name, results_dir)`` is
what the studies engine calls when a study finishes. Modules, each with one job:

* ``load``: results folder -> pandas (a runs frame, one row per attempt; a long metrics frame)
* ``stats``: mean, std and the 95 % t-interval of a few seeds (exact t quantile, no scipy)
* ``collapse``: the collapse rule (final KL and h(P_t) / ln K)
* ``verdict``: agreement with the paper per row (direction, collapse)
* ``tables``: the study's table and the combined one, as numbers, for reading and in LaTeX
* ``plots``: k-NN per setting, h(P_t) and KL over training, every run's curves (PNG + SVG)
* ``provenance``: what was run (profile, data, seeds, code, software, dates, cost)
* ``page`` and ``document``: the page's content, rendered as Markdown and self-contained HTML
* ``fmt``: how numbers read
* ``build``: writes it all; the command line

``reports`` reads ``studies`` and ``core``; neither imports ``reports`` at module level.
"""
