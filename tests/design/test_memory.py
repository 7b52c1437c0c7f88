"""The in-memory design's Gram matrices against a dense product, over several row blocks."""

import numpy as np
import pytest

from leaveout.design import memory
from leaveout.design.memory import InMemoryDesign


@pytest.mark.parametrize("elements", [50, 10_000_000])              # ragged blocks, one block
def test_gram_and_its_float32_twin_equal_the_dense_product(elements, monkeypatch):
    monkeypatch.setattr(memory, "_GRAM_ELEMENTS", elements)
    rng = np.random.default_rng(0)
    A = rng.normal(size=(53, 7))
    w = rng.uniform(0.0, 2.0, size=53)
    w[[3, 9]] = 0.0
    d = InMemoryDesign(A)
    want = A.T @ (w[:, None] * A)
    np.testing.assert_allclose(d.gram(w), want, rtol=1e-13, atol=1e-13)
    approx = d.gram_approx(w)
    assert approx.dtype == np.float64 and not np.array_equal(approx, want)          # float32 products
    np.testing.assert_allclose(approx, want, rtol=0, atol=1e-5 * np.abs(want).max())
