"""The search's predictor: LightGBM regression from mixture weights to proxy score.

Parameters are the CLIMB recipe's (8_predict.py): gbdt, L1 = L2 = 1.0, lr 0.01, depth 4,
>= 5 rows per leaf, 1000 rounds with early stopping on l2 (patience min(20, n_val)) against a
shuffled 10% validation slice.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Fit:
    booster: object
    n_train: int
    n_val: int
    best_iteration: int
    val_spearman: float | None
    val_mae: float | None

    def predict(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(self.booster.predict(np.asarray(x, dtype=np.float64),
                                               num_iteration=self.best_iteration or None))

    def metrics(self) -> dict[str, float]:
        out = {"predictor_n_train": float(self.n_train), "predictor_n_val": float(self.n_val),
               "predictor_best_iteration": float(self.best_iteration)}
        if self.val_spearman is not None:
            out["predictor_val_spearman"] = self.val_spearman
        if self.val_mae is not None:
            out["predictor_val_mae"] = self.val_mae
        return out


PARAMS = {
    "boosting_type": "gbdt", "objective": "regression", "metric": ["l2", "l1"], "first_metric_only": True,
    "learning_rate": 0.01, "lambda_l1": 1.0, "lambda_l2": 1.0, "max_depth": 4, "min_child_samples": 5,
    # Small searches have few rows: let LightGBM bin and split them at all.
    "min_data_in_bin": 1, "min_sum_hessian_in_leaf": 0.0,
    "deterministic": True, "force_row_wise": True, "num_threads": 1, "verbose": -1,
}


def fit(x: np.ndarray, y: np.ndarray, seed: int, rounds: int = 1000) -> Fit:
    import lightgbm as lgb

    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if len(x) < 2:
        raise ValueError(f"the predictor needs at least 2 (mixture, score) pairs, got {len(x)}")
    order = np.random.default_rng(seed).permutation(len(x))
    n_val = max(1, int(round(0.1 * len(x))))
    val, train = order[:n_val], order[n_val:]
    params = dict(PARAMS, seed=seed)
    train_set = lgb.Dataset(x[train], y[train], params={"min_data_in_bin": 1})
    val_set = lgb.Dataset(x[val], y[val], reference=train_set)
    booster = lgb.train(params, train_set, num_boost_round=rounds, valid_sets=[val_set],
                        callbacks=[lgb.early_stopping(min(20, n_val), first_metric_only=True, verbose=False)])
    result = Fit(booster, len(train), n_val, int(booster.best_iteration or rounds), None, None)
    pred = result.predict(x[val])
    result.val_mae = float(np.mean(np.abs(pred - y[val])))
    result.val_spearman = spearman(pred, y[val])
    return result


def spearman(a: np.ndarray, b: np.ndarray) -> float | None:
    """Rank correlation; None where it is undefined (fewer than 3 rows, or a constant side)."""
    from scipy.stats import spearmanr

    if len(a) < 3 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return None
    return float(spearmanr(a, b).statistic)
