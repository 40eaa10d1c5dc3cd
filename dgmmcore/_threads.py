"""Thread counts for the OpenMP kernels and single-threaded BLAS around them."""
import os
from contextlib import contextmanager

from threadpoolctl import ThreadpoolController

from . import _openmp

_controller = None


def available_cpus():
    """CPUs this process may use: affinity mask, capped by a cgroup v2/v1 CPU quota."""
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        n = os.cpu_count() or 1
    quota = _cgroup_cpu_quota()
    if quota is not None:
        n = min(n, quota)
    return max(1, n)


def _cgroup_cpu_quota():
    try:
        with open("/sys/fs/cgroup/cpu.max") as f:
            q, period = f.read().split()[:2]
        if q != "max":
            return max(1, int(int(q) // int(period)))
    except (OSError, ValueError):
        pass
    try:
        with open("/sys/fs/cgroup/cpu/cpu.cfs_quota_us") as f:
            q = int(f.read())
        with open("/sys/fs/cgroup/cpu/cpu.cfs_period_us") as f:
            period = int(f.read())
        if q > 0 and period > 0:
            return max(1, q // period)
    except (OSError, ValueError):
        pass
    return None


def effective_n_threads(n_threads=None):
    """Threads to use: ``None`` means every CPU available (and OMP_NUM_THREADS when it is set);
    a positive int is capped at the CPUs available; 1 without OpenMP."""
    if not _openmp.openmp_enabled():
        return 1
    limit = available_cpus()
    if os.environ.get("OMP_NUM_THREADS"):
        limit = min(limit, _openmp.omp_max_threads())
    if n_threads is None:
        return limit
    return max(1, min(int(n_threads), limit))


@contextmanager
def limited_blas(n_threads):
    """Limit every loaded BLAS to ``n_threads`` threads (the model's setting, so that numpy
    work done for a model does not use more cores than its kernels)."""
    global _controller
    if _controller is None:
        _controller = ThreadpoolController()
    with _controller.limit(limits=int(n_threads), user_api="blas"):
        yield


def single_threaded_blas():
    """Limit every loaded BLAS to one thread: the kernels call BLAS from inside OpenMP threads."""
    return limited_blas(1)
