"""The package's shape, measured: no import cycle, no oversized module, backends told apart by
behaviour, dask imported only for dask input, and the public API and CLI unchanged."""

import ast
import subprocess
import sys
from pathlib import Path

import leaveout

SRC = Path(leaveout.__file__).resolve().parent
MAX_LINES = 500


def _modules():
    """``{module name: path}`` for every module of the package."""
    out = {}
    for path in sorted(SRC.rglob("*.py")):
        parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _imports(name, path, modules):
    """Modules of the package that ``name`` imports, lazily (inside functions) or not."""
    is_pkg = path.name == "__init__.py"
    package = name if is_pkg else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            # "from pkg import sub" imports the module pkg.sub when there is one
            targets = [f"{mod}.{a.name}" if f"{mod}.{a.name}" in modules else mod for a in node.names]
        else:
            continue
        found.update(t for t in targets if t in modules and t != name)
    return found


def import_graph():
    modules = _modules()
    return {name: _imports(name, path, modules) for name, path in modules.items()}


def find_cycle(graph):
    """One import cycle as a list of modules, or None (depth-first search)."""
    state, stack = {}, []

    def visit(u):
        state[u] = 1
        stack.append(u)
        for w in sorted(graph[u]):
            if state.get(w) == 1:
                return stack[stack.index(w):] + [w]
            if w not in state:
                cyc = visit(w)
                if cyc:
                    return cyc
        stack.pop()
        state[u] = 2
        return None

    for u in sorted(graph):
        if u not in state:
            cyc = visit(u)
            if cyc:
                return cyc
    return None


def test_cycle_finder_finds_a_planted_cycle():
    # the checker itself must be able to fail
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None


def test_the_graph_sees_lazy_and_relative_imports():
    graph = import_graph()
    assert "leaveout.design.distributed" in graph["leaveout.design"]        # lazy, inside as_design
    assert "leaveout.glm.solver" in graph["leaveout.attribution.refit"]     # relative, two levels


def test_no_import_cycle():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_maths_layers_import_no_io_plotting_or_cli():
    graph = import_graph()
    above = ("leaveout.experiments", "leaveout.cli", "leaveout.datasets", "leaveout.adapters")
    for name, deps in graph.items():
        if name.startswith(("leaveout.glm", "leaveout.design", "leaveout.attribution", "leaveout.metrics")):
            bad = [d for d in deps if d.startswith(above)]
            assert not bad, f"{name} imports {bad}"


def test_no_module_is_oversized():
    sizes = {name: len(path.read_text(encoding="utf-8").splitlines()) for name, path in _modules().items()}
    big = {k: n for k, n in sizes.items() if n > MAX_LINES}
    assert not big, f"modules over {MAX_LINES} lines: {big}"


def test_no_class_of_ours_is_recognised_by_its_name():
    # (adapters recognise scikit-learn and statsmodels estimators by their class names, so
    # that neither library is imported: some of those names are also ours, GLM and Logit)
    own = set()
    for path in _modules().values():
        own.update(n.name for n in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
                   if isinstance(n, ast.ClassDef))
    hits = []
    for name, path in _modules().items():
        if name == "leaveout.adapters":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Compare):
                consts = [c.value for c in [node.left, *node.comparators]
                          if isinstance(c, ast.Constant) and isinstance(c.value, str)]
                hits += [f"{name}:{node.lineno} {c}" for c in consts if c in own]
    assert not hits, hits


def test_dask_is_imported_only_when_a_dask_array_arrives():
    code = ("import sys, numpy as np, leaveout as lo\n"
            "X = np.random.default_rng(0).normal(size=(60, 3)); y = (X[:, 0] > 0).astype(int)\n"
            "att = lo.Attribution(lo.GLM().fit(X, y)); att.delta([1, 2], 'retrain')\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'dask' or m.endswith('distributed')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_public_api_is_unchanged():
    assert sorted(leaveout.__all__) == sorted([
        "GLM", "Attribution", "metrics", "from_sklearn", "from_statsmodels", "ConvergenceWarning",
        "ConvergenceError", "SingularHessianError", "LeverageError", "__version__",
        "audit", "AuditResult",                  # added by the audit (#12)
        "UnreliableEstimateWarning",             # added by the trust report (#13)
        "summarize",                             # the coefficient table (#21)
        "FixedEffectsGLM", "IV2SLS",             # absorbed fixed effects, 2SLS (#24)
        "from_pyfixest", "from_linearmodels",
        "from_weights"])                         # weights trained elsewhere (#23)
    # the stable import paths that examples and users rely on
    from leaveout.experiment import ReproduceConfig, Runner  # noqa: F401
    from leaveout.losses import sum_to_zero_basis  # noqa: F401
    from leaveout.removal import DEFAULT_STRATEGIES  # noqa: F401


def _options(parser):
    out = {}
    for action in parser._actions:
        choices = getattr(action, "choices", None)
        if isinstance(choices, dict):       # the sub-commands
            for cmd, sub in choices.items():
                out[cmd] = _options(sub)
        else:
            out.update({opt: None for opt in action.option_strings} or {action.dest: None})
    return out


def test_cli_commands_and_options_are_unchanged():
    # the options of the layout issue (#10), plus those that tables (#11) added
    from leaveout.cli import build_parser
    opts = _options(build_parser())
    model = {"data", "--test-index", "--family", "--classes", "--label", "--l2", "--penalty",
             "--no-intercept", "-h", "--help"}
    tables = {"--formula", "--target", "--id", "--test", "--test-rows", "--test-fraction", "--seed",
              "--drop-missing", "--weights", "--weight-kind"}        # weights: #21
    assert set(opts) == {"-h", "--help", "--version", "fit", "suspects", "check", "audit", "scores", "effect",
                         "reproduce", "datasets"}
    assert set(opts["fit"]) == model | tables | {"--json", "--se", "--cluster", "--alpha"}
    assert set(opts["scores"]) == model | tables | {"--metric", "--out"}
    assert set(opts["effect"]) == model | tables | {"--remove", "--json", "--coef"}
    assert set(opts["reproduce"]) == {
        "datasets", "--out", "--figure", "--sizes", "--l2", "--penalty", "--jobs", "--data-dir",
        "--strategy", "--seed", "--quiet", "--dask", "--scheduler", "-h", "--help"}
    assert set(opts["datasets"]) == {"--data-dir", "-h", "--help"}
