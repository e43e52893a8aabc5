"""The export's copies plan as a plain function."""
import numpy as np
import pytest

from climb_spark.stages.export import stage as export


def test_export_plan_gives_expected_tokens_and_repeats_only_when_short():
    whole, frac = export.copies_plan(np.array([0.5, 0.3, 0.2, 0.0]), np.array([1000, 600, 100, 50]), 1000)
    expected = (whole + frac) * np.array([1000, 600, 100, 50])
    assert np.allclose(expected, [500, 300, 200, 0])
    assert whole.tolist() == [0, 0, 2, 0]  # only the 100-token cluster has to repeat
    with pytest.raises(RuntimeError, match=r"\[1\] have weight but no documents"):
        export.copies_plan(np.array([0.5, 0.5]), np.array([10, 0]), 100)
