"""The :class:`Attribution` façade: one object over the three engines of this package.

* :mod:`~leaveout.attribution.curvature` factors the Hessian once and builds the shifted
  and downdated systems (with :mod:`~leaveout.attribution.factors`);
* :mod:`~leaveout.attribution.estimators` holds the per-sample pieces and the IF / RIF / NS
  formulas (:mod:`~leaveout.attribution.multinomial` the rank C-1 version);
* :mod:`~leaveout.attribution.refit` runs certified retrains, alone or in lockstep.

The façade validates arguments, picks the engine for the model's family, and evaluates
metrics on the parameter changes the engines return.
"""

from __future__ import annotations

import warnings

import numpy as np

from .. import _validation as v
from .._linalg import with_small_lapack
from ..exceptions import ConvergenceError, ConvergenceWarning, UnreliableEstimateWarning
from ..metrics import Metric, SelfLoss
from ..tables.ids import positions_of, resolve_rows
from .absorbed import AbsorbedEstimators
from .estimators import GLMEstimators
from .multinomial import BlockEstimators
from .refit import RefitEngine
from .sketch import SketchedLeverage, sketch_leverage

__all__ = ["Attribution", "MultinomialAttribution", "SketchedLeverage"]

METHODS = ("if", "rif", "ns", "retrain")
KINDS = ("removal", "linear")


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

    _estimators = GLMEstimators

    def __new__(cls, model=None, form: str = "auto"):
        if cls is Attribution and getattr(model, "family", None) == "multinomial":
            return super().__new__(MultinomialAttribution)
        if cls is Attribution and getattr(model, "family", None) == "2sls":
            from .iv import IVAttribution             # two-stage least squares: its own estimates
            return IVAttribution(model)
        return super().__new__(cls)

    def __init__(self, model, form: str = "auto"):
        model.check_fitted()
        if not model.converged_:
            warnings.warn("the model did not converge; attributions are taken around an inexact optimum",
                          ConvergenceWarning, stacklevel=2)
        self.model = model
        self.theta = model.theta_
        absorbed = getattr(model, "absorbed_", None) is not None
        self.estimators = (AbsorbedEstimators if absorbed else self._estimators)(model, form)
        self.refits = None if absorbed else RefitEngine(model, self.estimators)

    # ------------------------------------------------------------ the fit's pieces
    @property
    def design(self):
        """The training design (:mod:`leaveout.design`)."""
        return self.estimators.design

    @property
    def curvature(self):
        """The curvature engine (:class:`~leaveout.attribution.curvature.Curvature`)."""
        return self.estimators.curvature

    @property
    def hessian(self) -> np.ndarray:
        return self.curvature.hessian

    @property
    def form(self) -> str:
        """Which factorisation is in use: "primal" (p x p) or "dual" (n x n)."""
        return self.curvature.form

    @property
    def n_samples(self) -> int:
        return self.design.n

    @property
    def leverage(self) -> np.ndarray:
        """Leverages ``h_i = w_i x_i^T H^{-1} x_i`` of shape (n_samples,), in [0, 1)."""
        return self.estimators.leverage

    @property
    def rif_leverage(self) -> np.ndarray:
        """Leverages that enter RIF, ``a_i = w_i x_i^T (H - c_i M)^{-1} x_i``, shape (n_samples,).

        Equal to :attr:`leverage` under the "fixed" penalty; under "per_sample" the removed
        sample's penalty share is taken out of the Hessian first.
        """
        return self.estimators.rif_leverage

    def leverage_sketch(self, eps: float = 0.1, delta: float = 0.01, seed=None) -> SketchedLeverage:
        """Leverages estimated by a random projection, with a stated error bound; see
        :func:`~leaveout.attribution.sketch.sketch_leverage`."""
        return sketch_leverage(self.estimators, eps, delta, seed)

    def prepare(self, threads: int = 1) -> "Attribution":
        """Compute now what ``threads`` concurrent workers share (RIF leverages, the bases of
        Newton steps), so that no worker builds them mid-batch.

        In the primal form with X in memory or on disk it also keeps every row's half solve,
        an (n_samples, n_params) float64 array when that fits in
        :attr:`Curvature.ROWS_BYTES <leaveout.attribution.curvature.Curvature.ROWS_BYTES>`
        (256 MB): then leverages under any penalty shift, the self-loss scores and each
        removal set's Woodbury block cost ``O(n_params)`` per row instead of a solve. ``check``
        and ``reproduce`` call it; it pays off once several sets or leverages are needed."""
        self.estimators.prepare(threads)
        return self

    # ------------------------------------------------------------ per-sample estimates
    def _in_memory(self, what):
        if not self.design.local:
            raise ValueError(f"{what} builds an (n_samples, n_params) array in memory, which a dask X "
                             "does not allow; use scores(metric) for per-sample numbers")

    @property
    def row_ids(self):
        """The training rows' ids (the DataFrame index), or None when known by position."""
        return getattr(self.model, "row_ids_", None)

    def param_names(self) -> list:
        """Names of the entries of ``theta`` (intercept last, as ``"Intercept"``); for the
        multinomial family ``"<direction a>|<name>"`` per block of the class-major theta."""
        names = list(getattr(self.model, "feature_names_in_", [f"x{j}" for j in range(self.model.n_features_in_)]))
        names += ["Intercept"] * bool(self.model.fit_intercept)
        m = self.estimators.objective.n_blocks
        return names if m == 1 else [f"u{a}|{n}" for a in range(m) for n in names]

    def to_frame(self, columns: dict):
        """A DataFrame of per-sample results (each of shape (n_samples,)) indexed by the row
        ids (or positions), e.g. ``att.to_frame({"leverage": att.leverage, "rif": s})``."""
        import pandas as pd
        ids = self.row_ids
        index = pd.Index(np.arange(self.n_samples) if ids is None else ids, name="id" if ids is not None else "row")
        cols = {k: np.asarray(v) for k, v in columns.items()}
        for k, col in cols.items():
            if col.ndim != 1 or col.shape[0] != self.n_samples:
                raise ValueError(f"to_frame: column {k!r} has shape {col.shape}; give one value per training row "
                                 f"({self.n_samples})")
        return pd.DataFrame(cols, index=index)

    def positions_of(self, ids) -> np.ndarray:
        """Positions (0-based) of the training rows with these ids."""
        if self.row_ids is None:
            raise ValueError("the model was fitted on arrays: its rows have positions, not ids")
        return positions_of(self.row_ids, ids, "ids")

    def _rows_frame(self, rows, as_frame):
        if not as_frame:
            return rows
        frame = self.to_frame({})
        import pandas as pd
        return pd.DataFrame(rows, index=frame.index, columns=self.param_names())

    def influence(self, as_frame: bool = False) -> np.ndarray:
        """IF rows: ``Delta theta`` of removing each sample alone, shape (n_samples, n_params)
        (``as_frame``: a DataFrame indexed by row id, one column per parameter name)."""
        self._in_memory("influence()")
        return self._rows_frame(self.estimators.influence(), as_frame)

    def rescaled_influence(self, as_frame: bool = False) -> np.ndarray:
        """RIF rows: ``Delta theta`` of removing each sample alone, shape (n_samples, n_params)
        (``as_frame``: a DataFrame indexed by row id, one column per parameter name)."""
        self._in_memory("rescaled_influence()")
        return self._rows_frame(self.estimators.rescaled_influence(), as_frame)

    @with_small_lapack
    def scores(self, metric: Metric, method: str = "rif", as_frame: bool = False,
               per_point: bool = False) -> np.ndarray:
        """Linear effect on ``metric`` of removing each sample alone, shape (n_samples,).

        ``<grad f(theta), Delta theta_i>`` with ``Delta theta_i`` from IF or RIF; for a metric
        whose gradient vanishes at the fit (:class:`~leaveout.metrics.SelfLoss`) the
        quadratic term ``Delta theta_i^T H Delta theta_i / 2``. Costs one solve and one pass
        over X after the factorisation (plus the leverages for RIF). ``as_frame``: a
        DataFrame indexed by row id with the column ``method``.

        ``per_point=True`` (a TestLoss, TestPrediction or Logit): one column per test row,
        shape (n_samples, n_test), each the score on that row's own output; the columns sum
        to the scores of the whole metric. All test rows share one solve with n_test
        right-hand sides and one pass over X (the attribution matrix of dattri and TRAK, up
        to sign: a removal effect here). ``as_frame``: columns ``0 .. n_test - 1``.
        """
        v.check_choice(method, "method", ("if", "rif"))
        self._check_metric(metric)
        est = self.estimators
        if per_point:
            if not hasattr(metric, "gradients"):
                raise ValueError("per_point=True needs one output per test row: a TestLoss, TestPrediction "
                                 f"or Logit, got {type(metric).__name__}")
            Phi = np.asarray(metric.gradients(self.model, self.theta), dtype=np.float64)
            out = est.if_scores(Phi) if method == "if" else est.rif_scores(Phi)
            return self.to_frame(dict(enumerate(out.T))) if as_frame else out
        if metric.quadratic:
            if not self.design.local:
                raise ValueError(f"scores of a {type(metric).__name__} (a quadratic effect per row) need X in "
                                 "memory or on disk, not a dask array; use a TestLoss or TestPrediction")
            out = 0.5 * est.quad_scores(method)
        else:
            phi = np.asarray(metric.gradient(self.model, self.theta), dtype=np.float64)
            out = est.if_scores(phi) if method == "if" else est.rif_scores(phi)
        return self.to_frame({method: out}) if as_frame else out

    def diagnose(self, metrics, n_sets: int = 30, seed=0, exact_limit: int = 20000):
        """Can IF, RIF and NS be believed here for ``metrics`` (a Metric or a dict)? The
        constants and bound of the paper's Theorem 3.1, per-set indicators, and a calibration
        of ``n_sets`` removal sets against certified retrains, with a verdict per metric;
        see :mod:`leaveout.diagnostics`. Returns a :class:`~leaveout.diagnostics.TrustReport`."""
        from ..diagnostics import diagnose
        return diagnose(self, metrics, n_sets=n_sets, seed=seed, exact_limit=exact_limit)

    def suspects(self, kind: str = "loo", k=None, validation=None, method: str | None = None):
        """Training rows ranked by suspicion (probably mislabelled or harmful), a DataFrame
        sorted by ``score`` (higher = more suspicious) with ``id``, ``label`` and ``prob``:
        ``kind="loo"`` (default: the row's loss when it is left out; IF by default),
        ``"loss"`` (its training loss), ``"self"`` (how much its own loss rises when it is
        removed), ``"validation"`` (removing it lowers the validation loss) or ``"relabel"``
        (flipping its label lowers the validation loss); ``method`` defaults to IF for
        ``"loo"`` and RIF for the others. See :mod:`leaveout.suspects`."""
        from ..suspects import suspects
        return suspects(self, kind=kind, k=k, validation=validation, method=method)

    def audit(self, quantity, target: str = "sign", **options):
        """The fewest rows whose removal changes a conclusion about ``quantity``, verified by
        refits, and with ``certify=True`` a proven lower bound; the options and the result
        are those of :func:`leaveout.audit` (:class:`~leaveout.AuditResult`)."""
        from ..audit.search import audit
        return audit(self, quantity, target, **options)

    def _check_metric(self, metric):
        """A model with absorbed fixed effects estimates its coefficients (and contrasts of
        them); a prediction or a loss would need the fixed effects' own change too."""
        if self.refits is None:
            from ..metrics import Coefficient, Contrast
            if not isinstance(metric, (Coefficient, Contrast)):
                raise ValueError(f"with absorbed fixed effects only coefficients and contrasts are estimated, not "
                                 f"{getattr(metric, 'name', type(metric).__name__)} (it would need the fixed "
                                 "effects' change too)")

    # ------------------------------------------------------------ removal sets
    def _check_T(self, T):
        """A removal set as sorted positions: positions, a boolean mask, or row ids (see
        :mod:`leaveout.tables.ids` for how the two are told apart)."""
        return v.check_indices(resolve_rows(T, self.row_ids, self.n_samples, "T"), self.n_samples, "T")

    @with_small_lapack
    def delta(self, T, method: str = "rif") -> np.ndarray:
        """Estimated (or, for ``"retrain"``, exact) ``theta_{-T} - theta``, shape (n_params,).

        Parameters
        ----------
        T : array-like of int, boolean mask, or row ids
            Training rows to remove: positions, or the ids of a model fitted on a table
            (strings, a ``pandas.Index``; integers that are ids and not positions).
        method : {"if", "rif", "ns", "retrain"}
        """
        v.check_choice(method, "method", METHODS)
        T = self._check_T(T)
        if method == "if":
            return self.estimators.if_delta(T)
        if method == "rif":
            return self.estimators.rif_delta(T)
        if method == "ns":
            return self.estimators.ns_delta(T)
        return _certified(self.retrain(T), T).theta_ - self.theta

    @with_small_lapack
    def newton_system(self, T, cache: bool = True):
        """``(G, system)`` for removing ``T``: ``G = sum_{i in T} g_i`` and
        ``system.apply(Y) = H_{-T}^{-1} Y``, so ``system.apply(G)`` is the Newton step. Hand
        the pairs to :meth:`retrain_many` to reuse them as preconditioners."""
        return self.estimators.ns_system(self._check_T(T), cache=cache)

    @with_small_lapack
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
        if self.refits is None:                   # absorbed fixed effects: demeaned again on the kept rows
            return self.model.refit_without(self._check_T(T), tol=tol, max_iter=max_iter)
        return self.refits.retrain(self._check_T(T), tol=tol, max_iter=max_iter, init=init)

    @with_small_lapack
    def retrain_many(self, Ts, tol=None, max_iter=None, systems=None, skip_invalid: bool = False):
        """Exact refits for several removal sets at once; same results as :meth:`retrain`.

        The refits run in lockstep: every pass over X serves all of them (matrix-matrix
        instead of matrix-vector products), each preconditioned by its own leave-T-out
        Hessian at the full fit. A refit that does not converge this way is finished alone,
        where the solver may factor a fresh Hessian. A dask X, and the multinomial family,
        refit one set at a time.

        Parameters
        ----------
        Ts : sequence of array-like of int
            Removal sets.
        systems : list, optional
            :meth:`newton_system` of each set, when the caller already has them.
        skip_invalid : bool
            A set whose refit is undefined (it empties a class, or leaves H singular) gives
            ``None`` instead of raising.

        Returns
        -------
        list of GLM (or None)
        """
        Ts = [self._check_T(T) for T in Ts]
        if self.refits is None:
            out = []
            for T in Ts:
                try:
                    out.append(self.model.refit_without(T, tol=tol, max_iter=max_iter))
                except ValueError:
                    if not skip_invalid:
                        raise
                    out.append(None)
            return out
        try:
            return self.refits.retrain_many(Ts, tol=tol, max_iter=max_iter, systems=systems)
        except ValueError:
            if not skip_invalid:
                raise
        out = []                                  # one by one, so that one bad set spoils nothing
        for T in Ts:
            try:
                out.append(self.refits.retrain(T, tol=tol, max_iter=max_iter))
            except ValueError:
                out.append(None)
        return out

    # ------------------------------------------------------------ effects on metrics
    @with_small_lapack
    def effect(self, T, metric: Metric, method: str = "rif", kind: str = "removal") -> float:
        """Effect on ``metric`` of removing ``T``, as predicted by ``method`` (or measured).

        ``kind="removal"``: ``f(theta + Delta theta) - f(theta)``; ``kind="linear"``:
        ``<grad f(theta), Delta theta>`` (``Delta theta^T H Delta theta / 2`` for SelfLoss).
        Positive means f goes up when T is removed. For ``"rif"`` and ``"ns"`` an
        :class:`~leaveout.UnreliableEstimateWarning` says when the set's Newton step leaves its
        quadratic model (:mod:`leaveout.diagnostics.indicators`).
        """
        v.check_choice(kind, "kind", KINDS)
        self._check_metric(metric)
        dtheta = self.delta(T, method)
        if method in ("rif", "ns") and self.design.local and self.estimators.objective.n_blocks == 1:
            self._warn_if_outside(T, metric, method)
        return self.effect_of(dtheta, metric, kind)

    def _warn_if_outside(self, T, metric, method):
        from ..diagnostics.indicators import CHANGE_LIMIT, DECREMENT_LIMIT, step_indicators
        decrement, change, outside = step_indicators(self, metric, self._check_T(T))
        if outside:
            warnings.warn(
                f"{method.upper()} for this set of {len(self._check_T(T))} rows is outside its quadratic model "
                f"(Newton decrement {decrement:.2g}, limit {DECREMENT_LIMIT}; largest linear-predictor change "
                f"{change:.2g}, limit {CHANGE_LIMIT}): refit it (method='retrain') before acting on it",
                UnreliableEstimateWarning, stacklevel=3)

    def effect_of(self, dtheta, metric: Metric, kind: str = "removal") -> float:
        """Effect on ``metric`` of moving the parameters by ``dtheta``."""
        v.check_choice(kind, "kind", KINDS)
        self._check_metric(metric)
        if kind == "removal":
            return float(metric.difference(self.model, self.theta, self.theta + dtheta))
        if metric.quadratic:
            return float(0.5 * self.estimators.hess_quad(dtheta))
        return float(metric.gradient(self.model, self.theta) @ dtheta)

    def effects_of(self, deltas: dict, metrics: dict, XD=None) -> dict:
        """Removal and linear effects of several parameter changes on several metrics.

        Equivalent to calling :meth:`effect_of` for every pair, but the training-objective
        metric (SelfLoss) is evaluated for all changes with one pass over X.

        ``XD``, optional: ``X @ column_stack(deltas.values())`` when the caller has it.

        Returns ``{metric name: {delta name: (removal, linear)}}``.
        """
        names = list(deltas)
        out = {}
        for metric in metrics.values():
            self._check_metric(metric)
        for mname, metric in metrics.items():
            if isinstance(metric, SelfLoss) and type(metric).value is SelfLoss.value and names:
                pairs = self.estimators.self_loss_effects([deltas[k] for k in names], XD)
                out[mname] = dict(zip(names, pairs))
            else:              # the metric's gradient at the fit once, for every change
                g = None if metric.quadratic else np.asarray(metric.gradient(self.model, self.theta))
                out[mname] = {k: (self.effect_of(deltas[k], metric, "removal"),
                                  self.effect_of(deltas[k], metric, "linear") if g is None
                                  else float(g @ deltas[k])) for k in names}
        return out

    @with_small_lapack
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
        refit = _certified(self.retrain(T), T)
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


class MultinomialAttribution(Attribution):
    """:class:`Attribution` for a multinomial :class:`~leaveout.GLM` (made by
    ``Attribution(model)``); the same methods, with these differences:

    * parameter changes (``delta``, rows of ``influence``) are in the class-major ``theta``
      of :mod:`leaveout.glm.model`; ``model.unpack(delta)`` gives them as (coef, intercept);
    * :attr:`leverage` is the trace of each sample's (C-1) x (C-1) leverage block
      (:attr:`leverage_blocks`), in [0, C-1);
    * only the primal (Cholesky) form exists, and :meth:`retrain_many` refits one set at
      a time.
    """

    _estimators = BlockEstimators

    @property
    def leverage_blocks(self) -> np.ndarray:
        """``Lambda_i = R_i^T E_i^T H^{-1} E_i R_i`` (``K_i = R_i R_i^T``), shape
        (n_samples, C-1, C-1): the multinomial leverage. Its eigenvalues lie in [0, 1)."""
        return self.estimators.leverage_blocks


def _certified(refit, T):
    """The refit, or a ConvergenceError: an unconverged retrain is not a ground truth."""
    if not refit.converged_:
        raise ConvergenceError(
            f"the retrain without {T.size} samples did not converge (relative gradient "
            f"{refit.grad_norm_:.2e}); it is not a ground truth")
    return refit
