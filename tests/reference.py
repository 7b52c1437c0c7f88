"""Slow, explicit reference implementations used only by the tests.

Written from the formulas in DESIGN.md with dense matrices and explicit loops, sharing no
code with the package, so that the fast paths are checked against something independent.
"""

import numpy as np
import scipy.optimize as opt


# pointwise (value, first, second derivative) of each family, written out independently
FAMILIES = {
    "logistic": (lambda y, z: np.logaddexp(0, z) - y * z,
                 lambda y, z: 1 / (1 + np.exp(-z)) - y,
                 lambda y, z: np.exp(-np.logaddexp(0, z) - np.logaddexp(0, -z))),
    "squared": (lambda y, z: 0.5 * (z - y) ** 2, lambda y, z: z - y, lambda y, z: np.ones_like(z)),
    "poisson": (lambda y, z: np.exp(z) - y * z, lambda y, z: np.exp(z) - y, lambda y, z: np.exp(z)),
}


def design(X, fit_intercept):
    X = X.toarray() if hasattr(X, "toarray") else np.asarray(X, dtype=float)
    return np.hstack([X, np.ones((X.shape[0], 1))]) if fit_intercept else X


def pieces(A, y, s, theta, l2, penalty, fit_intercept, family="logistic"):
    """Per-sample gradients g_i (n, p), Hessians H_i (n, p, p), the full H (sum form) and the
    curvature weights w_i = s_i l''(y_i, z_i)."""
    n, p = A.shape
    P = np.eye(p)
    if fit_intercept:
        P[-1, -1] = 0.0
    z = A @ theta
    _, d1, d2 = FAMILIES[family]
    r, c = d1(y, z), d2(y, z)
    g = np.empty((n, p))
    Hs = np.empty((n, p, p))
    for i in range(n):
        g[i] = s[i] * r[i] * A[i]
        Hs[i] = s[i] * c[i] * np.outer(A[i], A[i])
        if penalty == "per_sample":
            g[i] += s[i] * l2 * P @ theta
            Hs[i] += s[i] * l2 * P
    H = Hs.sum(axis=0)
    if penalty == "fixed":
        H = H + l2 * P
    return g, Hs, H, s * c


def objective(A, y, s, l2, penalty, fit_intercept, family="logistic"):
    p = A.shape[1]
    v0, v1, v2 = FAMILIES[family]
    P = np.eye(p)
    if fit_intercept:
        P[-1, -1] = 0.0
    lam = l2 * (s.sum() if penalty == "per_sample" else 1.0)

    def f(theta):
        return np.sum(s * v0(y, A @ theta)) + 0.5 * lam * theta @ P @ theta

    def grad(theta):
        return A.T @ (s * v1(y, A @ theta)) + lam * P @ theta

    def hess(theta):
        return A.T @ ((s * v2(y, A @ theta))[:, None] * A) + lam * P

    return f, grad, hess


def tight_fit(A, y, s, l2, penalty, fit_intercept, family="logistic"):
    """Independent solve with scipy's trust-region method to a tiny gradient."""
    f, g, h = objective(A, y, s, l2, penalty, fit_intercept, family)
    res = opt.minimize(f, np.zeros(A.shape[1]), jac=g, hess=h, method="trust-exact",
                       options={"gtol": 1e-12, "maxiter": 1000})
    theta = res.x
    for _ in range(3):  # polish with exact Newton steps
        theta = theta - np.linalg.solve(h(theta), g(theta))
    return theta


# ---------------------------------------------------------------- multinomial (softmax)
def helmert(C):
    """The documented sum-to-zero basis: column a is (1,..,1, -(a+1), 0,..) / norm."""
    Q = np.zeros((C, C - 1))
    for a in range(C - 1):
        v = np.zeros(C)
        v[:a + 1] = 1.0
        v[a + 1] = -(a + 1.0)
        Q[:, a] = v / np.linalg.norm(v)
    return Q


def softmax_pieces(A, y, s, theta, l2, penalty, fit_intercept, C):
    """Per-sample g_i (n, P), H_i (n, P, P) and the full H for the class-major parameters
    theta = vec(B), B of shape (C-1, p), logits z = Q B x; written with explicit loops."""
    n, p = A.shape
    m = C - 1
    Q = helmert(C)
    B = theta.reshape(m, p)
    Mt = np.diag(np.tile(np.r_[np.ones(p - 1), 0.0] if fit_intercept else np.ones(p), m))
    g = np.empty((n, m * p))
    Hs = np.empty((n, m * p, m * p))
    for i in range(n):
        z = Q @ (B @ A[i])
        pr = np.exp(z - z.max())
        pr /= pr.sum()
        e = np.zeros(C)
        e[y[i]] = 1.0
        g[i] = s[i] * np.kron(Q.T @ (pr - e), A[i])
        Hs[i] = s[i] * np.kron(Q.T @ (np.diag(pr) - np.outer(pr, pr)) @ Q, np.outer(A[i], A[i]))
        if penalty == "per_sample":
            g[i] += s[i] * l2 * Mt @ theta
            Hs[i] += s[i] * l2 * Mt
    H = Hs.sum(axis=0) + (l2 * Mt if penalty == "fixed" else 0.0)
    return g, Hs, H


def softmax_objective(A, y, s, l2, penalty, fit_intercept, C):
    """Sum-form objective of theta, for an independent fit."""
    from scipy.special import logsumexp
    n, p = A.shape
    Q = helmert(C)
    pen = np.tile(np.r_[np.ones(p - 1), 0.0] if fit_intercept else np.ones(p), C - 1)
    lam = l2 * (s.sum() if penalty == "per_sample" else 1.0)

    def f(theta):
        Z = A @ theta.reshape(C - 1, p).T @ Q.T
        return float(s @ (logsumexp(Z, axis=1) - Z[np.arange(n), y]) + 0.5 * lam * (pen * theta) @ theta)

    return f


def softmax_tight_fit(A, y, s, l2, penalty, fit_intercept, C, theta0):
    """Minimise the objective with scipy's BFGS from theta0, then exact Newton steps on
    the reference pieces (independent of the package's solver)."""
    f = softmax_objective(A, y, s, l2, penalty, fit_intercept, C)
    theta = opt.minimize(f, theta0, method="BFGS", options={"gtol": 1e-10}).x
    for _ in range(4):
        g, _, H = softmax_pieces(A, y, s, theta, l2, penalty, fit_intercept, C)
        grad = g.sum(axis=0)
        if penalty == "fixed":
            p = A.shape[1]
            grad = grad + l2 * np.tile(np.r_[np.ones(p - 1), 0.0] if fit_intercept else np.ones(p), C - 1) * theta
        theta = theta - np.linalg.solve(H, grad)
    return theta
