r"""The penalised training objective, written once (``shared/DESIGN.md`` section 1).

In *sum form*, for sample weights ``s`` (default 1), penalty mask ``P`` (the intercept is
never penalised) and offsets ``o``:

.. math::

    L(\theta) = \sum_i s_i\,\ell(y_i, x_i^\top\theta + o_i) + \frac{\lambda_s}{2}\lVert P\theta\rVert^2,
    \qquad \lambda_s = \begin{cases} \lambda & \text{"fixed"} \\ \lambda \sum_i s_i & \text{"per\_sample"} \end{cases}

The "per_sample" convention is ``S`` times the mean-loss objective
``(1/S) sum_i s_i l_i + (lam/2)||P theta||^2``: each sample carries its share ``lam s_i`` of
the penalty and takes it along when removed. **Removing rows is the same objective with
other weights** (:meth:`Objective.without`), so the fit, every retrain and every lockstep
batch of retrains minimise the same object with the same solver.

A batch of ``k`` objectives that differ only in their weights is one :class:`Objective`
with weights of shape (n, k): parameters, linear predictors, values and gradients then
carry a trailing axis of length k.

The multinomial family (:class:`SoftmaxObjective`) has parameters ``theta = vec(B)``, B of
shape (C-1, p), class-major, and linear predictors ``U = A B^T`` of shape (n, C-1).
"""

from __future__ import annotations

import numpy as np

from .._linalg import SINGULAR_HINT
from ..exceptions import SingularHessianError

__all__ = ["Objective", "SoftmaxObjective", "penalty_mask", "make_objective"]

PENALTIES = ("fixed", "per_sample")


def penalty_mask(p: int, fit_intercept: bool, n_blocks: int = 1) -> np.ndarray:
    """Diagonal of ``P^T P``: ones, with each block's intercept (last) entry zeroed."""
    pen = np.ones(p)
    if fit_intercept:
        pen[-1] = 0.0
    return np.tile(pen, n_blocks)


def _coldot(a, b):
    """``sum_i a_i b_i`` along the first axis (a scalar, or one value per column)."""
    return np.einsum("i...,i...->...", a, b)


class Objective:
    """The sum-form objective of a single-response GLM over a design.

    Parameters
    ----------
    design : Design
        The training rows (any backend of :mod:`leaveout.design`).
    loss : loss class of :mod:`leaveout.glm.losses`
    y : per-sample vector of shape (n,)
        Coded labels (0/1, class codes) or responses.
    weights : per-sample vector of shape (n,), or ndarray (n, k) for k objectives at once
    l2 : float
        lambda >= 0.
    penalty : {"fixed", "per_sample"}
    pen : ndarray of shape (n_params,)
        The penalty mask (:func:`penalty_mask`).
    offset : per-sample vector of shape (n,), optional
    scale : float or ndarray of shape (k,), optional
        Denominator of the relative gradient (see :attr:`scale`); computed when needed.

    Attributes
    ----------
    lam : float, or ndarray of shape (k,)
        lambda in sum form, ``lambda_s`` above.
    """

    n_blocks = 1

    def __init__(self, design, loss, y, weights, l2: float, penalty: str, pen: np.ndarray,
                 offset=None, scale=None, column_l1=None):
        self.design, self.loss, self.y, self.s = design, loss, y, weights
        self.l2, self.penalty, self.pen = float(l2), penalty, pen
        self.offset = design.zeros() if offset is None else offset
        self.batch = np.ndim(weights) == 2
        if penalty == "per_sample":
            self.lam = self.l2 * (weights.sum(axis=0) if self.batch else float(weights.sum()))
        else:
            self.lam = np.full(weights.shape[1], self.l2) if self.batch else self.l2
        self._scale = scale
        self._col_l1 = column_l1

    # ------------------------------------------------------------ derived objectives
    def reweighted(self, weights, scale=None) -> "Objective":
        """The same objective with other sample weights (e.g. removed rows at 0)."""
        return type(self)(self.design, self.loss, self.y, weights, self.l2, self.penalty, self.pen,
                          self.offset, scale)

    def _scale_without(self, T, s) -> float:
        """The gradient scale after removing rows T, from this one's (no pass over X)."""
        col = self.column_l1() - np.abs(self.design.dense_rows(T)).T @ self.design.gather(self.s, T)
        return self.gradient_scale(float(np.max(col)), s)

    def without(self, T) -> "Objective":
        """The objective without rows ``T``: their weights set to 0 (X stays in place)."""
        s = self.design.zeroed(self.s, T)
        return self.reweighted(s, self._scale_without(T, s))

    def without_each(self, Ts) -> "Objective":
        """One batch of objectives, column j without the rows ``Ts[j]`` (in-memory vectors)."""
        S = np.repeat(np.asarray(self.s)[:, None], len(Ts), axis=1)
        for j, T in enumerate(Ts):
            S[T, j] = 0.0
        scales = np.array([self._scale_without(T, S[:, j]) for j, T in enumerate(Ts)])
        return self.reweighted(S, scales)

    def column(self, j: int) -> "Objective":
        """Objective ``j`` of a batch, as a single objective."""
        return self.reweighted(self.s[:, j].copy(), float(self.scale[j]))

    # ------------------------------------------------------------ scale and checks
    def column_l1(self) -> np.ndarray:
        """``sum_i s_i |x_ij|`` per column (one pass over X, cached)."""
        if self._col_l1 is None:
            self._col_l1 = self.design.column_l1(self.s)
        return self._col_l1

    def gradient_scale(self, col_l1_max: float, s) -> float:
        """The relative gradient's denominator: the largest column sum ``sum_i s_i |x_ij|``,
        times the weighted mean absolute deviation of y when |l'| is unbounded."""
        if self.loss.bounded_derivative:
            return col_l1_max
        spread = float(s @ np.abs(self.y - (s @ self.y) / s.sum()) / s.sum())
        return col_l1_max * (spread if spread > 0 else 1.0)

    @property
    def scale(self):
        """Denominator of the relative gradient ``max_j |dL/dtheta_j| / scale``."""
        if self._scale is None:
            self._scale = self.gradient_scale(float(np.max(self.column_l1())), self.s)
        return self._scale

    def check(self) -> "Objective":
        """Refuse objectives without a unique finite minimiser that the data can show
        cheaply: no penalty with more parameters than weighted rows; non-finite or all-zero X."""
        n_eff = int(np.count_nonzero(self.s))
        if self.l2 == 0 and self.design.p > n_eff:
            raise SingularHessianError(
                f"with l2=0 and {self.design.p} parameters for {n_eff} samples the Hessian is singular; "
                f"{SINGULAR_HINT}")
        col = self.column_l1()
        if not np.all(np.isfinite(col)):     # a dask X is checked here, in this pass
            raise ValueError("X contains NaN or infinity; remove or impute those entries")
        if self.scale == 0:
            raise ValueError("X is all zeros (with zero sample weights elsewhere); nothing to fit")
        return self

    @property
    def unbounded_if_separable(self) -> bool:
        """True when separable data leave this objective without a finite minimiser."""
        return bool(self.loss.classifier and not self.batch and self.lam == 0)

    # ------------------------------------------------------------ linear predictors
    def linear(self, design, theta):
        """``A theta`` of any design with this parameterisation (no offset)."""
        return design.matvec(theta)

    def linear_t(self, design, R):
        """The adjoint of :meth:`linear`: the gradient in theta of ``sum(R * linear)``."""
        return design.rmatvec(R)

    def z(self, theta):
        """Linear predictors ``A theta + offset`` (no pass over X at theta = 0)."""
        off = np.asarray(self.offset)[:, None] if self.batch else self.offset
        if not np.any(theta):
            return off + (np.zeros(self.s.shape) if self.batch else self.design.zeros())
        return self.design.matvec(theta) + off

    def zdir(self, v):
        """Change of the linear predictors along the parameter direction ``v``."""
        return self.design.matvec(v)

    def keep(self, v):
        """Materialise a per-sample vector where the design keeps them (see Design.keep)."""
        return self.design.keep(v)

    # ------------------------------------------------------------ value, gradient, Hessian
    def _cols(self, cols):
        """Weights, lambda, labels and mask shaped for the columns ``cols`` of a batch."""
        if not self.batch:
            return self.s, self.lam, self.y, self.pen
        return self.s[:, cols], self.lam[cols], self.y[:, None], self.pen[:, None]

    def value_at(self, theta, z, cols=None):
        """``L(theta)`` given ``z = linear predictors at theta`` (batch: one per column)."""
        if not self.batch:
            return float(self.s @ self.loss.value(self.y, z) + 0.5 * self.lam * (self.pen * theta) @ theta)
        s, lam, y, pen = self._cols(cols)
        return _coldot(s, self.loss.value(y, z)) + 0.5 * lam * _coldot(pen * theta, theta)

    def gradient_at(self, theta, z, cols=None):
        s, lam, y, pen = self._cols(cols)
        return self.design.rmatvec(s * self.loss.derivative(y, z)) + lam * pen * theta

    def value_gradient_at(self, theta, z):
        """``(value_at, gradient_at)`` computed in one go (one round trip on a cluster)."""
        r = self.s * self.loss.derivative(self.y, z)
        data, grad = self.design.sum_and_rmatvec(self.s * self.loss.value(self.y, z), r)
        return (float(data + 0.5 * self.lam * (self.pen * theta) @ theta),
                grad + self.lam * self.pen * theta)

    def weights_at(self, z, cols=None):
        """Curvature weights ``s_i l''_i`` (the data part of the Hessian is A^T diag(w) A)."""
        s, _, y, _ = self._cols(cols)
        return s * self.loss.curvature(y, z)

    def hessian_at(self, z) -> np.ndarray:
        """The (p, p) Hessian at linear predictors ``z`` (single objective)."""
        H = self.design.gram(self.weights_at(z))
        H[np.diag_indices_from(H)] += self.lam * self.pen
        return H

    def approx_hessian_at(self, z) -> np.ndarray:
        """The Hessian at ``z`` for a preconditioner: float32 products where X is dense in
        memory (see :meth:`~leaveout.design.memory.InMemoryDesign.gram_approx`)."""
        gram = getattr(self.design, "gram_approx", self.design.gram)
        H = gram(self.weights_at(z))
        H[np.diag_indices_from(H)] += self.lam * self.pen
        return H

    def hessvec(self, w, v, cols=None):
        """Hessian-vector products given the curvature weights ``w`` (batch: per column)."""
        if not self.batch:
            return self.design.wprod(w, v) + self.lam * self.pen * v
        return self.design.rmatvec(w * self.design.matvec(v)) + self.lam[cols] * self.pen[:, None] * v

    def separable(self, z) -> bool:
        """True when every weighted row is classified correctly (binary labels)."""
        return bool(np.all((self.s == 0) | ((2 * self.y - 1) * z > 0)))

    # ------------------------------------------------------------ at a parameter vector
    def value(self, theta) -> float:
        theta = np.asarray(theta, dtype=np.float64)
        return self.value_at(theta, self.z(theta))

    def gradient(self, theta) -> np.ndarray:
        theta = np.asarray(theta, dtype=np.float64)
        return self.gradient_at(theta, self.z(theta))

    def hessian(self, theta) -> np.ndarray:
        return self.hessian_at(self.z(np.asarray(theta, dtype=np.float64)))

    def difference(self, theta0, theta1) -> float:
        """``L(theta1) - L(theta0)``, accurate when the two are close (terms subtracted
        before summing)."""
        theta0 = np.asarray(theta0, dtype=np.float64)
        theta1 = np.asarray(theta1, dtype=np.float64)
        lv = self.loss.value
        data = float(self.s @ (lv(self.y, self.z(theta1)) - lv(self.y, self.z(theta0))))
        return data + 0.5 * self.lam * float((self.pen * (theta1 - theta0)) @ (theta1 + theta0))


class SoftmaxObjective(Objective):
    """The multinomial objective in sum form over ``theta = vec(B)``, B of shape (C-1, p).

    Entries ``a*p .. a*p + p - 1`` of theta are the coefficients of sum-to-zero direction
    ``a`` (intercept last in each block). The "linear predictors" are ``U = A B^T`` of shape
    (n, C-1); the logits are ``U Q^T``. Single objectives only (no batch, no offset).
    """

    def __init__(self, design, loss, y, weights, l2, penalty, pen, offset=None, scale=None, column_l1=None):
        if np.ndim(weights) != 1:
            raise ValueError("the multinomial objective takes one weight vector")
        super().__init__(design, loss, y, weights, l2, penalty, pen, None, scale, column_l1)
        self.n_blocks = loss.n_classes - 1

    def _blocks(self, theta):
        return np.asarray(theta).reshape(self.n_blocks, -1)

    def linear(self, design, theta):
        return design.matvec(self._blocks(theta).T)

    def linear_t(self, design, R):
        return design.rmatvec(R).T.ravel()

    def z(self, theta):
        return self.linear(self.design, theta)

    zdir = z

    def value_at(self, theta, z, cols=None):
        return float(self.s @ self.loss.value(self.y, z) + 0.5 * self.lam * (self.pen * theta) @ theta)

    def gradient_at(self, theta, z, cols=None):
        R = self.s[:, None] * self.loss.derivative(self.y, z)
        return self.linear_t(self.design, R) + self.lam * self.pen * theta

    def value_gradient_at(self, theta, z):
        return self.value_at(theta, z), self.gradient_at(theta, z)

    def separable(self, z) -> bool:
        logits = self.loss.logits(z)
        rows = np.arange(logits.shape[0])
        own = logits[rows, self.y].copy()
        logits[rows, self.y] = -np.inf
        return bool(np.all((self.s == 0) | (own > logits.max(axis=1))))

    def weights_at(self, z, cols=None):
        """Curvature blocks ``s_i K_i``, shape (n, C-1, C-1)."""
        return self.s[:, None, None] * self.loss.curvature(self.y, z)

    #: no float32 shortcut for the block Hessian (the solver then forms the exact one)
    approx_hessian_at = None

    def hessian_at(self, z) -> np.ndarray:
        """The (m p, m p) Hessian: block (a, b) is ``A^T diag(s_i K_i[a, b]) A``."""
        K = self.weights_at(z)
        p, m = self.design.p, self.n_blocks
        H = np.empty((m * p, m * p))
        for a in range(m):
            for b in range(a, m):
                G = self.design.weighted_gram(np.ascontiguousarray(K[:, a, b]))
                H[a * p:(a + 1) * p, b * p:(b + 1) * p] = G
                if b != a:
                    H[b * p:(b + 1) * p, a * p:(a + 1) * p] = G.T
        H[np.diag_indices_from(H)] += self.lam * self.pen
        return H

    def hessvec(self, K, v, cols=None):
        Zv = self.zdir(v)
        return self.linear_t(self.design, np.einsum("nab,nb->na", K, Zv)) + self.lam * self.pen * v

    def structured_solver(self, z):
        """An exact ``H^{-1}`` at a point where every row has the same class probabilities
        (``theta = 0``, where a fit starts), or None elsewhere.

        There ``s_i K_i = s_i K_0``, so ``H(B) = K_0 B G + lam B D`` for ``theta = vec(B)``,
        B of shape (m, p), ``G = A^T diag(s) A`` and ``D`` the penalty of one block. With
        ``K_0 = V diag(mu) V^T`` the rows of ``C = V^T B`` decouple:
        ``C_a (mu_a G + lam D) = (V^T R)_a``. One Gram matrix and m (p, p) factors replace
        the m (m + 1) / 2 Gram matrices and the (m p, m p) factor of :meth:`hessian_at`.
        """
        from .._linalg import cho_solve, cholesky
        C = self.loss.curvature(self.y, z)
        m, p = self.n_blocks, self.design.p
        pen = self.pen.reshape(m, p)
        same = np.max(np.abs(C - C[0])) <= 1e-13 * np.max(np.abs(C[0]))   # rounding of equal rows
        if not (same and np.all(pen == pen[0]) and np.ndim(self.lam) == 0):
            return None
        mu, V = np.linalg.eigh(C[0])
        G = self.design.weighted_gram(np.asarray(self.s, dtype=np.float64))
        D = self.lam * pen[0]
        try:
            factors = []
            for a in range(m):
                Ha = mu[a] * G
                Ha[np.diag_indices_from(Ha)] += D
                factors.append(cholesky(Ha))
        except SingularHessianError:
            return None

        def solve(r):
            Rr = V.T @ np.asarray(r).reshape(m, p)
            return (V @ np.stack([cho_solve(F, Rr[a]) for a, F in enumerate(factors)])).ravel()
        return solve

    def without_each(self, Ts):
        raise ValueError("lockstep refits are not available for the multinomial family")


def make_objective(design, loss, y, weights, l2, penalty, fit_intercept, offset=None) -> Objective:
    """The objective of a GLM family: :class:`SoftmaxObjective` for a softmax loss."""
    if getattr(loss, "n_classes", None) is not None:
        pen = penalty_mask(design.p, fit_intercept, loss.n_classes - 1)
        return SoftmaxObjective(design, loss, y, weights, l2, penalty, pen)
    return Objective(design, loss, y, weights, l2, penalty, penalty_mask(design.p, fit_intercept), offset)
