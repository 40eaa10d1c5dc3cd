"""Report how the compiled core was built and what it will use at run time."""
import numpy as np
import scipy
from threadpoolctl import threadpool_info

from . import _openmp
from ._threads import available_cpus, effective_n_threads


def show_config(file=None):
    """Print (and return as a dict) OpenMP status, thread counts and the BLAS libraries."""
    import dgmmcore
    info = {
        "dgmmcore": dgmmcore.__version__,
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "openmp": _openmp.openmp_enabled(),
        "cpus_available": available_cpus(),
        "default_threads": effective_n_threads(None),
        "blas": [{k: lib.get(k) for k in ("internal_api", "version", "num_threads", "filepath")}
                 for lib in threadpool_info() if lib.get("user_api") == "blas"],
    }
    lines = [f"{k}: {v}" for k, v in info.items() if k != "blas"]
    lines += [f"blas: {b['internal_api']} {b['version']} ({b['num_threads']} threads) "
              f"{b['filepath']}" for b in info["blas"]]
    print("\n".join(lines), file=file)
    return info
