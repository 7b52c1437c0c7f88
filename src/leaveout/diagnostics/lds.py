r"""The field's own yardsticks for attribution scores: the linear datamodeling score (LDS) and
the leave-one-out correlation, measured against certified refits.

**LDS** (Park, Georgiev, Ilyas, Leclerc and Madry, "TRAK", 2023; dattri's benchmark). Draw
``n_subsets`` random subsets S of the training rows, each keeping a ``fraction`` of them
(seeded; recorded in the result). For each, refit on S (a certified refit, warm-started) and
read each test point's output ``f_j`` (its loss, or its prediction). For a method, predict the
same outputs and take, per test point j, the Spearman correlation over the subsets between
predicted and actual; the LDS is its mean over the test points.

* Additive methods (``"if"``, ``"rif"``): the prediction is ``f_j(theta) + sum_{i not in S}
  tau_ij`` with ``tau_ij`` the row's score on f_j (the predicted linear change of f_j when row
  i alone is removed). Since ``sum_{i in S} tau_ij = const - sum_{i not in S} tau_ij``, this
  ranks the subsets as dattri's "summed scores of the kept rows" does, up to the sign of the
  score (a removal effect here, a contribution there).
* Group estimators (``"rif-group"``, ``"ns-group"``): the whole removed half at once,
  ``f_j(theta + Delta)`` with ``Delta`` the summed RIF or the Newton step of the removed set
  (the output evaluated exactly, not linearised).

**Leave-one-out correlation**: per test point, the Pearson correlation over training rows
between the scores ``tau_ij`` and the exact leave-one-out changes ``f_j(theta_{-i}) -
f_j(theta)`` (certified refits), averaged over test points.

Per-test-point values are returned with the mean and a bootstrap 95 % interval over the test
points. A refit that does not converge is no ground truth: its subset (or row) is left out and
counted. References: the paper in ``shared/paper``; dattri (TRAIS-Lab) for the benchmark
settings.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field

import numpy as np

from ..exceptions import ConvergenceWarning

__all__ = ["lds", "loo_correlation", "LDSResult", "ADDITIVE", "GROUP"]

ADDITIVE = ("if", "rif")
GROUP = ("rif-group", "ns-group")


@dataclass
class LDSResult:
    """What :func:`lds` or :func:`loo_correlation` measured.

    Attributes
    ----------
    score : dict
        Method -> the mean over test points (LDS or LOO correlation).
    interval : dict
        Method -> ``(low, high)``, a bootstrap 95 % interval of that mean over test points.
    per_point : dict
        Method -> array of shape (n_test,): the per-test-point correlations (NaN where the
        actual or the predicted outputs do not vary).
    actual : ndarray of shape (n_sets, n_test)
        The refits' outputs minus the fit's (LDS: per subset; LOO: per row).
    predicted : dict
        Method -> array of the same shape: the predicted changes.
    sets : list of ndarray
        LDS: the removed rows of each subset (positions); LOO: the rows, one each.
    n_unconverged : int
        Refits left out because they did not converge.
    seconds : dict
        ``{"scores": ..., "refits": ...}``.
    """

    kind: str
    score: dict
    interval: dict
    per_point: dict
    actual: np.ndarray
    predicted: dict
    sets: list
    n_unconverged: int = 0
    seconds: dict = field(default_factory=dict)

    def add_scores(self, scores: dict, seed=0) -> "LDSResult":
        """Measure more score matrices against the refits already made (no new refit):
        name -> array (n_samples, n_test) in the removal convention of :func:`lds`. Adds
        their entries to ``score``, ``interval``, ``per_point`` and ``predicted``; returns
        self."""
        n_test = self.actual.shape[1]
        rng = np.random.default_rng(seed)
        for name, tau in scores.items():
            tau = np.asarray(tau, dtype=np.float64)
            if name in self.predicted:
                raise ValueError(f"scores: {name!r} is measured already; give it another name")
            if tau.ndim != 2 or tau.shape[1] != n_test or any(T.max() >= tau.shape[0] for T in self.sets):
                raise ValueError(f"scores[{name!r}] has shape {tau.shape}; give one row per training sample and "
                                 f"one column per test point ({n_test})")
            self.predicted[name] = np.array([tau[T].sum(axis=0) for T in self.sets])
            self.per_point[name] = _columnwise(self.actual, self.predicted[name], self.kind == "lds")
            self.score[name], self.interval[name] = _summary(self.per_point[name], rng)
        return self

    def to_dict(self) -> dict:
        return {"kind": self.kind, "score": dict(self.score),
                "interval": {k: list(v) for k, v in self.interval.items()},
                "n_sets": int(self.actual.shape[0]), "n_test": int(self.actual.shape[1]),
                "n_unconverged": int(self.n_unconverged), "seconds": dict(self.seconds)}

    def __repr__(self):
        what = "LDS" if self.kind == "lds" else "LOO correlation"
        parts = [f"{m} {v:.3f} [{self.interval[m][0]:.3f}, {self.interval[m][1]:.3f}]" for m, v in self.score.items()]
        return (f"{what} over {self.actual.shape[0]} {'subsets' if self.kind == 'lds' else 'rows'} and "
                f"{self.actual.shape[1]} test points: " + "; ".join(parts))


def _check_metric(metric):
    """Per-test-point outputs are needed: a TestLoss or a TestPrediction."""
    from ..metrics import TestLoss, TestPrediction
    if not isinstance(metric, (TestLoss, TestPrediction)):
        raise ValueError("LDS and LOO correlation need per-test-point outputs: give a TestLoss or a "
                         f"TestPrediction, got {type(metric).__name__}")
    return metric


def _outputs(metric, model, theta):
    return metric.values(model, theta)


def _check(att, methods, allowed):
    bad = [m for m in methods if m not in allowed]
    if bad or not methods:
        raise ValueError(f"methods={tuple(methods)!r}: choose from {list(allowed)}")


def _columnwise(actual, predicted, rank):
    """Per column, the (Spearman when ``rank``) correlation of the two matrices' columns."""
    from scipy.stats import rankdata
    a, p = (rankdata(actual, axis=0), rankdata(predicted, axis=0)) if rank else (actual, predicted)
    a = a - a.mean(axis=0)
    p = p - p.mean(axis=0)
    den = np.sqrt((a * a).sum(axis=0) * (p * p).sum(axis=0))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, (a * p).sum(axis=0) / np.where(den > 0, den, 1.0), np.nan)


def _summary(per_point, rng, n_boot=1000):
    ok = per_point[np.isfinite(per_point)]
    if ok.size == 0:
        return float("nan"), (float("nan"), float("nan"))
    means = ok[rng.integers(0, ok.size, size=(n_boot, ok.size))].mean(axis=1)
    return float(ok.mean()), (float(np.quantile(means, 0.025)), float(np.quantile(means, 0.975)))


def _score_matrix(att, metric, method):
    """``tau`` of shape (n_rows, n_test): each row's predicted linear change of each output
    (one solve with a right-hand side per test point)."""
    return np.asarray(att.scores(metric, method, per_point=True))


def _external(att, metric, scores, taken):
    """Validate other tools' score matrices: name -> float array (n_samples, n_test)."""
    if scores is None:
        return {}
    if not isinstance(scores, dict):
        raise ValueError("scores must be a dict: name -> array of shape (n_samples, n_test)")
    n, k = att.n_samples, metric._rows(att.model)[0].n
    out = {}
    for name, tau in scores.items():
        if name in taken:
            raise ValueError(f"scores: the name {name!r} is one of the methods; give another tool's scores another name")
        tau = np.asarray(tau, dtype=np.float64)
        if tau.shape != (n, k):
            raise ValueError(f"scores[{name!r}] has shape {tau.shape}; give one row per training sample and one "
                             f"column per test point: ({n}, {k})")
        if not np.all(np.isfinite(tau)):
            raise ValueError(f"scores[{name!r}] has non-finite entries")
        out[name] = tau
    return out


def lds(att, metric, n_subsets: int = 50, fraction: float = 0.5, seed=0,
        methods=("if", "rif", "rif-group", "ns-group"), progress: bool = False, scores=None) -> LDSResult:
    """The linear datamodeling score of each method (module docstring).

    Parameters
    ----------
    att : Attribution
    metric : TestLoss or TestPrediction
        Its rows are the test points; each point's output is its own loss or prediction.
    n_subsets : int
        Random subsets (each refitted exactly).
    fraction : float
        Share of the training rows each subset keeps (dattri: 0.5).
    seed : int or numpy.random.Generator
    methods : sequence of {"if", "rif", "rif-group", "ns-group"}
    progress : bool
        A progress bar over the refits.
    scores : dict, optional
        Another tool's scores to measure on the same subsets and refits: name -> array of
        shape (n_samples, n_test), entry (i, j) the predicted change of test output j when
        row i is removed (dattri's IF matrix ``g_i^T H^{-1} g_test`` is such; negate scores
        that measure a row's contribution). Evaluated as the additive methods are.
    """
    _check(att, methods, ADDITIVE + GROUP)
    if not (isinstance(n_subsets, (int, np.integer)) and n_subsets >= 3):
        raise ValueError(f"n_subsets must be an integer >= 3 (a rank correlation over subsets), got {n_subsets}")
    if not 0 < fraction < 1:
        raise ValueError(f"fraction must lie strictly between 0 and 1, got {fraction}")
    rng = np.random.default_rng(seed)
    _check_metric(metric)
    external = _external(att, metric, scores, methods)
    model = att.model
    alive = np.flatnonzero(np.asarray(model.objective_.s) > 0)
    n_remove = len(alive) - int(round(fraction * len(alive)))
    if not 0 < n_remove < len(alive):
        raise ValueError(f"fraction={fraction} keeps all or none of the {len(alive)} rows")
    sets = [np.sort(rng.choice(alive, n_remove, replace=False)) for _ in range(int(n_subsets))]
    t0 = time.perf_counter()
    base = _outputs(metric, model, att.theta)
    predicted = {}
    for m in methods:
        if m in ADDITIVE:
            tau = _score_matrix(att, metric, m)
            predicted[m] = np.array([tau[T].sum(axis=0) for T in sets])
        else:
            how = "rif" if m == "rif-group" else "ns"
            predicted[m] = np.array([_outputs(metric, model, att.theta + att.delta(T, how)) - base for T in sets])
    for name, tau in external.items():
        predicted[name] = np.array([tau[T].sum(axis=0) for T in sets])
    t_scores = time.perf_counter() - t0
    actual, keep, t_refit = _refit_outputs(att, metric, sets, base, progress)
    return _result("lds", actual[keep], {m: p[keep] for m, p in predicted.items()},
                   [sets[i] for i in np.flatnonzero(keep)], int((~keep).sum()), rng, True,
                   {"scores": t_scores, "refits": t_refit})


def loo_correlation(att, metric, rows=None, methods=ADDITIVE, seed=0, progress: bool = False,
                    scores=None) -> LDSResult:
    """Per test point, the Pearson correlation between each row's score and its exact
    leave-one-out change, over ``rows`` (default: every training row), averaged over the test
    points (module docstring). ``scores``: other tools' score matrices, as in :func:`lds`."""
    _check(att, methods, ADDITIVE)
    rng = np.random.default_rng(seed)
    _check_metric(metric)
    external = _external(att, metric, scores, methods)
    model = att.model
    alive = np.flatnonzero(np.asarray(model.objective_.s) > 0)
    rows = alive if rows is None else np.asarray(rows, dtype=np.int64)
    if rows.size < 3:
        raise ValueError(f"rows: a correlation needs at least 3 rows, got {rows.size}")
    t0 = time.perf_counter()
    predicted = {m: _score_matrix(att, metric, m)[rows] for m in methods}
    predicted.update({name: tau[rows] for name, tau in external.items()})
    t_scores = time.perf_counter() - t0
    base = _outputs(metric, model, att.theta)
    sets = [np.array([i]) for i in rows]
    actual, keep, t_refit = _refit_outputs(att, metric, sets, base, progress)
    return _result("loo", actual[keep], {m: p[keep] for m, p in predicted.items()},
                   [sets[i] for i in np.flatnonzero(keep)], int((~keep).sum()), rng, False,
                   {"scores": t_scores, "refits": t_refit})


def _refit_outputs(att, metric, sets, base, progress, batch: int = 16):
    """Outputs of the certified refits without each set, minus the fit's; unconverged ones
    are flagged (keep False)."""
    model = att.model
    actual = np.full((len(sets), base.size), np.nan)
    keep = np.zeros(len(sets), dtype=bool)
    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=len(sets), desc="refits", unit="refit", leave=False, disable=None)
    t0 = time.perf_counter()
    for s in range(0, len(sets), batch):
        chunk = sets[s:s + batch]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            refits = att.retrain_many(chunk, skip_invalid=True)
        for i, refit in enumerate(refits, start=s):
            if refit is not None and refit.converged_:
                actual[i] = _outputs(metric, model, refit.theta_) - base
                keep[i] = True
        if bar is not None:
            bar.update(len(chunk))
    if bar is not None:
        bar.close()
    return actual, keep, time.perf_counter() - t0


def _result(kind, actual, predicted, sets, n_bad, rng, rank, seconds):
    score, interval, per_point = {}, {}, {}
    for m, p in predicted.items():
        per_point[m] = _columnwise(actual, p, rank)
        score[m], interval[m] = _summary(per_point[m], rng)
    return LDSResult(kind, score, interval, per_point, actual, predicted, sets, n_bad, seconds)
