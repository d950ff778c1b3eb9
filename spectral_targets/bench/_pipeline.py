"""One task from data to report: kernels and codebooks per seed, tuning of
every method on validation, the evaluation seeds, paired differences.

The order of work for a task:

0. draw the data of every seed (tuning seeds and evaluation seeds);
1. where the task has no true label kernel, train one one-hot model per
   seed at a fixed recipe and estimate that seed's kernel from its class
   means on the validation split (``from_class_means``);
2. build each seed's codebooks (simplex, spectral, small spectral, random);
3. tune every method (``_tuning``: the search on the tuning seeds; by
   default successive halving, its trials resumed rung to rung by
   ``Trials``);
4. train every method at its chosen setting on the evaluation seeds and
   score it on the test split; temperature-scale on validation;
5. paired differences against one-hot and against ``cosine``, and against
   one-hot + CRM (one-hot's probabilities re-ranked by expected cost: the
   post-hoc control of every severity reading); each method's own
   predictions under CRM are scored too (``crm_*``).
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import os

import jax
import numpy as np

import spectral_targets as st
from spectral_targets.bench import _config, _methods, _stats, _training, _tuning
from spectral_targets.bench._execute import (
  VALIDATION_METRICS,
  Executor,
  Run,
  SeedData,
)
from spectral_targets.bench._methods import Context, Method

#: Seeds whose models choose the hyperparameters (never evaluated on test).
TUNING_SEEDS = (1000, 1001)
#: The fixed recipe of the one-hot models that estimate a kernel.
KERNEL_MODEL_LR = 1e-2
#: Runs trained together per call (a fixed size: one compiled program).
CHUNK = 25
#: The program sizes a smaller chunk is padded up to (at most a quarter
#: more models), so that the shrinking batches of successive rungs reuse
#: programs rather than compile one per size.
SIZES = (1, 2, 3, 4, 5, 6, 8, 10, 12, 15, 18, 20, 25)
#: Batches trained side by side (``TaskRunner._each``).
TRAIN_THREADS = min(2, os.cpu_count() or 1)

@dataclasses.dataclass
class Budget:
  """How much one task trains.

  seeds: the evaluation seeds are 0 .. seeds − 1.
  epochs: the training budget of every method.
  tuning_seeds: the seeds that choose hyperparameters.
  learning_rates: the learning-rate grid (``--quick`` shortens it).
  knob_grids: replace every method's knob grids by their defaults only
    (``--quick``).
  search: how hyperparameters are searched, a key of
    ``_tuning.SEARCHES``: ``"halving"`` (successive halving over the full
    product of the grids), ``"grid"`` (all of it at the full budget) or
    ``"cross"`` (the three stages of ``_tuning``).
  eta: successive halving keeps the best 1/η of the cells after each rung.
  edges: follow a choice at an end of an unbounded grid one step beyond it
    (``_tuning.edge_steps``); ``--quick`` does not.
  rank_after: successive halving's first rung ends after this epoch (the
    recipe's warm-up; ``_tuning.rungs``); ``--quick``, two epochs long,
    ranks at epoch 1 (0).
  pad_to_chunk: pad every batch of runs to ``chunk`` models, so that one
    program of each kind is compiled per body (``--quick``, where compiling
    costs more than training the padding); otherwise a batch smaller than
    ``chunk`` is trained at its own size.
  """
  seeds: int
  epochs: int
  batch_size: int = 128
  tuning_seeds: tuple[int, ...] = TUNING_SEEDS
  learning_rates: tuple[float, ...] = _tuning.LEARNING_RATES
  knob_grids: bool = True
  chunk: int = CHUNK
  search: str = "halving"
  eta: int = _tuning.ETA
  edges: bool = True
  pad_to_chunk: bool = False
  rank_after: int = _training.WARMUP_EPOCHS

  @property
  def eval_seeds(self) -> list[int]:
    return list(range(self.seeds))


class TaskRunner:
  """Runs ``methods`` on ``task`` under ``budget``."""

  def __init__(self, task, budget: Budget, methods: list[Method], data:
               SeedData, executor: Executor, progress=lambda msg: None):
    self.task, self.budget, self.progress = task, budget, progress
    self.methods = [_trimmed(m, budget) for m in methods]
    self.data, self.ex = data, executor
    self.C, self.F = task.num_classes, executor.F
    self.steps_per_epoch = executor.n // executor.batch
    #: Per seed: the estimated kernel, the codebooks by name, spectral-small's d.
    self.kernels: dict[int, np.ndarray] = {}
    self.codebooks: dict[int, dict[str, np.ndarray]] = {}
    self.small_d: dict[int, int] = {}
    #: Methods left out, with the reason (for the report).
    self.notes: dict[str, str] = {}

  # -- kernels and codebooks ----------------------------------------------------

  def estimate_kernels(self):
    """Per-seed kernels (and distances) from one-hot models' class means on
    the validation split, where the task has no true kernel."""
    seeds = self.data.seeds
    if self.task.kernel is not None:
      self.kernels = {s: self.task.kernel for s in seeds}
      return
    self.progress(f"{self.task.name}: kernel models")
    one_hot = _methods.METHODS["one-hot"]
    runs = self.runs(one_hot, [{"lr": KERNEL_MODEL_LR}], seeds,
                     self.budget.epochs)
    self.kernels_from(runs, *self.train(runs, self.budget.epochs))

  def kernels_from(self, runs, params, cfgs):
    """Each run's seed gets the kernel of that model's class means on the
    validation split (``from_class_means``: cosine similarity), and
    distances 1 − kernel."""
    features = self.ex.features(params, cfgs, runs, split="val")
    self.kernels = {}
    for run, z in zip(runs, features):
      y = self.data.y_val[self.data.index(run.seed)]
      self.kernels[run.seed] = np.asarray(
          st.from_class_means(z, y, self.C), np.float64)
    self.data.distances = np.stack(
        [1 - self.kernels[s] for s in self.data.seeds]).astype(np.float32)

  def build_codebooks(self):
    """Each seed's codebooks. The small spectral codebook takes the task's
    small d or, if that merges classes, ``separating_dimension`` (the
    smallest d that gives every class its own code); where even that is
    C − 1 (a tree whose siblings differ only in their own leaf modes),
    there is no small codebook and the method is left out, with a note."""
    C, F = self.C, self.F
    simplex = np.asarray(st.spectral_codebook(st.flat(C), C - 1))
    for s in self.data.seeds:
      centred = st.double_center(self.kernels[s])
      d = min(max(self.task.small_d, st.separating_dimension(centred)), F)
      self.small_d[s] = d
      rng = np.random.default_rng(s)
      random = rng.normal(size=(C, F))
      self.codebooks[s] = {
          "simplex": simplex, "online": simplex,
          "random": random / np.linalg.norm(random, axis=1, keepdims=True),
          "spectral": np.asarray(st.spectral_codebook(centred, C - 1)),
      }
      if d < F:
        self.codebooks[s]["spectral-small"] = np.asarray(
            st.spectral_codebook(centred, d))
    if any(d >= F for d in self.small_d.values()):
      self.notes["spectral-small"] = (
          f"left out: no d below C − 1 = {F} gives every class its own code "
          f"(separating_dimension is {max(self.small_d.values())}); at the "
          f"task's small d = {self.task.small_d} the codebook merges classes")
      self.methods = [m for m in self.methods if m.codes != "spectral-small"]

  def context(self, seed, epochs=None) -> Context:
    epochs = self.budget.epochs if epochs is None else epochs
    return Context(
        self.C, self.F, epochs=epochs,
        total_steps=epochs * self.steps_per_epoch,
        kernel=self.kernels.get(seed), codebooks=self.codebooks.get(seed, {}))

  def sibling(self, *, body: str, methods: list[Method],
              budget: Budget | None = None, progress=None) -> TaskRunner:
    """A runner of ``methods`` on another ``body`` over the same data,
    sharing this runner's kernels and codebooks (a student, a reference
    model)."""
    other = TaskRunner(self.task, self.budget if budget is None else budget,
                       methods, self.data, self.ex.with_body(body),
                       self.progress if progress is None else progress)
    other.kernels, other.codebooks, other.small_d = (
        self.kernels, self.codebooks, self.small_d)
    return other

  # -- training in fixed-size chunks -----------------------------------------------

  def _chunk(self, runs) -> int:
    """The number of models trained per call: ``budget.chunk``, or fewer
    runs at their own size unless ``budget.pad_to_chunk``."""
    if self.budget.pad_to_chunk:
      return self.budget.chunk
    return min(self.budget.chunk, len(runs))

  def _batches(self, runs):
    """``runs``' positions in the batches trained together: runs of the
    same ``Executor.terms`` (one program computes only what they use),
    split into as few chunks of near-equal size as ``_chunk`` allows, each
    padded up to a size of ``SIZES`` (so that later rungs reuse the
    programs of earlier ones; ``budget.pad_to_chunk``: every chunk
    ``budget.chunk``). Every chunk's program is queued for compilation
    before the first trains. Returns [(positions, padding)]."""
    groups: dict = {}
    for i, run in enumerate(runs):
      groups.setdefault(self.ex.terms([run]), []).append(i)
    batches = []
    for rows in groups.values():
      k = self._chunk(rows)
      count = -(-len(rows) // k)
      size = -(-len(rows) // count)
      for first in range(0, len(rows), size):
        chunk = rows[first:first + size]
        batches.append((chunk, self._padded(len(chunk)) - len(chunk)))
    for rows, pad in batches:
      self.ex.submit_train(len(rows) + pad,
                           self.ex.terms([runs[i] for i in rows]))
    return batches

  def _padded(self, size: int) -> int:
    """The program size a chunk of ``size`` runs trains at."""
    if self.budget.pad_to_chunk:
      return self.budget.chunk
    return min([s for s in SIZES if s >= size] + [size])

  def _each(self, work, batches):
    """``[work(rows, pad) for rows, pad in batches]``, side by side
    (``side_by_side``)."""
    return side_by_side(lambda b: work(*b), batches)

  def train(self, runs, epochs):
    """(params, cfgs) of ``runs`` trained in batches (``_batches``; a
    chunk padded to its program's size by repeating its last run), in the
    order of ``runs``."""
    batches = self._batches(runs)

    def work(rows, pad):
      chunk = [runs[i] for i in rows]
      params, cfgs = self.ex.train(chunk + [chunk[-1]] * pad, epochs,
                                   padding=pad)
      return params, cfgs, len(chunk)

    params, cfgs = _concat(self._each(work, batches))
    order = [i for rows, _ in batches for i in rows]
    back = np.argsort(np.asarray(order))
    return jax.tree_util.tree_map(lambda a: a[back], (params, cfgs))

  def advance(self, runs, models, *, start: int, until: int) -> list:
    """Trains ``runs`` from epoch ``start`` to ``until`` in batches
    (``_batches``); ``models``: each run's one-model ``(state, cfg)``
    after ``start`` epochs (None at 0: untrained). Returns the runs' new
    one-model ``(state, cfg)``, host arrays, in the order of ``runs``."""
    batches = self._batches(runs)

    def work(rows, pad):
      chunk = [runs[i] for i in rows] + [runs[rows[-1]]] * pad
      if start == 0:
        state = self.ex.initial(chunk)
      else:
        given = [models[i] for i in rows]
        state = _config.stack(given + [given[-1]] * pad)
      state = self.ex.advance(chunk, state, start=start,
                              epochs=until - start, padding=pad)
      return jax.tree_util.tree_map(np.asarray, state)

    out: list = [None] * len(runs)
    for (rows, _), host in zip(batches, self._each(work, batches)):
      for j, i in enumerate(rows):
        out[i] = jax.tree_util.tree_map(lambda a, j=j: a[j].copy(), host)
    return out

  def train_and_score(self, runs, epochs):
    if not runs:
      return []
    params, cfgs = self.train(runs, epochs)
    return self.ex.score(params, cfgs, runs)

  def runs(self, method, settings, seeds, epochs) -> list[Run]:
    return [Run(method, hp, s, method.config(self.context(s, epochs), hp))
            for hp in settings for s in seeds]

  # -- tuning ------------------------------------------------------------------------

  def tune(self, methods, epochs=None, *, learning_rates=None) -> dict:
    """Every method's ``_tuning.Selection`` at ``epochs`` (default: the
    budget's), searched as the budget says (``_tuning.tune``) over
    ``learning_rates`` (default: the budget's)."""
    epochs = self.budget.epochs if epochs is None else epochs
    return _tuning.tune(methods, Trials(self, methods, epochs),
                        search=self.budget.search, eta=self.budget.eta,
                        edges=self.budget.edges,
                        after=self.budget.rank_after,
                        learning_rates=(self.budget.learning_rates
                                        if learning_rates is None
                                        else learning_rates))

  # -- evaluation ---------------------------------------------------------------------

  def evaluate(self, methods, selections, epochs) -> dict:
    """Per-method per-seed test metrics at the chosen settings."""
    seeds = self.budget.eval_seeds
    runs = [r for m in methods
            for r in self.runs(m, [selections[m.name].chosen], seeds, epochs)]
    self.progress(f"{self.task.name}: evaluation ({len(runs)} models, "
                  f"{epochs} epochs)")
    scores = self.train_and_score(runs, epochs)
    per_method: dict[str, list[dict]] = {}
    for run, score in zip(runs, scores):
      score = dict(score)
      if run.method.codes == "spectral-small":
        score["nc1"] = score["between_condition"] = float("nan")
      per_method.setdefault(run.method.name, []).append(score)
    return per_method

  def report(self, methods, selections, per_method, epochs) -> dict:
    metrics = [k for k in per_method[methods[0].name][0]
               if not k.startswith("val_")]
    out = {}
    for m in methods:
      rows = per_method[m.name]
      per_seed = {k: [r[k] for r in rows] for k in metrics}
      out[m.name] = dict(
          note=m.note, control=m.control, probabilistic=m.probabilistic,
          chosen=selections[m.name].chosen,
          at_edge=selections[m.name].at_edge,
          tuning=selections[m.name].as_dict()["trials"],
          **({"halving": selections[m.name].halving}
             if selections[m.name].halving is not None else {}),
          per_seed=per_seed,
          summary={k: _stats.summary(v) for k, v in per_seed.items()})
    # A metric that reads probabilities is paired only between methods
    # that have them (regression on the grade index has none): never a
    # difference of a NaN, and no entry where it does not apply.
    def applies(name, k):
      return out[name]["probabilistic"] or not _config.needs_probabilities(k)

    for m in methods:
      for reference in dict.fromkeys(("one-hot", m.control, *m.compare)):
        if reference not in out or reference == m.name:
          continue
        out[m.name][f"vs {reference}"] = {
            k: _stats.paired_difference(out[m.name]["per_seed"][k],
                                        out[reference]["per_seed"][k])
            for k in metrics if (k in ("accuracy", "severity", "nll", "ece",
                                       "ece_calibrated", "mae", "qwk",
                                       "median_mae")
                                 or k.startswith(("hdist@", "crm_")))
            and applies(m.name, k) and applies(reference, k)}
    if "one-hot" in out:
      # The control every severity reading needs (Karthik et al. 2021):
      # one-hot's probabilities re-ranked by expected cost.
      base = out["one-hot"]["per_seed"]
      for m in methods:
        out[m.name]["vs one-hot + CRM"] = {
            k: _stats.paired_difference(out[m.name]["per_seed"][k],
                                        base[f"crm_{k}"])
            for k in metrics if f"crm_{k}" in base
            and applies(m.name, k) and applies("one-hot", f"crm_{k}")}
    return out

  def run(self, methods=None, epochs=None) -> tuple[dict, dict]:
    """Tunes, evaluates and reports ``methods`` (default: every method of
    the runner) at ``epochs``; returns (selections, reports)."""
    methods = self.methods if methods is None else methods
    epochs = self.budget.epochs if epochs is None else epochs
    selections = self.tune(methods, epochs)
    per_method = self.evaluate(methods, selections, epochs)
    return selections, self.report(methods, selections, per_method, epochs)


class Trials:
  """The trials of one tuning (``_tuning.tune``'s trainer): ``methods`` on
  the tuning seeds, each setting trained to the epoch a search asks for.

  A setting asked for again resumes where it stopped: its models keep their
  parameters, optimiser state and online state (and an online codebook its
  current codes) between calls, so nothing is retrained; a setting not
  asked for again is dropped, and the next call's batch of models (trained
  in chunks of the one compiled size, ``budget.chunk``) shrinks with it.
  Every model's schedule spans ``epochs``, the full budget, from the
  start: a setting resumed to the full budget is trained exactly as an
  untuned run.

  ``trained``: (stage, models, epochs) of every batch trained, in order.
  """

  def __init__(self, runner: TaskRunner, methods, epochs: int):
    self.runner, self.methods, self.epochs = runner, methods, epochs
    self.trained: list[tuple[int, int, int]] = []
    # (method, setting, seed) -> (epochs trained, one model's (state, cfg))
    self._kept: dict[tuple, tuple[int, object]] = {}

  def train_to(self, settings_by_method, until: int, stage) -> dict:
    """``{method name: [trial, ...]}`` of the settings ``{method name: [hp,
    ...]}`` trained to epoch ``until`` and scored on validation."""
    runner = self.runner
    runs = [r for m in self.methods
            for r in runner.runs(m, settings_by_method.get(m.name, []),
                                 list(runner.budget.tuning_seeds),
                                 self.epochs)]
    if not runs:
      return {}
    ids = [(r.method.name, _tuning.key(r.hp), r.seed) for r in runs]
    kept, self._kept = self._kept, {}
    starts: dict[int, list[int]] = {}
    for i, run_id in enumerate(ids):
      starts.setdefault(kept[run_id][0] if run_id in kept else 0,
                        []).append(i)
    models: list = [None] * len(runs)
    for start, rows in sorted(starts.items()):
      since = f", from epoch {start}" if start else ""
      runner.progress(f"{runner.task.name}: tuning stage {stage} "
                      f"({len(rows)} models, {until - start} epochs{since})")
      trained = runner.advance(
          [runs[i] for i in rows],
          [kept[ids[i]][1] if start else None for i in rows],
          start=start, until=until)
      for i, model in zip(rows, trained):
        models[i] = model
      self.trained.append((stage, len(rows), until - start))
    if until < self.epochs:
      self._kept = {run_id: (until, model)
                    for run_id, model in zip(ids, models)}
    params = _config.stack([state[0] for state, _ in models])
    cfgs = _config.stack([cfg for _, cfg in models])
    trials: dict[str, list] = {}
    grouped: dict = {}
    for run, score in zip(runs, runner.ex.validate(params, cfgs, runs)):
      t = grouped.get((run.method.name, _tuning.key(run.hp)))
      if t is None:
        t = grouped[(run.method.name, _tuning.key(run.hp))] = {
            "hp": run.hp, **{k: [] for k in VALIDATION_METRICS}}
        trials.setdefault(run.method.name, []).append(t)
      for k in VALIDATION_METRICS:
        t[k].append(score[k])
    return trials


def side_by_side(fn, items) -> list:
  """``[fn(item) for item in items]`` on ``TRAIN_THREADS`` threads: two
  XLA programs running side by side keep two cores busier than one
  program's own threads do (about 1.5x the models trained per second on 2
  cores, measured in benchmarks/RESULTS.md); each result is the same
  either way (the programs are independent and deterministic)."""
  items = list(items)
  if len(items) < 2 or TRAIN_THREADS < 2:
    return [fn(item) for item in items]
  with concurrent.futures.ThreadPoolExecutor(
      TRAIN_THREADS, thread_name_prefix="train") as pool:
    return list(pool.map(fn, items))


def executor_for(session, task, data, *, body: str, batch_size: int,
                 tree=None) -> Executor:
  """An ``Executor`` of ``task`` on ``body`` under ``session``'s compiler
  and options (``_run.Session``)."""
  return Executor(task, data, body=body, features=task.num_classes - 1,
                  batch_size=batch_size, programs=session.programs,
                  fast_compile=session.options.quick,
                  specialise=not session.options.quick,
                  on_epoch=session.on_epoch, tree=tree)


def runner_for(session, task, methods, data) -> TaskRunner:
  """The ``TaskRunner`` of ``methods`` on ``task``'s main body, its
  programs queued for compilation, its kernels and codebooks built."""
  budget = session.options.budget(task)
  ex = executor_for(session, task, data, body=task.body,
                    batch_size=budget.batch_size,
                    tree=task.tree if any(m.needs_tree for m in methods)
                    else None)
  if not ex.specialise:
    ex.submit_train(budget.chunk if budget.pad_to_chunk
                    else min(budget.chunk, len(budget.tuning_seeds)
                             * len(budget.learning_rates) * len(methods)))
  ex.submit_validate()
  ex.submit_score()
  runner = TaskRunner(task, budget, methods, data, ex, session.progress)
  runner.estimate_kernels()
  runner.build_codebooks()
  return runner


def _trimmed(method: Method, budget: Budget) -> Method:
  """``method`` with its knob grids cut to their defaults when the budget
  says so (``--quick``)."""
  if budget.knob_grids:
    return method
  return dataclasses.replace(
      method, knobs={k: (method.defaults[k],) for k in method.knobs})


def _concat(outs):
  import jax
  params = jax.tree_util.tree_map(
      lambda *xs: np.concatenate([np.asarray(x)[:n] for x, (_, _, n) in
                                  zip(xs, outs)]),
      *[o[0] for o in outs])
  cfgs = jax.tree_util.tree_map(
      lambda *xs: np.concatenate([x[:n] for x, (_, _, n) in zip(xs, outs)]),
      *[o[1] for o in outs])
  return params, cfgs
