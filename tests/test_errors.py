"""Error and fallback paths (each checked for its message and for what it must not do)."""

import numpy as np
import pytest

import leaveout as lo
from conftest import make_data
from leaveout.metrics import TestLoss


@pytest.fixture(scope="module")
def fitted():
    X, y = make_data(n=60, d=4, seed=40)
    m = lo.GLM(l2=1.0).fit(X, y)
    return X, y, m, lo.Attribution(m)


@pytest.mark.parametrize("X,msg", [
    (np.arange(10.0), "2-D"),
    (np.empty((0, 3)), "empty"),
    (np.array([["a", "b"], ["c", "d"]]), "numbers"),
])
def test_bad_X(X, msg):
    with pytest.raises(ValueError, match=msg):
        lo.GLM().fit(X, np.arange(len(X)) % 2)


@pytest.mark.parametrize("w,msg", [
    (-np.ones(60), "sample_weight"), (np.zeros(60), "sample_weight"), (np.ones(59), "sample_weight"),
    (np.full(60, np.nan), "sample_weight"),
])
def test_bad_sample_weight(fitted, w, msg):
    X, y, _m, _att = fitted
    with pytest.raises(ValueError, match=msg):
        lo.GLM().fit(X, y, sample_weight=w)


def test_boolean_mask_equals_indices(fitted):
    X, y, m, att = fitted
    mask = np.zeros(60, dtype=bool)
    mask[[2, 7, 30]] = True
    for method in ("if", "rif", "ns", "retrain"):
        np.testing.assert_allclose(att.delta(mask, method), att.delta([2, 7, 30], method), rtol=1e-10, atol=1e-13)


def test_an_unconverged_retrain_is_not_a_ground_truth():
    X, y = make_data(n=60, d=4, seed=41)
    m = lo.GLM(l2=1.0).fit(X, y)
    att = lo.Attribution(m)
    m.max_iter, m.tol = 1, 1e-300                      # a refit that cannot certify
    with pytest.warns(lo.ConvergenceWarning):
        with pytest.raises(lo.ConvergenceError, match="did not converge"):
            att.delta([1, 2], "retrain")


def test_leverage_error_from_scores_names_the_row(fitted):
    X, y, m, _ = fitted
    att = lo.Attribution(m)
    x = att.design.dense_rows([9])[0]
    att.estimators.w[9] = 1.0 / (x @ np.linalg.solve(att.hessian, x))     # h_9 = 1 exactly
    att.estimators.__dict__.pop("_leverage", None)
    with pytest.raises(lo.LeverageError, match="sample 9"):
        att.scores(TestLoss(X[:5], y[:5]), "rif")


def test_a_direction_held_only_by_the_penalty_still_refits_exactly():
    # two identical rows are the only ones with x_3 != 0: without them only the (small) penalty
    # holds that coefficient, a nearly singular leave-T-out Hessian; the retrain still certifies
    rng = np.random.default_rng(3)
    X = rng.normal(size=(40, 3))
    X[:, 2] = 0.0
    X[[5, 6], 2] = 1.0
    y = (rng.random(40) < 0.5).astype(int)
    m = lo.GLM(l2=1e-3).fit(X, y)
    att = lo.Attribution(m)
    refit = att.retrain([5, 6])
    assert refit.converged_
    keep = np.setdiff1d(np.arange(40), [5, 6])
    fresh = lo.GLM(l2=1e-3).fit(X[keep], y[keep])
    np.testing.assert_allclose(refit.theta_, fresh.theta_, rtol=1e-6, atol=1e-8)


def test_messages_carry_plain_numbers_not_numpy_reprs():
    """No 'np.int64(1)' or 'np.str_' in what users read: a sweep of error paths."""
    import pandas as pd
    from leaveout.metrics import Coefficient
    df = pd.DataFrame({"x": np.arange(20.0), "y": (np.arange(20) % 3 == 0).astype(int), "g": list("ab") * 10})
    att = lo.Attribution(lo.GLM.from_formula("y ~ x + C(g)", df))
    calls = [lambda: att.scores(Coefficient("nope")), lambda: att.scores(Coefficient(7)),
             lambda: att.delta(np.array([25])), lambda: att.delta(np.array([1, 1])),
             lambda: att.retrain(np.flatnonzero(df.y.values == 1)), lambda: att.to_frame({"a": np.ones(3)}),
             lambda: att.model.predict(pd.DataFrame({"x": [1.0], "g": ["c"]})),
             lambda: lo.audit(att, Coefficient("x"), "significance", se="HC5")]
    for call in calls:
        with pytest.raises(ValueError) as info:
            call()
        text = str(info.value)
        assert "np." not in text and "\n" not in text, text
