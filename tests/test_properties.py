"""Property-based tests (hypothesis): identities that must hold exactly on random small
problems, and a command line that never shows a traceback on fuzzed input."""

import io
import zipfile
from contextlib import redirect_stderr, redirect_stdout

import numpy as np
import pytest
import scipy.sparse as sp

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import leaveout as lo  # noqa: E402
from leaveout.cli import main  # noqa: E402
from reference import design, pieces  # noqa: E402

# a bounded profile: the whole file stays well under a minute
# derandomized: the same examples on every run, so that CI is reproducible
settings.register_profile("leaveout", max_examples=100, deadline=None, derandomize=True,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("leaveout")


@st.composite
def problems(draw, family="logistic"):
    n = draw(st.integers(12, 30))
    d = draw(st.integers(1, 4))
    seed = draw(st.integers(0, 10_000))
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    if family == "logistic":
        y = (rng.random(n) < 1 / (1 + np.exp(-X @ rng.normal(size=d)))).astype(int)
        y[:4] = [0, 1, 0, 1]                            # both classes, twice: removing one row keeps both
    else:
        y = X @ rng.normal(size=d) + rng.normal(size=n)
    weights = rng.uniform(0.5, 2.0, n) if draw(st.booleans()) else None
    return X, y, weights, {
        "l2": draw(st.sampled_from([0.05, 0.5, 3.0])),
        "penalty": draw(st.sampled_from(["fixed", "per_sample"])),
        "fit_intercept": draw(st.booleans()),
        "sparse": draw(st.booleans())}


def _fit(X, y, w, opts, family="logistic"):
    Xf = sp.csr_matrix(X) if opts["sparse"] else X
    return lo.GLM(family=family, l2=opts["l2"], penalty=opts["penalty"], fit_intercept=opts["fit_intercept"],
                  tol=1e-12).fit(Xf, y, sample_weight=w)


@given(problems())
def test_rif_is_the_one_step_leave_one_out_newton_update(prob):
    X, y, w, opts = prob
    m = _fit(X, y, w, opts)
    att = lo.Attribution(m)
    s = np.ones(len(y)) if w is None else w
    A = design(X, opts["fit_intercept"])
    g, Hs, H, _ = pieces(A, y.astype(float), s, m.theta_, opts["l2"], opts["penalty"], opts["fit_intercept"])
    rif = att.rescaled_influence()
    for i in range(0, len(y), 5):
        # one Newton step on the objective without row i, from the fit: (H - H_i)^{-1} g_i
        want = np.linalg.solve(H - Hs[i], g[i])
        np.testing.assert_allclose(rif[i], want, rtol=1e-7, atol=1e-9)


@given(problems(family="squared"), st.data())
def test_newton_step_is_the_retrain_for_squared_loss(prob, data):
    X, y, w, opts = prob
    att = lo.Attribution(_fit(X, y, w, opts, "squared"))
    k = data.draw(st.integers(1, 4))
    T = np.sort(np.random.default_rng(data.draw(st.integers(0, 99))).choice(len(y), k, replace=False))
    np.testing.assert_allclose(att.delta(T, "ns"), att.delta(T, "retrain"), rtol=1e-7, atol=1e-9)


@given(problems(), st.integers(0, 10_000))
def test_results_are_invariant_to_permuting_rows(prob, seed):
    X, y, w, opts = prob
    perm = np.random.default_rng(seed).permutation(len(y))
    a = lo.Attribution(_fit(X, y, w, opts))
    b = lo.Attribution(_fit(X[perm], y[perm], None if w is None else w[perm], opts))
    np.testing.assert_allclose(a.theta, b.theta, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(a.leverage[perm], b.leverage, rtol=1e-7, atol=1e-10)
    np.testing.assert_allclose(a.rescaled_influence()[perm], b.rescaled_influence(), rtol=1e-6, atol=1e-9)


@given(problems())
def test_a_duplicated_row_equals_weight_two(prob):
    X, y, w, opts = prob
    s = np.ones(len(y)) if w is None else w.copy()
    Xd, yd, sd = np.vstack([X, X[:1]]), np.append(y, y[0]), np.append(s, s[0])
    s2 = s.copy()
    s2[0] *= 2
    dup = lo.Attribution(_fit(Xd, yd, sd, opts))
    two = lo.Attribution(_fit(X, y, s2, opts))
    np.testing.assert_allclose(dup.theta, two.theta, rtol=1e-8, atol=1e-10)
    # removing both copies is removing the weight-2 row
    np.testing.assert_allclose(dup.delta([0, len(y)], "retrain"), two.delta([0], "retrain"), rtol=1e-6, atol=1e-9)


WORDS = ["scores", "effect", "fit", "check", "audit", "suspects", "datasets", "{data}", "{bad}", "--metric",
         "test-loss", "test-pred", "coef:0", "coef:zz", "--out", "{out}", "--remove", "1,2", "-1", "x", "@nope",
         "--l2", "0", "-3", "nan", "--family", "squared", "multinomial", "--label", "--classes", "--penalty",
         "--json", "--test-index", "999", "--formula", "y ~ x", "--id", "--coef", "--target", "sign", "--sets",
         "--top", "--kind", "relabel", "--verify", "--test-fraction", "2"]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("fuzz")
    rng = np.random.default_rng(0)
    X = rng.normal(size=(30, 3))
    y = (X[:, 0] > 0).astype(int)
    np.savez(folder / "d.npz", X_train=X, y_train=y, X_test=X[:8], y_test=y[:8])
    return folder


@given(st.lists(st.sampled_from(WORDS), min_size=1, max_size=8),
       st.sampled_from(["garbage", "truncated", "wrong-keys", "nan"]))
def test_the_command_line_never_shows_a_traceback(files, argv, damage):
    bad = files / f"bad-{damage}.npz"
    if not bad.exists():
        rng = np.random.default_rng(1)
        if damage == "garbage":
            bad.write_bytes(bytes(rng.integers(0, 256, 200, dtype=np.uint8)))
        elif damage == "truncated":
            raw = (files / "d.npz").read_bytes()
            bad.write_bytes(raw[: len(raw) // 2])
        elif damage == "wrong-keys":
            np.savez(bad, A=np.ones((3, 2)))
        else:
            X = rng.normal(size=(10, 2))
            X[0, 0] = np.nan
            np.savez(bad, X_train=X, y_train=np.arange(10) % 2, X_test=X, y_test=np.arange(10) % 2)
    args = [a.format(data=files / "d.npz", bad=bad, out=files / "o.csv") for a in argv]
    err = io.StringIO()
    try:
        with redirect_stdout(io.StringIO()), redirect_stderr(err):
            code = main(args)
    except SystemExit as exc:                            # argparse's usage errors
        code = exc.code
    assert code in (0, 1, 2)
    assert "Traceback" not in err.getvalue()
    if code == 1:
        assert len(err.getvalue().strip().splitlines()) >= 1 and err.getvalue().startswith("leaveout: ")
    assert zipfile.is_zipfile(files / "d.npz")
