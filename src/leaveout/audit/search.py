r"""The fewest rows whose removal changes a conclusion, found and verified by refits.

Methods (``method=``):

* ``"one-shot"``: zaminfluence's rule (Broderick, Giordano and Meager, "An automatic finite-
  sample robustness metric", 2020-2023). Rank the rows by their influence on the signal
  (IF, and the exact derivative of the SE), add the helpful ones in order until the
  interpolated cumulative sum reaches the signal, ``k = ceil(interp(|signal|, [0, cumsum],
  [0..m]))``, and refit once without those k rows.
* ``"rif"``: the same with RIF in place of IF for the quantity's own change.
* ``"adaptive"`` (default): remove rows in small batches chosen by their current RIF scores on
  the signal, refit (certified, warm-started), re-score on the new fit, and repeat until the
  refit reaches the target; then put back, one at a time with a refit each, every row the
  target does not need. On a small problem (n <= 500, n p small) the set is then shortened by an
  exchange pass (two rows of the set swapped for one outside it, kept when its refit reaches
  the target) and, when every smaller set fits in a budget of refits, by an exhaustive
  search, which then also proves the count minimal (``result.lower``, "exhaustive
  search"). For significance targets rows are ranked both by the interval end
  (as zaminfluence) and by the t statistic (as Kuschnig, Zens and Crespo Cuaresma, 2021),
  and the smaller verified set is kept. This is the greedy re-ranking that Kuschnig et al.
  and Huang, Burt, Shen, Nguyen and Broderick (TMLR 2025) show finds far smaller sets than
  one-shot rankings.

Every reported set is verified by a certified refit on exactly the kept rows. A search that
does not reach the target within ``max_fraction`` of the rows (or ``time_limit`` seconds)
says so and reports the best set it refitted; nothing is claimed that was not refitted.
"""

from __future__ import annotations

import itertools
import math
import time
import warnings

import numpy as np

from ..exceptions import ConvergenceWarning
from .result import AuditResult
from .se import se_calculator
from .targets import TARGETS, Snapshot, Target

__all__ = ["audit", "METHODS"]

METHODS = ("adaptive", "one-shot", "rif")
#: one-row steps refit this many candidates when refits are cheap (n * p below CHEAP)
SHORTLIST, CHEAP = 8, 2_000_000
#: on cheap problems, the refits an exchange pass may spend, and the refits an exhaustive
#: search below the found count may spend (it runs only when every smaller set fits in it)
EXCHANGE_MAX, EXHAUSTIVE_MAX = 800, 10_000
#: ... on problems of at most this many rows (where a refit costs milliseconds)
SMALL_N = 500
#: on a costly problem, a put-back over more rows than this skips the rows predicted needed
PUTBACK_PREDICT_MIN = 32


class _Fit:
    """A fit (the original one or a refit without some rows) seen through the quantity. The
    Attribution (a factorisation) is built only when scores or an SE need it."""

    def __init__(self, model, metric, se_kind, groups, needs_se, att=None, factory=None):
        self.model, self.metric = model, metric
        self.se_kind, self.groups = se_kind, groups
        self._att = att
        self._factory = factory if factory is not None else type(att)
        theta = model.theta_
        self.phi = np.asarray(metric.gradient(model, theta), dtype=np.float64)
        self.calc = se_calculator(self.att, se_kind, groups) if needs_se else None
        se = self.calc.se(self.phi) if self.calc is not None else float("nan")
        self.snap = Snapshot(float(metric.value(model, theta)), se)

    @property
    def att(self):
        if self._att is None:
            self._att = self._factory(self.model)
        return self._att

    def changes(self, method):
        """Per-row predicted changes ``(delta f, delta se)`` when each row alone is removed;
        NaN for a row whose removal alone leaves the Hessian singular (it is never chosen)."""
        if method == "one-shot" or self.metric.quadratic:
            df = np.asarray(self.att.scores(self.metric, "if" if method == "one-shot" else "rif"))
        else:
            df = np.asarray(self.att.estimators.rif_scores(self.phi, on_singular="nan"))
        dse = -np.asarray(self.calc.gradient(self.phi)) if self.calc is not None else np.zeros_like(df)
        return df, dse


def _one_shot_count(signal, scores, alive):
    """zaminfluence's count: helpful rows (moving the signal towards zero) by size, and the
    interpolated point where their cumulative change reaches ``|signal|``; ``(k, order)``,
    with k None when all helpful rows together fall short."""
    ok = np.isfinite(scores)
    helpful = np.flatnonzero(alive & ok & (np.sign(np.where(ok, scores, 0)) == -np.sign(signal)) & (scores != 0))
    order = helpful[np.argsort(-np.abs(scores[helpful]), kind="stable")]
    csum = np.concatenate([[0.0], np.cumsum(np.abs(scores[order]))])
    if csum[-1] < abs(signal):
        return None, order
    return max(1, int(math.ceil(np.interp(abs(signal), csum, np.arange(csum.size)) - 1e-12))), order


class _Search:
    def __init__(self, att, first, metric, target, se_kind, groups, max_rows, deadline, progress):
        self.att0, self.first, self.metric, self.target = att, first, metric, target
        self.se_kind, self.groups = se_kind, groups
        self.max_rows, self.deadline, self.progress = max_rows, deadline, progress
        self.n = att.n_samples
        self.cheap = att.n_samples * att.theta.size <= CHEAP
        self.small = self.cheap and att.n_samples <= SMALL_N
        self.refits = 0
        self.path = []
        self.minimal = False          # an exhaustive search proved the set minimal

    def fit(self, T):
        """The certified refit without ``T`` seen through the quantity (None: no valid refit)."""
        if len(T) == 0:
            return self.base
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            try:
                refit = self.att0.retrain(np.sort(np.asarray(T)))
            except ValueError:              # the set leaves the refit undefined (a class emptied)
                return None
        self.refits += 1
        if not refit.converged_:
            return None
        try:
            return _Fit(refit, self.metric, self.se_kind, self.groups, self.first.calc is not None,
                        factory=type(self.att0))
        except ValueError:                  # e.g. a singular Hessian, one cluster left
            return None

    def record(self, T, fit):
        self.path.append((len(T), fit.snap.value, fit.snap.se))

    def start(self):
        self.base = self.first
        self.path = [(0, self.base.snap.value, self.base.snap.se)]
        return self.base

    # ------------------------------------------------------------ one-shot
    def one_shot(self, method):
        base = self.base
        df, dse = base.changes(method)
        signal, _ = self.target.end(base.snap)
        scores = self.target.scores(base.snap, df, dse)
        k, order = _one_shot_count(signal, scores, np.asarray(base.model.objective_.s) > 0)
        predicted = float(base.snap.value + df[order[:k]].sum()) if k else float("nan")
        return k, order, predicted

    # ------------------------------------------------------------ adaptive
    def _signal(self, snap, ranking):
        return self.target.t_signal(snap) if ranking == "t" else self.target.end(snap)[0]

    def adaptive(self, ranking):
        """Greedy re-ranking: each step removes the top rows whose predicted change covers at
        most half of the remaining signal (at least one, at most an eighth of the rows removed
        so far, a quarter where refits are costly), refits, and re-scores. A one-row
        step on a cheap problem refits the top ``SHORTLIST`` candidates and keeps the best."""
        removed = []
        cur = self.base
        while True:
            if time.monotonic() > self.deadline:
                return removed, cur, None, "time limit"
            room = self.max_rows - len(removed)
            if room <= 0:
                return removed, cur, None, "row budget"
            alive = np.asarray(cur.model.objective_.s) > 0
            df, dse = cur.changes("rif")
            signal = self._signal(cur.snap, ranking)
            scores = self.target.scores(cur.snap, df, dse, ranking)
            _k, order = _one_shot_count(signal, scores, alive)
            if order.size == 0:
                return removed, cur, None, "no row moves the quantity further"
            # at most half the remaining signal by prediction, and at most an eighth more rows
            # than removed so far (predictions that fall short must not empty the budget)
            covered = np.cumsum(np.abs(scores[order]))
            half = int(np.searchsorted(covered, 0.5 * abs(signal), side="right"))
            step = max(1, min(half, room, len(removed) // (8 if self.cheap else 4)))
            if step == 1 and self.cheap:
                trial, fit = self._best_single(removed, order[:SHORTLIST], ranking, signal)
            else:
                trial = removed + [int(i) for i in order[:step]]
                fit = self.fit(trial)
                if fit is None and step > 1:          # an invalid refit: fall back to one row
                    trial, fit = self._best_single(removed, order[:SHORTLIST], ranking, signal)
            if fit is None:
                return removed, cur, None, "no valid refit"
            removed, cur = trial, fit
            self.record(removed, cur)
            if self.progress is not None:
                self.progress(len(removed))
            if self.target.reached(cur.snap):
                return removed, cur, (removed, cur), None

    def _best_single(self, removed, candidates, ranking, signal):
        """Refit without each candidate row; the one that reaches the target, else the one
        that moves the signal furthest."""
        best, best_fit, best_key = None, None, np.inf
        for i in candidates:
            trial = removed + [int(i)]
            fit = self.fit(trial)
            if fit is None:
                continue
            key = -np.inf if self.target.reached(fit.snap) else np.sign(signal) * self._signal(fit.snap, ranking)
            if key < best_key:
                best, best_fit, best_key = trial, fit, key
            if key == -np.inf:
                break
        return best, best_fit

    def prune(self, removed, fit):
        """Shorten a verified set: the shortest prefix of the removal order that still reaches
        the target (binary search, a refit per probe), then put back one by one (latest
        first, a refit each) every row the target does not need."""
        keep = list(removed)
        lo, hi = 1, len(keep)                 # hi: a prefix length known to reach the target
        while lo < hi and time.monotonic() <= self.deadline:
            mid = (lo + hi) // 2
            f = self.fit(keep[:mid])
            if f is not None and self.target.reached(f.snap):
                hi, fit = mid, f
            else:
                lo = mid + 1
        keep = keep[:hi]
        return self.put_back(keep, fit)

    def put_back(self, keep, fit):
        """Put back one by one (latest first, a refit each) every row the target does not need.
        On a large set of a costly problem, a row whose predicted return moves the signal back
        by more than twice the slack the set leaves is kept without a refit (:meth:`_needed`)."""
        order = list(reversed(list(keep)))
        if len(order) > PUTBACK_PREDICT_MIN and not self.cheap:
            needed = self._needed(order, fit)
            order = [i for i, need in zip(order, needed) if not need]
        for i in order:
            if time.monotonic() > self.deadline or len(keep) == 1:
                break
            trial = [j for j in keep if j != i]
            f = self.fit(trial)
            if f is not None and self.target.reached(f.snap):
                keep, fit = trial, f
        return keep, fit

    def _needed(self, rows, fit):
        """Per row of the removed set, whether putting it back is predicted to undo the target:
        its return (:meth:`returns`) moves the signal back across zero by more than twice the
        slack, the SE held fixed (by more than the slack for a least-squares sign target, where
        the prediction is exact). Only for the single-response GLM families (all False otherwise)."""
        change = self.returns(rows, fit)
        if change is None:
            return [False] * len(rows)
        signal, _ = self.target.end(fit.snap)
        back = -np.sign(signal) * change                 # towards undoing the target when positive
        # the prediction is exact for a least-squares coefficient: no margin when the SE plays no part
        exact = fit.model.family == "squared" and not self.target.needs_se
        return (back > (1.0 + 1e-9 if exact else 2.0) * abs(signal)).tolist()

    def returns(self, rows, fit):
        """Predicted change of the quantity when each removed row alone is put back into the
        fit ``fit``: one Sherman-Morrison step, ``-phi^T H^{-1} g_i / (1 + h_i)``, exact for the
        coefficients of least squares (the absorbed fixed effect's part ``w_i / W_g`` of the
        leverage included); None for the families it does not cover."""
        model = fit.model
        if getattr(model, "family", None) not in ("squared", "logistic", "poisson") or not fit.att.design.local:
            return None
        s0 = np.asarray(self.base.model.objective_.s, dtype=np.float64)
        return fit.att.estimators.return_scores(fit.phi, np.asarray(rows, dtype=np.int64), s0)

    def _alive(self):
        return np.flatnonzero(np.asarray(self.base.model.objective_.s) > 0)

    def exchange(self, rows, fit):
        """Local search on a cheap problem: a set of k - 1 rows made by swapping two rows of the
        set for one outside it, kept when its refit reaches the target (then put back what is
        not needed); repeated while it shortens the set and a pass fits in EXCHANGE_MAX refits."""
        rows = list(rows)
        while len(rows) >= 2 and time.monotonic() <= self.deadline:
            outside = np.setdiff1d(self._alive(), rows)
            k = len(rows)
            if k * (k - 1) // 2 * outside.size > EXCHANGE_MAX:
                break
            better = None
            for a, b in itertools.combinations(range(k), 2):
                rest = [r for j, r in enumerate(rows) if j not in (a, b)]
                for c in outside:
                    if time.monotonic() > self.deadline:
                        return rows, fit
                    f = self.fit(rest + [int(c)])
                    if f is not None and self.target.reached(f.snap):
                        better = (rest + [int(c)], f)
                        break
                if better:
                    break
            if better is None:
                break
            rows, fit = self.put_back(*better)
        return rows, fit

    def exhaustive(self, rows, fit, lower=1):
        """Every set of ``lower .. len(rows) - 1`` rows, smallest first, when they fit in
        EXHAUSTIVE_MAX refits: the first that reaches the target, or ``rows`` proved minimal
        (third item True; False when the search did not run or was cut by the time limit)."""
        alive = self._alive()
        sizes = range(max(1, lower), len(rows))
        if sum(math.comb(alive.size, j) for j in sizes) > EXHAUSTIVE_MAX:
            return rows, fit, False
        for j in sizes:
            for T in itertools.combinations(alive.tolist(), j):
                if time.monotonic() > self.deadline:
                    return rows, fit, False
                f = self.fit(list(T))
                if f is not None and self.target.reached(f.snap):
                    return list(T), f, True
        return rows, fit, True


def audit(att, quantity, target: str = "sign", se: str | None = None, cluster=None, method: str = "adaptive",
          alpha: float = 0.05, value: float = 0.0, max_fraction: float = 0.1, time_limit=None,
          progress: bool = False, certify: bool = False, certify_method: str = "auto") -> AuditResult:
    """The fewest rows whose removal changes a conclusion about ``quantity``, verified by refits.

    Parameters
    ----------
    att : Attribution or GLM
        The fitted model (a GLM is wrapped in an Attribution).
    quantity : Metric
        A coefficient (:class:`~leaveout.metrics.Coefficient`, by name or position), a
        linear contrast (:class:`~leaveout.metrics.Contrast`), a test prediction or loss, or
        for ``target="flip"`` the logit of one test row (:class:`~leaveout.metrics.Logit`).
    target : {"sign", "significance", "opposite", "flip"}
        See :mod:`leaveout.audit.targets`. Significance targets need a linear quantity.
    se : {"nonrobust", "HC0", "HC1"}, optional
        Standard error for significance targets (:mod:`leaveout.audit.se`). Default: the one
        the model was reported with when it came through :func:`~leaveout.from_pyfixest` or
        :func:`~leaveout.from_linearmodels` (with its clusters), else "nonrobust".
    cluster : array-like of shape (n_samples,), optional
        Cluster labels for a cluster-robust SE.
    method : {"adaptive", "one-shot", "rif"}
    alpha : float
        Two-sided level; the critical value is the normal one.
    value : float
        ``sign`` target: the value to cross (default 0).
    max_fraction : float
        At most this fraction of the rows is removed.
    time_limit : float, optional
        Seconds for the search (the best verified set so far is reported when it runs out),
        and separately for the certificate (default 60 s for its mixed-integer programs; the
        solver's proven bound is reported when it runs out).
    progress : bool
        Show a progress bar (tqdm) over removed rows.
    certify : bool
        Also prove a lower bound (``result.lower``): no set of fewer rows reaches the target.
        For unpenalised least squares and a coefficient or contrast; see
        :mod:`leaveout.audit.certify`. A smaller set found by an exact method replaces the
        search's set once its refit verifies it.
    certify_method : {"auto", "exact", "bound"}
        How to certify (:mod:`leaveout.audit.certify`).

    Returns
    -------
    AuditResult
    """
    if not hasattr(att, "estimators"):
        raise TypeError(f"audit needs an Attribution (leaveout.audit wraps a GLM), got {type(att).__name__}")
    if method not in METHODS:
        raise ValueError(f"method={method!r} is not supported; choose one of {list(METHODS)}")
    if not (isinstance(max_fraction, (int, float)) and 0 < max_fraction <= 1):
        raise ValueError(f"max_fraction must be a number in (0, 1], got {max_fraction}")
    model = att.model
    if se is None:                                 # the SE the model was reported with, if any
        se = getattr(model, "se_kind_", "nonrobust")
        if cluster is None:
            cluster = getattr(model, "cluster_", None)
    n_rows = int(np.count_nonzero(np.asarray(model.objective_.s) > 0))
    max_rows = max(1, int(math.floor(max_fraction * n_rows)))
    deadline = time.monotonic() + (float(time_limit) if time_limit is not None else float("inf"))
    t0 = time.perf_counter()
    if target in ("significance", "opposite") and not _is_linear(quantity):
        raise ValueError(f"target={target!r} needs a linear quantity with a standard error (a Coefficient "
                         "or a Contrast)")
    if target not in TARGETS:
        raise ValueError(f"target={target!r} is not supported; choose one of {list(TARGETS)}")
    if certify:
        from .certify import check_certifiable
        check_certifiable(model, quantity, target, certify_method)
    groups = None if cluster is None else np.asarray(cluster)
    # an SE is computed whenever it is defined (reported next to the value), required when asked
    want_se = target in ("significance", "opposite") or (_is_linear(quantity) and _se_defined(model))
    first = _Fit(model, quantity, se, groups, want_se, att=att)
    tgt = Target(target, first.snap, alpha, value)
    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=max_rows, desc="audit", unit="row", leave=False, disable=None)
    search = _Search(att, first, quantity, tgt, se, groups, max_rows, deadline,
                     None if bar is None else (lambda k: bar.update(k - bar.n)))
    search.start()
    k1, order1, predicted1 = search.one_shot("one-shot")
    note = None
    if method in ("one-shot", "rif"):
        k, order, _pred = (k1, order1, predicted1) if method == "one-shot" else search.one_shot("rif")
        if k is None or k > max_rows:
            rows, fit = [], search.base
            note = "not reachable by this ranking" if k is None else f"needs {k} rows, over the budget of {max_rows}"
        else:
            rows = [int(i) for i in order[:k]]
            fit = search.fit(rows)
            if fit is None:
                rows, fit, note = [], search.base, "the refit without these rows is undefined or did not converge"
            else:
                search.record(rows, fit)
    else:
        rankings = ("interval", "t") if tgt.needs_se else ("interval",)
        found = []
        if k1 is not None and k1 <= max_rows:        # zaminfluence's set, when it works, bounds ours
            start = [int(i) for i in order1[:k1]]
            f1 = search.fit(start)
            if f1 is not None and tgt.reached(f1.snap):
                found.append((search.prune(start, f1), [(0, first.snap.value, first.snap.se), (k1, f1.snap.value, f1.snap.se)]))
        for ranking in rankings:
            _removed, _cur, best, why = search.adaptive(ranking)
            if best is not None:
                found.append((search.prune(*best), list(search.path)))
            elif note is None:
                note = why
            search.path = search.path[:1]
        if found:
            (rows, fit), search.path = min(found, key=lambda c: len(c[0][0]))
            if search.small and len(rows) > 1:    # small problems: try harder for a smaller set
                rows, fit = search.exchange(rows, fit)
                rows, fit, search.minimal = search.exhaustive(rows, fit)
            search.minimal = search.minimal or len(rows) == 1
            search.record(rows, fit)
            note = None
        else:
            rows, fit = [], search.base
            if search.small:                      # the greedy path failed: every set up to the budget
                ceiling = list(range(max_rows + 1))        # a stand-in "found" set of max_rows + 1 rows
                rows_x, fit_x, _ = search.exhaustive(ceiling, None)
                if fit_x is not None:
                    rows, fit, note = rows_x, fit_x, None
                    search.record(rows, fit)
    if bar is not None:
        bar.close()
    reached = bool(rows) and tgt.reached(fit.snap)
    cert = None
    if certify:
        cert, better = _certify(att, search, quantity, tgt, se, rows if reached else None, max_rows,
                                certify_method, time_limit, value)
        if better is not None:
            rows, fit = better
            search.record(rows, fit)
            reached, note = True, None
    if reached and search.minimal and (cert is None or cert.lower is None or cert.lower < len(rows)):
        from .certify import Certificate
        how = "exhaustive search (every smaller set refitted)" if len(rows) > 1 else "one row (no smaller set)"
        cert = Certificate(len(rows), how, optimal=True,
                           note=None if cert is None else cert.note)
    if not reached and note is None:
        note = "the refit does not reach the target"
    return AuditResult.build(
        att=att, quantity=quantity, target=tgt, method=method, se_kind=se if tgt.needs_se else None,
        clustered=groups is not None, rows=sorted(rows), fit=fit, base=search.base, reached=reached,
        one_shot=(k1, predicted1), path=search.path, note=None if reached else note, max_rows=max_rows,
        refits=search.refits, seconds=time.perf_counter() - t0, certificate=cert)


def _certify(att, search, quantity, tgt, se, rows, max_rows, method, time_limit, value):
    """The certificate, and ``(rows, fit)`` when its witness is a verified smaller set."""
    from .certify import certify
    if search.groups is not None:
        se = "cluster"
    cert = certify(att, quantity, tgt, se=se, upper=len(rows) if rows else None, max_rows=max_rows,
                   method=method, time_limit=time_limit, value=value)
    w = cert.witness
    if w and (rows is None or len(w) < len(rows)):
        fit = search.fit(sorted(w))
        if fit is not None and tgt.reached(fit.snap):
            return cert, (sorted(w), fit)
        cert.note = ((cert.note + "; ") if cert.note else "") + "the exact method's set did not verify by a refit"
    return cert, None


def _is_linear(metric):
    return getattr(metric, "linear", False)


def _se_defined(model):
    return model.family != "multinomial" and (model.penalty == "fixed" or model.l2 == 0)
