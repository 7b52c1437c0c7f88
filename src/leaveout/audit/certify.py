r"""Certified lower bounds for OLS audits: no set of fewer than ``lower`` rows changes the
conclusion.

An audit (:mod:`.search`) finds a set and verifies it by a refit: an *upper* bound on how
many rows must go. A certificate is the other side. Methods (``method=``):

* ``"exact"``: the true minimum for small problems.

  - One regressor plus intercept: a closed form for a two-valued regressor with equal
    weights, otherwise the pairs MIP (:func:`.exact.pairs_mip`), exact for any data.
  - One regressor without intercept: a closed form.
  - Small d: the big-M MIP (:func:`.exact.bigm_mip`, after Freund and Hopkins, 2023) solved
    by HiGHS. Its constants come from the triangle bounds, valid only up to the singularity,
    so its reach stops there.

  Each stops at the time limit; the solver's proven (dual) bound is then the answer.
* ``"bound"``: Rubinstein and Hopkins' triangle bounds (:mod:`.bounds`), exact for one or
  two rows. They take ``O(n^2 d)`` time and scale to n in the tens of thousands and d in the
  tens. The bound holds for any data, but it is only informative before the "singularity",
  where a small set of rows can make the design rank-deficient.
* ``"auto"`` (default): the exact closed forms where they apply. Otherwise the triangle
  bounds; then, for small problems (d <= 6 and n <= 2,000) where those stop short of the
  audit's verified count, the MIP.

Every lower bound is a theorem about the data, not an estimate. The arguments are in the
docstrings of :mod:`.bounds` and :mod:`.exact`. "Flip" counts only sets whose removal leaves
a full-rank design (the refit is then defined); the audit never proposes any other. HiGHS's
tolerances can only make the MIPs more permissive, which keeps a lower bound valid.

Targets:

* ``sign``: every method.
* ``significance``: a significant estimate losing significance, classical standard error
  only, through the triangle bounds (exact for one or two rows). HC and cluster standard
  errors, and a non-significant estimate gaining significance, get "no certificate for this
  target".
* ``opposite``: becoming significant with the other sign needs a sign flip, so the sign
  certificate bounds it. It is reported as such in ``lower_method``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from .bounds import triangle_bounds
from .exact import bigm_mip, binary_regressor, no_intercept, pairs_mip, simple_regression
from .ols import CERTIFY_METHODS, OLSProblem, check_certifiable

__all__ = ["Certificate", "certify", "check_certifiable", "CERTIFY_METHODS"]

_MIP_MAX_N, _MIP_MAX_D = 2000, 6
_DEFAULT_TIME = 60.0
_MAX_CELLS = 25_000_000                   # n * k_max for the triangle bounds' row tables


@dataclass
class Certificate:
    """A proven lower bound ``lower`` (None: no certificate), how it was obtained, and a
    witness set of that size when the method found one (positions, to verify by a refit)."""

    lower: int | None
    method: str | None
    optimal: bool = False
    witness: list | None = None
    note: str | None = None
    seconds: float = 0.0
    details: dict = field(default_factory=dict)


def certify(att, quantity, target, se="nonrobust", upper=None, max_rows=None, method="auto",
            time_limit=None, value=0.0) -> Certificate:
    """A lower bound on the rows whose removal reaches ``target`` (see the module docstring).

    ``target`` is an :class:`~.targets.Target`. ``upper`` is the audit's verified count (the
    search stops once the bound meets it), ``max_rows`` the most rows considered when there
    is none. ``time_limit`` (seconds, default 60 for the MIPs) is honoured by every method.
    """
    t0 = time.perf_counter()
    check_certifiable(getattr(att, "model", att), quantity, target.name, method)
    P = OLSProblem.from_attribution(att, quantity, value if target.name == "sign" else 0.0)
    limit = _DEFAULT_TIME if time_limit is None else float(time_limit)
    deadline = time.monotonic() + limit
    K = (upper - 1) if upper else (max_rows or P.n - P.d - 1)
    K = int(max(1, min(K, P.n - P.d - 1)))

    def done(cert):
        cert.seconds = time.perf_counter() - t0
        if cert.witness is not None:
            cert.witness = [int(P.positions[i]) for i in cert.witness]
        return cert

    if target.name == "significance":
        return done(_significance(P, target, se, K, deadline))
    cert = _sign(P, K, method, deadline)
    if target.name == "opposite" and cert.lower is not None:
        cert.method += " (sign bound: a significant opposite sign needs a flip)"
        cert.optimal, cert.witness = False, None
    return done(cert)


def _significance(P, target, se, K, deadline):
    if se != "nonrobust":
        return Certificate(None, None, note=f"no certificate for this target: significance with se={se!r} "
                                             "(certified for the classical standard error only)")
    if not target.significant:
        return Certificate(None, None, note="no certificate for this target: a non-significant estimate "
                                             "gaining significance")
    tb = triangle_bounds(P, _kmax(P, K), deadline=deadline)
    if tb is None:
        return Certificate(1, "trivial", note="time limit reached before the triangle bounds finished")
    L = tb.significance_certificate(P, target.z)
    return Certificate(L, "rubinstein-hopkins (triangle bounds, classical SE)", optimal=False,
                       details=_details(tb, L))


def _sign(P, K, method, deadline):
    simple = simple_regression(P)
    if simple is not None and method != "bound":
        x, y, s, intercept = simple
        res = binary_regressor(x, y, s) if intercept else no_intercept(x, y, s)
        if res is not None:
            return Certificate(res.lower, res.method, optimal=res.optimal, witness=res.witness, note=res.status or None)
    tb = triangle_bounds(P, _kmax(P, K), deadline=deadline)
    if tb is None:
        return Certificate(1, "trivial", note="time limit reached before the triangle bounds finished")
    L = tb.sign_certificate(P.margin)
    cert = Certificate(L, "rubinstein-hopkins (triangle bounds)", details=_details(tb, L))
    if method == "bound" or (L > K and not (method == "exact" and simple is not None)):
        return cert
    if simple is not None:                     # one regressor plus intercept: the pairs MIP
        # asked for "exact", the MIP proves its bound on its own
        res = pairs_mip(*simple[:3], K, lower=1 if method == "exact" else L, time_limit=_left(deadline))
        if res is None:
            cert.note = "the pairs MIP is too large for this n"
        elif res.lower >= L:
            cert = Certificate(res.lower, _label(res), optimal=res.optimal, witness=res.witness,
                               details=cert.details, note=_time_note(res))
        return cert
    small = P.d <= _MIP_MAX_D and P.n <= _MIP_MAX_N
    if method == "exact" or small:
        reach = int(np.sum(np.cumprod(tb.lam < 1)))            # MIP constants valid up to here
        Km = min(K, reach)
        if Km >= L:
            res = bigm_mip(P, Km, tb.gamma(Km), lower=L, time_limit=_left(deadline))
            if res is not None and res.lower >= L:
                cert = Certificate(res.lower, _label(res), optimal=res.optimal, witness=res.witness,
                                   details=cert.details, note=_time_note(res))
                if res.status == "infeasible" and Km < K:
                    cert.note = f"the MIP's constants hold up to {Km} rows (the singularity of the design)"
        elif method == "exact":
            cert.note = "no exact certificate: the design is singular for small sets (lambda_k >= 1)"
    return cert


def _label(res):
    """The method's name; a MIP stopped by its time limit proved only its dual bound."""
    if res.status != "time limit":
        return res.method
    return res.method.replace("exact (", "dual bound at the time limit (", 1)


def _time_note(res):
    if res.status != "time limit":
        return None
    return ("time limit hit: the mixed-integer program stopped before proving its optimum; the lower bound is "
            "its proven dual bound (a longer --time-limit may raise it)")


def _kmax(P, K):
    return int(max(1, min(K, _MAX_CELLS // max(P.n, 1), P.n - P.d - 1)))


def _left(deadline):
    return max(0.5, deadline - time.monotonic())


def _details(tb, L):
    k = min(L, len(tb.k))
    return {"k": int(k), "bound": _f(tb.U[k - 1]), "lambda": _f(tb.lam[k - 1])}


def _f(x):
    return float(x) if np.isfinite(x) else None
