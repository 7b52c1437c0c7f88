"""Slow, explicit reference implementations used only by the tests.

Written from the formulas in DESIGN.md with dense matrices and explicit loops, sharing no
code with the package, so that the fast paths are checked against something independent.
"""

import numpy as np
import scipy.optimize as opt


def design(X, fit_intercept):
    X = X.toarray() if hasattr(X, "toarray") else np.asarray(X, dtype=float)
    return np.hstack([X, np.ones((X.shape[0], 1))]) if fit_intercept else X


def pieces(A, y, s, theta, l2, penalty, fit_intercept):
    """Per-sample gradients g_i (n, p), Hessians H_i (n, p, p), the full H (sum form) and the
    curvature weights w_i = s_i mu_i (1 - mu_i)."""
    n, p = A.shape
    P = np.eye(p)
    if fit_intercept:
        P[-1, -1] = 0.0
    z = A @ theta
    mu = 1.0 / (1.0 + np.exp(-z))
    g = np.empty((n, p))
    Hs = np.empty((n, p, p))
    for i in range(n):
        g[i] = s[i] * (mu[i] - y[i]) * A[i]
        Hs[i] = s[i] * mu[i] * (1 - mu[i]) * np.outer(A[i], A[i])
        if penalty == "per_sample":
            g[i] += s[i] * l2 * P @ theta
            Hs[i] += s[i] * l2 * P
    H = Hs.sum(axis=0)
    if penalty == "fixed":
        H = H + l2 * P
    return g, Hs, H, s * mu * (1 - mu)


def objective(A, y, s, l2, penalty, fit_intercept):
    p = A.shape[1]
    P = np.eye(p)
    if fit_intercept:
        P[-1, -1] = 0.0
    lam = l2 * (s.sum() if penalty == "per_sample" else 1.0)

    def f(theta):
        z = A @ theta
        return np.sum(s * (np.logaddexp(0, z) - y * z)) + 0.5 * lam * theta @ P @ theta

    def grad(theta):
        z = A @ theta
        return A.T @ (s * (1 / (1 + np.exp(-z)) - y)) + lam * P @ theta

    def hess(theta):
        mu = 1 / (1 + np.exp(-(A @ theta)))
        return A.T @ ((s * mu * (1 - mu))[:, None] * A) + lam * P

    return f, grad, hess


def tight_fit(A, y, s, l2, penalty, fit_intercept):
    """Independent solve with scipy's trust-region method to a tiny gradient."""
    f, g, h = objective(A, y, s, l2, penalty, fit_intercept)
    res = opt.minimize(f, np.zeros(A.shape[1]), jac=g, hess=h, method="trust-exact",
                       options={"gtol": 1e-12, "maxiter": 1000})
    theta = res.x
    for _ in range(3):  # polish with exact Newton steps
        theta = theta - np.linalg.solve(h(theta), g(theta))
    return theta
