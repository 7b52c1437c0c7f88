"""Suspect rankings: the relabelling estimate against refits with the flipped label (and
against IF's one Newton step), self-influence from its definition, verification, the CLI."""

import numpy as np
import pandas as pd
import pytest

import leaveout as lo
from conftest import make_data
from leaveout.cli import main
from leaveout.metrics import TestLoss
from leaveout.suspects import relabel_deltas_dot, suspicion, verify


@pytest.fixture(scope="module")
def fitted():
    X, y = make_data(n=150, d=12, seed=11, scale=2.0)       # a nearly separable fit: confident rows
    Xv, yv = make_data(n=80, d=12, seed=12, scale=2.0)
    m = lo.GLM(l2=0.5).fit(X, y)
    return X, y, Xv, yv, m, lo.Attribution(m)


def test_relabel_estimate_tracks_refits_better_than_if(fitted):
    X, y, Xv, yv, m, att = fitted
    f = TestLoss(Xv, yv)
    phi = f.gradient(m, m.theta_)
    rif, iff = relabel_deltas_dot(att, phi, "rif"), relabel_deltas_dot(att, phi, "if")
    err_rif, err_if = [], []
    for i in range(0, 150, 6):
        yy = y.copy()
        yy[i] = 1 - yy[i]
        refit = lo.GLM(l2=0.5, tol=1e-12).fit(X, yy, init=m.theta_)
        actual = phi @ (refit.theta_ - m.theta_)
        err_rif.append(abs(rif[i] - actual) / abs(actual))
        err_if.append(abs(iff[i] - actual) / abs(actual))
    assert np.median(err_rif) < np.median(err_if)


def test_relabel_estimate_on_confident_rows_of_digits():
    # digits_rff at l2 = 1 fits most rows confidently: IF's one Newton step overshoots by
    # several times, the RIF route (out, then back in exactly along the row) does not
    from leaveout.datasets import load_bundled
    ds = load_bundled("digits_rff")
    m = lo.GLM(l2=1.0).fit(ds.X_train, ds.y_train)
    att = lo.Attribution(m)
    f = TestLoss(ds.X_test[:300], ds.y_test[:300])
    phi = f.gradient(m, m.theta_)
    rif, iff = relabel_deltas_dot(att, phi, "rif"), relabel_deltas_dot(att, phi, "if")
    err_rif, err_if = [], []
    for i in np.random.default_rng(0).choice(len(ds.y_train), 12, replace=False):
        y = ds.y_train.copy()
        y[i] = 1 - y[i]
        refit = lo.GLM(l2=1.0).fit(ds.X_train, y, init=m.theta_)
        actual = phi @ (refit.theta_ - m.theta_)
        err_rif.append(abs(rif[i] - actual) / abs(actual))
        err_if.append(abs(iff[i] - actual) / abs(actual))
    assert np.median(err_rif) < 0.2 * np.median(err_if) and np.median(err_if) > 1


def test_self_suspicion_is_the_own_loss_change_under_rif_and_if(fitted):
    X, y, Xv, yv, m, att = fitted
    A = np.column_stack([X, np.ones(len(X))])
    z = A @ m.theta_
    loss = lambda yy, zz: np.logaddexp(0, zz) - yy * zz          # noqa: E731
    for method, rows in (("rif", att.rescaled_influence()), ("if", att.influence())):
        want = loss(y, z + np.einsum("ij,ij->i", A, rows)) - loss(y, z)
        np.testing.assert_allclose(suspicion(att, "self", method=method), want, rtol=1e-9, atol=1e-12)


def test_validation_suspicion_and_verification(fitted):
    X, y, Xv, yv, m, att = fitted
    f = TestLoss(Xv, yv)
    # independently: dense H, H_{-i} = H - w_i x_i x_i^T, RIF_i = H_{-i}^{-1} g_i, and minus the
    # validation loss's gradient along it (IF: H^{-1} g_i)
    A, Av = np.column_stack([X, np.ones(len(X))]), np.column_stack([Xv, np.ones(len(Xv))])
    p = 1 / (1 + np.exp(-A @ m.theta_))
    H = (A * (p * (1 - p))[:, None]).T @ A + 0.5 * np.diag([1.0] * X.shape[1] + [0.0])
    G = A * (p - y)[:, None]
    grad_val = Av.T @ (1 / (1 + np.exp(-Av @ m.theta_)) - yv)
    want_rif = [-grad_val @ np.linalg.solve(H - p[i] * (1 - p[i]) * np.outer(A[i], A[i]), G[i]) for i in range(len(y))]
    want_if = -G @ np.linalg.solve(H, grad_val)
    np.testing.assert_allclose(suspicion(att, "validation", f), want_rif, rtol=1e-8, atol=1e-12)
    np.testing.assert_allclose(suspicion(att, "validation", f, method="if"), want_if, rtol=1e-8, atol=1e-12)
    table = att.suspects("validation", k=5, validation=(Xv, yv))
    assert list(table.columns) == ["id", "score", "label", "prob"] and len(table) == 5
    assert np.all(np.diff(table.score.to_numpy()) <= 0)
    top = table.index.to_numpy()
    res = verify(att, top, "remove", f)
    keep = np.setdiff1d(np.arange(150), top)
    refit = lo.GLM(l2=0.5).fit(X[keep], y[keep])
    assert res["after"]["loss"] == pytest.approx(f.value(refit, refit.theta_), rel=1e-8)
    flipped = verify(att, top[:2], "relabel", f)
    yy = y.copy()
    yy[top[:2]] = 1 - yy[top[:2]]
    relabelled = lo.GLM(l2=0.5).fit(X, yy)
    assert flipped["after"]["loss"] == pytest.approx(f.value(relabelled, relabelled.theta_), rel=1e-8)


def test_bad_suspect_requests(fitted):
    X, y, Xv, yv, m, att = fitted
    with pytest.raises(ValueError, match="needs a validation set"):
        suspicion(att, "relabel")
    with pytest.raises(ValueError, match="kind='bogus'"):
        suspicion(att, "bogus")
    per = lo.Attribution(lo.GLM(l2=0.01, penalty="per_sample").fit(X, y))
    with pytest.raises(ValueError, match="penalty='fixed'"):
        suspicion(per, "relabel", (Xv, yv))


def test_suspects_cli(tmp_path, capsys):
    """The table the CLI writes holds the default ranking (the leave-one-out loss by IF),
    computed here from dense pieces; --verify refits without the top K ids of that table
    (issue #22, planted bug 6: the first K rows of the file were refitted instead), checked by
    statsmodels on the kept rows; an error leaves no file behind."""
    import re
    sm = pytest.importorskip("statsmodels.api")
    rng = np.random.default_rng(3)
    n = 160
    df = pd.DataFrame({"rid": [f"r{i}" for i in range(n)], "x1": rng.normal(size=n), "x2": rng.normal(size=n)})
    df["y"] = (df.x1 + 0.5 * df.x2 + rng.normal(size=n) > 0).astype(int)
    df.loc[[5, 17, 33], "y"] = 1 - df.loc[[5, 17, 33], "y"]       # three flipped labels
    train, val = df.iloc[:120], df.iloc[120:]
    path, vpath = tmp_path / "t.csv", tmp_path / "v.csv"
    train.to_csv(path, index=False)
    val.to_csv(vpath, index=False)
    out = tmp_path / "s.csv"
    assert main(["suspects", str(path), "--formula", "y ~ x1 + x2", "--id", "rid", "--validation", str(vpath),
                 "--top", "10", "--verify", "4", "--out", str(out)]) == 0
    said = capsys.readouterr().out
    got = pd.read_csv(out)
    assert list(got.columns) == ["id", "score", "label", "prob"] and len(got) == 10
    # the leave-one-out loss by IF: l_i(theta + H^{-1} g_i), unpenalised (the table default)
    A = np.column_stack([train[["x1", "x2"]].to_numpy(), np.ones(120)])
    y = train.y.to_numpy()
    fit = sm.Logit(y, A).fit(disp=0, tol=1e-12)
    p = 1 / (1 + np.exp(-A @ fit.params))
    H = (A * (p * (1 - p))[:, None]).T @ A
    z_loo = A @ fit.params + np.einsum("ij,ij->i", A, np.linalg.solve(H, (A * (p - y)[:, None]).T).T)
    loo = np.logaddexp(0, z_loo) - y * z_loo
    order = np.argsort(-loo)[:10]
    assert got.id.tolist() == train.rid.to_numpy()[order].tolist()
    np.testing.assert_allclose(got.score, loo[order], rtol=1e-6)
    # --verify 4: the refit without the top 4 ids of the written table
    kept = train[~train.rid.isin(got.id[:4])]
    refit = sm.Logit(kept.y.to_numpy(), np.column_stack([kept[["x1", "x2"]].to_numpy(), np.ones(len(kept))])).fit(
        disp=0, tol=1e-12)
    Av = np.column_stack([val[["x1", "x2"]].to_numpy(), np.ones(len(val))])
    zv = Av @ refit.params
    after = float(np.sum(np.logaddexp(0, zv) - val.y.to_numpy() * zv))
    loss_after = float(re.search(r"validation loss \S+ -> (\S+),", said).group(1))
    assert loss_after == pytest.approx(after, rel=1e-5)
    assert "removing the top 4" in said and "certified refit: yes" in said
    # an error (validation rows missing for --verify) leaves no file and no "wrote" line
    out2 = tmp_path / "s2.csv"
    assert main(["suspects", str(path), "--formula", "y ~ x1 + x2", "--verify", "3", "--out", str(out2)]) == 1
    captured = capsys.readouterr()
    assert "--verify needs validation rows" in captured.err and "wrote" not in captured.out
    assert not out2.exists()
    assert main(["suspects", str(path), "--formula", "y ~ x1 + x2", "--kind", "validation", "--out", str(out)]) == 1
    assert "needs validation rows" in capsys.readouterr().err


def test_relabel_suspicion_ranks_like_refits_with_the_flipped_label():
    """Issue #22, planted bug 4 (the relabel score with its sign flipped): the score is the drop
    of the validation loss when the row's label is flipped, against 30 actual refits, and the
    planted flips rise to the top."""
    from scipy.stats import spearmanr
    rng = np.random.default_rng(4)
    n, d = 200, 5
    X = rng.standard_normal((n, d))
    beta = np.array([1.5, -1.0, 0.8, 0.0, 0.5])
    y = (rng.random(n) < 1 / (1 + np.exp(-X @ beta))).astype(int)
    flipped = rng.choice(n, 20, replace=False)
    y[flipped] = 1 - y[flipped]
    Xv = rng.standard_normal((300, d))
    yv = (rng.random(300) < 1 / (1 + np.exp(-Xv @ beta))).astype(int)
    m = lo.GLM(l2=1.0).fit(X, y)
    att = lo.Attribution(m)
    f = TestLoss(Xv, yv)
    score = suspicion(att, "relabel", f)
    rows = rng.choice(n, 30, replace=False)
    drop = []
    for i in rows:
        yy = y.copy()
        yy[i] = 1 - yy[i]
        refit = lo.GLM(l2=1.0, tol=1e-12).fit(X, yy, init=m.theta_)
        drop.append(f.value(m, m.theta_) - f.value(refit, refit.theta_))
    assert spearmanr(score[rows], drop)[0] > 0.8
    top = np.argsort(-score)[:20]
    assert np.isin(top, flipped).sum() >= 6            # 10 % flipped: chance finds 2


def test_relabel_suspicion_uses_the_method_asked_for(fitted):
    """kind="relabel": with method="if" the one Newton step of the flipped label, from a dense
    Hessian here; with "rif" the relabelling estimate; the two differ."""
    X, y, Xv, yv, m, att = fitted
    A = np.column_stack([X, np.ones(len(y))])
    p = 1 / (1 + np.exp(-A @ m.theta_))
    H = (A * (p * (1 - p))[:, None]).T @ A + np.diag([0.5] * X.shape[1] + [0.0])
    Av = np.column_stack([Xv, np.ones(len(yv))])
    phi = Av.T @ (1 / (1 + np.exp(-Av @ m.theta_)) - yv)             # gradient of the summed validation loss
    want_if = (2 * y - 1) * (A @ np.linalg.solve(H, phi))            # minus <phi, -H^{-1} (2y - 1) x_i>
    got_if = suspicion(att, "relabel", validation=(Xv, yv), method="if")
    np.testing.assert_allclose(got_if, want_if, rtol=1e-8, atol=1e-10)
    got_rif = suspicion(att, "relabel", validation=(Xv, yv), method="rif")
    np.testing.assert_allclose(got_rif, -relabel_deltas_dot(att, phi, "rif"), rtol=1e-8, atol=1e-10)
    assert np.max(np.abs(got_rif - got_if)) > 1e-3 * np.max(np.abs(got_if))
