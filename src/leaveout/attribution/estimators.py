r"""IF, RIF and NS for a single-response GLM: every formula in one place.

Everything is in the sum form of the objective (:mod:`leaveout.glm.objective`). With the
per-sample gradient and Hessian at the fit

.. math::

    g_i = r_i x_i + s_i b, \qquad H_i = w_i x_i x_i^\top + c_i M,

where :math:`r_i = s_i \ell'_i`, :math:`w_i = s_i \ell''_i`, :math:`M = P^\top P` and, under the
"per_sample" penalty, :math:`b = \lambda P\hat\theta`, :math:`c_i = \lambda s_i` (both zero under
"fixed"), the estimators of :math:`\Delta\theta_T = \hat\theta_{-T} - \hat\theta` are

* IF  (:meth:`GLMEstimators.if_delta`):  :math:`\sum_{i\in T} H^{-1} g_i`
* RIF (:meth:`GLMEstimators.rif_delta`): :math:`\sum_{i\in T} H_{-i}^{-1} g_i`, :math:`H_{-i} = H - H_i`
* NS  (:meth:`GLMEstimators.ns_delta`):  :math:`H_{-T}^{-1}\sum_{i\in T} g_i`, :math:`H_{-T} = H - \sum_{i\in T} H_i`

For RIF, Sherman-Morrison on :math:`H'_i = H - c_i M` gives
:math:`\mathrm{RIF}_i = \alpha_i H'^{-1}_i x_i + s_i t_i` with :math:`t_i = H'^{-1}_i b`,
:math:`a_i = w_i x_i^\top H'^{-1}_i x_i` and
:math:`\alpha_i = (r_i + s_i w_i x_i^\top t_i) / (1 - a_i)` (:meth:`GLMEstimators.rif_coef`);
under "fixed" this is :math:`\mathrm{IF}_i / (1 - h_i)` with the leverage
:math:`h_i = w_i x_i^\top H^{-1} x_i`. NS uses Woodbury on the |T| x |T| block
(:mod:`~leaveout.attribution.curvature`).

The multinomial family (:mod:`~leaveout.attribution.multinomial`) supplies rank C-1 blocks
through the same seams: :meth:`spread`, :meth:`spread_sum`, :meth:`rif_coef`,
:meth:`removed_factor`, the score and quadratic-form methods.

References
----------
Rescaled influence functions, section 1.1 and appendix C (``shared/paper``); Pregibon
(1981) for the one-step leave-one-out of logistic regression; Koh, Ang, Teo and Liang (2019)
for the group Newton step.
"""

from __future__ import annotations

import numpy as np

from ..exceptions import LeverageError
from .curvature import Curvature
from .factors import PrimalFactor, make_factor

__all__ = ["GLMEstimators"]

#: RIF leverages above this are treated as 1 (removing the sample leaves H singular)
_LEVERAGE_ONE = 1.0 - 1e-12
_QUAD_CELLS = 1 << 24          # entries of X D^T held at once by hess_quad


def _col(v, ndim):
    """``v`` (one entry per sample) shaped to scale the rows of an array of ``ndim`` dims."""
    return v if ndim == 1 else v[:, None]


def _as_slice(idx):
    """A run of consecutive indices as a slice (rows read in place, not gathered), else ``idx``."""
    if idx.size and idx[-1] - idx[0] == idx.size - 1 and np.all(np.diff(idx) == 1):
        return slice(int(idx[0]), int(idx[-1]) + 1)
    return idx


class GLMEstimators:
    """Per-sample pieces of a fitted single-response GLM and the IF / RIF / NS formulas.

    Parameters
    ----------
    model : GLM
        A fitted model; its ``objective_`` supplies the design, loss, weights and penalty.
    form : {"auto", "primal", "dual"}
        Factorisation of H (see :class:`~leaveout.Attribution`).
    """

    #: Newton-step bases from one shared eigendecomposition; H_{-T} factored directly once
    #: the Woodbury block reaches ``1 / direct_ratio`` of H's size
    eigen_shifts, direct_ratio = True, 1
    #: one response: H is over the design's columns, so every row's half solve can be kept,
    #: and a removal set's U is sqrt(w_i) x_i per row (its half solves come from the kept rows)
    rows_downdate = True

    def __init__(self, model, form: str = "auto"):
        obj = model.objective_
        self.objective, self.design, self.theta = obj, obj.design, model.theta_
        self.classes = getattr(model, "classes_", None)
        d = self.design
        self.z = obj.keep(obj.z(self.theta))
        self.s = obj.s
        self.per_sample = obj.penalty == "per_sample" and obj.l2 > 0
        self.b = obj.l2 * obj.pen * self.theta if self.per_sample else np.zeros(self.theta.size)
        self.c = obj.l2 * obj.s if self.per_sample else d.zeros()     # penalty shares c_i
        self._pieces(obj, form)

    def _pieces(self, obj, form):
        """``r_i``, ``w_i`` and the curvature engine (the multinomial class has its own)."""
        d = self.design
        self.r = d.keep(self.s * obj.loss.derivative(obj.y, self.z))     # g_i = r_i x_i + s_i b
        self.w = d.keep(self.s * obj.loss.curvature(obj.y, self.z))      # H_i = w_i x_i x_i^T + c_i M
        self.curvature = Curvature(make_factor(d, self.w, obj.lam, obj.pen, form), self.b,
                                   self.eigen_shifts, self.direct_ratio)

    @property
    def n_samples(self) -> int:
        return self.design.n

    # ------------------------------------------------------------ penalty shares
    def groups(self, idx):
        """Split sorted sample indices by their penalty share ``c_i`` (one group under "fixed")."""
        c = self.design.gather(self.c, idx)
        for cv in np.unique(c):
            yield float(cv), idx[c == cv]

    def shares(self):
        """The distinct penalty shares ``c_i`` (``[0.0]`` under "fixed")."""
        if not self.per_sample:
            return [0.0]
        if not hasattr(self, "_share_values"):
            self._share_values = [float(x) for x in self.design.unique(self.c)]
        return self._share_values

    def by_share(self, part):
        """Combine per-share full-length vectors ``part(c)``: entry i from ``part(c_i)``."""
        shares = self.shares()
        out = part(shares[0])
        for cv in shares[1:]:
            out = np.where(_col(self.c == cv, out.ndim), part(cv), out)
        return out

    def prepare(self, threads: int = 1):
        """Compute what concurrent workers share: every row's half solve (where it fits in
        memory), the RIF leverages and the Newton-step bases."""
        if self.rows_downdate:
            self.curvature.prepare_rows(self.design)
        self.rif_leverage  # noqa: B018
        self.curvature.keep_bases = threads + 1
        if self.per_sample:
            self.curvature.prepare_bases(float(np.min(self.c)))

    # ------------------------------------------------------------ row products (seams)
    def spread(self, rows, coef):
        """The data part of each row's gradient direction, ``coef_i x_i``: shape (k, p)."""
        return coef[:, None] * rows

    def spread_sum(self, rows, coef):
        """``sum_i coef_i x_i`` (the sum of :meth:`spread`'s rows, without forming them)."""
        return rows.T @ coef

    def rows_dot(self, idx, q):
        """``x_i^T q`` for i in ``idx`` (one pass over X when idx is every row)."""
        if idx.size == self.n_samples:
            return self.design.matvec(q)
        return self.design.dense_rows(idx) @ q

    def hess_quad(self, D):
        """``d^T H d`` for each row d of ``D`` (k, p), without forming H.

        Many rows with a Cholesky factor ``H = L L^T`` at hand and p < n: ``||L^T d||^2``
        (``k p^2`` flops, against ``k n p`` through X)."""
        D2 = np.atleast_2d(D)
        factor = self.curvature.factor
        P = D2.shape[1]
        if isinstance(factor, PrimalFactor) and factor.L.shape == (P, P) and D2.shape[0] > 8 and P < self.n_samples:
            Lt = np.tril(factor.L)               # the array keeps H's other triangle above L
            out = np.empty(D2.shape[0])
            step = max(1, _QUAD_CELLS // P)
            for lo in range(0, D2.shape[0], step):
                Y = D2[lo:lo + step] @ Lt
                out[lo:lo + step] = np.einsum("ij,ij->i", Y, Y)
            return out if np.ndim(D) > 1 else float(out[0])
        obj = self.objective
        out = obj.lam * np.einsum("ij,ij->i", D2 * obj.pen, D2)
        step = max(1, _QUAD_CELLS // max(self.n_samples, 1))    # X D^T in (n, step) pieces
        for lo in range(0, D2.shape[0], step):
            XD = self.design.matvec(D2[lo:lo + step].T)
            out[lo:lo + step] += self.w @ (XD * XD)
        return out if np.ndim(D) > 1 else float(out[0])

    def quad_scores(self, method: str) -> np.ndarray:
        """``d_i^T H d_i`` for every IF or RIF row ``d_i``, without forming the rows.

        IF: ``g_i^T H^{-1} g_i = r_i^2 x_i^T H^{-1} x_i + 2 r_i s_i x_i^T H^{-1} b + s_i^2 b^T H^{-1} b``
        from the leverages. RIF under "fixed": ``alpha_i^2 x_i^T H^{-1} x_i``. RIF under
        "per_sample", ``d_i = alpha_i u_i + s_i t`` with ``u_i = (H - c M)^{-1} x_i``:
        ``d^T (H - c M) d + c d^T M d``, the first term ``alpha^2 x^T u + 2 alpha s x^T t +
        s^2 b^T t``, in chunks of rows (a solve per row, as the RIF rows; no (n, p) array)."""
        if method == "if" or not self.per_sample:
            a = self._x_hinv_x()
            if method == "rif":
                return self.rif_coef(np.arange(self.n_samples)) ** 2 * a
            out = self.r ** 2 * a
            if self.per_sample:
                tb = self.curvature.solve(self.b)
                out = out + 2 * self.r * self.s * self.design.matvec(tb) + self.s ** 2 * float(self.b @ tb)
            return out
        alpha = self.rif_coef(np.arange(self.n_samples))
        out = np.empty(self.n_samples)
        pen = self.objective.pen
        for cv, sub in self.groups(np.arange(self.n_samples)):
            Fc, t = self.curvature.shift(cv)
            bt, ptt = float(self.b @ t), float((t * pen) @ t)
            xt = self.design.matvec(t)
            eig = self.curvature.half_rows(cv, np.arange(0)) is not None and self.curvature.eigen_shifts
            if eig:       # the kept rows in the eigenbasis: no solve per row
                Rc = self.curvature.base(cv) if cv else self.curvature._eig.factor(0.0)
                Qt = self.curvature._eig.Q.T @ t[:Rc.eig.Q.shape[0]]         # penalised part of t
            for part in self._row_chunks(sub):
                al, sp = alpha[part], self.s[part]
                if eig:           # two products of the kept rows with a few columns each
                    xu, puu, put = Rc.quads(_as_slice(part), Qt)
                else:
                    rows = np.asarray(self.design.dense_rows(part))
                    U = Fc.solve(rows.T)                                    # (p, k): u_i
                    Pu = U.T * pen
                    xu, puu, put = np.einsum("ij,ji->i", rows, U), np.einsum("ij,ij->i", Pu, Pu), Pu @ t
                # d = alpha u + s t: d^T (H - c M) d + c |P d|^2
                hc = al ** 2 * xu + 2 * al * sp * xt[part] + sp ** 2 * bt
                out[part] = hc + cv * (al ** 2 * puu + 2 * al * sp * put + sp ** 2 * ptt)
        return out

    def _x_hinv_x(self) -> np.ndarray:
        """``x_i^T H^{-1} x_i`` for every row: the leverage over ``w_i``, and directly where
        ``w_i = 0``."""
        w = np.asarray(self.w, dtype=np.float64)
        a = np.asarray(self.leverage, dtype=np.float64) / np.where(w > 0, w, 1.0)
        flat = np.flatnonzero(w <= 0)
        if flat.size:
            rows = np.asarray(self.design.dense_rows(flat))
            a[flat] = np.einsum("ij,ji->i", rows, self.curvature.solve(rows.T))
        return a

    # ------------------------------------------------------------ leverages
    def _rows_quad(self, c):
        """``x_i^T (H - c M)^{-1} x_i`` of every row from the kept half-solved rows (``O(n p)``),
        or None without them."""
        if self.curvature.half_rows(c, np.arange(0)) is None:
            return None
        out = np.empty(self.n_samples)
        for part in self._row_chunks(np.arange(self.n_samples)):
            out[part] = self.curvature.row_quads(c, _as_slice(part))
        return out

    @property
    def leverage(self) -> np.ndarray:
        """``h_i = w_i x_i^T H^{-1} x_i``, cached."""
        if not hasattr(self, "_leverage"):
            q = self._rows_quad(0.0) if self.design.local else None
            lev = self.curvature.factor.leverage() if q is None else self.w * q
            self._leverage = self.design.keep(lev)
        return self._leverage

    @property
    def rif_leverage(self) -> np.ndarray:
        """``a_i = w_i x_i^T (H - c_i M)^{-1} x_i`` (the leverage under "fixed"), cached."""
        if not self.per_sample:
            return self.leverage
        if not hasattr(self, "_rif_lev"):
            def part(cv):
                q = self._rows_quad(cv) if self.design.local else None
                return self.curvature.shift(cv)[0].leverage() if q is None else self.w * q
            self._rif_lev = self.design.keep(self.by_share(part))
        return self._rif_lev

    def rif_leverage_of(self, idx) -> np.ndarray:
        """``a_i`` for sample indices ``idx`` (a few directly, many from all samples')."""
        cached = "_rif_lev" in self.__dict__ or (not self.per_sample and "_leverage" in self.__dict__)
        if idx.size == self.n_samples or cached or idx.size > 64:
            return self.design.gather(self.rif_leverage, idx)
        a = np.empty(idx.size)
        for cv, sub in self.groups(idx):
            a[np.searchsorted(idx, sub)] = self.curvature.shift(cv)[0].leverage(sub)
        return a

    @staticmethod
    def check_leverage(a, idx=None):
        """Raise LeverageError naming the first sample whose leverage is >= 1."""
        bad = a >= _LEVERAGE_ONE
        if bool(bad.any()):
            j = int(np.argmax(bad))
            i = j if idx is None else int(idx[j])
            raise LeverageError(
                f"sample {i} has leverage h >= 1 (h = {float(a[j]):.15g}): removing it alone leaves "
                "a singular Hessian, so its RIF is infinite; add an L2 penalty")

    # ------------------------------------------------------------ RIF coefficients
    def rif_coef(self, idx) -> np.ndarray:
        """``alpha_i = (r_i + s_i w_i x_i^T t_i) / (1 - a_i)`` for sorted indices ``idx``."""
        idx = np.asarray(idx)
        a = self.rif_leverage_of(idx)
        self.check_leverage(np.asarray(a), idx)
        d = self.design
        num = d.gather(self.r, idx).copy()
        if self.per_sample:
            for cv, sub in self.groups(idx):
                pos = np.searchsorted(idx, sub)
                sw = d.gather(self.s, sub) * d.gather(self.w, sub)
                num[pos] += sw * self.rows_dot(sub, self.curvature.shift(cv)[1])
        return num / (1.0 - a)

    # ------------------------------------------------------------ group estimators
    def group_gradient(self, T):
        """``sum_{i in T} g_i``."""
        d = self.design
        return self.spread_sum(d.dense_rows(T), d.gather(self.r, T)) + d.gather(self.s, T).sum() * self.b

    def removed_factor(self, T):
        """``U`` with ``U U^T`` = the data part of ``sum_{i in T} H_i``: columns sqrt(w_i) x_i."""
        return (self.design.dense_rows(T) * np.sqrt(self.design.gather(self.w, T))[:, None]).T

    def if_delta(self, T):
        """IF: ``H^{-1} sum_{i in T} g_i``."""
        return self.curvature.solve(self.group_gradient(T))

    def rif_delta(self, T):
        """RIF: ``sum_{i in T} (alpha_i H'^{-1}_i x_i + s_i t_i)``."""
        alpha = self.rif_coef(T)
        out = np.zeros(self.theta.size)
        for cv, sub in self.groups(T):
            Fc, t = self.curvature.shift(cv)
            rows = self.design.dense_rows(sub)
            out += Fc.solve(self.spread_sum(rows, alpha[np.searchsorted(T, sub)]))
            out += self.design.gather(self.s, sub).sum() * t
        return out

    def rif_deltas(self, Ts):
        """:meth:`rif_delta` of several sets, shape (n_params, len(Ts)): the solves of all sets
        with one penalty share together (one product with many columns, not one per set)."""
        out = np.zeros((self.theta.size, len(Ts)))
        rhs, shares = {}, []
        for j, T in enumerate(Ts):
            alpha = self.rif_coef(T)
            for cv, sub in self.groups(T):
                rows = self.design.dense_rows(sub)
                rhs.setdefault(cv, []).append((j, self.spread_sum(rows, alpha[np.searchsorted(T, sub)])))
                shares.append((j, cv, float(self.design.gather(self.s, sub).sum())))
        for cv, cols in rhs.items():
            Y = self.curvature.shift(cv)[0].solve(np.column_stack([y for _j, y in cols]))
            for i, (j, _y) in enumerate(cols):
                out[:, j] += Y[:, i]
        for j, cv, s_sum in shares:
            out[:, j] += s_sum * self.curvature.shift(cv)[1]
        return out

    def ns_system(self, T, cache: bool = True):
        """``(G, system)``: ``G = sum_{i in T} g_i`` and ``system.apply(Y) = H_{-T}^{-1} Y``
        (Woodbury on the factor of ``H - C_T M``); the last one is remembered."""
        def build():
            # the same refusal as the retrain's: a set that leaves the refit undefined
            self.check_weights_left(self.design.zeroed(self.s, T))
            if self._iterative(T):
                return self.group_gradient(T), self._iterative_system(T)
            C = float(self.design.gather(self.c, T).sum())
            if not self.rows_downdate:              # U is not one scaled design row per sample
                return self.group_gradient(T), self.curvature.downdate(self.removed_factor(T), C)
            scale = np.sqrt(self.design.gather(self.w, T))
            return self.group_gradient(T), self.curvature.downdate(self.removed_factor(T), C, rows=T, scale=scale)
        return self.curvature.remembered(T.tobytes(), build) if cache else build()

    #: parameters from which a removal set of rank >= p is solved by conjugate gradients
    #: rather than a new p x p factorisation (below it the factorisation is cheap)
    ITERATIVE_MIN_PARAMS = 1500

    def _iterative(self, T):
        rank = T.size * self.objective.n_blocks
        return (self.theta.size >= self.ITERATIVE_MIN_PARAMS and rank * self.curvature.direct_ratio >= self.theta.size
                and self.design.local)

    def _iterative_system(self, T):
        """``H_{-T}^{-1}`` by CG on the Hessian of the objective without T at the fit,
        preconditioned by the full Hessian's factor (:class:`~.curvature._IterativeSystem`)."""
        from .curvature import _IterativeSystem
        obj = self.objective.without(T)
        z = obj.z(self.theta)
        w = obj.keep(obj.weights_at(z))
        return _IterativeSystem(lambda v: obj.hessvec(w, v), self.curvature.solve)

    def ns_delta(self, T):
        """NS: ``H_{-T}^{-1} sum_{i in T} g_i``."""
        G, system = self.ns_system(T)
        return system.apply(G)

    # ------------------------------------------------------------ per-sample rows and scores
    def _row_chunks(self, idx):
        step = max(1, (1 << 20) // self.theta.size)
        for lo in range(0, idx.size, step):
            yield idx[lo:lo + step]

    def influence(self) -> np.ndarray:
        """IF rows, shape (n_samples, n_params)."""
        out = np.empty((self.n_samples, self.theta.size))
        Hb = self.curvature.solve(self.b)
        for part in self._row_chunks(np.arange(self.n_samples)):
            G = self.spread(self.design.dense_rows(part), self.r[part])
            out[part] = self.curvature.solve(G.T).T + self.s[part, None] * Hb
        return out

    def rescaled_influence(self) -> np.ndarray:
        """RIF rows, shape (n_samples, n_params)."""
        idx = np.arange(self.n_samples)
        alpha = self.rif_coef(idx)
        out = np.empty((self.n_samples, self.theta.size))
        for cv, sub in self.groups(idx):
            Fc, t = self.curvature.shift(cv)
            for part in self._row_chunks(sub):
                G = self.spread(self.design.dense_rows(part), alpha[part])
                out[part] = Fc.solve(G.T).T + self.s[part, None] * t
        return out

    def if_scores(self, phi):
        """``<phi, IF_i>`` for every sample: one solve and one pass over X.

        ``phi`` of shape (P,) gives shape (n,); of shape (P, k), k metric gradients at once
        (one solve with k right-hand sides, one pass over X), shape (n, k)."""
        q = self.curvature.solve(phi)
        return _col(self.r, q.ndim) * self.design.matvec(q) + _col(self.s, q.ndim) * (self.b @ q)

    def rif_scores(self, phi, on_singular: str = "raise"):
        """``<phi, RIF_i>`` for every sample: one solve and one pass over X per share
        (``phi`` of shape (P, k): k metrics at once, shape (n, k), as :meth:`if_scores`).

        A sample with leverage 1 (removing it leaves H singular) raises LeverageError, or
        with ``on_singular="nan"`` gets NaN (e.g. an audit that must not remove it)."""
        a = self.rif_leverage
        bad = None
        if on_singular == "nan":
            bad = np.asarray(a) >= _LEVERAGE_ONE
            a = np.where(bad, 0.0, a)
        else:
            self.check_leverage(a)

        nd = np.ndim(phi)

        def part(cv):
            Fc, t = self.curvature.shift(cv)
            q = Fc.solve(phi)
            if not self.per_sample:
                return _col(self.r / (1.0 - a), nd) * self.design.matvec(q)
            XQ = self.design.matvec(np.column_stack([q, t]))      # one pass for both
            num = self.r + self.s * self.w * XQ[:, -1]
            Xq = XQ[:, 0] if nd == 1 else XQ[:, :-1]
            return _col(num / (1.0 - a), nd) * Xq + _col(self.s, nd) * (t @ phi)

        out = self.by_share(part)
        return out if bad is None or not bad.any() else np.where(_col(bad, nd), np.nan, out)

    def return_scores(self, phi, rows, s0):
        """``<phi, Delta theta>`` when each row of ``rows`` (weight 0 in this fit) comes back
        with its weight ``s0[i]``: one Sherman-Morrison step,
        ``-phi^T H^{-1} g_i / (1 + w_i x_i^T H^{-1} x_i)``, exact for least squares under the
        "fixed" penalty (the refit adds the row's term to H)."""
        srt = np.sort(np.asarray(rows))
        obj = self.objective
        X = np.asarray(self.design.dense_rows(srt))
        y, z = np.asarray(obj.y, dtype=np.float64)[srt], np.asarray(self.z, dtype=np.float64)[srt]
        r, w = s0[srt] * obj.loss.derivative(y, z), s0[srt] * obj.loss.curvature(y, z)
        Q = np.asarray(self.curvature.solve(X.T)).reshape(X.shape[1], -1)
        h = w * np.einsum("ij,ji->i", X, Q) + self._returning_leverage(srt, w)
        with np.errstate(invalid="ignore"):
            out = np.where(np.isfinite(h), -(phi @ Q) * r / (1.0 + h), 0.0)
        return out[np.searchsorted(srt, np.asarray(rows))]

    def _returning_leverage(self, idx, w):
        """What else a returning row adds to its leverage (nothing for a plain GLM)."""
        return 0.0

    # ------------------------------------------------------------ refits
    def check_weights_left(self, s):
        """Refuse a refit whose remaining rows cannot determine the model."""
        if self.objective.loss.classifier:
            y, kept = self.objective.y, s > 0
            if not (bool((kept & (y == 1)).any()) and bool((kept & (y == 0)).any())):
                raise ValueError("T removes every sample of one class; the refit is undefined")

    def self_loss_effects(self, deltas, XD=None):
        """Removal and linear effects of parameter changes on the training objective, from
        ``XD = X @ column_stack(deltas)`` (one pass over X for all of them)."""
        obj = self.objective
        if XD is None:
            XD = self.design.matvec(np.column_stack(deltas))
        lv = obj.loss.value
        base = lv(obj.y, self.z)
        out = []
        for j, d in enumerate(deltas):
            data = float(obj.s @ (lv(obj.y, self.z + XD[:, j]) - base))
            pen = 0.5 * obj.lam * float((obj.pen * d) @ (2 * self.theta + d))
            lin = 0.5 * (float(self.w @ XD[:, j] ** 2) + obj.lam * float((obj.pen * d) @ d))
            out.append((data + pen, lin))
        return out
