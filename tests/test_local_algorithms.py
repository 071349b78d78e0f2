"""The local algorithm stand-ins: real fits on sampled data, the built-ins' names.

Channels are made the way the training workflow makes them: rows from the
sampler, split by the training-input step's own ``split`` and encoded by
its ``to_csv``/``to_parquet``, so no channel file is written by hand.
"""

from __future__ import annotations

import math
import warnings
import zipfile
from collections.abc import Mapping, Sequence
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import xgboost
from mdlc_core import training_input

from mdlc_constructs import sampling
from mdlc_constructs.local import algorithms
from mdlc_constructs.local.algorithms import (
    AlgorithmStandIn,
    LinearLearnerStandIn,
    NoStandInError,
    XGBoostStandIn,
    register_stand_in,
    stand_in_for_image,
)
from mdlc_constructs.spec import ModelSpec

XGBOOST_IMAGE = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-xgboost:1.7-1"
LINEAR_LEARNER_IMAGE = "382416733822.dkr.ecr.us-east-1.amazonaws.com/linear-learner:1"
#: The metric names Linear Learner documents for a binary classifier.
LL_BINARY_METRICS = ("objective_loss", "binary_classification_accuracy", "precision", "recall",
                     "binary_f_beta", "roc_auc_score")


def raw_features(spec: ModelSpec) -> list[str]:
    """The model's inputs that are raw columns (derived features need the feature step)."""
    return [c for c in spec.feature_columns if c in spec.data.column_names]


def write_channels(
    root: Path,
    columns: Mapping[str, Sequence[Any]],
    spec: ModelSpec,
    content_type: str = "text/csv",
) -> tuple[dict[str, Path], training_input.Split]:
    """The train and validation channel folders of ``columns``, as the workflow splits them."""
    split = training_input.split(
        columns, event_id=spec.data.event_id, label=spec.data.label,
        features=raw_features(spec), validation_fraction=spec.training.validation_fraction,
    )
    channels = {}
    for name, rows in (("train", split.train), ("validation", split.validation)):
        body, suffix = training_input.encode(rows, content_type)
        folder = root / "input" / name
        folder.mkdir(parents=True)
        (folder / f"part-0000.{suffix}").write_bytes(body)
        channels[name] = folder
    return channels, split


def one_day(spec: ModelSpec, seed: int = 7, rows: int | None = None) -> dict[str, list[Any]]:
    kwargs = {"rows_per_day": rows} if rows else {}
    (day,) = sampling.sample(spec, days=1, start=date(2026, 11, 1), seed=seed, **kwargs)
    return day.columns


def hyperparameters(spec: ModelSpec, **changes: str) -> dict[str, str]:
    """The spec's hyperparameters as the training job passes them: all strings."""
    values = {k: str(v) for k, v in spec.training.hyperparameters.items()}
    values.update(changes)
    return values


def features_csv(rows: Mapping[str, Sequence[Any]], label: str) -> bytes:
    """Rows as a transform job sends them: the features only, no header, no label."""
    return training_input.to_csv({k: v for k, v in rows.items() if k != label})


@pytest.fixture(scope="module")
def fraud_day(fraud_spec: ModelSpec) -> dict[str, list[Any]]:
    return one_day(fraud_spec)


@pytest.fixture(scope="module")
def trained_xgboost(tmp_path_factory, fraud_spec, fraud_day):
    root = tmp_path_factory.mktemp("xgboost")
    channels, split = write_channels(root, fraud_day, fraud_spec)
    metrics = XGBoostStandIn().train(
        channels=channels, hyperparameters=hyperparameters(fraud_spec),
        content_type="text/csv", model_dir=root / "model",
    )
    return metrics, root / "model", split


# -- XGBoost ----------------------------------------------------------------------------


def test_xgboost_learns_the_sampled_signal_above_the_fraud_gate(trained_xgboost, fraud_spec):
    metrics, _, split = trained_xgboost
    # The spec's eval_metric is auc: the built-in reports it for both channels.
    assert set(metrics) == {"train:auc", "validation:auc"}
    gate = fraud_spec.training.evaluation
    assert gate.metric in metrics
    assert metrics["validation:auc"] > gate.threshold + 0.05
    assert split.rows["validation"] > 50


def test_xgboost_on_random_labels_is_no_better_than_chance(tmp_path, fraud_spec):
    columns = one_day(fraud_spec, seed=11, rows=2000)
    rng = np.random.default_rng(0)
    columns["fraud_status"] = rng.integers(0, 2, size=len(columns["fraud_status"])).tolist()
    channels, _ = write_channels(tmp_path, columns, fraud_spec)
    metrics = XGBoostStandIn().train(
        channels=channels, hyperparameters=hyperparameters(fraud_spec),
        content_type="text/csv", model_dir=tmp_path / "model",
    )
    assert 0.4 < metrics["validation:auc"] < 0.6
    assert metrics["train:auc"] > 0.9  # it memorized the noise, as 200 deep rounds do


def test_the_artifact_is_xgboost_model_and_loads_with_plain_xgboost(trained_xgboost):
    _, model_dir, split = trained_xgboost
    assert sorted(p.name for p in model_dir.iterdir()) == ["xgboost-model"]
    with warnings.catch_warnings():  # no file extension: xgboost guesses UBJSON and says so
        warnings.simplefilter("ignore")
        booster = xgboost.Booster(model_file=str(model_dir / "xgboost-model"))
    features = np.column_stack([split.validation[c] for c in split.validation if
                                c != "fraud_status"]).astype(float)
    expected = booster.predict(xgboost.DMatrix(features))
    served = XGBoostStandIn().load(model_dir).predict_csv(
        features_csv(split.validation, "fraud_status"))
    assert np.allclose([float(v) for v in served.decode().splitlines()], expected)


def test_predict_csv_returns_one_probability_per_line(trained_xgboost):
    _, model_dir, split = trained_xgboost
    predictor = stand_in_for_image(XGBOOST_IMAGE).load(model_dir)
    body = features_csv(split.validation, "fraud_status")
    lines = predictor.predict_csv(body).decode().splitlines()
    assert len(lines) == len(body.decode().splitlines()) == split.rows["validation"]
    scores = [float(line) for line in lines]
    assert all(0.0 <= s <= 1.0 for s in scores)
    assert predictor.predict_csv(b"") == b""
    with pytest.raises(ValueError, match="trained on 2 features"):
        predictor.predict_csv(b"1.0,2.0,3.0\n")


def test_metric_names_are_the_builtins_for_every_eval_metric_and_channel(
    tmp_path, fraud_spec, fraud_day
):
    channels, _ = write_channels(tmp_path, fraud_day, fraud_spec)
    train = XGBoostStandIn().train
    several = train(channels=channels, content_type="text/csv", model_dir=tmp_path / "a",
                    hyperparameters=hyperparameters(
                        fraud_spec, eval_metric="auc,logloss,error,accuracy", num_round="20"))
    assert set(several) == {f"{channel}:{metric}" for channel in ("train", "validation")
                            for metric in ("auc", "logloss", "error", "accuracy")}
    # The container's own accuracy and xgboost's error agree.
    assert math.isclose(several["validation:accuracy"], 1 - several["validation:error"])
    default = train(channels=channels, content_type="text/csv", model_dir=tmp_path / "b",
                    hyperparameters={"num_round": "5", "objective": "binary:logistic"})
    assert set(default) == {"train:logloss", "validation:logloss"}  # xgboost's default
    regression = train(channels={"train": channels["train"]}, content_type="text/csv",
                       model_dir=tmp_path / "c",
                       hyperparameters={"num_round": "5", "objective": "reg:squarederror",
                                        "eval_metric": "rmse,mse"})
    assert set(regression) == {"train:rmse", "train:mse"}
    assert math.isclose(regression["train:rmse"] ** 2, regression["train:mse"], rel_tol=1e-4)


def test_hyperparameters_are_mapped_as_the_container_maps_them(tmp_path, fraud_spec, fraud_day):
    channels, _ = write_channels(tmp_path, fraud_day, fraud_spec)
    metrics = XGBoostStandIn().train(
        channels=channels, content_type="text/csv", model_dir=tmp_path / "model",
        hyperparameters=hyperparameters(
            fraud_spec, num_round="30", subsample="0.8", min_child_weight="2", gamma="0.1",
            colsample_bytree="0.9", max_bin="64", tree_method="hist", seed="3",
            early_stopping_rounds="10"),
    )
    booster = xgboost.Booster(model_file=bytearray((tmp_path / "model/xgboost-model")
                                                   .read_bytes()))
    assert booster.num_boosted_rounds() <= 30
    assert metrics["validation:auc"] > 0.8
    with pytest.raises(ValueError, match="'num_round' is required"):
        XGBoostStandIn().train(channels=channels, hyperparameters={}, content_type="text/csv",
                               model_dir=tmp_path / "none")


def test_parquet_channels_train_the_same_model_as_csv(tmp_path, fraud_spec, fraud_day):
    hp = hyperparameters(fraud_spec, num_round="20")
    csv_channels, _ = write_channels(tmp_path / "csv", fraud_day, fraud_spec)
    parquet_channels, _ = write_channels(tmp_path / "pq", fraud_day, fraud_spec,
                                         "application/x-parquet")
    from_csv = XGBoostStandIn().train(channels=csv_channels, hyperparameters=hp,
                                      content_type="text/csv", model_dir=tmp_path / "m1")
    from_parquet = XGBoostStandIn().train(channels=parquet_channels, hyperparameters=hp,
                                          content_type="application/x-parquet",
                                          model_dir=tmp_path / "m2")
    assert from_csv == pytest.approx(from_parquet)


# -- the registry -------------------------------------------------------------------------


@pytest.fixture
def registry(monkeypatch):
    """Registrations made by a test do not outlive it."""
    monkeypatch.setattr(algorithms, "_REGISTRY", list(algorithms._REGISTRY))


def test_every_builtin_image_uri_of_the_sdk_finds_its_stand_in():
    from mdlc_constructs.algorithms import builtin_image_uris

    for uri in builtin_image_uris("xgboost", "1.7-1").values():
        assert isinstance(stand_in_for_image(uri), XGBoostStandIn)
    for uri in builtin_image_uris("linear-learner", "1").values():
        assert isinstance(stand_in_for_image(uri), LinearLearnerStandIn)
    assert isinstance(stand_in_for_image(XGBOOST_IMAGE), XGBoostStandIn)
    assert isinstance(stand_in_for_image(LINEAR_LEARNER_IMAGE), LinearLearnerStandIn)


def test_an_unknown_image_says_how_to_register_a_stand_in():
    uri = "111122223333.dkr.ecr.eu-west-1.amazonaws.com/fraud-team-model:2024-06"
    with pytest.raises(NoStandInError) as raised:
        stand_in_for_image(uri)
    message = str(raised.value)
    assert uri in message
    assert "register_stand_in('fraud-team-model', MyStandIn)" in message
    assert "AlgorithmStandIn" in message
    assert isinstance(raised.value, LookupError)


class MeanStandIn(AlgorithmStandIn):
    """A custom container's stand-in: predicts the training mean."""

    name = "mean"

    def train(self, *, channels: Mapping[str, Path], hyperparameters: Mapping[str, str],
              content_type: str, model_dir: Path) -> dict[str, float]:
        channel = algorithms.read_channel(channels["train"], content_type)
        model_dir.mkdir(parents=True, exist_ok=True)
        (model_dir / "mean.txt").write_text(repr(float(channel.label.mean())))
        return {"train:mean": float(channel.label.mean())}

    def load(self, model_dir: Path) -> algorithms.Predictor:
        mean = (model_dir / "mean.txt").read_text()
        return type("MeanPredictor", (), {
            "predict_csv": lambda _, body: "".join(
                f"{mean}\n" for _ in body.decode().splitlines()).encode(),
        })()


def test_register_stand_in_for_a_custom_image(registry, tmp_path, fraud_spec, fraud_day):
    register_stand_in("fraud-team-*", MeanStandIn)
    uri = "111122223333.dkr.ecr.eu-west-1.amazonaws.com/fraud-team-model:2024-06"
    stand_in = stand_in_for_image(uri)
    assert isinstance(stand_in, MeanStandIn)
    assert stand_in_for_image(uri) is not stand_in  # a class: one instance per job
    channels, split = write_channels(tmp_path, fraud_day, fraud_spec)
    metrics = stand_in.train(channels=channels, hyperparameters={}, content_type="text/csv",
                             model_dir=tmp_path / "model")
    assert metrics["train:mean"] == pytest.approx(np.mean(split.train["fraud_status"]))
    assert len(stand_in.load(tmp_path / "model").predict_csv(b"1,2\n3,4\n").splitlines()) == 2
    # An instance is used as it is; the full URI and repository:tag match too;
    # a later registration wins, even over a built-in.
    instance = MeanStandIn()
    register_stand_in("*.amazonaws.com/other-model:*", instance)
    assert stand_in_for_image("1.dkr.ecr.us-east-1.amazonaws.com/other-model:3") is instance
    register_stand_in("sagemaker-xgboost:1.7-*", instance)
    assert stand_in_for_image(XGBOOST_IMAGE) is instance
    assert isinstance(stand_in_for_image(XGBOOST_IMAGE.replace("1.7-1", "1.5-1")),
                      XGBoostStandIn)
    register_stand_in("arn:aws:sagemaker:*:algorithm/acme-*", instance)
    assert stand_in_for_image(
        "arn:aws:sagemaker:us-east-1:123456789012:algorithm/acme-fraud") is instance
    with pytest.raises(TypeError):
        register_stand_in("x", object())  # type: ignore[arg-type]


# -- Linear Learner -------------------------------------------------------------------


def test_linear_learner_binary_classifier_on_sampled_data(tmp_path, fraud_spec, fraud_day):
    channels, split = write_channels(tmp_path, fraud_day, fraud_spec)
    stand_in = stand_in_for_image(LINEAR_LEARNER_IMAGE)
    metrics = stand_in.train(
        channels=channels, content_type="text/csv", model_dir=tmp_path / "model",
        hyperparameters={"predictor_type": "binary_classifier", "feature_dim": "2",
                         "epochs": "15", "mini_batch_size": "100"},
    )
    assert set(metrics) == {f"{channel}:{name}" for channel in ("train", "validation")
                            for name in LL_BINARY_METRICS}
    assert metrics["validation:roc_auc_score"] > 0.8
    assert 0 < metrics["validation:objective_loss"] < math.log(2)
    # The built-in's artifact name; a zip, as the built-in's is.
    assert zipfile.is_zipfile(tmp_path / "model" / "model_algo-1")
    predictor = stand_in.load(tmp_path / "model")
    lines = predictor.predict_csv(features_csv(split.validation, "fraud_status")).splitlines()
    assert len(lines) == split.rows["validation"]
    scores = np.array([float(v) for v in lines])
    assert ((scores >= 0) & (scores <= 1)).all()
    assert algorithms.roc_auc(np.array(split.validation["fraud_status"]), scores) == \
        pytest.approx(metrics["validation:roc_auc_score"])


def test_linear_learner_refuses_what_the_builtin_refuses(tmp_path, fraud_spec, fraud_day):
    channels, _ = write_channels(tmp_path, fraud_day, fraud_spec)
    train = LinearLearnerStandIn().train
    with pytest.raises(ValueError, match="predictor_type"):
        train(channels=channels, hyperparameters={}, content_type="text/csv",
              model_dir=tmp_path / "a")
    with pytest.raises(ValueError, match="feature_dim is 5"):
        train(channels=channels, content_type="text/csv", model_dir=tmp_path / "b",
              hyperparameters={"predictor_type": "binary_classifier", "feature_dim": "5"})
    with pytest.raises(ValueError, match="text/csv"):
        train(channels=channels, content_type="application/x-parquet",
              model_dir=tmp_path / "c", hyperparameters={"predictor_type": "regressor"})


def test_linear_learner_regressor_learns_a_float_label(tmp_path):
    from .test_sample import demand_spec

    spec = demand_spec()
    channels, split = write_channels(tmp_path, one_day(spec, seed=5, rows=400), spec)
    metrics = LinearLearnerStandIn().train(
        channels=channels, content_type="text/csv", model_dir=tmp_path / "model",
        hyperparameters={"predictor_type": "regressor"},
    )
    assert set(metrics) == {f"{channel}:{name}" for channel in ("train", "validation")
                            for name in ("objective_loss", "mse", "absolute_loss")}
    assert metrics["validation:mse"] < 0.7 * np.var(split.validation["units"])
