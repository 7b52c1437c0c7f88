"""Audit of a fixed-effects regression on a synthetic panel: absorbed fixed effects against
the dummy-variable route, time and peak memory, every answer verified independently.

The panel has ``--firms`` firms observed over ``--years`` years (5,000 x 20 = 100,000 rows by
default): ``y = 0.02 x1 + 0.5 x2 + a_firm + b_year + e`` with ``x1`` correlated with the
firm effect and heteroscedastic noise, fitted as ``y ~ x1 + x2 | firm + year``. The audit asks
for the fewest rows whose removal flips the sign of ``x1`` and makes it insignificant (HC1,
clustered by firm, pyfixest's small-sample factors). Each route runs in its own process so
that its peak memory (``ru_maxrss``) is its own:

* ``absorbed``: ``leaveout.GLM.from_formula`` with ``| firm + year`` (firm absorbed, year
  as 19 demeaned dummies), then ``lo.audit``;
* ``dummies``: the plain ``GLM`` on the formula ``y ~ x1 + x2 + C(firm) + C(year)`` (a dense
  design of 5,021 columns and a 5,021 x 5,021 Hessian): fit and one refit only.

The removed rows are verified by an independent refit on the kept rows: pyfixest's ``feols``
when it is installed, else the dummy-variable normal equations solved by scipy's sparse LU.

    python benchmarks/bench_fixed_effects.py                 # --firms, --years, --seed
    python benchmarks/bench_fixed_effects.py --no-dummies    # skip the dummy-variable route
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import resource
import time

import numpy as np
import pandas as pd

Z = 1.959963984540054


def panel(firms, years, seed):
    rng = np.random.default_rng(seed)
    firm = np.repeat(np.arange(firms), years)
    year = np.tile(np.arange(years), firms)
    a = rng.normal(size=firms)[firm]
    b = 0.3 * rng.normal(size=years)[year]
    x1 = 0.5 * a + rng.normal(size=firm.size)
    x2 = rng.normal(size=firm.size)
    e = rng.normal(size=firm.size) * (1 + 0.5 * np.abs(x2))
    y = 0.02 * x1 + 0.5 * x2 + a + b + e
    return pd.DataFrame({"y": y, "x1": x1, "x2": x2, "firm": firm, "year": year})


def _peak_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_absorbed(args, q):
    import leaveout as lo
    from leaveout.metrics import Coefficient
    df = panel(args.firms, args.years, args.seed)
    base = _peak_mib()
    t0 = time.perf_counter()
    m = lo.GLM.from_formula("y ~ x1 + x2 | firm + year", df, family="squared")
    t_fit = time.perf_counter() - t0
    ses = {"iid": lo.summarize(m, se="nonrobust"), "hetero": lo.summarize(m, se="HC1"),
           "CRV1": lo.summarize(m, se="HC1", cluster=df["firm"].to_numpy())}
    out = {"fit_s": t_fit, "data_mib": base, "coef": [float(v) for v in m.theta_[:2]],
           "se": {k: [float(t.table["std err"][c]) for c in ("x1", "x2")] for k, t in ses.items()}}
    for target in ("sign", "significance"):
        t0 = time.perf_counter()
        res = lo.audit(m, Coefficient("x1"), target, se="HC1", cluster=df["firm"].to_numpy())
        out[target] = {"k": res.k, "reached": res.reached, "rows": [int(r) for r in res.rows],
                       "value": res.original["value"], "se": res.original["se"],
                       "refit_value": res.refit["value"], "refit_se": res.refit["se"],
                       "one_shot": res.one_shot["k"], "refits": res.refits, "seconds": time.perf_counter() - t0}
    out["peak_mib"] = _peak_mib()
    q.put(out)


def run_dummies(args, q):
    import leaveout as lo
    df = panel(args.firms, args.years, args.seed)
    base = _peak_mib()
    t0 = time.perf_counter()
    m = lo.GLM.from_formula("y ~ x1 + x2 + C(firm) + C(year)", df, family="squared", l2=0)
    t_fit = time.perf_counter() - t0
    att = lo.Attribution(m)
    t0 = time.perf_counter()
    att.retrain(np.arange(50))
    q.put({"fit_s": t_fit, "refit_s": time.perf_counter() - t0, "data_mib": base, "peak_mib": _peak_mib(),
           "params": int(m.theta_.size)})


def verify(df, rows):
    """``(coef, se)`` of x1 on the kept rows: pyfixest, or sparse normal equations (coef only)."""
    kept = df.drop(index=rows)
    try:
        import warnings

        import pyfixest as pf
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            f = pf.feols("y ~ x1 + x2 | firm + year", data=kept, vcov={"CRV1": "firm"})
        return float(f.coef()["x1"]), float(f.se()["x1"]), "pyfixest"
    except ImportError:
        import scipy.sparse as sp
        from scipy.sparse.linalg import splu
        n = len(kept)
        f = pd.factorize(kept["firm"])[0]
        yr = pd.factorize(kept["year"], sort=True)[0]
        D = sp.csr_matrix((np.ones(n), (np.arange(n), f)))
        Y = sp.csr_matrix((np.ones(n), (np.arange(n), yr)))[:, 1:]
        Zm = sp.hstack([sp.csr_matrix(kept[["x1", "x2"]].to_numpy()), Y, D]).tocsc()
        beta = splu((Zm.T @ Zm).tocsc()).solve(Zm.T @ kept["y"].to_numpy())
        return float(beta[0]), float("nan"), "sparse LU"


def child(fn, args):
    q = mp.get_context("fork").Queue()
    p = mp.get_context("fork").Process(target=fn, args=(args, q))
    p.start()
    out = q.get()
    p.join()
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--firms", type=int, default=5000)
    ap.add_argument("--years", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-dummies", action="store_true")
    args = ap.parse_args()
    df = panel(args.firms, args.years, args.seed)
    print(f"panel: {args.firms} firms x {args.years} years = {len(df)} rows; y ~ x1 + x2 | firm + year")
    a = child(run_absorbed, args)
    print(f"absorbed: fit {a['fit_s']:.2f} s; peak memory {a['peak_mib']:.0f} MiB (data alone {a['data_mib']:.0f} MiB)")
    try:
        import warnings

        import pyfixest as pf
        gaps = {}
        for kind, vcov in (("iid", "iid"), ("hetero", "hetero"), ("CRV1", {"CRV1": "firm"})):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                f = pf.feols("y ~ x1 + x2 | firm + year", data=df, vcov=vcov, fixef_tol=1e-12)
            gaps["coefficients"] = np.max(np.abs(np.array(a["coef"]) / f.coef().to_numpy() - 1))
            gaps[f"{kind} SEs"] = np.max(np.abs(np.array(a["se"][kind]) / f.se().to_numpy() - 1))
        print("  full sample against pyfixest (relative): " + ", ".join(f"{k} {v:.1e}" for k, v in gaps.items()))
    except ImportError:
        pass
    for target in ("sign", "significance"):
        r = a[target]
        coef, se, how = verify(df, r["rows"])
        t_after = coef / se if se == se else float("nan")
        print(f"  {target}: x1 = {r['value']:.5f} (se {r['se']:.5f}, t {r['value'] / r['se']:.2f}); "
              f"k = {r['k']} ({'reached' if r['reached'] else 'NOT reached'}), one-shot {r['one_shot']}, "
              f"{r['refits']} refits, {r['seconds']:.2f} s")
        print(f"    verified by {how}: x1 = {coef:.5f} (leaveout {r['refit_value']:.5f})"
              + (f", se {se:.5f} (leaveout {r['refit_se']:.5f}), t {t_after:.2f}" if se == se else ""))
    if not args.no_dummies:
        d = child(run_dummies, args)
        print(f"dummies ({d['params']} parameters): fit {d['fit_s']:.2f} s, one refit {d['refit_s']:.2f} s; "
              f"peak memory {d['peak_mib']:.0f} MiB (data alone {d['data_mib']:.0f} MiB)")
    print(json.dumps({"absorbed": {k: v for k, v in a.items() if k not in ("sign", "significance", "coef", "se")}}))


if __name__ == "__main__":
    main()
