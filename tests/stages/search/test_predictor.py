"""The LightGBM predictor as a plain function."""
import numpy as np
import pytest

from climb_spark.stages.search import predictor


def test_predictor_learns_a_known_response_and_reports_fit():
    rng = np.random.default_rng(0)
    x = rng.dirichlet(np.ones(5), size=120)
    y = 2 * x[:, 0] - x[:, 1] + rng.normal(0, 0.01, 120)
    fit = predictor.fit(x, y, seed=42)
    assert fit.n_val == 12 and fit.n_train == 108
    assert fit.val_spearman is not None and fit.val_spearman > 0.7
    test = rng.dirichlet(np.ones(5), size=200)
    truth = 2 * test[:, 0] - test[:, 1]
    assert predictor.spearman(fit.predict(test), truth) > 0.8
    assert np.array_equal(predictor.fit(x, y, seed=42).predict(test), fit.predict(test))
    tiny = predictor.fit(x[:4], y[:4], seed=1)  # the first iterations of a scaled-down search
    assert tiny.val_spearman is None and np.isfinite(tiny.predict(test)).all()
    with pytest.raises(ValueError, match="at least 2"):
        predictor.fit(x[:1], y[:1], seed=1)
