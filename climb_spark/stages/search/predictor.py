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
    """A predictor that stays informative with a handful of pairs. Three model families, each
    fitted per fold and on every pair, blended by their out-of-fold error:
    - LightGBM with the recipe's parameters, its number of rounds chosen by k-fold CV (as lgb.cv
      does) instead of on one 10% slice. With tens of pairs its trees cannot split, so it
      predicts a constant: it says nothing.
    - kernel ridge regression (RBF over the weights or their square roots, length scale and ridge
      chosen by closed-form leave-one-out error): smooth, so a few pairs already say which way is
      up; as a Gaussian process it also says how far a mixture is from every mixture tried.
    - a log-linear data-mixing law, score = b + sum_i beta_i log(w_i + eps) + gamma_i w_i (ridge
      by leave-one-out): the diminishing returns of each domain's data, which puts the optimum
      inside the simplex where the data says it is, and extrapolates sanely to sparse mixtures.
    The uncertainty of a prediction is the spread of the fold blends and the kernel's posterior
    spread, so it grows away from the mixtures tried. `cv_pred` holds each pair's out-of-fold
    prediction, so the CV metrics exist from 3 pairs on."""

    lgb_members: list
    rounds: int
    krr_members: list
    law_members: list
    blend: tuple[float, float, float]  # weights of LightGBM, kernel ridge, the law
    cv_pred: np.ndarray
    y: np.ndarray

    @property
    def booster(self):
        return self.lgb_members[-1]  # the refit on every pair: the model logged to MLflow

    def _member_preds(self, x: np.ndarray) -> np.ndarray:
        a, b, c = self.blend
        out = []
        for g, k, law in zip(self.lgb_members, self.krr_members, self.law_members):
            pred = np.zeros(len(x))  # a family the blend leaves out is not run (LightGBM's is slow)
            if a:
                pred += a * g.predict(x, num_iteration=self.rounds)
            if b:
                pred += b * k.predict(x)
            if c:
                pred += c * law.predict(x)
            out.append(pred)
        return np.stack(out)

    def predict_dist(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        x = np.asarray(x, dtype=np.float64)
        preds = self._member_preds(x)
        # The refit on every pair is the prediction; the folds only say how much it can move.
        return preds[-1], np.sqrt(preds.std(axis=0) ** 2 + self.krr_members[-1].posterior_std(x) ** 2)

    def predict(self, x: np.ndarray) -> np.ndarray:
        return self._member_preds(np.asarray(x, dtype=np.float64))[-1]

    @property
    def cv_spearman(self) -> float | None:
        return spearman(self.cv_pred, self.y)

    @property
    def cv_mae(self) -> float:
        return float(np.mean(np.abs(self.cv_pred - self.y)))

    def metrics(self) -> dict[str, float]:
        out = {"predictor_n_pairs": float(len(self.y)), "predictor_rounds": float(self.rounds),
               "predictor_lightgbm_share": self.blend[0], "predictor_kernel_share": self.blend[1],
               "predictor_law_share": self.blend[2], "predictor_cv_mae": self.cv_mae}
        if self.cv_spearman is not None:
            out["predictor_cv_spearman"] = self.cv_spearman
        return out


FEATURES = {"raw": lambda w: w, "sqrt": lambda w: np.sqrt(np.maximum(w, 0.0))}


@dataclass
class KernelRidge:
    x: np.ndarray  # the training mixtures in feature space
    alpha: np.ndarray
    offset: float
    length: float
    feature: str
    inv: np.ndarray  # (K + ridge I)^-1, for the posterior spread
    amplitude: float  # the Gaussian process' signal variance, fitted to the scores

    def predict(self, x: np.ndarray) -> np.ndarray:
        return _rbf(FEATURES[self.feature](np.asarray(x, dtype=np.float64)), self.x, self.length) @ self.alpha + self.offset

    def posterior_std(self, x: np.ndarray) -> np.ndarray:
        k = _rbf(FEATURES[self.feature](np.asarray(x, dtype=np.float64)), self.x, self.length)
        explained = np.einsum("ij,jk,ik->i", k, self.inv, k)
        return np.sqrt(self.amplitude * np.clip(1.0 - explained, 0.0, 1.0))


KRR_LENGTHS = (0.05, 0.1, 0.2, 0.4, 0.8, 1.6)
KRR_RIDGES = (1e-3, 1e-2, 1e-1, 1.0)


def _rbf(a: np.ndarray, b: np.ndarray, length: float) -> np.ndarray:
    d2 = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2 * a @ b.T
    return np.exp(-np.maximum(d2, 0.0) / (2 * length * length))


def kernel_ridge_settings(x: np.ndarray, y: np.ndarray) -> tuple[str, float, float]:
    """(feature map, length scale, ridge) with the least leave-one-out error, which kernel ridge
    gives in closed form: residual_i = [A^-1 y]_i / [A^-1]_ii with A = K + ridge * I. Square
    roots stretch small weights, where adding a domain at all matters most."""
    yc = y - y.mean()
    best = (np.inf, "raw", KRR_LENGTHS[0], KRR_RIDGES[0])
    for feature, phi in FEATURES.items():
        z = phi(x)
        for length in KRR_LENGTHS:
            k = _rbf(z, z, length)
            for ridge in KRR_RIDGES:
                inv = np.linalg.inv(k + ridge * np.eye(len(x)))
                loo = float(np.sum(((inv @ yc) / np.diag(inv)) ** 2))
                best = min(best, (loo, feature, length, ridge))
    return best[1], best[2], best[3]


def fit_kernel_ridge(x: np.ndarray, y: np.ndarray, feature: str, length: float, ridge: float) -> KernelRidge:
    offset = float(y.mean())
    z = FEATURES[feature](x)
    inv = np.linalg.inv(_rbf(z, z, length) + ridge * np.eye(len(x)))
    alpha = inv @ (y - offset)
    # The amplitude that makes the scores most likely under the process (its closed-form MLE).
    amplitude = float((y - offset) @ alpha / len(y))
    return KernelRidge(z, alpha, offset, length, feature, inv, max(amplitude, 0.0))


LAW_EPS = 1e-3
LAW_RIDGES = (1e-2, 1e-1, 1.0, 10.0, 100.0)


@dataclass
class LogLinearLaw:
    """score = b + sum_i beta_i log(w_i + eps) + gamma_i w_i, ridge-regularized on standardized
    features: the log-linear data-mixing law (as AI2's Olmix fits one per domain)."""

    coef: np.ndarray
    intercept: float
    mean: np.ndarray
    scale: np.ndarray

    @staticmethod
    def features(x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        return np.hstack([np.log(x + LAW_EPS), x])

    def predict(self, x: np.ndarray) -> np.ndarray:
        return ((self.features(x) - self.mean) / self.scale) @ self.coef + self.intercept


def law_ridge(x: np.ndarray, y: np.ndarray) -> float:
    """The ridge with the least closed-form leave-one-out error."""
    f = LogLinearLaw.features(x)
    f = (f - f.mean(0)) / np.where(f.std(0) > 0, f.std(0), 1.0)
    yc = y - y.mean()
    best = (np.inf, LAW_RIDGES[0])
    for ridge in LAW_RIDGES:
        hat = f @ np.linalg.solve(f.T @ f + ridge * np.eye(f.shape[1]), f.T)
        loo = float(np.sum(((yc - hat @ yc) / np.maximum(1.0 - np.diag(hat) - 1.0 / len(y), 1e-9)) ** 2))
        best = min(best, (loo, ridge))
    return best[1]


def fit_law(x: np.ndarray, y: np.ndarray, ridge: float) -> LogLinearLaw:
    f = LogLinearLaw.features(x)
    mean, scale = f.mean(0), np.where(f.std(0) > 0, f.std(0), 1.0)
    z = (f - mean) / scale
    coef = np.linalg.solve(z.T @ z + ridge * np.eye(z.shape[1]), z.T @ (y - y.mean()))
    return LogLinearLaw(coef, float(y.mean()), mean, scale)


# Blends of (LightGBM, kernel ridge, law) tried against the out-of-fold error: a grid of quarters.
BLENDS = [(a / 4, b / 4, (4 - a - b) / 4) for a in range(5) for b in range(5 - a)]


def fit_ensemble(x: np.ndarray, y: np.ndarray, seed: int, folds: int = 5, rounds: int = 1000) -> Ensemble:
    import lightgbm as lgb

    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if len(x) < 3:
        raise ValueError(f"the ensemble predictor needs at least 3 (mixture, score) pairs, got {len(x)}")
    params = dict(PARAMS, seed=seed)
    # Few rows: a leaf may hold fewer than the recipe's 5, or no tree could split at all.
    params["min_child_samples"] = min(params["min_child_samples"], max(1, len(x) // 4))
    feature, length, ridge = kernel_ridge_settings(x, y)
    law = law_ridge(x, y)
    k = min(folds, len(x))
    fold_of = np.random.default_rng(seed).permutation(len(x)) % k
    curves, boosters, ridges, laws = [], [], [], []
    for f in range(k):
        train, val = fold_of != f, fold_of == f
        evals: dict = {}
        boosters.append(lgb.train(params, lgb.Dataset(x[train], y[train], params={"min_data_in_bin": 1}),
                                  num_boost_round=rounds, callbacks=[lgb.record_evaluation(evals)],
                                  valid_sets=[lgb.Dataset(x[val], y[val], params={"min_data_in_bin": 1})]))
        curve = np.asarray(evals["valid_0"]["l2"])
        curves.append(np.pad(curve, (0, rounds - len(curve)), mode="edge") * val.sum())
        ridges.append(fit_kernel_ridge(x[train], y[train], feature, length, ridge))
        laws.append(fit_law(x[train], y[train], law))
    best = int(np.argmin(np.sum(curves, axis=0))) + 1
    oof = np.empty((3, len(y)))
    for f in range(k):
        val = fold_of == f
        oof[:, val] = [boosters[f].predict(x[val], num_iteration=best), ridges[f].predict(x[val]),
                       laws[f].predict(x[val])]
    errors = [np.sum((np.asarray(b) @ oof - y) ** 2) for b in BLENDS]
    blend = BLENDS[int(np.argmin(errors))]
    boosters.append(lgb.train(params, lgb.Dataset(x, y, params={"min_data_in_bin": 1}), num_boost_round=best))
    ridges.append(fit_kernel_ridge(x, y, feature, length, ridge))
    laws.append(fit_law(x, y, law))
    return Ensemble(boosters, best, ridges, laws, blend, np.asarray(blend) @ oof, y)


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
