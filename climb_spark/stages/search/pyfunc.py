"""The search's whole predictor as one MLflow pyfunc model: what the search reports as a mixture's
predicted score, for anyone who loads it (`mlflow.pyfunc.load_model`).

For `climb` the predictor is an ensemble (LightGBM, kernel ridge and a mixing law, blended); the
recipe's methods fit LightGBM alone. The model is the fitted predictor itself, pickled with
cloudpickle together with the module that defines it (by value), so loading it needs numpy,
pandas, LightGBM and MLflow, not climb-spark. Columns `w_00`, `w_01`, ... are the weights of the
super-clusters in id order; the output is the predicted score (higher is better).
"""
import logging
import sys

import mlflow.pyfunc
import numpy as np
import pandas as pd


class MixturePredictor(mlflow.pyfunc.PythonModel):
    def __init__(self, fit, columns: list):
        self.fit, self.columns = fit, list(columns)

    # Annotated (evaluated, not postponed: the class is rebuilt where it is loaded), or MLflow warns
    # on every import that the input type is unknown.
    def predict(self, context, model_input: pd.DataFrame, params=None) -> np.ndarray:
        x = model_input[self.columns] if hasattr(model_input, "columns") else model_input
        return np.asarray(self.fit.predict(np.asarray(x, dtype=np.float64)), dtype=np.float64)


def columns(n: int) -> list:
    return [f"w_{i:02d}" for i in range(n)]


def log(fit, weights, name: str):
    """Log `fit` to the active run as `name`, with its signature and a few fitted mixtures as the
    input example; returns MLflow's ModelInfo."""
    import cloudpickle
    import lightgbm
    from mlflow.models import infer_signature

    from climb_spark.stages.search import predictor

    x = pd.DataFrame(np.asarray(weights, dtype=np.float64), columns=columns(len(weights[0])))
    model = MixturePredictor(fit, list(x.columns))
    signature = infer_signature(x, model.predict(None, x))
    by_value = [predictor, sys.modules[__name__]]
    for module in by_value:
        cloudpickle.register_pickle_by_value(module)
    # MLflow's advice on cloudpickled models and its "validating input example" line go to every
    # search's stderr; docs/reliability.md says what the model is and where to load it from.
    quiet = logging.getLogger("mlflow.pyfunc")
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        return mlflow.pyfunc.log_model(
            name=name, python_model=model, signature=signature, input_example=x.head(3),
            pip_requirements=[f"numpy=={np.__version__}", f"pandas=={pd.__version__}",
                              f"lightgbm=={lightgbm.__version__}", f"cloudpickle=={cloudpickle.__version__}"])
    finally:
        quiet.setLevel(level)
        for module in by_value:
            cloudpickle.unregister_pickle_by_value(module)
