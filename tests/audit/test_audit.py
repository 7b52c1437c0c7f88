"""Audits: adaptive search against brute force over all small subsets, every reported set
checked by an independent refit, zaminfluence's one-shot count by hand, the published
AMIP cases (when ../shared is present), and bad input."""

import itertools
import json

import numpy as np
import pandas as pd
import pytest

import leaveout as lo
from conftest import DATASETS
from leaveout.audit import audit
from leaveout.audit.search import _one_shot_count
from leaveout.cli import main
from leaveout.metrics import Coefficient, Contrast, Logit


def _newton(A, y, family, l2):
    """An independent unpenalised-intercept Newton fit (dense numpy)."""
    theta = np.zeros(A.shape[1])
    P = np.eye(A.shape[1])
    P[-1, -1] = 0
    for _ in range(60):
        z = A @ theta
        mu = 1 / (1 + np.exp(-z)) if family == "logistic" else np.exp(z)
        w = mu * (1 - mu) if family == "logistic" else mu
        step = np.linalg.solve(A.T @ (w[:, None] * A) + l2 * P, A.T @ (mu - y) + l2 * P @ theta)
        theta -= step
        if np.max(np.abs(step)) < 1e-13:
            break
    return theta


def _problem(family, seed, n=26):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 2))
    if family == "logistic":
        y = (rng.random(n) < 1 / (1 + np.exp(-(X @ [0.15, 1.0])))).astype(float)
    else:
        y = rng.poisson(np.exp(X @ [0.1, 0.5])).astype(float)
    return X, y


@pytest.mark.parametrize("family,seed", [("logistic", 1), ("logistic", 4), ("logistic", 5), ("logistic", 7),
                                         ("poisson", 0), ("poisson", 2), ("poisson", 4), ("poisson", 6)])
def test_adaptive_finds_the_brute_force_minimum(family, seed):
    X, y = _problem(family, seed)
    n = X.shape[0]
    A = np.column_stack([X, np.ones(n)])
    b0 = _newton(A, y, family, 0.5)[0]
    smallest = None
    for k in (1, 2, 3):
        for T in itertools.combinations(range(n), k):
            keep = np.setdiff1d(np.arange(n), T)
            if np.sign(_newton(A[keep], y[keep], family, 0.5)[0]) != np.sign(b0):
                smallest = k
                break
        if smallest:
            break
    assert smallest is not None                      # these seeds have a flip within 3 rows
    res = audit(lo.GLM(family=family, l2=0.5).fit(X, y), Coefficient(0), "sign", max_fraction=0.5)
    assert res.reached and res.k == smallest
    # the reported set, refitted independently, flips the sign and gives the reported value
    keep = np.setdiff1d(np.arange(n), res.positions)
    refit = _newton(A[keep], y[keep], family, 0.5)[0]
    assert np.sign(refit) != np.sign(b0) and refit == pytest.approx(res.refit["value"], rel=1e-7, abs=1e-10)
    one = audit(lo.GLM(family=family, l2=0.5).fit(X, y), Coefficient(0), "sign", method="one-shot", max_fraction=0.5)
    assert one.k == 0 or one.k >= res.k


def test_one_shot_count_is_zaminfluence_interpolation():
    # influences 5, 3, 2 (helpful for a positive signal: removal lowers it), -4 (unhelpful)
    scores = np.array([-3.0, 4.0, -5.0, -2.0])
    alive = np.ones(4, dtype=bool)
    for signal, k in [(4.0, 1), (5.0, 1), (5.5, 2), (8.0, 2), (9.9, 3), (10.0, 3)]:
        got, order = _one_shot_count(signal, scores, alive)
        assert got == k and list(order) == [2, 0, 3]
    assert _one_shot_count(10.5, scores, alive)[0] is None            # all helpful rows fall short
    assert _one_shot_count(-2.0, scores, alive)[0] == 1                # a negative signal uses row 1


def test_significance_and_opposite_on_ols_are_verified():
    rng = np.random.default_rng(3)
    n = 80
    df = pd.DataFrame({"x": rng.normal(size=n), "g": rng.integers(0, 8, n)})
    df["y"] = 0.35 * df.x + rng.normal(size=n)
    m = lo.GLM.from_formula("y ~ x", df, family="squared", l2=0.0)
    import statsmodels.formula.api as smf
    for target in ("significance", "opposite"):
        for se, cluster in (("HC1", None), ("HC0", df.g.to_numpy())):
            res = audit(m, Coefficient("x"), target, se=se, cluster=cluster, max_fraction=0.5)
            assert res.reached
            kept = df.drop(index=res.rows)
            kw = {} if cluster is None else {"groups": kept.g.to_numpy(), "use_correction": False}
            ref = smf.ols("y ~ x", kept).fit(cov_type="HC1" if cluster is None else "cluster", cov_kwds=kw or None)
            b, s = ref.params["x"], ref.bse["x"]
            assert res.refit["value"] == pytest.approx(b, rel=1e-9) and res.refit["se"] == pytest.approx(s, rel=1e-8)
            z = res.z
            significant_before = abs(res.original["value"]) > z * res.original["se"]
            if target == "significance":
                assert (abs(b) > z * s) != significant_before
            else:
                assert np.sign(b) != np.sign(res.original["value"]) and abs(b) > z * s


def test_contrast_and_flip_targets():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(120, 3))
    y = (rng.random(120) < 1 / (1 + np.exp(-X @ [1.0, -1.0, 0.5]))).astype(int)
    m = lo.GLM(l2=1.0).fit(X, y)
    res = audit(m, Contrast({0: 1.0, 1: 1.0}), "sign", max_fraction=0.3)
    keep = np.setdiff1d(np.arange(120), res.positions)
    fresh = lo.GLM(l2=1.0).fit(X[keep], y[keep])
    assert res.reached and np.sign(fresh.coef_[0] + fresh.coef_[1]) != np.sign(m.coef_[0] + m.coef_[1])
    x_test = np.array([[0.2, 0.1, 0.0]])
    flip = audit(m, Logit(x_test), "flip", max_fraction=0.3)
    assert flip.reached and fresh_pred(X, y, flip.positions, x_test) != m.predict(x_test)[0]


def fresh_pred(X, y, removed, x):
    keep = np.setdiff1d(np.arange(X.shape[0]), removed)
    return lo.GLM(l2=1.0).fit(X[keep], y[keep]).predict(x)[0]


def test_not_reached_is_said_and_nothing_is_claimed():
    X, y = _problem("logistic", 6)                    # a strong effect: no flip in 2 rows
    res = audit(lo.GLM(l2=0.5).fit(X, y), Coefficient(0), "sign", max_fraction=2 / 26)
    assert not res.reached and res.note.startswith("not reached within 2 rows")
    assert res.k == 0 and res.rows == []


def test_bad_audit_input():
    X, y = _problem("logistic", 1)
    m = lo.GLM(l2=0.5).fit(X, y)
    with pytest.raises(ValueError, match="no column of that name"):
        audit(lo.GLM.from_formula("y ~ x0", pd.DataFrame({"x0": X[:, 0], "y": y}), l2=0.5), Coefficient("x9"))
    zero = lo.GLM(family="squared", l2=0.0).fit(np.array([[1.0], [-1.0], [1.0], [-1.0]]), np.array([1.0, 1.0, 2.0, 2.0]))
    with pytest.raises(ValueError, match="exactly 0 already"):
        audit(zero, Coefficient(0), "opposite")
    with pytest.raises(ValueError, match="at least 2 groups"):
        audit(m, Coefficient(0), "significance", se="HC0", cluster=np.zeros(26))
    with pytest.raises(ValueError, match="target='nope'"):
        audit(m, Coefficient(0), "nope")
    with pytest.raises(ValueError, match="linear quantity"):
        audit(m, lo.metrics.TestLoss(X, y), "significance")


def test_audit_cli_json_and_files(tmp_path, capsys):
    rng = np.random.default_rng(2)
    n = 90
    df = pd.DataFrame({"id": [f"r{i}" for i in range(n)], "x": rng.normal(size=n), "g": rng.integers(0, 6, n)})
    df["y"] = 0.3 * df.x + rng.normal(size=n)
    path = tmp_path / "d.csv"
    df.to_csv(path, index=False)
    out = tmp_path / "audit"
    assert main(["audit", str(path), "--formula", "y ~ x", "--family", "squared", "--l2", "0", "--id", "id",
                 "--coef", "x", "--target", "significance", "--se", "HC0", "--cluster", "g", "--max-fraction", "0.5",
                 "--json", "--out", str(out)]) == 0
    res = json.loads(capsys.readouterr().out)
    for key in ("quantity", "target", "method", "original", "k", "fraction", "reached", "refit", "rows", "one_shot"):
        assert key in res
    assert res["reached"] and all(r.startswith("r") for r in res["rows"])
    assert sorted(p.name for p in out.iterdir()) == ["audit.json", "audit.png", "path.csv", "rows.csv"]
    # the numbers, by statsmodels: the cluster SE (no small-sample factor) at the fit and on the
    # kept rows, whose significance differs; the files say the same as --json
    smf = pytest.importorskip("statsmodels.formula.api")
    kw = {"use_correction": False}
    full = smf.ols("y ~ x", df).fit(cov_type="cluster", cov_kwds={"groups": df.g, **kw})
    kept = df[~df.id.isin(res["rows"])]
    refit = smf.ols("y ~ x", kept).fit(cov_type="cluster", cov_kwds={"groups": kept.g, **kw})
    assert res["original"]["value"] == pytest.approx(full.params["x"], rel=1e-10)
    assert res["original"]["se"] == pytest.approx(full.bse["x"], rel=1e-8)
    assert res["refit"]["value"] == pytest.approx(refit.params["x"], rel=1e-8)
    assert res["refit"]["se"] == pytest.approx(refit.bse["x"], rel=1e-8)
    z = 1.959963984540054
    assert (abs(full.tvalues["x"]) > z) != (abs(refit.tvalues["x"]) > z)
    saved = json.loads((out / "audit.json").read_text())
    assert saved["rows"] == res["rows"] and saved["refit"] == res["refit"] and saved["model"]["se"] == "HC0, clustered by g"
    rows_csv = pd.read_csv(out / "rows.csv")
    assert rows_csv.row.tolist() == res["rows"] and rows_csv.position.tolist() == res["positions"]
    path_csv = pd.read_csv(out / "path.csv")
    assert path_csv.k.iloc[-1] == res["k"] and path_csv.value.iloc[-1] == pytest.approx(refit.params["x"], rel=1e-8)
    for args, msg in [(["--coef", "x", "--target", "flip"], "--target flip is for --test-row"),
                      (["--coef", "nope"], "no column of that name"),
                      (["--coef", "x", "--cluster", "zz", "--target", "significance", "--se", "HC0"], "no column 'zz'"),
                      (["--test-row", "r1", "--target", "flip"], "is for --family logistic")]:
        assert main(["audit", str(path), "--formula", "y ~ x", "--family", "squared", "--l2", "0", "--id", "id", *args]) == 1
        assert msg in capsys.readouterr().err


def _amip(name):
    path = DATASETS / "amip" / name
    if not path.is_file():
        pytest.skip(f"{path} not available (needs ../shared/datasets)")
    return pd.read_csv(path)


def test_mexico_one_shot_reproduces_zaminfluence():
    df = _amip("mc_profit_mexico.csv")
    att = lo.Attribution(lo.GLM.from_formula("profit ~ treatment", df, family="squared", l2=0.0))
    published = {"sign": (1, 0.398, 3.194), "significance": (14, -10.962, 5.565), "opposite": (15, 7.030, 2.549)}
    for target, (k, value, se) in published.items():
        res = audit(att, Coefficient("treatment"), target, method="one-shot")
        assert res.reached and res.k == k
        assert round(res.refit["value"], 3) == value and round(res.refit["se_full_n"], 3) == se
        adaptive = audit(att, Coefficient("treatment"), target)
        assert adaptive.reached and adaptive.k <= k


@pytest.mark.parametrize("site,k", [("mongolia", 16), ("bosnia", 14), ("india", 6), ("morocco", 11),
                                    ("philippines", 9), ("ethiopia", 1)])
def test_microcredit_sign_counts(site, k):
    df = _amip(f"mc_profit_{site}.csv")
    att = lo.Attribution(lo.GLM.from_formula("profit ~ treatment", df, family="squared", l2=0.0))
    assert audit(att, Coefficient("treatment"), "sign", method="one-shot").k == k
    assert audit(att, Coefficient("treatment"), "sign").k <= k


@pytest.mark.parametrize("t", [9, 10])
def test_cash_transfers_lose_significance_with_three_rows(t):
    df = _amip(f"cash_treatnp_t{t}.csv")
    att = lo.Attribution(lo.GLM.from_formula("Cind ~ . - village", df, family="squared", l2=0.0))
    res = audit(att, Coefficient("treatment"), "significance", se="HC0", cluster=df.village.to_numpy(),
                method="one-shot")
    assert res.reached and res.k == 3
    assert audit(att, Coefficient("treatment"), "significance", se="HC0", cluster=df.village.to_numpy()).k <= 3


def test_adaptive_cases_of_huang_et_al_and_kuschnig_et_al():
    ames = _amip("ames_poolarea_n340.csv")
    res = audit(lo.GLM.from_formula("SalePrice ~ PoolArea", ames, family="squared", l2=0.0), Coefficient("PoolArea"),
                "sign", max_fraction=0.5)
    assert res.k == 3 and res.positions == [334, 337, 339] and round(res.refit["value"], 5) == -6.66866
    rug = _amip("rugged_nunn_puga.csv")
    m = lo.GLM.from_formula("log_rgdppc_2000 ~ rugged*cont_africa + diamonds*cont_africa + soil*cont_africa "
                            "+ tropical*cont_africa + dist_coast*cont_africa", rug, family="squared", l2=0.0)
    for target, most in [("significance", 2), ("sign", 5), ("opposite", 11)]:
        r = audit(m, Coefficient("rugged:cont_africa"), target, se="HC1", max_fraction=0.3)
        assert r.reached and r.k <= most


def test_nonlinear_and_multinomial_quantities_are_audited_and_verified():
    rng = np.random.default_rng(4)
    X = rng.normal(size=(90, 2))
    labels = rng.choice(["a", "b", "c"], 90)
    m = lo.GLM(family="multinomial", l2=1.0).fit(X, labels)
    f = lo.metrics.TestPrediction(np.array([[0.0, 0.0]]), label="b")
    before = f.value(m, m.theta_)
    res = audit(m, f, "sign", value=1 / 3, max_fraction=0.3)
    assert res.reached
    keep = np.setdiff1d(np.arange(90), res.positions)
    refit = lo.GLM(family="multinomial", l2=1.0).fit(X[keep], labels[keep])
    after = f.value(refit, refit.theta_)
    assert np.sign(after - 1 / 3) != np.sign(before - 1 / 3) and after == pytest.approx(res.refit["value"], rel=1e-8)


def test_a_row_whose_removal_empties_a_level_is_never_chosen():
    rng = np.random.default_rng(1)
    n = 60
    df = pd.DataFrame({"x": rng.normal(size=n), "g": ["a"] * 30 + ["b"] * 29 + ["c"]})
    df["y"] = 0.25 * df.x + rng.normal(size=n)
    df.loc[59, "y"] = -40.0                             # the lone "c" row: removing it empties C(g)[T.c]
    m = lo.GLM.from_formula("y ~ x + C(g)", df, family="squared", l2=0.0)
    res = audit(m, Coefficient("x"), "sign", max_fraction=0.5)
    assert res.reached and 59 not in res.positions


def _wls_t(X, y, w, keep):
    """``(beta_0, classical t)`` of a weighted least-squares refit on the kept rows (None when
    the design left is rank-deficient)."""
    A, r = X[keep], np.sqrt(w[keep])
    if keep.size <= X.shape[1] or np.linalg.matrix_rank(A * r[:, None]) < X.shape[1]:
        return None
    beta, *_ = np.linalg.lstsq(A * r[:, None], y[keep] * r, rcond=None)
    e = (y[keep] - A @ beta) * r
    cov = np.linalg.inv((A * w[keep, None]).T @ A) * (e @ e) / (keep.size - X.shape[1])
    return beta[0], beta[0] / np.sqrt(cov[0, 0])


@pytest.mark.parametrize("seed", range(6))
def test_tiny_problems_get_the_brute_force_minimum_and_a_proof(seed):
    """On tiny problems the adaptive search is followed by an exchange pass and an exhaustive
    search (issue #22): the count is the brute-force minimum, proved by enumeration."""
    rng = np.random.default_rng(50 + seed)
    n = 11
    Z = rng.standard_normal((n, 2))
    y = Z[:, 0] * rng.uniform(0.5, 1.2) + rng.standard_normal(n)
    w = rng.uniform(0.2, 3.0, n) if seed % 2 else np.ones(n)
    X = np.column_stack([Z, np.ones(n)])
    target = "sign" if seed < 3 else "significance"
    b0, t0 = _wls_t(X, y, w, np.arange(n))
    if target == "significance" and abs(t0) <= 1.959963984540054:
        target = "sign"
    smallest = None
    for k in range(1, n - 3):
        for T in itertools.combinations(range(n), k):
            r = _wls_t(X, y, w, np.setdiff1d(np.arange(n), T))
            if r is not None and (np.sign(r[0]) != np.sign(b0) if target == "sign" else abs(r[1]) <= 1.959963984540054):
                smallest = k
                break
        if smallest:
            break
    res = audit(lo.GLM(family="squared", l2=0).fit(Z, y, sample_weight=w), Coefficient(0), target, max_fraction=1.0)
    assert res.reached and res.k == smallest
    assert res.lower == smallest and res.certified_exact
    assert res.lower_method.startswith("exhaustive" if smallest > 1 else "one row")
    b, t = _wls_t(X, y, w, np.setdiff1d(np.arange(n), res.positions))
    assert b == pytest.approx(res.refit["value"], rel=1e-8)


def test_put_back_keeps_only_the_rows_the_target_needs():
    """The put-back step, checked by independent refits: the set it returns reaches the target
    and every one of its rows is needed (without it the refit does not)."""
    from leaveout.audit.search import _Fit, _Search
    from leaveout.audit.targets import Target
    rng = np.random.default_rng(8)
    n = 30
    Z = rng.standard_normal((n, 1))
    y = 0.35 * Z[:, 0] + rng.standard_normal(n)
    X = np.column_stack([Z, np.ones(n)])
    w = np.ones(n)
    m = lo.GLM(family="squared", l2=0).fit(Z, y)
    att = lo.Attribution(m)
    first = _Fit(m, Coefficient(0), "nonrobust", None, True, att=att)
    search = _Search(att, first, Coefficient(0), Target("sign", first.snap), "nonrobust", None, n, np.inf, None)
    search.start()
    b0 = _wls_t(X, y, w, np.arange(n))[0]
    # a padded set: the most influential rows towards zero, then 6 harmless ones
    infl = np.asarray(att.scores(Coefficient(0), "rif"))
    order = np.argsort(infl * np.sign(b0))
    padded = [int(i) for i in order[:12]] + [int(i) for i in order[-6:]]
    fit = search.fit(padded)
    assert search.target.reached(fit.snap)
    keep, fit = search.put_back(padded, fit)
    flips = lambda T: np.sign(_wls_t(X, y, w, np.setdiff1d(np.arange(n), T))[0]) != np.sign(b0)   # noqa: E731
    assert flips(keep) and set(keep) <= set(padded) and len(keep) < len(padded)
    for i in keep:
        assert not flips([j for j in keep if j != i])


def test_predicted_put_back_is_the_exact_refit_for_least_squares():
    """The put-back's prediction for each removed row (one Sherman-Morrison step) equals the
    refit with that row returned, for least squares with and without absorbed fixed effects."""
    from leaveout.audit.search import _Fit, _Search
    from leaveout.audit.targets import Target
    from leaveout.glm.absorb import FixedEffectsGLM
    rng = np.random.default_rng(8)
    n = 80
    X = rng.normal(size=(n, 2))
    g = rng.integers(0, 9, n)
    y = X @ [0.4, -0.2] + 0.3 * g + rng.normal(size=n)
    s = rng.uniform(0.5, 2, n)
    T = [1, 4, 9, 16, 25, 36]
    for model in (lo.GLM("squared", l2=0).fit(X, y, sample_weight=s),
                  FixedEffectsGLM("squared").fit(X, y, {"g": g}, sample_weight=s)):
        att = lo.Attribution(model)
        q = Coefficient(0)
        first = _Fit(model, q, "nonrobust", None, False, att=att)
        search = _Search(att, first, q, Target("sign", first.snap), "nonrobust", None, 40, float("inf"), None)
        search.start()
        fit = search.fit(T)
        predicted = search.returns(T, fit)
        for i, row in enumerate(T):
            back = att.retrain([t for t in T if t != row]).theta_[0]
            assert predicted[i] == pytest.approx(back - fit.snap.value, rel=1e-8, abs=1e-12)
