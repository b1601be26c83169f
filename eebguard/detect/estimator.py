"""The detector: one calibrated probability that an erased concept is still reachable through a hidden
trigger, from a model's scanner features.

A scikit-learn estimator: missing-feature handling (median imputation plus missingness indicators, for
reference-free scans), scaling, a linear model or a tree ensemble, calibrated with
``CalibratedClassifierCV(method="sigmoid")`` (isotonic overfits well below ~1000 models).
"""
from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.calibration import CalibratedClassifierCV
from sklearn.ensemble import ExtraTreesClassifier
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.multiclass import check_classification_targets, type_of_target
from sklearn.utils.validation import check_is_fitted, validate_data

MODELS = ("logistic", "trees")


# The reference-free detector's inputs (the only shipped one until 2026-12-03), chosen by
# leave-one-group-out cross-validation on the FIT zoo only
# (`python experiments/detector_feature_sets.py --zoo zoos/default-fresh`, docs/evaluation.md): with ~70
# training models the full schema overfits; these reachability features carry the signal that transfers.
DEFAULT_FEATURES = ["hard.best_image_reach", "probe.max_image_reach", "probe.mean_image_reach",
                    "probe.top3_image_reach", "reach.name_image", "reach.trigger_over_control"]
DEFAULT_PARAMS = {"model": "logistic", "C": 0.05}
# The replay detector of 2026-12-03: that set plus how much more the found trigger reaches in the
# suspect than in the reference erased the claimed way (`--features replay`; kept to reproduce its rows).
REPLAY_FEATURES = list(DEFAULT_FEATURES)  # replay.gain left with schema 5 (the demonstration replaced it)
# Since 2026-12-06 the shipped detectors are fitted on the four zoo records, and scans with a reference
# are scored by extra-trees over the whole schema (leave-one-zoo-out ROC-AUC 0.848 against 0.792 for the
# logistic replay recipe; `experiments/pooled_detector.py`, docs/evaluation.md). Two of DEFAULT_FEATURES
# (the recovered trigger's judged reach, and over the control's) come from the trigger search, which needs
# a reference, so a reference-free scan never has them: the reference-free detector is extra-trees over
# ``reference_free_features()`` (`--features reference-free --model trees`; leave-one-zoo-out 0.590 against
# 0.567 for DEFAULT_FEATURES as reference-free scans see them, `pooled_detector.py --reference-free`).
TREES_PARAMS = {"model": "trees"}  # `eebguard detector fit --model trees`: the estimator's defaults, untuned


def reference_free_features() -> list[str]:
    """What a scan without a reference shares with a scan with one: the features that need no reference
    (nor the trigger search, which needs one), computed the same way in both; a detector fitted on scans
    with a reference can read them in scans without."""
    from eebguard.scanners import feature_names, feature_spec

    return [n for n in feature_names() if not feature_spec(n).needs_reference and not feature_spec(n).reference_free_only]


def reference_free_only_features() -> list[str]:
    """What only a scan without a reference computes: the soft-trigger search's judge-driven mode."""
    from eebguard.scanners import feature_names, feature_spec

    return [n for n in feature_names() if feature_spec(n).reference_free_only]


def scan_features(reference_free: bool = False) -> list[str]:
    """Every feature a scan of this mode computes: without a reference, those that need none; with one,
    all but the reference-free-only ones (the claimed erasure's replay included)."""
    from eebguard.scanners import feature_names, feature_spec

    return [n for n in feature_names() if (not feature_spec(n).needs_reference if reference_free
                                           else not feature_spec(n).reference_free_only)]


def reference_features() -> list[str]:
    """What a scan with a reference and no claimed erasure has (no replay)."""
    return [n for n in scan_features() if not n.startswith("replay.")]


class EEBDetector(ClassifierMixin, BaseEstimator):
    """Calibrated backdoor-survival classifier over a fixed feature schema.

    Parameters: ``model`` ("logistic" or "trees"), ``C`` (inverse L2 strength of the logistic model),
    ``n_estimators``/``max_depth`` (extra-trees ensemble), ``cv`` (calibration folds), ``random_state``.
    """

    def __init__(self, model: str = "logistic", C: float = 0.3, n_estimators: int = 200, max_depth: int = 3,
                 cv: int = 3, random_state: int = 0, features: list[str] | None = None):
        self.features = features
        self.model = model
        self.C = C
        self.n_estimators = n_estimators
        self.max_depth = max_depth
        self.cv = cv
        self.random_state = random_state

    def _base(self):
        if self.model == "logistic":
            clf = LogisticRegression(C=self.C, class_weight="balanced", max_iter=5000)
        elif self.model == "trees":
            clf = ExtraTreesClassifier(n_estimators=self.n_estimators, max_depth=self.max_depth,
                                       class_weight="balanced", random_state=self.random_state, n_jobs=1)
        else:
            raise ValueError(f"model must be one of {MODELS}, not {self.model!r}")
        return make_pipeline(SimpleImputer(strategy="median", add_indicator=True, keep_empty_features=True),
                             StandardScaler(), clf)

    def fit(self, X, y):
        X, y = validate_data(self, X, y, ensure_all_finite="allow-nan", dtype=np.float64)
        check_classification_targets(y)
        y_type = type_of_target(y, input_name="y")
        if y_type != "binary":
            raise ValueError(f"Only binary classification is supported (backdoored or not); the target is {y_type}.")
        if self.features is not None and len(self.features) != X.shape[1]:
            raise ValueError(f"{len(self.features)} feature names for {X.shape[1]} columns")
        self.feature_names_ = list(self.features) if self.features is not None else [f"x{i}" for i in range(X.shape[1])]
        self.classes_ = np.unique(y)
        counts = np.bincount(np.searchsorted(self.classes_, y))
        cv = int(min(self.cv, counts.min()))
        if cv >= 2:
            self.calibrated_ = CalibratedClassifierCV(self._base(), method="sigmoid", cv=cv).fit(X, y)
        else:  # too few of one class to cross-validate calibration: fit the base model alone
            self.calibrated_ = self._base().fit(X, y)
        return self

    def predict_proba(self, X):
        check_is_fitted(self, "calibrated_")
        X = validate_data(self, X, reset=False, ensure_all_finite="allow-nan", dtype=np.float64)
        return self.calibrated_.predict_proba(X)

    def predict(self, X):
        check_is_fitted(self, "calibrated_")
        return self.classes_[self.predict_proba(X).argmax(1)]

    def decision_function(self, X):
        p = self.predict_proba(X)[:, 1]
        p = np.clip(p, 1e-12, 1 - 1e-12)
        return np.log(p / (1 - p))

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True
        tags.classifier_tags.multi_class = False  # a model is backdoored or not
        return tags
