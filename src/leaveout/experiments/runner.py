"""The paper's experiments end to end: config -> runner -> result store -> summary.

This is the only layer that writes files. A run folder holds

* ``config.json``: every setting, seeds, package versions, the penalty used per dataset
  and the test-subset rows per dataset (``"test_index": {dataset: [...]}``);
* ``removal_sets.jsonl``: one ``{"dataset", "strategy", "k", "indices"}`` object per line;
* ``results.csv``: one row per (dataset, strategy, k, metric) with the actual removal
  effect (from a certified retrain) and the IF / RIF / NS predictions, removal and linear;
* ``poisoning.csv`` (figure 3), ``summary.csv``, the figures and ``report.md``.

Results are appended one removal set at a time with an fsync, so an interrupted run
loses at most the set in flight, and rerunning the same command skips finished sets.
A folder whose saved config differs from the requested one is refused.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
import warnings
import zlib
from dataclasses import dataclass

import numpy as np

from .._version import __version__
from ..attribution import Attribution
from ..datasets import default_l2, resolve
from ..diagnostics.indicators import ProtocolTrust
from ..exceptions import ConvergenceWarning
from ..glm import GLM
from ..metrics import Logit, SelfLoss, TestLoss, TestPrediction, select_test_subset
from .config import METRIC_NAMES, POISON_COLUMNS, RESULT_COLUMNS, ReproduceConfig, RunError
from .evaluate import WORK, batches as make_batches, evaluate_batch
from .removal import RemovalContext, Strategy, parse_strategy, removal_set, removal_sizes
from .report import write_report
from .store import ResultStore, atomic_write
from .summary import summarize, write_summary

__all__ = ["Runner"]

#: seconds between status lines when the output is not a terminal
PROGRESS_SECONDS = 30


def _versions():
    from importlib.metadata import PackageNotFoundError, version

    import scipy
    out = {"leaveout": __version__, "numpy": np.__version__, "scipy": scipy.__version__,
           "python": platform.python_version()}
    for dist in ("scikit-learn", "matplotlib", "tqdm"):
        try:
            out[dist] = version(dist)      # without importing the package (memory)
        except PackageNotFoundError:
            pass
    return out


def _stable_seed(*parts) -> list:
    return [zlib.crc32(str(p).encode()) for p in parts]


@dataclass
class _Problem:
    name: str
    X: object
    y: np.ndarray
    X_test: object
    y_test: np.ndarray
    l2: float
    sizes: int


class Runner:
    """Run (or resume) a reproduction into an output folder.

    Parameters
    ----------
    config : ReproduceConfig
    out : str
        Output folder (created if missing).
    jobs : int
        Worker threads for the retrains (or, with ``scheduler="local"``, worker processes
        of the local dask cluster).
    scheduler : str, optional
        Run the retrain batches as tasks on a ``dask.distributed`` cluster: ``"local"``
        starts a LocalCluster of ``jobs`` single-threaded worker processes on this
        machine; any other value is a scheduler address (``tcp://host:8786``). Results
        stream into the same resumable store as they arrive.
    progress : bool
        Show a progress bar (tqdm) over removal sets.
    log : callable
        Receives one-line status messages.
    """

    #: seconds to wait for a remote dask scheduler
    connect_timeout = 30

    def __init__(self, config: ReproduceConfig, out: str, jobs: int = 1, progress: bool = True, log=print,
                 scheduler: str | None = None):
        self.config = config.validate()
        self.out = out
        if not isinstance(jobs, int) or jobs < 1:
            raise RunError(f"--jobs must be a positive integer, got {jobs}")
        self.jobs = jobs
        self.scheduler = scheduler
        self._client = None
        self._cluster = None
        self.progress = progress
        self.log = log
        self.results = ResultStore(os.path.join(out, "results.csv"), RESULT_COLUMNS,
                                   ("dataset", "strategy", "k"), len(METRIC_NAMES))
        self.poison = ResultStore(os.path.join(out, "poisoning.csv"), POISON_COLUMNS,
                                  ("dataset", "test_index"), 1)

    # ------------------------------------------------------------ folder
    def _prepare_folder(self):
        out = self.out
        if os.path.exists(out) and not os.path.isdir(out):
            raise RunError(f"--out {out!r} is a file, not a folder")
        try:
            os.makedirs(out, exist_ok=True)
            probe = os.path.join(out, f".write-test-{os.getpid()}")
            with open(probe, "w") as fh:
                fh.write("")
            os.unlink(probe)
        except OSError as exc:
            raise RunError(f"--out {out!r} is not writable: {exc.strerror}") from None
        path = os.path.join(out, "config.json")
        wanted = self.config.to_json()
        if os.path.exists(path):
            try:
                with open(path, encoding="utf-8") as fh:
                    saved = json.load(fh)
            except (OSError, ValueError) as exc:
                raise RunError(f"{path} is unreadable ({exc}); use a new --out folder") from None
            if saved.get("config") != wanted and self._finished_nothing():
                # a config without a finished set (e.g. a run stopped at once): nothing to keep
                self.log(f"--out {out!r}: replacing the settings of a run that finished no set")
                sets = os.path.join(out, "removal_sets.jsonl")
                if os.path.exists(sets):
                    os.unlink(sets)
                saved = {"config": wanted, "l2": {}, "test_index": {}, "n": {}, "d": {}}
            if saved.get("config") != wanted:
                diff = sorted(k for k in set(wanted) | set(saved.get("config", {}))
                              if wanted.get(k) != saved.get("config", {}).get(k))
                raise RunError(f"--out {out!r} holds results of a different config (differs in: "
                               f"{', '.join(diff)}); use a new --out folder or the same settings")
            self.meta = saved
        else:
            self.meta = {"config": wanted, "l2": {}, "test_index": {}, "n": {}, "d": {}}
        self.meta["versions"] = _versions()
        self._save_meta()

    def _finished_nothing(self) -> bool:
        """True when the folder holds no finished removal set and no poisoning row."""
        return not self.results.load() and not self.poison.load()

    def _save_meta(self):
        atomic_write(os.path.join(self.out, "config.json"), json.dumps(self.meta, indent=1) + "\n")

    # ------------------------------------------------------------ problems
    def _load(self):
        cfg = self.config
        data = []
        for spec in cfg.datasets:
            ds = resolve(spec, cfg.data_dir)
            if any(d.name == ds.name for d in data):
                raise RunError(f"dataset {ds.name!r} is given twice")
            data.append(ds)
        return data

    def _fit(self, prob: _Problem):
        model = GLM(l2=prob.l2, penalty=self.config.penalty).fit(prob.X, prob.y)
        if not model.converged_:
            raise RunError(f"{prob.name}: the model did not converge (relative gradient {model.grad_norm_:.1e})")
        return model

    def run(self):
        """Run (or resume) into the output folder; another run on the same folder is refused
        while this one holds its lock (``.lock``, released when the process ends)."""
        data = self._load()          # every input checked before anything is written
        self._lock_folder()
        try:
            return self._run(data)
        finally:
            self._unlock_folder()

    def _lock_folder(self):
        """An exclusive lock on ``out/.lock`` (POSIX ``flock``; the kernel releases it when the
        process ends, even on SIGKILL). Where flock does not exist, no lock is taken."""
        self._lock = None
        try:
            import fcntl
        except ImportError:          # pragma: no cover (not POSIX)
            return
        if os.path.exists(self.out) and not os.path.isdir(self.out):
            raise RunError(f"--out {self.out!r} is a file, not a folder")
        try:
            os.makedirs(self.out, exist_ok=True)
            fh = open(os.path.join(self.out, ".lock"), "a+")
        except OSError as exc:
            raise RunError(f"--out {self.out!r} is not writable: {exc.strerror}") from None
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            fh.seek(0)
            holder = fh.read().strip() or "?"
            fh.close()
            raise RunError(f"--out {self.out!r} is in use by another leaveout reproduce (pid {holder}); "
                           "wait for it to finish or use another folder") from None
        fh.seek(0)
        fh.truncate()
        fh.write(str(os.getpid()))
        fh.flush()
        self._lock = fh

    def _unlock_folder(self):
        if getattr(self, "_lock", None) is not None:
            self._lock.close()           # closing releases the flock
            self._lock = None

    def _run(self, data):
        t0 = time.perf_counter()
        cfg = self.config
        self._prepare_folder()
        done = {(r["dataset"], r["strategy"], r["k"]) for r in self.results.load()}
        problems = []
        if 1 in cfg.figures or 4 in cfg.figures:
            for ds in data:
                problems.append(_Problem(ds.name, ds.X_train, ds.y_train, ds.X_test, ds.y_test,
                                         self._l2(ds.name), cfg.sizes))
        if 2 in cfg.figures:
            problems += self._figure2_problems(data)
        if 2 not in cfg.figures and 3 not in cfg.figures:
            for ds in data:      # the problems hold what they need; free the rest
                ds.X_train = ds.X_test = None
        try:
            while problems:
                self._run_protocol(problems.pop(0), done)
        finally:
            self._close_client()
        if 3 in cfg.figures:
            self._run_poisoning(data[0])
        self.meta["seconds"] = self.meta.get("seconds", 0.0) + (time.perf_counter() - t0)
        self._save_meta()
        self.finish()
        return self.out

    def _l2(self, name):
        return self.config.l2 if self.config.l2 is not None else default_l2(name)

    def _figure2_problems(self, data):
        cfg = self.config
        base = data[0]
        n, d = base.X_train.shape
        rng = np.random.default_rng(_stable_seed(cfg.seed, base.name, "figure2"))
        perm = rng.permutation(n)
        probs = []
        for r in cfg.fig2_ratios:
            m = int(r * d)
            if m > n or m < 20:
                continue
            rows = np.sort(perm[:m])
            probs.append(_Problem(f"{base.name}[n={m}]", base.X_train[rows], base.y_train[rows],
                                  base.X_test, base.y_test, self._l2(base.name), cfg.fig2_sizes))
        wide = next((ds for ds in data if ds.X_train.shape[1] > ds.X_train.shape[0]), None)
        if wide is not None:
            Xw, yw, name = wide.X_train, wide.y_train, wide.name
        else:
            m = max(20, d // 2)
            rows = np.sort(perm[:m])
            Xw, yw, name = base.X_train[rows], base.y_train[rows], f"{base.name}[n={m}]"
            wide = base
        for lam in cfg.fig2_l2:
            probs.append(_Problem(f"{name}[l2={lam:g}]", Xw, yw, wide.X_test, wide.y_test, float(lam), cfg.fig2_sizes))
        return probs

    def _run_protocol(self, prob: _Problem, done):
        cfg = self.config
        model = self._fit(prob)
        n_rows, n_cols = prob.X.shape
        prob.X = None            # the model holds the float64 design; drop the raw copy
        att = Attribution(model)
        idx = select_test_subset(model, prob.X_test, prob.y_test, seed=cfg.seed)
        self.meta["test_index"][prob.name] = idx.tolist()
        self.meta["l2"][prob.name] = prob.l2
        self.meta["n"][prob.name], self.meta["d"][prob.name] = int(n_rows), int(n_cols)
        self._save_meta()
        metrics = {"test-pred": TestPrediction(prob.X_test[idx]),
                   "test-loss": TestLoss(prob.X_test[idx], prob.y_test[idx]), "self-loss": SelfLoss()}
        prob.X_test = prob.y_test = None     # only the selected rows are needed from here
        strategies = [parse_strategy(s) for s in cfg.strategies]
        scores = {}
        for name in ("test-loss", "test-pred", "self-loss"):
            if name == "self-loss" and Strategy.HIGH_SELF_LOSS not in strategies:
                continue
            scores[name] = att.scores(metrics[name], "if")
        # the float64 design itself (its intercept column leaves L2 distances unchanged)
        ctx = RemovalContext(model.objective_.design.A, scores, n_features=n_cols)
        ks = removal_sizes(n_rows, prob.sizes)
        sets = []
        for strat in strategies:
            rng = np.random.default_rng(_stable_seed(cfg.seed, prob.name, strat.value))
            for k in ks:
                sets.append(((prob.name, strat.value, int(k)), removal_set(strat, int(k), rng, ctx)))
        self._record_sets(prob.name, sets)
        # size-major order: under per_sample, sets of one size share the factor of H - C M
        todo = sorted(((key, T) for key, T in sets if key not in done), key=lambda kt: (kt[0][2], kt[0][1]))
        self.log(f"{prob.name}: n={n_rows} d={n_cols} l2={prob.l2:g} "
                 f"mean leverage {att.leverage.mean():.3f}; {len(sets) - len(todo)} of {len(sets)} sets done")
        if todo:
            att.prepare(threads=self.jobs)   # shared by the constants and the workers: built once, here
            trust = ProtocolTrust(att, metrics)
            eta = {m: float(np.max(trust.pieces[m].sw * np.abs(trust.pieces[m].xf))) for m in trust.names}
            self.meta.setdefault("trust", {})[prob.name] = {**trust.constants.to_dict(), "eta": eta}
            self._save_meta()
            self._evaluate_all(att, metrics, todo, prob.name, trust)

    def _record_sets(self, dataset, sets):
        path = os.path.join(self.out, "removal_sets.jsonl")
        lines = []
        if os.path.exists(path):
            with open(path, encoding="utf-8") as fh:
                lines = [json.loads(line) for line in fh if line.strip()]
        have = {(o["dataset"], o["strategy"], o["k"]): o["indices"] for o in lines}
        changed = False
        for (ds, strat, k), T in sets:
            old = have.get((ds, strat, k))
            if old is None:
                lines.append({"dataset": ds, "strategy": strat, "k": k, "indices": T.tolist()})
                changed = True
            elif old != T.tolist():
                raise RunError(f"{path} holds a different removal set for {ds}/{strat}/k={k}; "
                               "the data changed since that run: use a new --out folder")
        if changed:
            atomic_write(path, "".join(json.dumps(o) + "\n" for o in lines))

    # ------------------------------------------------------------ dask
    def _dask_client(self):
        """The distributed client (started on first use)."""
        if self._client is None:
            try:
                from dask.distributed import Client, LocalCluster
            except ImportError:
                raise RunError("--dask / --scheduler need dask.distributed: pip install 'leaveout[dask]'") from None
            if self.scheduler == "local":
                self._cluster = LocalCluster(n_workers=self.jobs, threads_per_worker=1, processes=True,
                                             host="127.0.0.1", dashboard_address=None)
                self._client = Client(self._cluster)
            else:
                try:
                    self._client = Client(self.scheduler, timeout=self.connect_timeout)
                except (OSError, TimeoutError, ValueError) as exc:
                    raise RunError(f"--scheduler {self.scheduler!r}: cannot connect ({exc})") from None
            n = len(self._client.scheduler_info().get("workers", {}))
            self.log(f"dask: {n} workers at {self._client.scheduler.address}")
        return self._client

    def _close_client(self):
        if self._client is not None:
            self._client.close()
            self._client = None
        if self._cluster is not None:
            self._cluster.close()
            self._cluster = None

    def _evaluate_dask(self, att, metrics, batches, on_done, trust=None):
        """Submit every batch as a task; hand results to ``on_done`` as they complete."""
        from dask.distributed import as_completed
        client = self._dask_client()
        shared = client.scatter([att, metrics, trust], broadcast=True, hash=False)
        futures = [client.submit(evaluate_batch, batch, shared[0], shared[1], shared[2], pure=False)
                   for batch in batches]
        try:
            for fut in as_completed(futures):
                on_done(fut.result())
                fut.release()
        except BaseException:
            client.cancel(futures)
            raise

    def _evaluate_all(self, att, metrics, todo, label, trust=None):
        """Evaluate removal sets in batches; with ``jobs > 1``, in that many threads.

        Threads share X and the factorisations (no copies); each runs its BLAS calls on
        one core. Rows are stored as soon as a batch is done.
        """
        from contextlib import nullcontext
        from concurrent.futures import ThreadPoolExecutor

        from tqdm import tqdm
        WORK["att"], WORK["metrics"], WORK["trust"] = att, metrics, trust
        att.prepare(threads=self.jobs)    # shared by the workers: built once, here
        bar = tqdm(total=len(todo), desc=label, unit="set", disable=None if self.progress else True, leave=False)
        n_bad = 0
        batches = make_batches(todo)
        # without a terminal there is no bar: a status line every 10 % of the sets or 30 s
        lines = self.progress and not sys.stderr.isatty()
        last = {"t": time.monotonic(), "decile": 0, "done": 0}

        def store(batch_rows):
            nonlocal n_bad
            for rows in batch_rows:
                self.results.append(rows)
                n_bad += not rows[0]["retrain_converged"]
                bar.update(1)
                last["done"] += 1
            if lines:
                decile = 10 * last["done"] // len(todo)
                if decile > last["decile"] or time.monotonic() - last["t"] >= PROGRESS_SECONDS:
                    self.log(f"{label}: {last['done']} of {len(todo)} sets done")
                    last["decile"], last["t"] = decile, time.monotonic()

        if self.scheduler is not None:
            try:
                self._evaluate_dask(att, metrics, batches, store, trust)
            finally:
                bar.close()
                WORK.clear()
            if n_bad:
                self.log(f"{label}: {n_bad} retrains did not converge; flagged and left out of the summary")
            return
        pool = ThreadPoolExecutor(self.jobs) if self.jobs > 1 else None
        limit = nullcontext()
        if pool is not None:
            from threadpoolctl import threadpool_limits
            limit = threadpool_limits(1)
        try:
            with limit:
                results = map(evaluate_batch, batches) if pool is None else pool.map(evaluate_batch, batches)
                for batch_rows in results:
                    store(batch_rows)
        finally:
            if pool is not None:
                pool.shutdown(wait=True, cancel_futures=True)
            bar.close()
            WORK.clear()
        if n_bad:
            self.log(f"{label}: {n_bad} retrains did not converge; flagged and left out of the summary")

    def _run_poisoning(self, ds):
        """Figure 3: add a test point with a flipped label, predict the effect of removing it
        on its own logit, and compare with the clean fit (the exact leave-it-out model)."""
        cfg = self.config
        l2 = self._l2(ds.name)
        clean = self._fit(_Problem(ds.name, ds.X_train, ds.y_train, ds.X_test, ds.y_test, l2, cfg.sizes))
        n_test = ds.X_test.shape[0]
        rng = np.random.default_rng(_stable_seed(cfg.seed, ds.name, "poisoning"))
        picks = rng.choice(n_test, size=min(cfg.n_poison, n_test), replace=False)
        done = {r["test_index"] for r in self.poison.load() if r["dataset"] == ds.name}
        import scipy.sparse as sp
        from tqdm import tqdm
        y_classes = np.unique(ds.y_train)
        for j in tqdm(picks, desc=f"{ds.name} poisoning", unit="pt", disable=None if self.progress else True, leave=False):
            j = int(j)
            if j in done:
                continue
            xj = ds.X_test[j:j + 1]
            flipped = y_classes[0] if ds.y_test[j] == y_classes[1] else y_classes[1]
            X = sp.vstack([ds.X_train, xj], format="csr") if sp.issparse(xj) else np.vstack([ds.X_train, xj])
            y = np.append(ds.y_train, flipped)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)
                poisoned = GLM(l2=l2, penalty=cfg.penalty).fit(X, y, init=clean.theta_)
            if not poisoned.converged_:
                continue
            att = Attribution(poisoned)
            f = Logit(xj)
            T = [X.shape[0] - 1]
            self.poison.append([{
                "dataset": ds.name, "test_index": j,
                "actual": att.effect_of(clean.theta_ - poisoned.theta_, f),
                "if": att.effect_of(att.delta(T, "if"), f), "rif": att.effect_of(att.delta(T, "rif"), f),
                "retrain_converged": bool(clean.converged_), "retrain_grad_norm": float(clean.grad_norm_)}])

    # ------------------------------------------------------------ outputs
    def finish(self):
        """Write summary.csv, the figures and report.md from the stored results."""
        rows = self.results.load()
        summary = summarize(rows)
        write_summary(summary, os.path.join(self.out, "summary.csv"))
        from . import plots
        poison = self.poison.load()
        figs = plots.make_figures(self.out, self.config.figures, list(self.meta["test_index"]), rows, poison)
        write_report(self.out, self.meta, summary, figs, rows, poison)
