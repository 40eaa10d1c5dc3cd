"""dgmmcore: Deep Gaussian Mixture Models with a compiled OpenMP/BLAS core."""
from ._config import show_config
from ._em import ConvergenceWarning
from ._persistence import load_model as load
from .model import DeepGMM, NotFittedError
from .symmetry import SymmetrizedModel

__version__ = "0.1.0"
__all__ = ["DeepGMM", "ConvergenceWarning", "NotFittedError", "SymmetrizedModel", "load",
           "show_config", "__version__"]
