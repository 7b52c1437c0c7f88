r"""Standard errors of a fitted GLM, and their derivatives with respect to the row weights.

With ``A = H^{-1}`` (H the Hessian of the sum-form objective at the fit, the L2 penalty
included), per-row scores ``g_i = s_i l'_i x_i`` and residuals ``e_i = y_i - x_i^T theta``:

=============  ==========================================================================
``se=``        covariance ``V``
=============  ==========================================================================
"nonrobust"    squared loss: ``sigma^2 A`` with ``sigma^2 = sum_i s_i e_i^2 / (n - p)``;
               other families: ``A`` (the inverse Fisher information, scale 1)
"HC0"          ``A M A`` with ``M = sum_i g_i g_i^T`` (the sandwich)
"HC1"          ``n / (n - p)`` times HC0
cluster        ``A (sum_g s_g s_g^T) A`` with ``s_g = sum_{i in g} g_i``; times
               ``G / (G - 1) (n - 1) / (n - p)`` for "HC1", no factor for "HC0"
               (statsmodels' ``use_correction=False``)
=============  ==========================================================================

``n`` counts the rows with positive weight and ``p`` the parameters. These equal
statsmodels' ``cov_type`` results for unpenalised fits, with one deliberate difference:
statsmodels' GLM applies no small-sample factor for "HC1" (its HC1 equals its HC0), while
here HC1 is always ``n / (n - p)`` times HC0, as for OLS. With an L2 penalty, ``A`` is the
inverse of the *penalised* Hessian: "nonrobust" is then the covariance of the Gaussian
posterior (Bayesian ridge), and the sandwich uses the penalised bread; neither is the
sampling covariance of a ridge estimate.

The standard error of a linear quantity ``q = phi^T theta`` is ``sqrt(phi^T V phi)``. Its
derivative with respect to the weight of row i at the fit (the "influence" of the row on
the SE, as zaminfluence defines it; dropping row i changes it by about minus that) is exact:
the weights enter ``V`` directly and through ``theta(w)``, whose derivative is ``-A g_i`` (the
implicit function theorem), so for every row at once it costs one solve and a few passes
over X. The factors ``n`` and ``G`` are held fixed in the derivative, as zaminfluence does.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["SE_KINDS", "StandardError", "standard_error"]

SE_KINDS = ("nonrobust", "HC0", "HC1")


@dataclass
class StandardError:
    """The standard error of ``q = phi^T theta`` and what its derivative needs."""

    value: float
    kind: str
    n: int
    p: int
    n_groups: int | None = None


def _check(kind, model):
    if kind not in SE_KINDS:
        raise ValueError(f"se={kind!r} is not supported; choose one of {list(SE_KINDS)}")
    if model.family == "multinomial":
        raise ValueError("standard errors are for single-response families (squared, logistic, poisson)")
    if model.penalty == "per_sample" and model.l2 > 0:
        raise ValueError("standard errors need penalty='fixed' (or l2=0): under 'per_sample' every row "
                         "carries a share of the penalty")


class SECalculator:
    """Standard errors of linear quantities at a fit, and their derivatives in the weights.

    Parameters
    ----------
    att : Attribution
        The fit (its factor of H is reused).
    kind : {"nonrobust", "HC0", "HC1"}
    groups : array-like of shape (n_samples,), optional
        Cluster labels: cluster-robust sandwich.
    """

    def __init__(self, att, kind: str = "nonrobust", groups=None):
        model = att.model
        _check(kind, model)
        self.att, self.kind = att, kind
        est = att.estimators
        obj = est.objective
        s = np.asarray(obj.s, dtype=np.float64)
        self.s = s
        self.n = int(np.count_nonzero(s > 0))
        self.p = obj.pen.size
        if self.n <= self.p:
            raise ValueError(f"standard errors need more rows ({self.n}) than parameters ({self.p})")
        self.squared = obj.loss.name == "squared"
        self.d1 = np.asarray(obj.loss.derivative(obj.y, est.z))          # l'
        self.d2 = np.asarray(obj.loss.curvature(obj.y, est.z))           # l''
        self.groups = None
        if groups is not None:
            if kind == "nonrobust":
                raise ValueError("a cluster-robust standard error needs se='HC0' or 'HC1'")
            g = np.asarray(groups)
            if g.shape != (s.size,):
                raise ValueError(f"groups must have one label per training row ({s.size}), got shape {g.shape}")
            labels, inverse = np.unique(g, return_inverse=True)
            self.group_codes = inverse
            self.n_groups = int(np.unique(inverse[s > 0]).size)
            if self.n_groups < 2:
                raise ValueError(f"a cluster-robust standard error needs at least 2 groups; the rows left have {self.n_groups}")
            self.groups = labels

    # ------------------------------------------------------------ pieces
    def _factor(self):
        n, p = self.n, self.p
        if self.groups is not None:
            G = self.n_groups
            return G / (G - 1) * (n - 1) / (n - p) if self.kind == "HC1" else 1.0
        return n / (n - p) if self.kind == "HC1" else 1.0

    def _sigma2(self):
        e = self.d1                                   # l' = z - y for squared loss
        return float(self.s @ e ** 2) / (self.n - self.p)

    def _meat(self, xa):
        """Per row ``m_i`` with ``phi^T A M A phi = sum_i s_i l1_i (x_i^T A phi) m_i``: ``l1_i x_i^T A phi``
        (HC), or ``u_g(i) = sum_{j in g(i)} s_j l1_j x_j^T A phi`` (cluster)."""
        if self.groups is None:
            return self.d1 * xa
        u = np.bincount(self.group_codes, weights=self.s * self.d1 * xa, minlength=self.groups.size)
        return u[self.group_codes]

    def variance(self, phi) -> float:
        """``phi^T V phi``."""
        a = self.att.curvature.solve(phi)
        if self.kind == "nonrobust":
            quad = float(phi @ a)
            return quad * self._sigma2() if self.squared else quad
        xa = np.asarray(self.att.design.matvec(a))
        return self._factor() * float((self.s * self.d1 * xa) @ self._meat(xa))

    def se(self, phi) -> float:
        return float(np.sqrt(self.variance(phi)))

    def gradient(self, phi) -> np.ndarray:
        """``d se / d w_i`` at the fit for every training row with weight 1 (rows already at
        weight 0 get a number that is not used). Below l1, l2, l3 are the first three
        derivatives of the loss in z."""
        att = self.att
        design = att.design
        obj = att.estimators.objective
        a = att.curvature.solve(phi)                  # A phi
        xa = np.asarray(design.matvec(a))             # x_i^T A phi
        s, d1, d2 = self.s, self.d1, self.d2
        d3 = _third(obj.loss, obj.y, att.estimators.z)
        if self.kind == "nonrobust":
            quad = float(phi @ a)
            # phi^T A phi: at fixed theta d/dw_i = -l2_i (x_i^T A phi)^2; in theta,
            # -sum_j s_j l3_j (x_j^T A phi)^2 x_j
            direct = -d2 * xa ** 2
            g_theta = -np.asarray(design.rmatvec(s * d3 * xa ** 2))
            var = quad
            if self.squared:
                # sigma^2 = sum s e^2 / (n - p), e = l1: d/dw_i = e_i^2 / (n - p); in theta
                # 2 sum s e x / (n - p) (zero at an unpenalised fit)
                s2 = self._sigma2()
                direct = s2 * direct + quad * d1 ** 2 / (self.n - self.p)
                g_theta = s2 * g_theta + quad * 2 * np.asarray(design.rmatvec(s * d1)) / (self.n - self.p)
                var = quad * s2
        else:
            f = self._factor()
            m = self._meat(xa)
            Ma = np.asarray(design.rmatvec(s * d1 * m))                      # M A phi
            xMa = np.asarray(design.matvec(att.curvature.solve(Ma)))         # x_i^T A M A phi
            # V = A M A. Bread: d/dw_i = -2 l2_i (x^T A phi)(x^T A M A phi); meat: (l1_i x_i^T A phi)^2
            # (HC) or 2 l1_i (x_i^T A phi) u_g(i) (cluster). In theta: bread -2 sum s l3 (x^T A phi)
            # (x^T A M A phi) x, meat 2 sum s l2 (x^T A phi) m x.
            meat = (d1 * xa) ** 2 if self.groups is None else 2 * d1 * xa * m
            direct = f * (-2 * d2 * xa * xMa + meat)
            g_theta = f * np.asarray(design.rmatvec(s * (2 * d2 * xa * m - 2 * d3 * xa * xMa)))
            var = f * float((s * d1 * xa) @ m)
        # theta moves by d theta / d w_i = -A g_i = -IF_i
        return (direct - att.estimators.if_scores(g_theta)) / (2 * np.sqrt(var))


def _third(loss, y, z):
    """``l'''`` in z: logistic p(1-p)(1-2p), squared 0, Poisson e^z."""
    name = loss.name
    if name == "squared":
        return np.zeros_like(np.asarray(z, dtype=np.float64))
    if name == "poisson":
        return np.exp(z)
    p = loss.mean(z)
    return p * (1 - p) * (1 - 2 * p)


def standard_error(att, phi, kind: str = "nonrobust", groups=None) -> float:
    """``sqrt(phi^T V phi)`` for the covariance ``V`` of ``kind`` (see the module docstring)."""
    return SECalculator(att, kind, groups).se(np.asarray(phi, dtype=np.float64))
