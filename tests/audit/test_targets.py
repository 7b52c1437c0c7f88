"""Targets decide what "changed" means: significance against statsmodels' p-values (strictly
below alpha), including an estimate exactly at the critical value (issue #22, planted bug 2:
``>=`` in place of ``>``)."""

import warnings

import numpy as np
import pytest
from scipy.stats import norm

from leaveout.audit.targets import Snapshot, Target

sm = pytest.importorskip("statsmodels.api")


@pytest.mark.parametrize("alpha", [0.05, 0.10])
def test_significance_is_statsmodels_p_value_below_alpha(alpha):
    rng = np.random.default_rng(7)
    seen = {True: 0, False: 0}
    for _ in range(60):
        n = 40
        X = sm.add_constant(rng.standard_normal((n, 2)))
        y = X[:, 1] * rng.uniform(-0.6, 0.6) + rng.standard_normal(n)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = sm.OLS(y, X).fit(cov_type="HC0")         # normal p-values, as the audit's rule
        target = Target("significance", Snapshot(float(res.params[1]), float(res.bse[1])), alpha=alpha)
        assert target.significant == bool(res.pvalues[1] < alpha)
        seen[target.significant] += 1
    assert min(seen.values()) >= 10


@pytest.mark.parametrize("alpha", [0.05, 0.10])
def test_an_estimate_at_the_critical_value_is_not_significant(alpha):
    z = norm.ppf(1 - alpha / 2)
    tie = Snapshot(z, 1.0)                      # |estimate| / se is exactly the critical value
    assert 2 * norm.sf(z) == pytest.approx(alpha, rel=1e-12)     # p = alpha: not below it
    below = Snapshot(np.nextafter(z, np.inf), 1.0)
    assert Target("significance", below, alpha=alpha).significant
    tgt = Target("significance", tie, alpha=alpha)
    assert not tgt.significant
    # from significant, reaching the critical value exactly is losing significance
    start = Target("significance", Snapshot(2 * z, 1.0), alpha=alpha)
    assert start.significant and start.reached(tie) and not start.reached(below)
    # the opposite target needs significance with the other sign: the tie is not enough
    opp = Target("opposite", Snapshot(2 * z, 1.0), alpha=alpha)
    assert not opp.reached(Snapshot(-z, 1.0)) and opp.reached(Snapshot(-np.nextafter(z, np.inf), 1.0))


@pytest.mark.parametrize("value,se", [(2.0, 0.5), (-2.0, 0.5), (0.3, 0.5), (-0.3, 0.5)])
def test_each_target_moves_the_interval_end_it_names(value, se):
    """The signal a target drives across zero, from the confidence interval f -/+ z se written
    out here: sign the estimate; significance (significant) the end nearer zero, (not
    significant) the end nearer zero as well, which crossing zero makes significant; opposite
    the far end. Scores add the end's multiple of the SE change."""
    z = norm.ppf(0.975)
    snap = Snapshot(value, se)
    lo, hi = value - z * se, value + z * se
    near = lo if abs(lo) <= abs(hi) else hi
    far = hi if near == lo else lo
    assert Target("sign", snap).end(snap) == (value, 0.0)
    sig = Target("significance", snap)
    assert sig.significant == (abs(value) > z * se)
    signal, mult = sig.end(snap)
    assert signal == pytest.approx(near, rel=1e-12) and mult == pytest.approx(-z if near == lo else z, rel=1e-12)
    if sig.significant:
        signal, mult = Target("opposite", snap).end(snap)
        assert signal == pytest.approx(far, rel=1e-12) and mult == pytest.approx(z if far == hi else -z, rel=1e-12)
    df, dse = np.array([0.1, -0.2, 0.3]), np.array([0.05, 0.01, -0.02])
    np.testing.assert_allclose(sig.scores(snap, df, dse), df + mult_of(sig, snap) * dse, rtol=1e-12)
    np.testing.assert_allclose(Target("sign", snap).scores(snap, df, dse), df, rtol=0)


def mult_of(target, snap):
    return target.end(snap)[1]


def test_target_refusals():
    with pytest.raises(ValueError, match=r"target='magic' is not supported; choose one of \['sign', "):
        Target("magic", Snapshot(1.0, 0.5))
    with pytest.raises(ValueError, match="target 'opposite' needs a standard error"):
        Target("opposite", Snapshot(1.0, float("nan")))
    assert Target("significance", Snapshot(1.0, float("nan"))).significant is False
