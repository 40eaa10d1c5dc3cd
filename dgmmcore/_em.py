"""The EM driver behind DeepGMM.fit: E-step, statistics, M-step, prior, history."""
import dataclasses
import time
import warnings

import numpy as np

from . import _mstep
from ._executor import EStepConfig
from ._init import MAX_INIT_ROWS, initialize
from ._network import forward_nodes, invert_nodes
from ._validation import check_layers


# A warm start on rows without paths (new data, or a network just grown by deepen) begins
# with the exact search when it costs at most this many random restarts of the heuristic:
# from random starts a trained (400, 5, 5) network's rows land 3.2 nats below their best
# paths (BSDS300), and the first M-step would refit the network to those poor assignments.
EXACT_START_RESTARTS = 25


def exact_start_pays(layers, restart_passes):
    """Whether one exact E-step (P scorings per row) costs at most EXACT_START_RESTARTS
    random restarts (restart_passes * sum(N_j) scorings per row each)."""
    cost_restart = max(restart_passes, 1) * sum(layers)
    return int(np.prod(layers)) <= EXACT_START_RESTARTS * cost_restart


class ConvergenceWarning(UserWarning):
    """EM stopped at max_iter before the objective changed by less than tol."""


def _log(w):
    with np.errstate(divide="ignore"):
        return np.log(w)


class EMRun:
    """State of one EM run: parameters in both forms, the last paths, the history."""

    def __init__(self, model, executor, rng, n_threads):
        self.model = model
        self.executor = executor
        self.config = EStepConfig.of(model)
        self.rng = rng
        self.n_threads = n_threads
        self.layers = check_layers(model.layers)
        self.P = int(np.prod(self.layers))
        self.history = []
        self.objective = -np.inf
        self.converged = False
        self.first_config = None  # the first E-step's, when it differs from config

    def start(self, warm, init_paths=None):
        """Parameters and paths to begin from: the model's (warm; ``init_paths``, path
        numbers, take the place of its last fit's) or a fresh initialization."""
        m = self.model
        if warm:
            self.A = [np.array(a) for a in m.transforms_]
            self.b = [np.array(b) for b in m.biases_]
            self.weights = np.array(m.weights_)
            self.layer_weights = m.layer_weights_
            self.Q, self.c = invert_nodes(self.A, self.b)
            paths = getattr(m, "_train_paths", None) if init_paths is None else init_paths
            if paths is not None and len(paths) == self.executor.n_rows:
                self.executor.set_paths(paths)
            elif (self.config.estep == "heuristic"
                  and exact_start_pays(self.layers, self.config.restart_passes)):
                self.first_config = dataclasses.replace(self.config, estep="full")
        else:
            self.executor.set_paths(None)  # a fresh run must not warm-start from another
            self.A, self.b, self.weights, self.Q, self.c = initialize(
                self.executor.sample_rows(self.rng, MAX_INIT_ROWS), self.layers, self.rng,
                m.reg_covar, at=m.init_layer)
            self.layer_weights = None
            if m.path_prior == "factorized":
                self.layer_weights = [np.full(n, 1.0 / n) for n in self.layers]

    def params(self):
        return (self.A, self.b, _log(self.weights), self.Q)

    def estep(self):
        """Evaluate the current parameters on all rows; returns (objective, stats,
        switch_rate)."""
        # one draw per E-step keys every row's random restart (see _estep.random_paths)
        key = int(self.rng.integers(2**63))
        config, self.first_config = self.first_config or self.config, None
        # truncated EM ranks each layer's choices on every rerank_every-th E-step of a run
        rerank = len(self.history) % config.rerank_every == 0
        total, stats, switched = self.executor.estep(self.params(), config, key, rerank)
        n = self.executor.n_rows
        return total / n, stats, switched / n

    def mstep(self, stats):
        m = self.model
        self.Q, self.c, reports = _mstep.mstep(
            self.Q, self.c, stats, self.layers, reg_covar=m.reg_covar, method=m.mstep,
            lbfgs_maxiter=m.lbfgs_maxiter, rng=self.rng, n_threads=self.n_threads)
        splits = [t for rl in reports for r in rl for t in r.get("splits", ())]
        counts = _mstep.split_prior_counts(stats.counts, self.layers, splits)
        self.weights, self.layer_weights = _mstep.path_prior(counts, self.layers, m.path_prior)
        self.A, self.b = forward_nodes(self.Q, self.c)
        return reports

    def resume_from(self, state):
        """Continue a checkpointed run: paths, history, previous objective and generator."""
        self.start(warm=True)
        self.first_config = None  # the run's first E-step is behind it
        self.Q, self.c = [np.array(q) for q in state["Q"]], [np.array(c) for c in state["c"]]
        self.executor.set_paths(state["paths"])
        self.executor.set_ranked(state.get("ranked"))
        self.history = list(state["history"])
        self.rng.bit_generator.state = state["rng_state"]

    def run(self, checkpoint=None, checkpoint_every=1, final_estep=True):
        """EM iterations until convergence or max_iter; an interrupt leaves the last completed
        iteration's parameters in place (``self.interrupted`` tells). Without ``final_estep``
        the run stops after the last M-step, its objective the last E-step's."""
        m = self.model
        done = len(self.history)  # > 0 when resuming from a checkpoint
        self._first_iter = done  # the ETA averages over this run's iterations only
        prev = self.history[-1]["objective"] if done else None
        if prev is not None:
            self.objective = prev
        t_fit = time.perf_counter()
        self.interrupted = False
        try:
            for it in range(done + 1, m.max_iter + 2):
                if it > m.max_iter and not final_estep:
                    break
                t0 = time.perf_counter()
                objective, stats, switch = self.estep()
                t1 = time.perf_counter()
                record = {"iter": it - 1, "objective": objective, "switch_rate": switch,
                          "estep_seconds": t1 - t0}
                self.objective = objective
                if prev is not None and abs(objective - prev) < m.tol:
                    self.converged = True
                if self.converged or it > m.max_iter:
                    self._finish(record, t_fit)
                    break
                state = self.snapshot()
                reports = self.mstep(stats)
                record["mstep_seconds"] = time.perf_counter() - t1
                record["lbfgs_iterations"] = int(sum(r.get("nit", 0) for rl in reports for r in rl))
                record["reseeded"] = int(sum(r.get("reseeded", 0) for rl in reports for r in rl))
                self._finish(record, t_fit)
                prev = objective
                if checkpoint is not None and len(self.history) % checkpoint_every == 0:
                    self.write_checkpoint(checkpoint)
        except KeyboardInterrupt:
            if "state" in locals() and len(self.history) < it:
                self.restore(state)  # interrupted inside the M-step: undo the partial update
            self.interrupted = True
        self.final_paths = self.executor.get_paths()
        return self

    def snapshot(self):
        return (self.A, self.b, self.weights, self.layer_weights, self.Q, self.c)

    def restore(self, state):
        self.A, self.b, self.weights, self.layer_weights, self.Q, self.c = state

    def write_checkpoint(self, path):
        """The model after the last M-step plus what a resumed run needs to continue exactly:
        the rows' paths (heuristic warm start), the history and the generator state."""
        from ._persistence import atomic_savez, model_arrays
        model = self.model
        model._set_params(self.A, self.b, self.weights, self.layer_weights)
        model.history_ = self.history
        model.n_iter_ = len(self.history)
        model.converged_ = False
        arrays = model_arrays(model, {"checkpoint": {"rng_state": self.rng.bit_generator.state}})
        paths = self.executor.get_paths()
        if paths is not None:
            arrays["checkpoint_paths"] = np.asarray(paths, dtype=np.int64)
        ranked = self.executor.get_ranked()
        if ranked is not None:  # truncated EM's kept choices, reused until the next ranking
            arrays["checkpoint_ranked"] = ranked
        for j, (q, c) in enumerate(zip(self.Q, self.c)):
            # the inverse maps as the run holds them: inv(inv(Q)) would differ in the last bits
            arrays[f"checkpoint_Q_{j}"] = q
            arrays[f"checkpoint_c_{j}"] = c
        atomic_savez(path, arrays)

    def _finish(self, record, t_fit):
        self.history.append(record)
        if self.model.verbose:
            _print_record(record, time.perf_counter() - t_fit, self.model.max_iter,
                          self._first_iter)


def _print_record(r, elapsed, max_iter, first_iter=0):
    it = r["iter"]
    line = f"iter {it:4d}  objective {r['objective']:12.5f}"
    if np.isfinite(r["switch_rate"]):
        line += f"  switch {100 * r['switch_rate']:6.2f}%"
    line += f"  E {r['estep_seconds']:7.2f}s"
    if "mstep_seconds" in r:
        line += f"  M {r['mstep_seconds']:7.2f}s"
        eta = elapsed / max(it + 1 - first_iter, 1) * (max_iter - it)
        line += f"  ETA {eta:7.1f}s"
    print(line, flush=True)


def fit_model(model, executor, rng, n_threads, checkpoint=None, checkpoint_every=1, resume=None,
              init_paths=None, final_estep=True):
    """Run ``n_init`` EM runs (one when warm-starting or resuming) and return the best (highest
    final objective). A KeyboardInterrupt stops at once and returns the interrupted run."""
    best = None
    warm = bool(model.warm_start) and hasattr(model, "transforms_")
    for _ in range(1 if (warm or resume) else model.n_init):
        run = EMRun(model, executor, rng, n_threads)
        if resume is not None:
            run.resume_from(resume)
        else:
            run.start(warm, init_paths)
        run.run(checkpoint, checkpoint_every, final_estep)
        if run.interrupted:
            return run
        if best is None or run.objective > best.objective:
            best = run
    if not best.converged:
        warnings.warn(f"EM did not converge in {model.max_iter} iterations (last change of "
                      f"the objective above tol={model.tol}); raise max_iter or tol",
                      ConvergenceWarning, stacklevel=3)
    return best
