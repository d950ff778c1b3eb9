"""The main job: codebook heads, soft targets and distillation benchmarked
against one-hot and against the controls that isolate each ingredient.

``spectral-targets bench`` (or ``python -m spectral_targets bench``) runs
``run_benchmark``; it needs the ``bench`` extra (mnist1d, scikit-learn,
tqdm, matplotlib). Where things live:

- ``_run``: the command, and a run: the tasks in order, sharing a
  ``Session``;
- ``_suite``: the tasks, one row each with how it runs (``_distill``,
  ``_shift``: the two tasks of their own; ``_budget_curve``: mnist1d's);
- ``_tasks``: the data sets, drawn anew per seed;
- ``_user_data``, ``_cifar100``: data the user brings (``--data FILE.npz``,
  ``--data-dir`` with the official CIFAR-100 archive);
- ``_methods``: the methods and the knobs each tunes;
- ``_tuning``: how every method is tuned (the same protocol for all);
- ``_bodies``: the model bodies; ``_config``: a method as data;
- ``_training``: parameters, forward pass, the one loss, the epoch trainer;
- ``_execute``: many models trained at once in vmapped programs;
- ``_pipeline``: one task from data to per-seed test metrics;
- ``_stats``: how a win is decided (paired intervals over seeds);
- ``_references``, ``_timing``: reference classifiers, step timing;
- ``_report``, ``_figures``: tables, JSON, PNGs.
"""

from __future__ import annotations

from spectral_targets.bench import _methods, _suite, _tuning
from spectral_targets.bench._run import INSTALL_HINT as INSTALL_HINT
from spectral_targets.bench._run import cpu_name as cpu_name
from spectral_targets.bench._run import QUICK_TRAIN_LIMIT as QUICK_TRAIN_LIMIT
from spectral_targets.bench._run import missing_requirements as missing_requirements
from spectral_targets.bench._run import run_benchmark as run_benchmark
from spectral_targets.bench._tasks import InputError as InputError
from spectral_targets.bench._user_data import USER_BODIES as _USER_BODIES

#: How hyperparameters are searched (``--search``; ``_tuning.SEARCHES``).
SEARCHES = tuple(_tuning.SEARCHES)
#: The tasks, in the order they run and are reported (``_suite.TASKS``).
TASK_ORDER = tuple(_suite.TASKS)
#: Whether a run without ``--tasks`` runs each task.
TASK_DEFAULTS = {name: t.default for name, t in _suite.TASKS.items()}
#: The input each task's data need (``data_dir``), or None.
TASK_NEEDS = {name: t.needs for name, t in _suite.TASKS.items()}
#: The probes of the user's --data task.
USER_BODIES = tuple(_USER_BODIES)
#: Every method's name (``_methods.METHODS``).
METHOD_NAMES = tuple(_methods.METHODS)
