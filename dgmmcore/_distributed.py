"""Scale-out on Dask distributed: the E-step runs where the data are.

The rows are split into shards, each pinned to one worker for the whole fit together with its
per-row state (the paths of the last E-step, for the heuristic's warm start). An iteration ships
the parameters out (sum_j N_j D^2 numbers, broadcast once), builds each worker's path table
there, runs every shard's E-step on its worker, and reduces the per-path statistics
(P D^2 numbers per shard, whatever the number of rows) pairwise on the workers; only the final
sum comes back to the client, which runs the M-step. Random restarts are keyed by each row's
global index, so the model does not depend on the number of shards (up to summation order).

A worker that disappears mid-fit is detected (no task waits forever on it): its shards are
rebuilt on live workers from their source (the client's array, or the dask array's graph) and
cold-started, and the iteration is run again; after a few failed attempts the fit stops with
a RuntimeError.
"""
import operator
import time

import numpy as np

from ._executor import build_table, estep_block
from ._suffstats import PathSums, merge_stats
from ._threads import effective_n_threads
from ._validation import check_data, check_shape

MAX_ATTEMPTS = 3
POLL_SECONDS = 2.0
WORKER_WAIT_SECONDS = 30.0  # for a first worker, when the cluster has none


def import_distributed():
    try:
        import distributed
    except ImportError:
        raise ImportError("distributed fits need Dask: pip install 'dgmmcore[dask]'") from None
    return distributed


def is_dask_array(X):
    return type(X).__module__.startswith("dask.array")


def get_client(client):
    distributed = import_distributed()
    if client is not None:
        return client
    try:
        return distributed.get_client()
    except ValueError:
        raise ValueError("a dask array was given but no Dask client is running: start one "
                         "(distributed.Client()) or pass client=") from None


class Shard:
    """Rows row_start .. row_start + len(X) - 1 of the data and their last paths."""

    def __init__(self, X, row_start, paths=None):
        self.X = X
        self.row_start = row_start
        self.paths = paths


class WorkerLost(RuntimeError):
    pass


# ---- tasks (run on the workers) ------------------------------------------------------------
def _make_shard(block, row_start, n_features):
    return Shard(check_data(block, n_features=n_features), row_start)


def _shard_estep(shard, table, config, key, n_threads):
    sums = PathSums(table.mean64)
    total, switched, paths, _ = estep_block(table, shard.X, shard.paths, config, key,
                                            shard.row_start, effective_n_threads(n_threads), sums)
    return Shard(shard.X, shard.row_start, paths), (sums.stats(), total, switched)


def _merge(a, b):
    return merge_stats(a[0], b[0]), a[1] + b[1], a[2] + b[2]


def _shard_paths(shard):
    return shard.paths


def _with_paths(shard, paths):
    return Shard(shard.X, shard.row_start, paths)


def _take(shard, index):
    return np.asarray(shard.X[index], dtype=np.float64)


class DaskExecutor:
    """The E-step over shards held by Dask workers (see the module docstring)."""

    def __init__(self, X, client, n_threads, n_features=None, shards_per_worker=1):
        distributed = import_distributed()
        self.client = get_client(client)
        self.n_threads = n_threads
        self.distributed = distributed
        workers = sorted(self.client.scheduler_info()["workers"])
        if not workers:
            # a cluster still starting, or one whose workers are being replaced, has none for
            # a moment: wait for one before giving up
            try:
                self.client.wait_for_workers(1, timeout=WORKER_WAIT_SECONDS)
            except TimeoutError:
                pass
            workers = sorted(self.client.scheduler_info()["workers"])
        if not workers:
            raise RuntimeError(f"the Dask cluster has no workers (waited "
                               f"{WORKER_WAIT_SECONDS:g} s for one)")
        if is_dask_array(X):
            # its rows (unknown before persist when chunks are) are counted below
            check_shape(X.shape, n_features=n_features, min_samples=0)
            X = X.rechunk({1: -1}) if len(X.chunks[1]) > 1 else X
            self.dask_array = self.client.persist(X)
            self.source = None
            sizes = self.dask_array.chunks[0]
            self.n_features = X.shape[1]
        else:
            self.source = check_data(X, n_features=n_features, min_samples=2)
            self.dask_array = None
            n_shards = min(len(workers) * shards_per_worker, len(self.source))
            sizes = [len(a) for a in np.array_split(np.arange(len(self.source)), n_shards)]
            self.n_features = self.source.shape[1]
        self.starts = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        self.n_rows = int(self.starts[-1])
        check_shape((self.n_rows, self.n_features), min_samples=2)
        self.shards = [None] * len(sizes)
        self.shard_workers = [None] * len(sizes)
        self.worker_history = []
        for i in range(len(sizes)):
            self._build_shard(i, workers[i % len(workers)])

    # ---- shards ----------------------------------------------------------------------------
    def _block(self, i, worker):
        """Block i of the data as a future: scattered from the client's array, or computed
        from the persisted dask array (which Dask recomputes from its graph if it was lost)."""
        lo, hi = self.starts[i], self.starts[i + 1]
        if self.source is not None:
            return self.client.scatter(self.source[lo:hi], workers=[worker], hash=False)
        return self.client.compute(self.dask_array.to_delayed().ravel()[i])

    def _build_shard(self, i, worker):
        if self.dask_array is not None:
            # pin the shard where its block of the persisted array already is
            block = self._block(i, worker)
            self.distributed.wait([block])
            worker = (self.client.who_has([block]).get(block.key) or [worker])[0]
        else:
            block = self._block(i, worker)
        self.shards[i] = self.client.submit(_make_shard, block, int(self.starts[i]),
                                            self.n_features, workers=[worker],
                                            allow_other_workers=False, pure=False)
        self.shard_workers[i] = worker

    def _live_workers(self):
        return set(self.client.scheduler_info()["workers"])

    def _wait(self, futures):
        """Wait for futures; raise WorkerLost if a shard's worker leaves meanwhile (tasks pinned
        to it would otherwise wait forever)."""
        while True:
            try:
                self.distributed.wait(futures, timeout=POLL_SECONDS)
            except self.distributed.TimeoutError:
                pass
            if all(f.status == "finished" for f in futures):
                return
            bad = [f for f in futures if f.status in ("error", "cancelled", "lost")]
            if bad:
                raise WorkerLost(f"a task failed: {bad[0].status}")
            live = self._live_workers()
            if any(w not in live for w in self.shard_workers):
                raise WorkerLost("a worker holding a shard left the cluster")

    def _recover(self):
        live = sorted(self._live_workers())
        if not live:
            raise RuntimeError("every Dask worker is gone")
        for i, w in enumerate(self.shard_workers):
            if w not in live or self.shards[i].status != "finished":
                self._build_shard(i, live[i % len(live)])
        self._wait(self.shards)

    # ---- the executor interface --------------------------------------------------------------
    def estep(self, params, config, key, rerank=True):
        if not rerank or config.keeps_ranking:
            raise ValueError("rerank_every > 1 (reusing truncated EM's ranked choices) runs "
                             "locally only, not on Dask")
        for attempt in range(MAX_ATTEMPTS):
            try:
                return self._estep_once(params, config, key)
            except Exception as exc:  # comm errors, lost data, cancelled tasks, WorkerLost
                if not isinstance(exc, WorkerLost) and not self._lost_a_worker():
                    raise  # a genuine error in a task: not ours to retry
                last = exc
                time.sleep(1.0)
                self._recover()
        raise RuntimeError(f"distributed E-step failed {MAX_ATTEMPTS} times after losing "
                           f"workers; last error: {last!r}")

    def _lost_a_worker(self):
        time.sleep(1.0)  # let the scheduler notice the departure
        live = self._live_workers()
        return any(w not in live for w in self.shard_workers) or any(
            s.status != "finished" for s in self.shards)

    def _estep_once(self, params, config, key):
        c = self.client
        workers = sorted(set(self.shard_workers))
        shared = c.scatter(params, broadcast=True, hash=False)
        tables = {w: c.submit(build_table, shared, workers=[w], allow_other_workers=False,
                              pure=False) for w in workers}
        results, parts, new_shards = [], [], []
        for shard, w in zip(self.shards, self.shard_workers):
            r = c.submit(_shard_estep, shard, tables[w], config, key, self.n_threads,
                         workers=[w], allow_other_workers=False, pure=False)
            results.append(r)
            new_shards.append(c.submit(operator.getitem, r, 0, workers=[w],
                                       allow_other_workers=False, pure=False))
            parts.append(c.submit(operator.getitem, r, 1, workers=[w],
                                  allow_other_workers=False, pure=False))
        # pairwise reduction on the workers, in shard order (deterministic for a layout)
        while len(parts) > 1:
            parts = [c.submit(_merge, parts[i], parts[i + 1], pure=False)
                     if i + 1 < len(parts) else parts[i] for i in range(0, len(parts), 2)]
        self._wait(new_shards + parts)
        stats, total, switched = parts[0].result()
        self.shards = new_shards
        self.worker_history.append(list(self.shard_workers))
        del results, tables, shared
        return total, stats, switched

    def sample_rows(self, rng, max_rows):
        if self.n_rows <= max_rows:
            index = np.arange(self.n_rows)
        else:
            index = np.sort(rng.choice(self.n_rows, max_rows, replace=False))
        futures = []
        for i, (shard, w) in enumerate(zip(self.shards, self.shard_workers)):
            lo, hi = self.starts[i], self.starts[i + 1]
            local = index[(index >= lo) & (index < hi)] - lo
            futures.append(self.client.submit(_take, shard, local, workers=[w], pure=False))
        self._wait(futures)
        return np.concatenate(self.client.gather(futures))

    def get_paths(self):
        futures = [self.client.submit(_shard_paths, s, workers=[w], pure=False)
                   for s, w in zip(self.shards, self.shard_workers)]
        self._wait(futures)
        parts = self.client.gather(futures)
        if any(p is None for p in parts):
            return None
        return np.concatenate(parts)

    def get_ranked(self):
        return None  # the shards never keep truncated EM's ranked choices

    def set_ranked(self, ranked):
        if ranked is not None:
            raise ValueError("rerank_every > 1 runs locally only, not on Dask")

    def set_paths(self, paths):
        new = []
        for i, (s, w) in enumerate(zip(self.shards, self.shard_workers)):
            part = None if paths is None else np.asarray(paths[self.starts[i]:self.starts[i + 1]])
            new.append(self.client.submit(_with_paths, s, part, workers=[w],
                                          allow_other_workers=False, pure=False))
        self.shards = new

    def close(self):
        self.client.cancel(self.shards)
