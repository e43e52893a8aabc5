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


@dataclass
class Ensemble:
    """A predictor that stays informative with a handful of pairs. Two model families, each
    fitted per fold and on every pair:
    - LightGBM with the recipe's parameters, its number of rounds chosen by k-fold CV (as lgb.cv
      does) instead of on one 10% slice. With tens of pairs its trees cannot split, so it
      predicts a constant: it says nothing.
    - kernel ridge regression (RBF over the weights) with length scale and ridge chosen by
      closed-form leave-one-out error: smooth, so a few pairs already say which way is up.
    The blend of the two is chosen by out-of-fold error; the spread of the fold blends is the
    uncertainty. `cv_pred` holds each pair's out-of-fold prediction, so the CV metrics exist from
    3 pairs on."""

    lgb_members: list
    rounds: int
    krr_members: list
    blend: float  # weight of LightGBM; 1 - blend goes to kernel ridge
    cv_pred: np.ndarray
    y: np.ndarray

    @property
    def booster(self):
        return self.lgb_members[-1]  # the refit on every pair: the model logged to MLflow

    def predict_dist(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        x = np.asarray(x, dtype=np.float64)
        preds = np.stack([self.blend * g.predict(x, num_iteration=self.rounds) + (1 - self.blend) * k.predict(x)
                          for g, k in zip(self.lgb_members, self.krr_members)])
        return preds.mean(axis=0), preds.std(axis=0)

    def predict(self, x: np.ndarray) -> np.ndarray:
        return self.predict_dist(x)[0]

    @property
    def cv_spearman(self) -> float | None:
        return spearman(self.cv_pred, self.y)

    @property
    def cv_mae(self) -> float:
        return float(np.mean(np.abs(self.cv_pred - self.y)))

    def metrics(self) -> dict[str, float]:
        out = {"predictor_n_pairs": float(len(self.y)), "predictor_rounds": float(self.rounds),
               "predictor_lightgbm_share": self.blend, "predictor_cv_mae": self.cv_mae}
        if self.cv_spearman is not None:
            out["predictor_cv_spearman"] = self.cv_spearman
        return out


@dataclass
class KernelRidge:
    x: np.ndarray
    alpha: np.ndarray
    offset: float
    length: float

    def predict(self, x: np.ndarray) -> np.ndarray:
        return _rbf(np.asarray(x, dtype=np.float64), self.x, self.length) @ self.alpha + self.offset


KRR_LENGTHS = (0.05, 0.1, 0.2, 0.4, 0.8, 1.6)
KRR_RIDGES = (1e-3, 1e-2, 1e-1, 1.0)


def _rbf(a: np.ndarray, b: np.ndarray, length: float) -> np.ndarray:
    d2 = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2 * a @ b.T
    return np.exp(-np.maximum(d2, 0.0) / (2 * length * length))


def kernel_ridge_settings(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """(length scale, ridge) with the least leave-one-out error, which kernel ridge gives in
    closed form: residual_i = [A^-1 y]_i / [A^-1]_ii with A = K + ridge * I."""
    yc = y - y.mean()
    best = (np.inf, KRR_LENGTHS[0], KRR_RIDGES[0])
    for length in KRR_LENGTHS:
        k = _rbf(x, x, length)
        for ridge in KRR_RIDGES:
            inv = np.linalg.inv(k + ridge * np.eye(len(x)))
            loo = float(np.sum(((inv @ yc) / np.diag(inv)) ** 2))
            best = min(best, (loo, length, ridge))
    return best[1], best[2]


def fit_kernel_ridge(x: np.ndarray, y: np.ndarray, length: float, ridge: float) -> KernelRidge:
    offset = float(y.mean())
    alpha = np.linalg.solve(_rbf(x, x, length) + ridge * np.eye(len(x)), y - offset)
    return KernelRidge(x, alpha, offset, length)


def fit_ensemble(x: np.ndarray, y: np.ndarray, seed: int, folds: int = 5, rounds: int = 1000) -> Ensemble:
    import lightgbm as lgb

    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if len(x) < 3:
        raise ValueError(f"the ensemble predictor needs at least 3 (mixture, score) pairs, got {len(x)}")
    params = dict(PARAMS, seed=seed)
    # Few rows: a leaf may hold fewer than the recipe's 5, or no tree could split at all.
    params["min_child_samples"] = min(params["min_child_samples"], max(1, len(x) // 4))
    length, ridge = kernel_ridge_settings(x, y)
    k = min(folds, len(x))
    fold_of = np.random.default_rng(seed).permutation(len(x)) % k
    curves, boosters, ridges = [], [], []
    for f in range(k):
        train, val = fold_of != f, fold_of == f
        evals: dict = {}
        boosters.append(lgb.train(params, lgb.Dataset(x[train], y[train], params={"min_data_in_bin": 1}),
                                  num_boost_round=rounds, callbacks=[lgb.record_evaluation(evals)],
                                  valid_sets=[lgb.Dataset(x[val], y[val], params={"min_data_in_bin": 1})]))
        curve = np.asarray(evals["valid_0"]["l2"])
        curves.append(np.pad(curve, (0, rounds - len(curve)), mode="edge") * val.sum())
        ridges.append(fit_kernel_ridge(x[train], y[train], length, ridge))
    best = int(np.argmin(np.sum(curves, axis=0))) + 1
    oof_lgb, oof_krr = np.empty(len(y)), np.empty(len(y))
    for f in range(k):
        val = fold_of == f
        oof_lgb[val] = boosters[f].predict(x[val], num_iteration=best)
        oof_krr[val] = ridges[f].predict(x[val])
    blends = np.linspace(0.0, 1.0, 5)
    blend = float(blends[int(np.argmin([np.sum((b * oof_lgb + (1 - b) * oof_krr - y) ** 2) for b in blends]))])
    boosters.append(lgb.train(params, lgb.Dataset(x, y, params={"min_data_in_bin": 1}), num_boost_round=best))
    ridges.append(fit_kernel_ridge(x, y, length, ridge))
    return Ensemble(boosters, best, ridges, blend, blend * oof_lgb + (1 - blend) * oof_krr, y)


def cross_validate(x: np.ndarray, y: np.ndarray, seed: int, folds: int = 5) -> tuple[float | None, float]:
    """k-fold (Spearman, MAE) of the recipe's `fit`, refitted per fold on the other folds: its own
    10% slice is one row in a small search, too few to say anything."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    k = min(folds, len(x))
    fold_of = np.random.default_rng(seed).permutation(len(x)) % k
    pred = np.empty(len(y))
    for f in range(k):
        train = fold_of != f
        if train.sum() >= 2:
            pred[~train] = fit(x[train], y[train], seed).predict(x[~train])
        else:
            pred[~train] = y[train].mean()
    return spearman(pred, y), float(np.mean(np.abs(pred - y)))
