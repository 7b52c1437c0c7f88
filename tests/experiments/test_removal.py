import numpy as np
import pytest
import scipy.sparse as sp

from leaveout.removal import DEFAULT_STRATEGIES, RemovalContext, Strategy, removal_set, removal_sizes


@pytest.fixture
def ctx():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 7))
    scores = {"test-loss": rng.normal(size=200), "test-pred": rng.normal(size=200),
              "self-loss": rng.random(200)}
    return RemovalContext(X, scores)


@pytest.mark.parametrize("strategy", list(Strategy))
@pytest.mark.parametrize("k", [1, 7, 40])
def test_sets_are_distinct_in_range_sorted_and_seeded(ctx, strategy, k):
    T = removal_set(strategy, k, np.random.default_rng(5), ctx)
    assert T.shape == (k,) and np.unique(T).size == k and T.min() >= 0 and T.max() < 200
    assert np.all(np.diff(T) > 0)
    np.testing.assert_array_equal(T, removal_set(strategy, k, np.random.default_rng(5), ctx))


@pytest.mark.parametrize("strategy,metric,sign", [
    ("top-test-loss-pos", "test-loss", 1), ("top-test-loss-neg", "test-loss", -1),
    ("top-test-pred-pos", "test-pred", 1), ("top-test-pred-neg", "test-pred", -1),
    ("high-self-loss", "self-loss", 1)])
def test_top_strategies_take_a_half_of_the_true_top_2k(ctx, strategy, metric, sign):
    k = 10
    s = sign * ctx.scores[metric]
    top2k = set(np.argsort(-s)[:2 * k].tolist())   # brute force: the 2k largest
    seen = set()
    for seed in range(20):
        T = removal_set(strategy, k, np.random.default_rng(seed), ctx)
        assert set(T.tolist()) <= top2k
        seen |= set(T.tolist())
    assert seen == top2k      # over many seeds, every one of the top 2k gets picked


def test_cluster_l2_returns_nearest_neighbours_of_a_sample(ctx):
    T = removal_set("cluster-l2", 12, np.random.default_rng(3), ctx)
    X = ctx.X
    # some sample c in T has all of T as its 12 nearest rows (brute force over centres)
    found = False
    for c in T:
        d = np.linalg.norm(X - X[c], axis=1)
        if set(np.argsort(d)[:12].tolist()) == set(T.tolist()):
            found = True
    assert found


def test_cluster_feature_takes_the_closest_values_of_one_feature(ctx):
    T = removal_set("cluster-feature", 15, np.random.default_rng(4), ctx)
    X = ctx.X
    ok = False
    for j in range(X.shape[1]):
        for c in T:
            d = np.abs(X[:, j] - X[c, j])
            if set(np.argsort(d)[:15].tolist()) == set(T.tolist()):
                ok = True
    assert ok


def test_sparse_features_work(ctx):
    sctx = RemovalContext(sp.csr_matrix(ctx.X * (ctx.X > 0.5)), ctx.scores)
    for strategy in ("cluster-l2", "cluster-feature"):
        T = removal_set(strategy, 9, np.random.default_rng(0), sctx)
        assert np.unique(T).size == 9
    dense = RemovalContext(sctx.X.toarray(), ctx.scores)
    np.testing.assert_array_equal(removal_set("cluster-l2", 9, np.random.default_rng(0), sctx),
                                  removal_set("cluster-l2", 9, np.random.default_rng(0), dense))


def test_sizes():
    k = removal_sizes(9600, 40)
    assert k.size == 40 and k[0] == 10 and k[-1] == 480
    np.testing.assert_array_equal(removal_sizes(100, 40), np.arange(1, 6))   # repeats dropped
    with pytest.raises(ValueError, match="sizes must be a positive integer"):
        removal_sizes(100, 0)
    with pytest.raises(ValueError, match="needs at least"):
        removal_sizes(10, 3, high=0.9)


def test_default_strategies_are_the_papers_seven():
    assert [s.value for s in DEFAULT_STRATEGIES] == [
        "random", "cluster-feature", "cluster-l2", "top-test-loss-pos", "top-test-loss-neg",
        "top-test-pred-pos", "top-test-pred-neg"]


def test_bad_arguments(ctx):
    with pytest.raises(ValueError, match="unknown strategy 'nearest'"):
        removal_set("nearest", 3, np.random.default_rng(0), ctx)
    with pytest.raises(ValueError, match="removal size"):
        removal_set("random", 0, np.random.default_rng(0), ctx)
    with pytest.raises(TypeError, match="Generator"):
        removal_set("random", 3, 0, ctx)


def test_cluster_feature_centres_follow_the_data_not_its_mirror():
    # all-positive features: a set centred on the drawn row covers the whole range over seeds;
    # a band around -x_i (a sign slip) would always be the k smallest values
    rng = np.random.default_rng(1)
    X = rng.exponential(size=(300, 3))
    ctx = RemovalContext(X, {})
    k = 10
    lowest = {j: set(np.argsort(X[:, j])[:k].tolist()) for j in range(3)}
    at_bottom = sum(any(set(removal_set("cluster-feature", k, np.random.default_rng(s), ctx).tolist()) == lowest[j]
                        for j in range(3)) for s in range(30))
    assert at_bottom <= 3


@pytest.mark.parametrize("scale", [1.0, 0.05])
def test_cluster_l2_is_the_centre_and_its_nearest_rows_at_any_scale(scale):
    # at scale 0.05 every squared distance is below 1: a floor or a misplaced centre shows
    rng = np.random.default_rng(2)
    X = rng.normal(size=(150, 5)) * scale
    ctx = RemovalContext(X, {})
    for seed in range(5):
        T = removal_set("cluster-l2", 8, np.random.default_rng(seed), ctx)
        ok = [c for c in T if set(np.argsort(np.linalg.norm(X - X[c], axis=1))[:8].tolist()) == set(T.tolist())]
        assert ok


def test_size_limits_are_exact():
    from leaveout.removal import removal_sizes
    ks = removal_sizes(200, count=5, low=0.01, high=0.5)            # largest 100: needs exactly 200 rows
    assert ks.max() == 100
    with pytest.raises(ValueError, match="at least 202 training rows"):
        removal_sizes(201, count=5, low=0.01, high=0.5026)
    ctx = RemovalContext(np.zeros((10, 2)), {})
    assert removal_set("random", 9, np.random.default_rng(0), ctx).size == 9
    with pytest.raises(ValueError, match="between 1 and 9"):
        removal_set("random", 10, np.random.default_rng(0), ctx)
