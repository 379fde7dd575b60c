"""The declarative studies: one TOML file per study, data not code.

``python -m studies.run --list`` lists them; ``python -m studies.run NAME`` runs one (NAME is a file
stem here, or a path to a TOML file anywhere). ``_resources.toml`` holds the default resources of
each profile; files whose name starts with ``_`` are not studies.

A study file (top-level keys first: TOML puts keys written after a ``[table]`` header into it)::

    description = "one line for --list"
    reference = "what the paper numbers are: model, epochs, data set, metric"
    profile = "tiny"           # default profile (core.profiles.PROFILES); --profile overrides
    metric = "knn_top1"        # the ledger's objective: knn_top1, knn_top5 or loss
    seeds = 1                  # N (seeds 0..N-1) or a list such as [0, 7]; --seeds N overrides
    set = { "optim.lr" = 0.001 }   # config overrides for every run (dotted keys)

    [[axes]]                   # one or more axes; runs are their full grid times the seeds
    name = "m"                 # short name used in run labels
    key = "loss.center_momentum"   # the config key that scalar values set
    values = [0.0, 0.9, 0.99, 0.999]
    paper = [69.1, 69.7, 69.4, 0.1]   # the paper's numbers, aligned with values (nan: none
                                      # reported); at most one axis carries them

    [axes.profiles.tiny]       # optional: the values this axis takes on another profile,
    values = [8, 4, 2]         # aligned with (and labelled by) the values above

    [profiles.tiny.set]        # optional: config overrides on one profile only
    epochs = 3

    [profiles.tiny.resources]  # optional: override _resources.toml for this study
    time_min = 30

A value is a scalar for the axis's ``key``, or a table setting several keys::

    values = [{ label = "centering only", set = { "loss.sharpening" = false } },
              { label = "both", set = {} }]

(in a per-profile mapping a table has ``set`` only: labels come from the axis's values).
Resources: ``nodes``, ``gpus_per_node`` (also the number of tasks per node: one DDP process per
GPU), ``cpus_per_task``, ``mem_gb``, ``time_min``, ``partition``, ``array_parallelism``,
``signal_delay_s`` (SLURM's warning before the time limit, used to checkpoint and requeue) and
``max_timeouts`` (requeues after a time limit before the run counts as failed).
"""
