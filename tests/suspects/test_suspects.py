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
    np.testing.assert_allclose(suspicion(att, "validation", f), -att.scores(f, "rif"), rtol=1e-12)
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
    rng = np.random.default_rng(3)
    n = 120
    df = pd.DataFrame({"rid": [f"r{i}" for i in range(n)], "x1": rng.normal(size=n), "x2": rng.normal(size=n)})
    df["y"] = (df.x1 + 0.5 * df.x2 + 0.3 * rng.normal(size=n) > 0).astype(int)
    df.loc[[5, 17], "y"] = 1 - df.loc[[5, 17], "y"]            # two flipped labels
    path = tmp_path / "t.csv"
    df.to_csv(path, index=False)
    out = tmp_path / "s.csv"
    assert main(["suspects", str(path), "--formula", "y ~ x1 + x2", "--id", "rid", "--kind", "relabel",
                 "--test-fraction", "0.25", "--top", "10", "--verify", "3", "--out", str(out)]) == 0
    said = capsys.readouterr().out
    got = pd.read_csv(out)
    assert list(got.columns) == ["id", "score", "label", "prob"] and len(got) == 10
    assert got.id.str.startswith("r").all()
    assert "relabelling the top 3" in said and "certified refit: yes" in said
    assert main(["suspects", str(path), "--formula", "y ~ x1 + x2", "--kind", "validation", "--out", str(out)]) == 1
    assert "needs validation rows" in capsys.readouterr().err
