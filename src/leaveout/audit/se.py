r"""Standard errors of a fitted GLM, and their derivatives with respect to the row weights.

With ``A = H^{-1}`` (H the Hessian of the sum-form objective at the fit, the L2 penalty
included), sample weights ``s_i``, per-row loss derivatives ``l'_i`` and residuals
``e_i = y_i - x_i^T theta``, the covariance ``V`` is:

=============  ==========================================================================
``se=``        covariance ``V``
=============  ==========================================================================
"nonrobust"    squared loss: ``sigma^2 A`` with ``sigma^2 = sum_i s_i e_i^2 / (n - p)``;
               other families: ``A`` (the inverse Fisher information, scale 1)
"HC0"          ``A M A``, the sandwich; analytic weights ``M = sum_i s_i^2 l'_i^2 x_i x_i^T``
               (the weighted scores ``s_i g_i``), frequency weights
               ``M = sum_i s_i l'_i^2 x_i x_i^T`` (s_i copies of the score ``g_i``)
"HC1"          ``n / (n - p)`` times HC0
cluster        ``A (sum_g u_g u_g^T) A`` with ``u_g = sum_{i in g} s_i l'_i x_i`` (both
               meanings); times ``G / (G - 1) (n - 1) / (n - p)`` for "HC1", no factor for
               "HC0" (statsmodels' ``use_correction=False``)
=============  ==========================================================================

**What a weight means** (``weights=``, default the model's ``weight_kind``):

* ``"analytic"`` (default): row i is one observation whose loss counts ``s_i`` times, as
  statsmodels' ``WLS(weights=s)`` and ``GLM(var_weights=s)``; ``n`` is the number of rows
  with positive weight.
* ``"frequency"``: row i stands for ``s_i`` identical rows, as ``GLM(freq_weights=s)``; ``n`` is
  ``sum_i s_i``. With integer weights every SE equals the unweighted one on the replicated
  rows.

``p`` counts the parameters. These equal statsmodels' ``cov_type`` results for unpenalised
fits, with two differences, both small-sample factors: statsmodels' GLM applies none for
"HC1" (its HC1 equals its HC0), while here HC1 is always ``n / (n - p)`` times HC0, as for OLS;
and under frequency weights statsmodels' cluster "HC1" factor counts rows, here ``n = sum s``
(the replicated rows' factor). With an L2 penalty, ``A`` is the inverse of the *penalised*
Hessian: "nonrobust" is then the covariance of the Gaussian posterior (Bayesian ridge), and
the sandwich uses the penalised bread; neither is the sampling covariance of a ridge estimate.

The standard error of a linear quantity ``q = phi^T theta`` is ``sqrt(phi^T V phi)``. Its
derivative with respect to the weight of row i (the multiplier ``w_i`` of ``s_i``, at
``w = 1``; the "influence" of the row on the SE, as zaminfluence defines it: dropping row i,
``w_i = 0``, changes the SE by about minus that) is exact: the weights enter ``V`` directly and
through ``theta(w)``, whose derivative is ``-A s_i g_i`` (the implicit function theorem), so for
every row at once it costs one solve and a few passes over X. The factors ``n`` and ``G`` are
held fixed in the derivative, as zaminfluence does.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ._clusters import cluster_codes

from .._validation import WEIGHT_KINDS, check_weight_kind

__all__ = ["SE_KINDS", "WEIGHT_KINDS", "StandardError", "standard_error", "se_calculator", "check_weight_kind"]

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
    weights : {"analytic", "frequency"}, optional
        What a sample weight means (see the module docstring); default the model's
        ``weight_kind`` ("analytic" when it has none).
    """

    def __init__(self, att, kind: str = "nonrobust", groups=None, weights: str | None = None):
        model = att.model
        _check(kind, model)
        self.weights = check_weight_kind(getattr(model, "weight_kind", "analytic") if weights is None else weights)
        self.att, self.kind = att, kind
        est = att.estimators
        obj = est.objective
        s = np.asarray(obj.s, dtype=np.float64)
        self.s = s
        self.frequency = self.weights == "frequency"
        self.n_rows = int(np.count_nonzero(s > 0))
        self.n = float(s.sum()) if self.frequency else self.n_rows
        self.p = obj.pen.size
        if hasattr(model, "dof_adjustment"):       # absorbed fixed-effect levels are parameters too
            self.p += model.dof_adjustment(None if groups is None else np.asarray(groups))
        if self.n <= self.p:
            raise ValueError(f"standard errors need more observations ({self.n:g}) than parameters ({self.p})")
        self.squared = obj.loss.name == "squared"
        self.d1 = np.asarray(obj.loss.derivative(obj.y, est.z))          # l'
        self.d2 = np.asarray(obj.loss.curvature(obj.y, est.z))           # l''
        self.groups = None
        if groups is not None:
            self.groups, self.group_codes, self.n_groups = cluster_codes(groups, s, kind)

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
        """Per row ``m_i`` with ``phi^T A M A phi = sum_i s_i l1_i (x_i^T A phi) m_i``: ``s_i l1_i x_i^T A phi``
        (HC, analytic weights), ``l1_i x_i^T A phi`` (HC, frequency weights), or
        ``u_g(i) = sum_{j in g(i)} s_j l1_j x_j^T A phi`` (cluster)."""
        if self.groups is None:
            return self.d1 * xa if self.frequency else self.s * self.d1 * xa
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
        """``d se / d w_i`` at ``w = 1`` for every training row, where ``w_i`` multiplies the row's
        weight ``s_i`` (rows already at weight 0 get 0). Below l1, l2, l3 are the first three
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
            # phi^T A phi: at fixed theta d/dw_i = -s_i l2_i (x_i^T A phi)^2; in theta,
            # -sum_j s_j l3_j (x_j^T A phi)^2 x_j
            direct = -s * d2 * xa ** 2
            g_theta = -np.asarray(design.rmatvec(s * d3 * xa ** 2))
            var = quad
            if self.squared:
                # sigma^2 = sum s e^2 / (n - p), e = l1: d/dw_i = s_i e_i^2 / (n - p); in theta
                # 2 sum s e x / (n - p) (zero at an unpenalised fit)
                s2 = self._sigma2()
                direct = s2 * direct + quad * s * d1 ** 2 / (self.n - self.p)
                g_theta = s2 * g_theta + quad * 2 * np.asarray(design.rmatvec(s * d1)) / (self.n - self.p)
                var = quad * s2
        else:
            f = self._factor()
            m = self._meat(xa)
            Ma = np.asarray(design.rmatvec(s * d1 * m))                      # M A phi
            xMa = np.asarray(design.matvec(att.curvature.solve(Ma)))         # x_i^T A M A phi
            # V = A M A. Bread: d/dw_i = -2 s_i l2_i (x^T A phi)(x^T A M A phi). Meat: the sum
            # sum_j s_j l1_j (x_j^T A phi) m_j is quadratic in the weights (analytic HC, cluster:
            # 2 s_i l1_i (x_i^T A phi) m_i) or linear (frequency HC: s_i l1_i (x_i^T A phi) m_i).
            # In theta: bread -2 sum s l3 (x^T A phi) (x^T A M A phi) x, meat 2 sum s l2 (x^T A phi) m x.
            order = 1.0 if (self.frequency and self.groups is None) else 2.0
            direct = f * s * (-2 * d2 * xa * xMa + order * d1 * xa * m)
            g_theta = f * np.asarray(design.rmatvec(s * (2 * d2 * xa * m - 2 * d3 * xa * xMa)))
            var = f * float((s * d1 * xa) @ m)
        # theta moves by d theta / d w_i = -A s_i g_i = -IF_i
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


def se_calculator(att, kind: str = "nonrobust", groups=None, weights: str | None = None):
    """The SE calculator of a fit: :class:`SECalculator`, or for two-stage least squares
    :class:`~leaveout.audit.se_iv.IVSECalculator`."""
    if getattr(att.model, "family", None) == "2sls":
        from .se_iv import IVSECalculator
        return IVSECalculator(att, kind, groups, weights)
    return SECalculator(att, kind, groups, weights)


def standard_error(att, phi, kind: str = "nonrobust", groups=None, weights: str | None = None) -> float:
    """``sqrt(phi^T V phi)`` for the covariance ``V`` of ``kind`` (see the module docstring)."""
    return se_calculator(att, kind, groups, weights).se(np.asarray(phi, dtype=np.float64))
