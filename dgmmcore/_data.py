"""Row sources: the data of a fit or a scoring call, read block by block.

An in-memory array is validated once and served as a single block, so small data pays
nothing. A memory-mapped array (``np.memmap``, ``np.load(..., mmap_mode='r')``, or the path
of a ``.npy`` file) is never read whole: each block of rows is read, validated and converted
when it is needed, so memory stays bounded by the block size and the number of paths.
"""
import os

import numpy as np

from ._validation import check_data, check_shape

# Rows per block for memory-mapped data: 2^18 rows of 63 float64 values is 132 MB.
BLOCK_ROWS = 1 << 18


class RowSource:
    def __init__(self, X, name="X", n_features=None, min_samples=1, block_rows=BLOCK_ROWS):
        if isinstance(X, (str, os.PathLike)):
            path = os.fspath(X)
            if not path.endswith(".npy"):
                raise TypeError(f"{name} must be an array or the path of a .npy file, got the "
                                f"string {path!r}")
            if not os.path.exists(path):
                raise FileNotFoundError(f"{name}: no file at {path}")
            X = np.load(path, mmap_mode="r", allow_pickle=False)
        self.name = name
        self.block_rows = int(block_rows)
        if isinstance(X, np.memmap) or (isinstance(X, np.ndarray)
                                        and isinstance(X.base, np.memmap)):
            # validate what can be known without reading the data (the shape, the dtype of
            # the first row); blocks are checked as they are read
            check_shape(X.shape, name, n_features, min_samples)
            self.array = X
            self.lazy = True
            self.dtype = check_data(X[:1], name=name, n_features=n_features).dtype
        else:
            self.array = check_data(X, name=name, n_features=n_features, min_samples=min_samples)
            self.lazy = False
            self.dtype = self.array.dtype
        self.n_rows, self.n_features = self.array.shape

    def _check(self, block):
        return check_data(block, name=self.name, n_features=self.n_features)

    def blocks(self):
        """Yield (start, stop, block) over the rows, each block C-contiguous and validated."""
        if not self.lazy:
            yield 0, self.n_rows, self.array
            return
        for lo in range(0, self.n_rows, self.block_rows):
            hi = min(lo + self.block_rows, self.n_rows)
            yield lo, hi, self._check(np.asarray(self.array[lo:hi]))

    def take(self, index):
        """Rows at sorted indices, validated, as an in-memory array."""
        rows = self.array[np.asarray(index)]
        return rows if not self.lazy else self._check(np.asarray(rows))

    def all_rows(self):
        return self.array if not self.lazy else self._check(np.asarray(self.array))
