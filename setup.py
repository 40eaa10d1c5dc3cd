"""Build the compiled core: Cython modules in src/ with OpenMP when the compiler has it.

Set DGMMCORE_DEBUG_BUILD=1 to compile with bounds checks and wraparound on (for CI and debugging).
"""
import os
import shutil
import subprocess
import sysconfig
import tempfile
import warnings

import numpy as np
from Cython.Build import cythonize
from setuptools import Extension, setup

MODULES = ["_openmp", "_scoring", "_stats", "_conditional"]


def _openmp_flags():
    """Return (compile, link) flags for OpenMP, or empty lists when a test compile fails."""
    if os.environ.get("DGMMCORE_NO_OPENMP"):
        return [], []
    cc = os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc"
    cc = cc.split()[0]
    src = "#include <omp.h>\nint main(void){return omp_get_max_threads() > 0 ? 0 : 1;}\n"
    tmp = tempfile.mkdtemp()
    try:
        path = os.path.join(tmp, "t.c")
        with open(path, "w") as f:
            f.write(src)
        res = subprocess.run([cc, "-fopenmp", path, "-o", os.path.join(tmp, "t")],
                             capture_output=True)
        if res.returncode == 0:
            return ["-fopenmp"], ["-fopenmp"]
    except OSError:
        pass
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    warnings.warn("OpenMP not available: dgmmcore's kernels will run on one thread")
    return [], []


def extensions():
    debug = bool(os.environ.get("DGMMCORE_DEBUG_BUILD"))
    omp_compile, omp_link = _openmp_flags()
    opt = ["-O0", "-g"] if debug else ["-O3"]
    exts = [
        Extension(
            f"dgmmcore.{name}",
            [os.path.join("src", f"{name}.pyx")],
            include_dirs=[np.get_include(), "src"],
            define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_9_API_VERSION")],
            extra_compile_args=opt + omp_compile,
            extra_link_args=omp_link,
        )
        for name in MODULES
    ]
    directives = {
        "language_level": 3,
        "boundscheck": debug,
        "wraparound": debug,
        "initializedcheck": debug,
        "cdivision": True,
    }
    return cythonize(exts, compiler_directives=directives, include_path=["src"])


setup(ext_modules=extensions())
