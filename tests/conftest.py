import os
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
DATASETS = Path(os.environ.get("LEAVEOUT_DATA_DIR", SHARED / "datasets"))


def make_data(n=80, d=6, seed=0, sparse=False, density=0.5, scale=1.0):
    """A non-separable binary problem with a known generating model."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d)) * scale
    if sparse:
        X = X * (rng.random((n, d)) < density)
    beta = rng.normal(size=d) / np.sqrt(d)
    y = (rng.random(n) < 1 / (1 + np.exp(-(X @ beta) - 0.3))).astype(np.int64)
    return (sp.csr_matrix(X) if sparse else X), y


def dense(X):
    return X.toarray() if sp.issparse(X) else np.asarray(X)


@pytest.fixture
def shared_dataset():
    def get(name):
        path = DATASETS / name
        if not path.is_file():
            pytest.skip(f"benchmark dataset {name} not available (needs ../shared/datasets)")
        return path
    return get
