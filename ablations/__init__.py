"""The declarative studies: one TOML file per study, data not code.

``python -m studies.run --list`` lists them; ``python -m studies.run NAME`` runs one (NAME is a file
stem here, or a path to a TOML file anywhere). ``profiles/`` holds the shipped profiles, one TOML
file each (``core.profiles``): the config of a scale and, under ``[resources]``, what one of its
runs asks a scheduler for; files whose name starts with ``_`` are not studies.

A profile file (a user's own anywhere: ``--profile path/to/scale.toml``)::

    extends = "tiny"           # optional: start from a shipped profile, or a file (relative path)
    epochs = 30                # config keys, nested or dotted, as in DINOConfig
    [backbone]
    depth = 6
    [data]
    path = "/data/my-photos"   # an ImageFolder root, a folder of images, or Fashion-MNIST's IDX files
    name = "auto"              # recognised from the folder; or fashion_mnist, imagefolder, images
    eval_path = "/data/labelled"   # a labelled ImageFolder for k-NN when the images have no labels
    [resources]                # optional: the keys of [profiles.<profile>.resources] below
    cpus_per_task = 2

A study file (top-level keys first: TOML puts keys written after a ``[table]`` header into it)::

    description = "one line for --list"
    reference = "what the paper numbers are: model, epochs, data set, metric"
    profile = "tiny"           # default profile: shipped (profiles/) or a file relative to this one
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

    [profiles.tiny.resources]  # optional: override the profile's [resources] for this study
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
