"""Reports: each study's k-NN table beside the paper, its entropy/KL plots and a verdict per row.

``python -m reports.build NAME`` (or ``--all``) rebuilds a study's report from what is recorded
(``study.json``, the optuna ledger, the sacred folders; see the ``studies`` package docstring), at
any time, also while runs are still going; ``reports.build.build_report(name, results_dir)`` is
what the studies engine calls when a study finishes. Modules, each with one job:

* ``load``: results folder -> pandas (a runs frame, one row per attempt; a long metrics frame);
  each run's collapse verdict as it recorded it (``core.collapse`` for runs that did not)
* ``labels``: what each setting ran ("4 (paper: 5)"), and a grid's panels
* ``stats``: mean, std and the 95 % t-interval of a few seeds and of a difference (no scipy)
* ``noise``: the seed noise measured per profile, for one-seed studies
* ``references``: the same k-NN on a random network and on raw pixels, measured once and kept
* ``verdict``: agreement with the paper per row (direction once resolved, collapse)
* ``tables``: the study's table and the combined one, as numbers, for reading and in LaTeX
* ``plots``: k-NN per setting, entropies and KL over training, every run's curves (PNG + SVG)
* ``attention``: the teachers' CLS attention maps and 60 % masks, from the runs' checkpoints
* ``importance``: which factor matters in studies of two axes or more (means per value, PED-ANOVA)
* ``boundary``: a boundary study's bracket, its estimate and every probe, with its plot
* ``provenance``: what was run (profile, data, seeds, code, software, dates, cost)
* ``page`` and ``document``: the page's content, rendered as Markdown and self-contained HTML
* ``fmt``: how numbers read
* ``build``: writes it all; the command line

``reports`` reads ``studies`` and ``core``; neither imports ``reports`` at module level.
"""
