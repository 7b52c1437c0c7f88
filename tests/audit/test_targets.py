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
