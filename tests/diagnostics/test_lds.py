"""LDS and leave-one-out correlation against an independent computation: scores from dense
numpy pieces, ground truth from plain loops of scikit-learn refits, Spearman and Pearson from
scipy (issue #23)."""

import numpy as np
import pytest
from scipy.stats import pearsonr, spearmanr

import leaveout as lo
from leaveout.diagnostics import lds, loo_correlation
from leaveout.metrics import Coefficient, TestLoss, TestPrediction

sk = pytest.importorskip("sklearn.linear_model")

L2 = 2.0


@pytest.fixture(scope="module")
def problem():
    rng = np.random.default_rng(3)
    n, d, m = 40, 3, 4
    X = rng.normal(size=(n, d))
    beta = np.array([1.2, -0.8, 0.5])
    y = (rng.random(n) < 1 / (1 + np.exp(-X @ beta))).astype(int)
    Xt = rng.normal(size=(m, d))
    yt = (rng.random(m) < 1 / (1 + np.exp(-Xt @ beta))).astype(int)
    return X, y, Xt, yt


def _sk(X, y):
    """scikit-learn's L2 logistic regression (intercept unpenalised): C = 1 / l2."""
    f = sk.LogisticRegression(C=1 / L2, tol=1e-12, max_iter=10_000).fit(X, y)
    return np.r_[f.coef_.ravel(), f.intercept_]


def _losses(theta, Xt, yt):
    z = np.column_stack([Xt, np.ones(len(Xt))]) @ theta
    return np.logaddexp(0, z) - yt * z


def _dense(X, y, Xt, yt, theta):
    """Per-row IF and RIF changes of theta, and each test point's loss gradient."""
    A = np.column_stack([X, np.ones(len(X))])
    p = 1 / (1 + np.exp(-A @ theta))
    w = p * (1 - p)
    P = np.diag([L2] * X.shape[1] + [0.0])
    H = (A * w[:, None]).T @ A + P
    g = A * (p - y)[:, None]
    IF = np.linalg.solve(H, g.T).T
    RIF = np.array([np.linalg.solve(H - w[i] * np.outer(A[i], A[i]), g[i]) for i in range(len(y))])
    At = np.column_stack([Xt, np.ones(len(Xt))])
    pt = 1 / (1 + np.exp(-At @ theta))
    phi = At * (pt - yt)[:, None]                  # (m, p): gradient of each test loss
    return A, w, g, H, IF, RIF, phi


def test_lds_equals_plain_loops_with_sklearn_refits(problem):
    X, y, Xt, yt = problem
    att = lo.Attribution(lo.GLM(l2=L2, tol=1e-12).fit(X, y))
    res = lds(att, TestLoss(Xt, yt), n_subsets=10, seed=1)
    assert len(res.sets) == 10 and all(T.size == 20 for T in res.sets)
    again = lds(att, TestLoss(Xt, yt), n_subsets=10, seed=1)           # seeded: the same subsets
    assert all(np.array_equal(a, b) for a, b in zip(res.sets, again.sets))
    theta = _sk(X, y)
    np.testing.assert_allclose(att.theta, theta, rtol=1e-6, atol=1e-8)
    A, w, g, H, IF, RIF, phi = _dense(X, y, Xt, yt, theta)
    base = _losses(theta, Xt, yt)
    actual, pred = [], {m: [] for m in ("if", "rif", "rif-group", "ns-group")}
    for T in res.sets:
        keep = np.setdiff1d(np.arange(len(y)), T)
        actual.append(_losses(_sk(X[keep], y[keep]), Xt, yt) - base)
        pred["if"].append(phi @ IF[T].sum(axis=0))
        pred["rif"].append(phi @ RIF[T].sum(axis=0))
        pred["rif-group"].append(_losses(theta + RIF[T].sum(axis=0), Xt, yt) - base)
        HT = H - (A[T] * w[T, None]).T @ A[T]
        pred["ns-group"].append(_losses(theta + np.linalg.solve(HT, g[T].sum(axis=0)), Xt, yt) - base)
    actual = np.array(actual)
    np.testing.assert_allclose(res.actual, actual, rtol=1e-5, atol=1e-8)
    for m, p in pred.items():
        p = np.array(p)
        np.testing.assert_allclose(res.predicted[m], p, rtol=1e-6, atol=1e-9)
        per_point = [spearmanr(actual[:, j], p[:, j])[0] for j in range(len(yt))]
        np.testing.assert_allclose(res.per_point[m], per_point, rtol=1e-12)
        assert res.score[m] == pytest.approx(np.mean(per_point), rel=1e-12)
        lo_, hi = res.interval[m]
        assert lo_ <= res.score[m] <= hi
    assert res.score["ns-group"] >= res.score["if"] - 0.05       # NS is the sharper estimate here


def test_loo_correlation_equals_plain_loops_with_sklearn_refits(problem):
    X, y, Xt, yt = problem
    att = lo.Attribution(lo.GLM(l2=L2, tol=1e-12).fit(X, y))
    rows = np.arange(0, 40, 3)
    res = loo_correlation(att, TestLoss(Xt, yt), rows=rows)
    theta = _sk(X, y)
    _, _, _, _, IF, RIF, phi = _dense(X, y, Xt, yt, theta)
    base = _losses(theta, Xt, yt)
    actual = np.array([_losses(_sk(np.delete(X, i, 0), np.delete(y, i)), Xt, yt) - base for i in rows])
    np.testing.assert_allclose(res.actual, actual, rtol=1e-5, atol=1e-9)
    for m, D in (("if", IF), ("rif", RIF)):
        tau = (phi @ D[rows].T).T                                  # (rows, m)
        per_point = [pearsonr(tau[:, j], actual[:, j])[0] for j in range(len(yt))]
        np.testing.assert_allclose(res.per_point[m], per_point, rtol=1e-6)
        assert res.score[m] == pytest.approx(np.mean(per_point), rel=1e-6)
    assert res.score["rif"] >= res.score["if"] - 1e-9             # RIF is exact-er for one row


def test_predictions_and_bad_input(problem):
    X, y, Xt, yt = problem
    att = lo.Attribution(lo.GLM(l2=L2).fit(X, y))
    res = lds(att, TestPrediction(Xt), n_subsets=5, methods=("if",))
    assert set(res.score) == {"if"} and res.actual.shape == (5, len(Xt))
    assert "LDS over 5 subsets" in repr(res) and res.to_dict()["n_sets"] == 5
    with pytest.raises(ValueError, match="per-test-point outputs"):
        lds(att, Coefficient(0))
    with pytest.raises(ValueError, match="choose from"):
        lds(att, TestLoss(Xt, yt), methods=("magic",))
    with pytest.raises(ValueError, match="n_subsets must be an integer >= 3"):
        lds(att, TestLoss(Xt, yt), n_subsets=2)
    with pytest.raises(ValueError, match="fraction must lie strictly between 0 and 1"):
        lds(att, TestLoss(Xt, yt), fraction=1.0)
    with pytest.raises(ValueError, match="at least 3 rows"):
        loo_correlation(att, TestLoss(Xt, yt), rows=[1, 2])


def test_check_cli_reports_the_yardsticks(problem, tmp_path, capsys):
    """`leaveout check --lds N --json`: per metric with test points, the LDS and LOO correlation
    of the library functions (themselves checked above against scikit-learn refits)."""
    import json
    from leaveout.cli import main
    X, y, Xt, yt = problem
    path = tmp_path / "p.npz"
    np.savez(path, X_train=X, y_train=y, X_test=Xt, y_test=yt)
    assert main(["check", str(path), "--l2", str(L2), "--test-index", "0,1,2,3", "--sets", "3", "--lds", "6",
                 "--json"]) == 0
    out = json.loads(capsys.readouterr().out)["yardsticks"]
    assert set(out) == {"test-pred", "test-loss"}
    att = lo.Attribution(lo.GLM(l2=L2).fit(X, y))
    ref = lds(att, TestLoss(Xt, yt), n_subsets=6)
    loo = loo_correlation(att, TestLoss(Xt, yt))              # 40 rows: every row is in the sample
    for m in ("if", "rif", "rif-group", "ns-group"):
        assert out["test-loss"]["lds"][m] == pytest.approx(ref.score[m], rel=1e-9)
    for m in ("if", "rif"):
        assert out["test-loss"]["loo_corr"][m] == pytest.approx(loo.score[m], rel=1e-9)
    assert out["test-loss"]["n_subsets"] == 6 and out["test-loss"]["loo_rows"] == 40
    assert main(["check", str(path), "--lds", "2"]) == 1
    assert "--lds must be at least 3" in capsys.readouterr().err


def test_multinomial_check_and_lds_against_sklearn(tmp_path, capsys):
    """The multinomial family: `check` gives the calibration and says the theorem's constants do
    not apply; the LDS ground truth equals scikit-learn's multinomial refits (same penalty on all
    C columns, intercepts free)."""
    import json
    from leaveout.cli import main
    rng = np.random.default_rng(8)
    n, d, C = 90, 3, 3
    X = rng.normal(size=(n, d))
    W = rng.normal(size=(d, C))
    y = np.array([rng.choice(C, p=np.exp(z) / np.exp(z).sum()) for z in X @ W])
    Xt, yt = rng.normal(size=(5, d)), rng.integers(0, C, 5)
    path = tmp_path / "m.npz"
    np.savez(path, X_train=X, y_train=y, X_test=Xt, y_test=yt)
    assert main(["check", str(path), "--family", "multinomial", "--sets", "3", "--test-index", "0,1,2,3,4",
                 "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["C_ell"] is None and "do not apply to the multinomial family" in out["theorem_note"]
    assert set(out["calibration"]) == {"test-pred", "test-loss", "self-loss"}
    att = lo.Attribution(lo.GLM("multinomial", l2=1.0, tol=1e-12).fit(X, y))
    res = lds(att, TestLoss(Xt, yt), n_subsets=4, methods=("if", "ns-group"))

    def losses(Xtr, ytr):
        f = sk.LogisticRegression(C=1.0, tol=1e-12, max_iter=10_000).fit(Xtr, ytr)
        return -np.log(f.predict_proba(Xt)[np.arange(len(yt)), yt])

    base = losses(X, y)
    for T, row in zip(res.sets, res.actual):
        keep = np.setdiff1d(np.arange(n), T)
        np.testing.assert_allclose(row, losses(X[keep], y[keep]) - base, rtol=1e-5, atol=1e-6)


def test_other_tools_scores_are_measured_on_the_same_refits(problem):
    """A score matrix from elsewhere (here the dense IF, and its negation, as a tool whose scores
    are contributions would give) is measured on the same subsets and refits as IF."""
    X, y, Xt, yt = problem
    att = lo.Attribution(lo.GLM(l2=L2, tol=1e-12).fit(X, y))
    _, _, _, _, IF, _, phi = _dense(X, y, Xt, yt, att.theta)
    tau = IF @ phi.T                                                  # (n, m) removal effects
    res = lds(att, TestLoss(Xt, yt), n_subsets=8, seed=2, methods=("if",),
              scores={"dense": tau, "flipped": -tau})
    np.testing.assert_allclose(res.per_point["dense"], res.per_point["if"], rtol=1e-9)
    np.testing.assert_allclose(res.per_point["flipped"], -res.per_point["if"], rtol=1e-9)
    loo = loo_correlation(att, TestLoss(Xt, yt), rows=np.arange(0, 40, 5), scores={"dense": tau})
    np.testing.assert_allclose(loo.per_point["dense"], loo.per_point["if"], rtol=1e-9)
    with pytest.raises(ValueError, match=r"scores\['bad'\] has shape \(3, 4\); give one row per training sample"):
        lds(att, TestLoss(Xt, yt), scores={"bad": np.zeros((3, 4))})
    with pytest.raises(ValueError, match="is one of the methods"):
        lds(att, TestLoss(Xt, yt), methods=("if",), scores={"if": tau})


def test_scores_added_afterwards_equal_those_given_up_front(problem):
    X, y, Xt, yt = problem
    att = lo.Attribution(lo.GLM(l2=L2, tol=1e-12).fit(X, y))
    _, _, _, _, IF, RIF, phi = _dense(X, y, Xt, yt, att.theta)
    given = {"a": IF @ phi.T, "b": RIF @ phi.T}
    up_front = lds(att, TestLoss(Xt, yt), n_subsets=6, seed=4, methods=("if",), scores=given)
    later = lds(att, TestLoss(Xt, yt), n_subsets=6, seed=4, methods=("if",)).add_scores(given)
    for name in given:
        np.testing.assert_allclose(later.per_point[name], up_front.per_point[name], rtol=1e-12)
        np.testing.assert_allclose(later.predicted[name], up_front.predicted[name], rtol=1e-12)
    loo = loo_correlation(att, TestLoss(Xt, yt), rows=np.arange(0, 40, 4)).add_scores({"b": RIF @ phi.T})
    np.testing.assert_allclose(loo.per_point["b"], loo.per_point["rif"], rtol=1e-9)
    with pytest.raises(ValueError, match="measured already"):
        later.add_scores({"a": given["a"]})
