"""The studies engine: ``python -m studies.run NAME`` runs a study from ``ablations/``.

Flow: ``spec`` loads and validates the study file; ``plan`` expands its grid x seeds into runs
(complete trainer configs, each keyed by a hash of its canonical config); ``ledger`` (optuna)
says which runs are done, running or failed, and ``liveness`` tells which RUNNING trials' jobs
still wait (pending), train (running) or died;
``launchers`` (one per cluster) submit the missing runs through submitit (SLURM job arrays, local
processes, or the debug executor), each claimed by ``attempts``; ``sbatch`` holds what SLURM is
asked for; ``boundary`` probes a boundary study round by round; inside each job ``job.RunJob`` trains, ``record`` records the run with sacred,
and the job reports its outcome to the ledger. ``status`` prints the table, ``progress`` the line
a waiting launch prints as runs end, ``dryrun`` what a launch would do. ``identity`` keeps the
options a results folder was launched with; ``catalog`` finds studies, also in a folder of the
user's own. ``claims`` keeps launchers that share a study from starting a run twice;
``journal`` repairs a damaged ledger file.

``layout`` is where a study's results live on disk and what its ledger trials carry.
"""
import warnings

# sacred 0.8.7 imports pkg_resources, which warns at the start of every command and every job.
warnings.filterwarnings("ignore", message="pkg_resources is deprecated", category=UserWarning)
