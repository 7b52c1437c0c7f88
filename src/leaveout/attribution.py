r"""Leave-T-out attribution for a fitted :class:`~leaveout.GLM`: IF, RIF, NS and retrain.

Everything is in the sum form of the objective (see :mod:`leaveout.model`). With
per-sample gradient and Hessian

.. math::

    g_i = r_i x_i + s_i b, \qquad H_i = w_i x_i x_i^\top + c_i M,

where :math:`r_i = s_i \ell'_i`, :math:`w_i = s_i \ell''_i`, :math:`M = P^\top P` and, under the
"per_sample" penalty, :math:`b = \lambda P\hat\theta`, :math:`c_i = \lambda s_i` (both zero under
"fixed"), the estimators of :math:`\Delta\theta_T = \hat\theta_{-T} - \hat\theta` are

* IF:  :math:`\sum_{i\in T} H^{-1} g_i`
* RIF: :math:`\sum_{i\in T} H_{-i}^{-1} g_i`, :math:`H_{-i} = H - H_i`
* NS:  :math:`H_{-T}^{-1}\sum_{i\in T} g_i`, :math:`H_{-T} = H - \sum_{i\in T} H_i`

For RIF, Sherman-Morrison on :math:`H'_i = H - c_i M` gives
:math:`\mathrm{RIF}_i = \alpha_i H'^{-1}_i x_i + s_i t_i` with :math:`t_i = H'^{-1}_i b`,
:math:`a_i = w_i x_i^\top H'^{-1}_i x_i` and
:math:`\alpha_i = (r_i + s_i w_i x_i^\top t_i) / (1 - a_i)`; under "fixed" this is
:math:`\mathrm{IF}_i / (1 - h_i)` with the leverage :math:`h_i = w_i x_i^\top H^{-1} x_i`.

References
----------
Rescaled influence functions, section 1.1 (``shared/paper``); Pregibon (1981) for the
one-step leave-one-out of logistic regression.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np
import scipy.linalg as la

from . import _validation as v
from ._factor import make_factor
from ._newton import cho_solve, cholesky
from .exceptions import ConvergenceError, LeverageError, SingularHessianError
from .metrics import Metric

__all__ = ["Attribution"]

METHODS = ("if", "rif", "ns", "retrain")
KINDS = ("removal", "linear")


@dataclass(frozen=True)
class SketchedLeverage:
    """Result of :meth:`Attribution.leverage_sketch`: with probability at least
    ``1 - delta``, ``lower * h_i <= values[i] <= upper * h_i`` for every sample i."""

    values: np.ndarray
    lower: float
    upper: float
    n_projections: int
    delta: float


class _DirectSystem:
    """``H_{-T}^{-1}`` from its own Cholesky factor (used when |T| >= p)."""

    base = None

    def __init__(self, L):
        self.L = L

    def compact(self):
        pass

    def apply(self, Y):
        return cho_solve(self.L, Y)


class _WoodburySystem:
    """``(B - U U^T)^{-1}`` from a factor of ``B`` and the |T| x |T| capacitance matrix."""

    def __init__(self, base, U):
        self.base = base
        self.half = hasattr(base, "half")
        self.U = None if self.half else U         # only the non-half form needs U again
        k = U.shape[1]
        if self.half:
            self.V = base.half(U)                 # L^{-1} U
            K = np.eye(k) - self.V.T @ self.V
        else:
            self.V = base.solve(U)                # B^{-1} U
            K = np.eye(k) - U.T @ self.V
        try:
            self.Lk = la.cholesky((K + K.T) / 2, lower=True, check_finite=False)
        except la.LinAlgError:
            raise SingularHessianError(
                "removing T leaves a singular Hessian (the remaining samples do not determine "
                "the parameters); add an L2 penalty") from None

    def correct_half(self, Yh):
        """``(I + V K^{-1} V^T) Yh`` in the half-solved space."""
        if self.V.dtype == np.float32:   # compacted: a preconditioner only
            y32 = Yh.astype(np.float32)
            z = la.cho_solve((self.Lk, True), (self.V.T @ y32).astype(np.float64), check_finite=False)
            return Yh + self.V @ z.astype(np.float32)
        return Yh + self.V @ la.cho_solve((self.Lk, True), self.V.T @ Yh, check_finite=False)

    def compact(self):
        """Keep ``V`` in float32 from now on: half the memory, for use as a preconditioner
        only (``apply`` is then exact to about 1e-7 relative, not to rounding)."""
        if self.half:
            self.V = self.V.astype(np.float32)

    def apply(self, Y):
        if self.half:
            return self.base.half_t(self.correct_half(self.base.half(Y)))
        x = self.base.solve(Y)
        return x + self.V @ la.cho_solve((self.Lk, True), self.U.T @ x, check_finite=False)


def _apply_many(systems, R):
    """Column j of the result is ``systems[j].apply(R[:, j])``; columns whose systems share a
    Cholesky base go through its triangular solves together."""
    out = np.empty_like(R)
    groups = {}
    for j, sysj in enumerate(systems):
        key = id(sysj.base) if isinstance(sysj, _WoodburySystem) and sysj.half else None
        groups.setdefault(key, []).append(j)
    for key, cols in groups.items():
        if key is None:
            for j in cols:
                out[:, j] = systems[j].apply(R[:, j])
            continue
        base = systems[cols[0]].base
        Yh = base.half(R[:, cols])
        for c, j in enumerate(cols):
            Yh[:, c] = systems[j].correct_half(Yh[:, c])
        out[:, cols] = base.half_t(Yh)
    return out


class Attribution:
    """Predict and measure the effect of removing training samples from a fitted GLM.

    The Hessian of the training objective at the fit is factored once (Cholesky) on
    construction; leverages, per-sample influences and metric scores are derived from it.

    Parameters
    ----------
    model : GLM
        A fitted model (it keeps a reference to its training rows).
    form : {"auto", "primal", "dual"}, default="auto"
        ``"primal"`` factors the (p, p) Hessian; ``"dual"`` the (n, n) kernel
        ``lam I + W^{1/2} X X^T W^{1/2}`` (exact too, cheaper when p > n); ``"auto"`` picks
        the dual form when there are more parameters than samples.

    Attributes
    ----------
    model : GLM
    theta : ndarray of shape (n_params,)
        Fitted parameters, intercept last.
    hessian : ndarray of shape (n_params, n_params)
        Hessian of the sum-form objective at ``theta`` (a fresh copy on each access).
    """

    #: whether Newton-step bases under "per_sample" come from one shared eigendecomposition
    _eigen_shifts = True

    def __new__(cls, model=None, form: str = "auto"):
        if cls is Attribution and getattr(model, "family", None) == "multinomial":
            from ._multinomial import MultinomialAttribution
            return super().__new__(MultinomialAttribution)
        return super().__new__(cls)

    def _attach(self, model):
        """Keep the fitted model, its design and parameters; warn if it did not converge."""
        model._check_fitted()
        if not model.converged_:
            import warnings
            from .exceptions import ConvergenceWarning
            warnings.warn("the model did not converge; attributions are taken around an inexact optimum",
                          ConvergenceWarning, stacklevel=3)
        self.model = model
        self._design = model._design
        self.theta = model.theta_
        self._z = model._z(self.theta)
        return self._design, self._z

    def __init__(self, model, form: str = "auto"):
        d, z = self._attach(model)
        loss, y, s = model._loss, model._y, model._s
        self._s = s
        self._r = d.keep(s * loss.derivative(y, z))          # g_i = r_i x_i + s_i b
        self._w = d.keep(s * loss.curvature(y, z))           # H_i = w_i x_i x_i^T + c_i M
        per_sample = model.penalty == "per_sample"
        self._per_sample = per_sample and model.l2 > 0
        self._b = model.l2 * model._pen * self.theta if self._per_sample else np.zeros(d.p)
        self._c = model.l2 * s if self._per_sample else d.zeros()
        self._factor = make_factor(d, self._w, model._lam, model._pen, form)
        self._shifted = {}     # c -> (factor of H - c M, t = (H - cM)^-1 b)
        self._ns_shift = {}    # C -> factor of H - C M, for the last NS penalty shares
        self._ns_shift_keep = 1   # how many of them to keep (one per worker thread)
        self._eig_shifts = None   # primal form: eigendecomposition for every NS penalty share
        self._ns_cache = None  # (T bytes, Woodbury system) of the last removal set
        self._lock = threading.Lock()   # the caches are shared by worker threads

    def __getstate__(self):
        # picklable (e.g. sent to dask workers): the lock is per process
        state = self.__dict__.copy()
        state.pop("_lock", None)
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._lock = threading.Lock()

    @property
    def hessian(self) -> np.ndarray:
        return self._factor.matrix()

    @property
    def form(self) -> str:
        """Which factorisation is in use: "primal" (p x p) or "dual" (n x n)."""
        return self._factor.kind

    def _hess_quad(self, D):
        """``d^T H d`` for each row d of ``D`` (k, p), without forming H."""
        D2 = np.atleast_2d(D)
        XD = self._design.matvec(D2.T)
        out = self._w @ (XD * XD) + self.model._lam * np.einsum("ij,ij->i", D2 * self.model._pen, D2)
        return out if np.ndim(D) > 1 else float(out[0])

    # ------------------------------------------------------------ basic pieces
    @property
    def n_samples(self) -> int:
        return self._design.n

    def _solve(self, B):
        return self._factor.solve(B)

    def _shift(self, c: float):
        """Solver of ``H - c M`` (one sample's penalty share taken out) and ``(H - c M)^-1 b``.

        Under the primal form this refines on the full factor (no second p x p factor is
        kept); the leverages of all samples use a transient explicit factor.
        """
        if c == 0.0:
            return self._factor, np.zeros_like(self._b)
        with self._lock:
            hit = self._shifted.get(c)
        if hit is None:
            Fc = self._factor.refined(c)
            hit = (Fc, Fc.solve(self._b))
            with self._lock:
                self._shifted[c] = hit
        return hit

    @property
    def leverage(self) -> np.ndarray:
        """Leverages ``h_i = w_i x_i^T H^{-1} x_i`` of shape (n_samples,), in [0, 1)."""
        if not hasattr(self, "_leverage"):
            self._leverage = self._design.keep(self._factor.leverage())
        return self._leverage

    def _groups(self, idx):
        """Split sample indices by their penalty share ``c_i`` (one group under "fixed")."""
        c = self._design.gather(self._c, idx)
        for cv in np.unique(c):
            yield float(cv), idx[c == cv]

    def _shares(self):
        """The distinct penalty shares ``c_i`` (``[0.0]`` under "fixed")."""
        if not self._per_sample:
            return [0.0]
        if not hasattr(self, "_share_values"):
            c = self._c
            vals = c.map_blocks(np.unique).compute() if hasattr(c, "compute") else c
            self._share_values = [float(x) for x in np.unique(vals)]
        return self._share_values

    def _by_share(self, part):
        """Combine per-share full-length vectors ``part(c)``: entry i from ``part(c_i)``."""
        shares = self._shares()
        out = part(shares[0])
        for cv in shares[1:]:
            out = np.where(self._c == cv, part(cv), out)
        return out

    def _check_leverage(self, a):
        """Raise LeverageError naming the first sample whose leverage is >= 1."""
        if bool((a >= 1.0 - 1e-12).any()):
            i = int(np.argmax(a >= 1.0 - 1e-12))
            raise LeverageError(
                f"sample {i} has leverage h >= 1 (h = {float(a[i]):.15g}): removing it alone leaves "
                "a singular Hessian, so its RIF is infinite; add an L2 penalty")

    def _in_memory(self, what):
        if type(self._design).__name__ == "DaskDesign":
            raise ValueError(f"{what} builds an (n_samples, n_params) array in memory, which a dask X "
                             "does not allow; use scores(metric) for per-sample numbers")

    def _rif_leverage_of(self, idx) -> np.ndarray:
        """``a_i = w_i x_i^T (H - c_i M)^{-1} x_i`` for sample indices ``idx``."""
        cached = "_rif_lev" in self.__dict__ or (not self._per_sample and "_leverage" in self.__dict__)
        if idx.size == self.n_samples or cached or idx.size > 64:
            return self._design.gather(self.rif_leverage, idx)
        a = np.empty(idx.size)
        for cv, sub in self._groups(idx):
            pos = np.searchsorted(idx, sub)
            a[pos] = self._shift(cv)[0].leverage(sub)
        return a

    def leverage_sketch(self, eps: float = 0.1, delta: float = 0.01, seed=None) -> "SketchedLeverage":
        """Leverages estimated by a random projection, with a stated error bound.

        The Johnson-Lindenstrauss step of Drineas et al. (2012): with the Cholesky factor
        ``H = L L^T`` of the fit (the role of their ``R``) and a Gaussian ``G`` of shape
        (r, p), ``h_i = w_i ||L^{-1} x_i||^2`` is estimated by
        ``w_i ||G L^{-1} x_i||^2 / r``, an unbiased estimate. It costs one triangular solve
        with r right-hand sides and one pass over X with r columns, ``O(p^2 r + n p r)``
        instead of ``O(n p^2)``: worth it when p is large.

        Bound: each ``r * estimate_i / h_i`` is chi-squared with r degrees of freedom, so by
        the Laurent-Massart tail bounds, with probability at least ``1 - delta``, every
        estimate lies in ``[lower * h_i, upper * h_i]`` with
        ``lower = 1 - 2 sqrt(x / r)``, ``upper = 1 + 2 sqrt(x / r) + 2 x / r`` and
        ``x = log(2 n / delta)``. r is the smallest that makes both deviations at most
        ``eps``. When that r is at least p the exact leverages are cheaper, and they are
        returned instead (``lower = upper = 1``, ``n_projections = 0``).

        Parameters
        ----------
        eps : float in (0, 1), default=0.1
            Target relative error.
        delta : float in (0, 1), default=0.01
            Allowed probability that some estimate falls outside its bound.
        seed : int or numpy Generator, optional

        Returns
        -------
        SketchedLeverage
            ``values`` (n_samples,), ``lower``, ``upper``, ``n_projections``, ``delta``.

        References
        ----------
        P. Drineas, M. Magdon-Ismail, M. W. Mahoney, D. P. Woodruff, "Fast approximation of
        matrix coherence and statistical leverage", JMLR 13 (2012); B. Laurent, P. Massart,
        "Adaptive estimation of a quadratic functional by model selection", Ann. Statist.
        28 (2000), lemma 1.
        """
        if not (isinstance(eps, (int, float)) and 0 < eps < 1):
            raise ValueError(f"eps must be a number in (0, 1), got {eps!r}")
        if not (isinstance(delta, (int, float)) and 0 < delta < 1):
            raise ValueError(f"delta must be a number in (0, 1), got {delta!r}")
        if not hasattr(self._factor, "half_t") or type(self).__name__ != "Attribution":
            raise ValueError("leverage_sketch needs the primal (Cholesky) form of a binary or "
                             "single-response GLM; use form='primal' or the exact leverage")
        n, p = self._design.n, self._design.p
        x = float(np.log(2 * n / delta))
        t = (np.sqrt(1.0 + 2.0 * eps) - 1.0) / 2.0      # 2t + 2t^2 = eps
        r = int(np.ceil(x / t ** 2))
        if r >= p:
            return SketchedLeverage(self.leverage.copy(), 1.0, 1.0, 0, float(delta))
        rng = np.random.default_rng(seed)
        G = rng.standard_normal((p, r))
        Z = self._factor.half_t(G)                       # L^{-T} G^T: (G L^{-1} x)^T = x^T Z
        est = self._design.keep(self._w * self._design.row_sq_norms(Z) / r)
        q = np.sqrt(x / r)
        return SketchedLeverage(est, 1.0 - 2.0 * q, 1.0 + 2.0 * q + 2.0 * q * q, r, float(delta))

    @property
    def rif_leverage(self) -> np.ndarray:
        """Leverages that enter RIF, ``a_i = w_i x_i^T (H - c_i M)^{-1} x_i``, shape (n_samples,).

        Equal to :attr:`leverage` under the "fixed" penalty; under "per_sample" the removed
        sample's penalty share is taken out of the Hessian first.
        """
        if not self._per_sample:
            return self.leverage
        if not hasattr(self, "_rif_lev"):
            self._rif_lev = self._design.keep(self._by_share(lambda cv: self._shift(cv)[0].leverage()))
        return self._rif_lev

    def _rif_coef(self, idx) -> np.ndarray:
        """Per-sample ``alpha_i`` (module docstring) for sorted indices ``idx``; checks h < 1."""
        idx = np.asarray(idx)
        a = self._rif_leverage_of(idx)
        bad = np.flatnonzero(a >= 1.0 - 1e-12)
        if bad.size:
            raise LeverageError(
                f"sample {int(idx[bad[0]])} has leverage h >= 1 (h = {a[bad[0]]:.15g}): removing it "
                "alone leaves a singular Hessian, so its RIF is infinite; add an L2 penalty")
        num = self._design.gather(self._r, idx).copy()
        if self._per_sample:
            for cv, sub in self._groups(idx):
                pos = np.searchsorted(idx, sub)
                sw = self._design.gather(self._s, sub) * self._design.gather(self._w, sub)
                num[pos] += sw * self._rows_dot(sub, self._shift(cv)[1])
        return num / (1.0 - a)

    # -------------------------------------------------- per-sample estimators
    def _spread(self, rows, coef):
        """The data part of each row's gradient direction, ``coef_i x_i``: shape (k, p)."""
        return coef[:, None] * rows

    def _spread_sum(self, rows, coef):
        """``sum_i coef_i x_i`` (the sum of :meth:`_spread`'s rows, without forming them)."""
        return rows.T @ coef

    def _row_chunks(self, idx):
        step = max(1, (1 << 20) // self.theta.size)
        for lo in range(0, idx.size, step):
            yield idx[lo:lo + step]

    def influence(self) -> np.ndarray:
        """IF rows: ``Delta theta`` of removing each sample alone, shape (n_samples, n_params)."""
        self._in_memory("influence()")
        out = np.empty((self.n_samples, self.theta.size))
        Hb = self._solve(self._b)
        for part in self._row_chunks(np.arange(self.n_samples)):
            G = self._spread(self._design.dense_rows(part), self._r[part])
            out[part] = self._solve(G.T).T + self._s[part, None] * Hb
        return out

    def rescaled_influence(self) -> np.ndarray:
        """RIF rows: ``Delta theta`` of removing each sample alone, shape (n_samples, n_params)."""
        self._in_memory("rescaled_influence()")
        idx = np.arange(self.n_samples)
        alpha = self._rif_coef(idx)
        out = np.empty((self.n_samples, self.theta.size))
        for cv, sub in self._groups(idx):
            Fc, t = self._shift(cv)
            for part in self._row_chunks(sub):
                G = self._spread(self._design.dense_rows(part), alpha[part])
                out[part] = Fc.solve(G.T).T + self._s[part, None] * t
        return out

    def scores(self, metric: Metric, method: str = "rif") -> np.ndarray:
        """Linear effect on ``metric`` of removing each sample alone, shape (n_samples,).

        ``<grad f(theta), Delta theta_i>`` with ``Delta theta_i`` from IF or RIF; for a metric
        whose gradient vanishes at the fit (:class:`~leaveout.metrics.SelfLoss`) the
        quadratic term ``Delta theta_i^T H Delta theta_i / 2``. Costs one solve and one pass
        over X after the factorisation (plus the leverages for RIF).
        """
        v.check_choice(method, "method", ("if", "rif"))
        if metric.quadratic:
            return self._quadratic_scores(method)
        phi = np.asarray(metric.gradient(self.model, self.theta), dtype=np.float64)
        return self._if_scores(phi) if method == "if" else self._rif_scores(phi)

    def _if_scores(self, phi):
        """``<phi, IF_i>`` for every sample."""
        q = self._solve(phi)
        return self._r * self._design.matvec(q) + self._s * float(self._b @ q)

    def _rif_scores(self, phi):
        """``<phi, RIF_i>`` for every sample."""
        a = self.rif_leverage
        self._check_leverage(a)

        def part(cv):
            Fc, t = self._shift(cv)
            q = Fc.solve(phi)
            if not self._per_sample:
                return self._r / (1.0 - a) * self._design.matvec(q)
            XQ = self._design.matvec(np.column_stack([q, t]))      # one pass for both
            num = self._r + self._s * self._w * XQ[:, 1]
            return num / (1.0 - a) * XQ[:, 0] + self._s * float(phi @ t)

        return self._by_share(part)

    def _rows_dot(self, idx, q):
        """``x_i^T q`` for i in ``idx`` (one pass over X when idx is every row)."""
        if idx.size == self.n_samples:
            return self._design.matvec(q)
        return self._design.dense_rows(idx) @ q

    def _quadratic_scores(self, method):
        rows = self.influence() if method == "if" else self.rescaled_influence()
        return 0.5 * self._hess_quad(rows)

    # ------------------------------------------------------ group estimators
    def _check_T(self, T):
        return v.check_indices(T, self.n_samples, "T")

    def _group_gradient(self, T):
        """``sum_{i in T} g_i``."""
        d = self._design
        return self._spread_sum(d.dense_rows(T), d.gather(self._r, T)) + d.gather(self._s, T).sum() * self._b

    def delta(self, T, method: str = "rif") -> np.ndarray:
        """Estimated (or, for ``"retrain"``, exact) ``theta_{-T} - theta``, shape (n_params,).

        Parameters
        ----------
        T : array-like of int or boolean mask
            Training rows to remove.
        method : {"if", "rif", "ns", "retrain"}
        """
        v.check_choice(method, "method", METHODS)
        T = self._check_T(T)
        if method == "if":
            return self._solve(self._group_gradient(T))
        if method == "rif":
            return self._rif_delta(T)
        if method == "ns":
            return self._newton_step(T)
        refit = self.retrain(T)
        if not refit.converged_:
            raise ConvergenceError(
                f"the retrain without {T.size} samples did not converge (relative gradient "
                f"{refit.grad_norm_:.2e}); it is not a ground truth")
        return refit.theta_ - self.theta

    def _rif_delta(self, T):
        """``sum_{i in T} RIF_i``."""
        alpha = self._rif_coef(T)
        out = np.zeros(self.theta.size)
        for cv, sub in self._groups(T):
            Fc, t = self._shift(cv)
            pos = np.searchsorted(T, sub)
            rows = self._design.dense_rows(sub)
            out += Fc.solve(self._spread_sum(rows, alpha[pos])) + self._design.gather(self._s, sub).sum() * t
        return out

    def _without(self, T):
        """The sample weights with the rows T set to zero (a new vector)."""
        s = self.model._s
        if hasattr(s, "compute"):
            mask = np.ones(self.n_samples)
            mask[T] = 0.0
            return self._design.keep(s * self._design.vector(mask))
        s = s.copy()
        s[T] = 0.0
        return s

    def _check_classes_left(self, s):
        """Refuse a refit whose remaining rows cannot determine the model."""
        m = self.model
        if m.family == "logistic":
            kept = s > 0
            if not (bool((kept & (m._y == 1)).any()) and bool((kept & (m._y == 0)).any())):
                raise ValueError("T removes every sample of one class; the refit is undefined")

    def _ns_base(self, C: float):
        """Factor of ``B = H - C M`` (``C`` = the penalty share of T); the last one is kept."""
        if C == 0.0:
            return self._factor
        if self._eigen_shifts and hasattr(self._factor, "shifts"):
            # primal form: one eigendecomposition serves every penalty share (no factor per C)
            with self._lock:
                if self._eig_shifts is None:
                    self._eig_shifts = self._factor.shifts()
            return self._eig_shifts.factor(C)
        with self._lock:
            hit = self._ns_shift.get(C)
            if hit is not None:
                return hit
            # drop the oldest entries first (a factor still in use stays alive with its user)
            while len(self._ns_shift) >= self._ns_shift_keep:
                self._ns_shift.pop(next(iter(self._ns_shift)))
            factor = self._factor.shifted(C)    # under the lock: threads share one factor per C
            self._ns_shift[C] = factor
        return factor

    def _prepare_shifts(self):
        """Build the shared eigendecomposition for Newton steps now (per_sample, primal)."""
        if self._per_sample and self._eigen_shifts and hasattr(self._factor, "shifts"):
            self._ns_base(float(self._c.min()) or 1e-300)

    def _ns_system(self, T, cache=True):
        """The leave-T-out Hessian at theta, ``H_{-T} = B - U U^T`` with ``B = H - C_T M``,
        prepared for Woodbury: returns ``(G, system)`` with ``system.apply(Y) = H_{-T}^{-1} Y``.

        With the Cholesky factor ``B = L L^T`` and ``V = L^{-1} U`` (one triangular solve
        with |T| right-hand sides), ``H_{-T}^{-1} = L^{-T} (I + V (I - V^T V)^{-1} V^T) L^{-1}``.
        The last system is cached: a retrain right after ``delta(T, "ns")`` reuses it as
        its preconditioner.
        """
        key = T.tobytes()
        with self._lock:
            hit = self._ns_cache
        if cache and hit is not None and hit[0] == key:
            return hit[1]
        G = self._group_gradient(T)
        U = self._removed_factor(T)
        C = float(self._design.gather(self._c, T).sum())
        if self._direct_ratio * U.shape[1] >= U.shape[0] and self.form == "primal":
            Hm = self.hessian - U @ U.T
            Hm[np.diag_indices_from(Hm)] -= C * self.model._pen
            out = (G, _DirectSystem(cholesky(Hm, "leave-T-out Hessian")))
        else:
            out = (G, _WoodburySystem(self._ns_base(C), U))
        if cache:
            with self._lock:
                self._ns_cache = (key, out)
        return out

    #: factor H_{-T} directly once the Woodbury block is this fraction of H's size
    _direct_ratio = 1

    def _removed_factor(self, T):
        """``U`` with ``U U^T`` = the data part of ``sum_{i in T} H_i``: columns sqrt(w_i) x_i."""
        X_T = self._design.dense_rows(T)
        return (X_T * np.sqrt(self._design.gather(self._w, T))[:, None]).T      # (p, k)

    def _newton_step(self, T):
        """``H_{-T}^{-1} sum_{i in T} g_i`` by Woodbury on the |T| x |T| block."""
        G, system = self._ns_system(T)
        return system.apply(G)

    def retrain(self, T, tol=None, max_iter=None, init=None):
        """Exact refit without rows ``T``, warm-started from the Newton-step estimate.

        The removed rows get sample weight 0 (the same objective as dropping them, without
        copying X); the Newton systems are preconditioned by the leave-T-out Hessian at the
        full-data fit (Woodbury on the factor already computed), so a retrain costs a few
        passes over X and no new factorisation unless that preconditioner goes stale.

        Returns a fitted :class:`~leaveout.GLM` (same settings) whose training rows are this
        model's, with weight 0 on ``T``. Check its ``converged_``: an unconverged refit emits
        a ConvergenceWarning, and :meth:`delta` / :meth:`effect` refuse to use it.
        """
        from .model import GLM
        T = self._check_T(T)
        m = self.model
        s = self._without(T)
        self._check_classes_left(s)
        try:
            G, system = self._ns_system(T)
            precond = system.apply
            if init is None:
                init = self.theta + precond(G)
        except SingularHessianError:
            precond = self._factor.solve
            init = self.theta if init is None else init
        refit = GLM(family=m.family, l2=m.l2, penalty=m.penalty, fit_intercept=m.fit_intercept,
                    tol=m.tol if tol is None else tol, max_iter=m.max_iter if max_iter is None else max_iter)
        if hasattr(m, "classes_"):
            refit.classes_ = m.classes_
        refit.n_features_in_ = m.n_features_in_
        # the gradient scale without T, from the full one (no pass over X)
        scale_cols = m._column_l1() - np.abs(self._design.dense_rows(T)).T @ self._design.gather(m._s, T)
        refit._check_params()
        scale = refit._gradient_scale(float(np.max(scale_cols)), m._y, s)
        refit._fit_design(self._design, m._y, s, init=init, precond=precond, scale=scale, offset=m._offset)
        return refit

    def retrain_many(self, Ts, tol=None, max_iter=None, systems=None):
        """Exact refits for several removal sets at once; same results as :meth:`retrain`.

        The refits run in lockstep: every pass over X serves all of them (matrix-matrix
        instead of matrix-vector products), each preconditioned by its own leave-T-out
        Hessian at the full fit. A refit that does not converge this way is finished by
        :meth:`retrain`, which may factor a fresh Hessian.

        Parameters
        ----------
        Ts : sequence of array-like of int
            Removal sets.
        systems : list, optional
            ``self._ns_system(T)`` for each set, when the caller already has them.

        Returns
        -------
        list of GLM
        """
        from ._newton import newton_solve_batch
        from .model import GLM
        Ts = [self._check_T(T) for T in Ts]
        if self._design.A is None and type(self._design).__name__ == "DaskDesign":
            return [self.retrain(T, tol=tol, max_iter=max_iter) for T in Ts]   # one set at a time
        m = self.model
        tol = m.tol if tol is None else tol
        max_iter = m.max_iter if max_iter is None else max_iter
        k = len(Ts)
        if k == 0:
            return []
        S = np.repeat(m._s[:, None], k, axis=1)
        given = systems
        systems, Theta0, scales = [], np.empty((self._design.p, k)), np.empty(k)
        col_l1 = m._column_l1()
        for j, T in enumerate(Ts):
            S[T, j] = 0.0
            self._check_classes_left(S[:, j])
            G, system = given[j] if given is not None else self._ns_system(T)
            systems.append(system)
            Theta0[:, j] = self.theta + system.apply(G)
            scales[j] = m._gradient_scale(float(np.max(col_l1 - np.abs(self._design.dense_rows(T)).T @ m._s[T])),
                                          m._y, S[:, j])
        lams = m.l2 * S.sum(axis=0) if m.penalty == "per_sample" else np.full(k, m._lam)

        def preconds(R, cols):
            return _apply_many([systems[c] for c in cols], R)

        Theta, conv, n_it, rel = newton_solve_batch(
            self._design, m._y, S, m._loss, lams, m._pen, Theta0, scales, tol, max_iter, preconds,
            offset=m._offset)
        out = []
        for j, T in enumerate(Ts):
            if not conv[j]:
                out.append(self.retrain(T, tol=tol, max_iter=max_iter, init=Theta[:, j]))
                continue
            refit = GLM(family=m.family, l2=m.l2, penalty=m.penalty, fit_intercept=m.fit_intercept,
                        tol=tol, max_iter=max_iter)
            if hasattr(m, "classes_"):
                refit.classes_ = m.classes_
            refit.n_features_in_ = m.n_features_in_
            refit._setup(self._design, m._y, S[:, j].copy(), scale=float(scales[j]), offset=m._offset)
            refit._finish(Theta[:, j], True, n_it[j], rel[j])
            out.append(refit)
        return out

    def effect(self, T, metric: Metric, method: str = "rif", kind: str = "removal") -> float:
        """Effect on ``metric`` of removing ``T``, as predicted by ``method`` (or measured).

        ``kind="removal"``: ``f(theta + Delta theta) - f(theta)``; ``kind="linear"``:
        ``<grad f(theta), Delta theta>`` (``Delta theta^T H Delta theta / 2`` for SelfLoss).
        Positive means f goes up when T is removed.
        """
        v.check_choice(kind, "kind", KINDS)
        dtheta = self.delta(T, method)
        return self.effect_of(dtheta, metric, kind)

    def effect_of(self, dtheta, metric: Metric, kind: str = "removal") -> float:
        """Effect on ``metric`` of moving the parameters by ``dtheta``."""
        v.check_choice(kind, "kind", KINDS)
        if kind == "removal":
            return float(metric.difference(self.model, self.theta, self.theta + dtheta))
        if metric.quadratic:
            return float(0.5 * self._hess_quad(dtheta))
        return float(metric.gradient(self.model, self.theta) @ dtheta)

    def effects_of(self, deltas: dict, metrics: dict, XD=None) -> dict:
        """Removal and linear effects of several parameter changes on several metrics.

        Equivalent to calling :meth:`effect_of` for every pair, but the training-objective
        metric (SelfLoss) is evaluated for all changes with one pass over X.

        ``XD``, optional: ``X @ column_stack(deltas.values())`` when the caller has it.

        Returns ``{metric name: {delta name: (removal, linear)}}``.
        """
        from .metrics import SelfLoss
        names = list(deltas)
        out = {}
        XD = None
        for mname, metric in metrics.items():
            row = {}
            if isinstance(metric, SelfLoss) and metric.value.__func__ is SelfLoss.value and names:
                m = self.model
                if XD is None:
                    XD = self._design.matvec(np.column_stack([deltas[k] for k in names]))
                lv = m._loss.value
                base = lv(m._y, self._z)
                for j, k in enumerate(names):
                    d = deltas[k]
                    data = float(m._s @ (lv(m._y, self._z + XD[:, j]) - base))
                    pen = 0.5 * m._lam * float((m._pen * d) @ (2 * self.theta + d))
                    lin = 0.5 * (float(self._w @ XD[:, j] ** 2) + m._lam * float((m._pen * d) @ d))
                    row[k] = (data + pen, lin)
            else:
                for k in names:
                    row[k] = (self.effect_of(deltas[k], metric, "removal"), self.effect_of(deltas[k], metric, "linear"))
            out[mname] = row
        return out

    def compare(self, T, metrics, methods=("if", "rif", "ns")) -> dict:
        """Every estimate next to the exact retrain for one removal set.

        Parameters
        ----------
        T : array-like of int
            Rows to remove.
        metrics : dict of str to Metric
            Named metrics.
        methods : sequence of str
            Estimators to compare (subset of "if", "rif", "ns").

        Returns
        -------
        dict
            ``{"n_removed", "retrain": {"converged", "grad_norm", "n_iter"},
            "removal": {name: {"actual", method...}}, "linear": {name: {method...}}}``.
            Raises ConvergenceError if the retrain did not converge.
        """
        T = self._check_T(T)
        for m in methods:
            v.check_choice(m, "methods", ("if", "rif", "ns"))
        refit = self.retrain(T)
        if not refit.converged_:
            raise ConvergenceError(
                f"the retrain without {T.size} samples did not converge (relative gradient "
                f"{refit.grad_norm_:.2e}); it is not a ground truth")
        deltas = {"actual": refit.theta_ - self.theta}
        deltas.update({m: self.delta(T, m) for m in methods})
        eff = self.effects_of(deltas, metrics)
        out = {"n_removed": int(T.size),
               "retrain": {"converged": True, "grad_norm": refit.grad_norm_, "n_iter": refit.n_iter_},
               "removal": {}, "linear": {}}
        for name in metrics:
            out["removal"][name] = {k: eff[name][k][0] for k in deltas}
            out["linear"][name] = {m: eff[name][m][1] for m in methods}
        return out
