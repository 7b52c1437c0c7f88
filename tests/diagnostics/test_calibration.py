"""The calibration's statistics against independent computations (issue #22, planted bug 3: a
slope of the wrong regression): the slope through the origin of predicted on actual by
``numpy.linalg.lstsq``, Spearman by ``scipy.stats.spearmanr``, the median relative error by
hand; and on squared loss NS, which is exact there, has slope 1 and no error."""

import numpy as np
import pytest
from scipy.stats import spearmanr

import leaveout as lo
from conftest import make_data
from leaveout.diagnostics.calibration import _stats, calibrate
from leaveout.metrics import Coefficient, SelfLoss, TestLoss, TestPrediction


def test_statistics_equal_lstsq_spearman_and_a_direct_median():
    rng = np.random.default_rng(3)
    a = rng.standard_normal(40)
    p = 0.6 * a + 0.3 * rng.standard_normal(40)         # shrunk and noisy: slope far from 1
    p[5], a[7] = np.nan, np.inf                          # left out, as unconverged rows are
    out = _stats(a, p, np.random.default_rng(0))
    ok = np.isfinite(a) & np.isfinite(p)
    slope = np.linalg.lstsq(a[ok][:, None], p[ok], rcond=None)[0][0]
    assert out["slope"] == pytest.approx(slope, rel=1e-12)
    assert out["slope"] != pytest.approx(a[ok] @ p[ok] / (p[ok] @ p[ok]), rel=1e-3)   # not the reverse fit
    assert out["spearman"] == pytest.approx(spearmanr(a[ok], p[ok])[0], rel=1e-12)
    assert out["median_rel_err"] == pytest.approx(np.median(np.abs(p[ok] - a[ok]) / np.abs(a[ok])), rel=1e-12)
    assert out["n_sets"] == ok.sum() == 38
    assert not out["reliable"]                           # slope ~0.6 < 0.75


def test_ns_is_exact_on_squared_loss():
    rng = np.random.default_rng(1)
    X = rng.standard_normal((120, 4))
    y = X @ [1.0, -0.5, 0.2, 0.0] + rng.standard_normal(120)
    att = lo.Attribution(lo.GLM(family="squared", l2=0.5).fit(X, y))
    stats, verdicts, rows = calibrate(att, {"coef": Coefficient(0), "pred": TestPrediction(X[:5])}, n_sets=9)
    for name in ("coef", "pred"):
        ns = stats[name]["ns"]
        assert ns["slope"] == pytest.approx(1.0, abs=1e-7)
        assert ns["median_rel_err"] < 1e-7 and ns["reliable"]
    # every row's NS effect is the refit's, to the certified tolerance
    assert max(abs(r["ns"] - r["actual"]) for r in rows) < 1e-7 * max(abs(r["actual"]) for r in rows)
    # the verdict names the largest set as a share of the n rows: 5 % of 120 rows is 6
    assert max(r["k"] for r in rows) == 6
    for name in ("coef", "pred"):
        assert "on sets up to 5.0% of n" in verdicts[name] and verdicts[name].startswith(f"{name}: RIF ")
    # and the self-loss, quadratic in theta, too
    stats, _, _ = calibrate(att, {"self": SelfLoss()}, n_sets=6)
    assert stats["self"]["ns"]["slope"] == pytest.approx(1.0, abs=1e-7)


def test_indicator_correlations_leave_out_the_gap_of_the_training_objective():
    """The self-loss metric is the training objective, whose gradient is zero at the fit: its
    gap |<grad f, NS - RIF>| is at the fit's tolerance (1e-5 of a test loss's here) and gets no
    correlation; a test loss keeps its gap and its correlation."""
    X, y = make_data(n=200, d=5, seed=31)
    att = lo.Attribution(lo.GLM(l2=0.5).fit(X, y))
    mets = {"self": SelfLoss(), "test": TestLoss(*make_data(n=6, d=5, seed=32))}
    rep = att.diagnose(mets, n_sets=9)
    gaps = {m: max(s["gap"] for s in rep.sets if s["metric"] == m) for m in mets}
    assert gaps["self"] < 1e-5 * gaps["test"]
    assert "gap" not in rep.indicator_spearman["self"]
    assert "gap" in rep.indicator_spearman["test"]
    assert "newton_decrement" in rep.indicator_spearman["self"]


def test_training_rows_change_under_ns_equals_a_direct_product():
    """With the training objective among the metrics, each set's ``max |X ns|`` comes from the
    calibration's one pass over X: it equals the product with the design done here, set by set,
    in the trust report as in the calibration's steps."""
    X, y = make_data(n=150, d=4, seed=41)
    att = lo.Attribution(lo.GLM(l2=0.3).fit(X, y))
    mets = {"self": SelfLoss(), "test": TestLoss(*make_data(n=5, d=4, seed=42))}
    Xd = np.column_stack([X, np.ones(len(X))])
    _, _, rows = calibrate(att, mets, n_sets=9)
    want = [float(np.max(np.abs(Xd @ r["steps"]["ns"]))) for r in rows]
    assert all(r["steps"]["train_change"] == pytest.approx(w, rel=1e-12) for r, w in zip(rows, want))
    rep = att.diagnose(mets, n_sets=9)
    assert [s["max_train_change"] for s in rep.sets] == pytest.approx(want, rel=1e-12)
    assert len(set(np.round(want, 12))) > 3                 # sets of different sizes: not one number


def test_bootstrap_rule_at_once_equals_the_rule_per_resample():
    """The bootstrap's vectorised pass / fail equals :func:`_rule` applied to each resample,
    with zero actual effects (left out of the median), all-zero resamples and slopes near
    both ends of the window."""
    from leaveout.diagnostics.calibration import _rule, _rule_many
    rng = np.random.default_rng(5)
    seen = set()
    for scale in (0.7, 0.76, 1.0, 1.3, 1.4):
        a = rng.standard_normal(25)
        a[[2, 9]] = 0.0
        p = scale * a * (1 + 0.3 * rng.standard_normal(25))
        picks = rng.integers(0, 25, size=(300, 25))
        picks[0] = 2                                   # a resample of one zero effect only
        many = _rule_many(a[picks], p[picks])
        loop = np.array([_rule(a[i], p[i])[2] for i in picks])
        assert np.array_equal(many, loop)
        seen.update(loop.tolist())
    assert seen == {True, False}                        # both outcomes occur


def test_confidence_is_the_share_of_resamples_passing_the_rule():
    """``_stats``' confidence against the bootstrap done by hand with the same generator: the
    share of 200 resamples of the sets on which :func:`_rule` passes."""
    from leaveout.diagnostics.calibration import BOOTSTRAP, _rule
    rng = np.random.default_rng(8)
    a = rng.standard_normal(30)
    p = 0.8 * a * (1 + 0.4 * rng.standard_normal(30))
    out = _stats(a, p, np.random.default_rng(2))
    picks = np.random.default_rng(2).integers(0, 30, size=(BOOTSTRAP, 30))
    want = np.mean([_rule(a[i], p[i])[2] for i in picks])
    assert 0.05 < want < 0.95                                  # neither all nor none pass
    assert out["confidence"] == want


@pytest.mark.parametrize("prepared", [False, True])
def test_calibration_estimates_equal_those_of_each_set_alone(prepared):
    """The calibration's IF and RIF of all sets at once (one solve with many columns) against
    ``delta`` set by set, under per_sample with several penalty shares in a set, with and
    without the kept rows; and the effects built from them."""
    X, y = make_data(n=160, d=5, seed=51)
    s = np.random.default_rng(52).choice([1.0, 2.0, 3.0], size=160)
    att = lo.Attribution(lo.GLM(l2=0.05, penalty="per_sample", tol=1e-12).fit(X, y, sample_weight=s))
    if prepared:
        att.prepare()
    mets = {"test": TestLoss(*make_data(n=6, d=5, seed=53))}
    sets = [("random", np.array([0, 3, 17, 40])), ("top", np.arange(20, 36)), ("random", np.array([5, 150]))]
    Ts = [T for _k, T in sets]
    rif = att.estimators.rif_deltas(Ts)
    for j, T in enumerate(Ts):
        assert len(set(s[T])) > 1 or T.size == 2
        np.testing.assert_allclose(rif[:, j], att.delta(T, "rif"), rtol=1e-11, atol=1e-14)
    _, _, rows = calibrate(att, mets, n_sets=9)
    for r in rows:
        for method in ("if", "rif"):
            want = att.effect_of(att.delta(r["T"], method), mets["test"], "removal")
            assert r[method] == pytest.approx(want, rel=1e-10, abs=1e-14)
