"""Local stand-ins for SageMaker training algorithms: real fits, no AWS, no Docker.

``mdlc simulate`` runs a synthesized stack on this machine. Where the stack
starts a SageMaker training job, the local runtime looks up the job's
training image here (:func:`stand_in_for_image`) and calls the stand-in's
:meth:`AlgorithmStandIn.train` on the channel folders; where it runs a
transform job or invokes an endpoint, it loads the trained artifacts
(:meth:`AlgorithmStandIn.load`) and calls :meth:`Predictor.predict_csv`.
Everything the stand-in returns is what the built-in would have produced,
so the steps after training (the evaluation gate, the registry, batch
inference, monitoring) run on real numbers.

What is hand-written here, and why:

* The **XGBoost** stand-in is not a re-implementation: it calls the real
  ``xgboost.train`` with the hyperparameters mapped the way the SageMaker
  XGBoost container maps them (``num_round`` becomes the number of boosting
  rounds, ``eval_metric`` a comma-separated list, ``early_stopping_rounds``
  and ``csv_weights`` are the container's own; everything else goes to
  xgboost's params unchanged, as strings, which xgboost parses itself).
  Hand-written are only the parts the container does around xgboost:
  reading the channels (CSV label first without header, Parquet label in
  the first column), the container-defined metrics ``accuracy``, ``f1``
  and ``mse`` that xgboost lacks, naming the metrics ``channel:metric``,
  and the ``xgboost-model`` artifact.
* The **Linear Learner** stand-in is a hand-written NumPy fit, because the
  built-in is a closed MXNet implementation that cannot run here: an
  L2-regularized logistic regression (Newton's method) for
  ``binary_classifier`` and ridge regression for ``regressor``, on
  standardized features as the built-in's ``normalize_data`` does. It
  reports the built-in's metric names. Its artifact carries the built-in's
  file name (``model_algo-1``, a zip archive) but not its MXNet content:
  a model trained here loads only here.
* The **registry** (:func:`register_stand_in`) exists so a team with a
  custom container or an AWS Marketplace algorithm can run the same local
  lifecycle: it registers a stand-in for its image (or algorithm ARN) by
  an fnmatch pattern. Later registrations win, so a team can also replace
  a built-in's stand-in.

Sources for the conventions copied here (checked 2026-12):

* CSV training data has the label in the first column and no header; CSV
  inference input has no label column: "Input/Output Interface for the
  XGBoost Algorithm", https://docs.aws.amazon.com/sagemaker/latest/dg/xgboost.html
  (the same note for Linear Learner: .../linear-learner.html).
* XGBoost metric names (``validation:auc``, ``validation:logloss``,
  ``validation:error``, ``validation:rmse``, ...):
  https://docs.aws.amazon.com/sagemaker/latest/dg/xgboost-tuning.html and
  the container's ``algorithm_mode/metrics.py``; the artifact
  ``xgboost-model`` written by ``Booster.save_model``, the channels named
  ``train`` and ``validation``, Parquet's label in column 0 and the
  container metrics ``accuracy``/``f1``/``mse``: aws/sagemaker-xgboost-container
  (``algorithm_mode/train.py``, ``data_utils.py``, ``metrics/custom_metrics.py``).
  A batch transform's text/csv response is one prediction per line
  (``algorithm_mode/serve.py``; a real-time endpoint joins them with commas).
* Linear Learner metric names (``validation:roc_auc_score``,
  ``validation:binary_classification_accuracy``, ``validation:objective_loss``,
  ``validation:mse``, ...): https://docs.aws.amazon.com/sagemaker/latest/dg/linear-learner-tuning.html;
  the response's ``score`` (probability for binary classifiers):
  https://docs.aws.amazon.com/sagemaker/latest/dg/LL-in-formats.html;
  ``model_algo-1`` inside model.tar.gz: the SageMaker developer guide's
  model artifact notes.
"""

from __future__ import annotations

import csv
import fnmatch
import io
import json
import math
import threading
import zipfile
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

import numpy as np

if TYPE_CHECKING:
    import xgboost

CSV = "text/csv"
PARQUET = "application/x-parquet"
#: Channels whose metrics the built-ins report, in the order they report them.
METRIC_CHANNELS = ("train", "validation")


class NoStandInError(LookupError):
    """No stand-in is registered for a training image; the message says how to add one."""

    def __init__(self, image_uri: str) -> None:
        self.image_uri = image_uri
        repository = _repository(image_uri)
        known = ", ".join(sorted({pattern for pattern, _ in _REGISTRY})) or "none"
        super().__init__(
            f"no local stand-in for the training image {image_uri!r} (repository "
            f"{repository!r}). Register one before running locally: "
            f"mdlc_constructs.local.algorithms.register_stand_in({repository!r}, MyStandIn), "
            f"where MyStandIn subclasses AlgorithmStandIn and implements train() and load(). "
            f"Registered patterns: {known}"
        )


class Predictor(Protocol):
    """A trained model as a transform job or an endpoint serves it."""

    def predict_csv(self, body: bytes) -> bytes:
        """Score CSV rows (features only, no header, no label), one score per line."""
        ...


class AlgorithmStandIn(ABC):
    """A training algorithm that runs on this machine instead of in SageMaker.

    Subclass it for a custom container or a Marketplace algorithm and
    register the subclass with :func:`register_stand_in`.
    """

    name: ClassVar[str]

    @abstractmethod
    def train(
        self,
        *,
        channels: Mapping[str, Path],
        hyperparameters: Mapping[str, str],
        content_type: str,
        model_dir: Path,
    ) -> dict[str, float]:
        """Train on the channel folders and write the artifacts into ``model_dir``.

        ``channels`` maps a channel name ('train', 'validation') to the local
        folder holding its files; ``hyperparameters`` are strings, as
        SageMaker passes them; ``content_type`` is 'text/csv' (label first,
        no header) or 'application/x-parquet'. The artifacts are written as
        the algorithm puts them into model.tar.gz. Returns the final metrics
        as the algorithm reports them in ``FinalMetricDataList``, e.g.
        ``{'train:auc': 0.93, 'validation:auc': 0.91}``.
        """

    @abstractmethod
    def load(self, model_dir: Path) -> Predictor:
        """The model in ``model_dir`` (as :meth:`train` wrote it), ready to score."""


# -- the registry ------------------------------------------------------------------

_REGISTRY: list[tuple[str, AlgorithmStandIn | type[AlgorithmStandIn]]] = []
_LOCK = threading.Lock()


def register_stand_in(pattern: str, stand_in: AlgorithmStandIn | type[AlgorithmStandIn]) -> None:
    """Use ``stand_in`` for every training image that matches ``pattern``.

    ``pattern`` is an fnmatch pattern matched against the whole image URI,
    against ``repository:tag`` and against the repository name alone, so
    ``'my-team-model'``, ``'my-team-*:2.*'`` and
    ``'*.dkr.ecr.*.amazonaws.com/my-team-model:*'`` all work; a Marketplace
    algorithm is matched by its ARN. A class is instantiated for each job
    (no state shared between jobs); an instance is used as it is. Later
    registrations take precedence, so a team can replace a built-in's stand-in.
    """
    if not isinstance(pattern, str) or not pattern.strip():
        raise ValueError(f"register_stand_in: expected a non-empty pattern, got {pattern!r}")
    is_class = isinstance(stand_in, type) and issubclass(stand_in, AlgorithmStandIn)
    if not (is_class or isinstance(stand_in, AlgorithmStandIn)):
        raise TypeError(
            f"register_stand_in: expected an AlgorithmStandIn subclass or instance, "
            f"got {stand_in!r}"
        )
    with _LOCK:
        _REGISTRY.append((pattern.strip(), stand_in))


def stand_in_for_image(image_uri: str) -> AlgorithmStandIn:
    """The stand-in for a training image URI (or algorithm ARN).

    Raises:
        NoStandInError: nothing registered matches; the message says how to
            register a stand-in.
    """
    names = _match_names(image_uri)
    with _LOCK:
        registered = list(reversed(_REGISTRY))
    for pattern, stand_in in registered:
        if any(fnmatch.fnmatchcase(name, pattern) for name in names):
            return stand_in() if isinstance(stand_in, type) else stand_in
    raise NoStandInError(image_uri)


def _repository_and_tag(image_uri: str) -> tuple[str, str]:
    """('sagemaker-xgboost', '1.7-1') from '<registry>/sagemaker-xgboost:1.7-1'.

    A Marketplace algorithm's ARN gives the algorithm's name and no tag.
    """
    if image_uri.startswith("arn:"):
        return image_uri.rpartition("/")[2], ""
    path = image_uri.split("@", 1)[0]
    host, _, rest = path.partition("/")
    # A first segment with a dot or a port is a registry host, as in Docker.
    if not rest or not ("." in host or ":" in host or host == "localhost"):
        rest = path
    repository, _, tag = rest.rpartition(":") if ":" in rest else (rest, "", "")
    return repository, tag


def _repository(image_uri: str) -> str:
    return _repository_and_tag(image_uri)[0] or image_uri


def _match_names(image_uri: str) -> list[str]:
    repository, tag = _repository_and_tag(image_uri)
    names = [image_uri, repository]
    if tag:
        names.append(f"{repository}:{tag}")
    return names


# -- reading channels ----------------------------------------------------------------


@dataclass(frozen=True)
class Channel:
    """One channel's rows: the label and the feature matrix (float64, NaN = missing)."""

    label: np.ndarray
    features: np.ndarray
    weights: np.ndarray | None = None

    @property
    def rows(self) -> int:
        return len(self.label)


def _media_type(content_type: str) -> str:
    # 'text/csv; label_size=1' is the same format to us.
    return content_type.split(";", 1)[0].strip().lower()


def channel_files(folder: Path) -> list[Path]:
    """The data files of a channel folder, as the containers read them.

    Hidden files and files starting with ``_`` (manifests, markers) are skipped.
    """
    folder = Path(folder)
    if folder.is_file():
        return [folder]
    return sorted(
        path for path in folder.rglob("*")
        if path.is_file()
        and not any(part.startswith((".", "_")) for part in path.relative_to(folder).parts)
    )


def parse_csv_matrix(text: str, *, source: str) -> np.ndarray:
    """Numeric CSV without a header as a float64 matrix; an empty field is NaN."""
    rows: list[list[float]] = []
    width = None
    for number, line in enumerate(csv.reader(io.StringIO(text)), start=1):
        if not line or all(not field.strip() for field in line):
            continue
        if width is None:
            width = len(line)
        elif len(line) != width:
            raise ValueError(
                f"{source}: line {number} has {len(line)} fields, the first line has {width}"
            )
        try:
            rows.append([float(field) if field.strip() else math.nan for field in line])
        except ValueError:
            raise ValueError(
                f"{source}: line {number} is not numeric CSV (the built-in algorithms read "
                f"numbers only, without a header): {','.join(line)[:120]!r}"
            ) from None
    return np.asarray(rows, dtype=np.float64).reshape(len(rows), width or 0)


def read_channel(folder: Path, content_type: str, *, csv_weights: bool = False) -> Channel:
    """A channel folder's rows: label in the first column, then the features.

    With ``csv_weights`` the second column is the instance weight (the
    XGBoost container's ``csv_weights=1``).
    """
    files = channel_files(folder)
    if not files:
        raise ValueError(f"channel folder {folder} has no data files")
    media = _media_type(content_type)
    parts: list[np.ndarray] = []
    if media == CSV:
        parts = [parse_csv_matrix(f.read_text(encoding="utf-8"), source=str(f)) for f in files]
    elif media == PARQUET:
        import pyarrow.parquet as pq

        for file in files:
            table = pq.read_table(file)
            columns = [
                table.column(i).to_numpy(zero_copy_only=False).astype(np.float64)
                for i in range(table.num_columns)
            ]
            parts.append(np.column_stack(columns) if columns else np.zeros((0, 0)))
    else:
        raise ValueError(
            f"content type {content_type!r}: the local stand-ins read {CSV!r} and {PARQUET!r}"
        )
    parts = [p for p in parts if p.size]
    if not parts:
        raise ValueError(f"channel folder {folder} has no rows")
    widths = {p.shape[1] for p in parts}
    if len(widths) > 1:
        raise ValueError(f"channel folder {folder}: files have different numbers of columns")
    matrix = np.vstack(parts)
    first = 2 if csv_weights else 1
    if matrix.shape[1] <= first:
        raise ValueError(f"channel folder {folder}: rows have a label but no features")
    return Channel(
        label=matrix[:, 0],
        features=matrix[:, first:],
        weights=matrix[:, 1] if csv_weights else None,
    )


def _read_channels(
    channels: Mapping[str, Path], content_type: str, *, csv_weights: bool = False
) -> dict[str, Channel]:
    if "train" not in channels:
        raise ValueError(f"a training job needs a 'train' channel; got {sorted(channels)}")
    data = {name: read_channel(Path(path), content_type, csv_weights=csv_weights)
            for name, path in channels.items()}
    width = data["train"].features.shape[1]
    for name, channel in data.items():
        if channel.features.shape[1] != width:
            raise ValueError(
                f"channel {name!r} has {channel.features.shape[1]} features, "
                f"'train' has {width}"
            )
    return data


def _metric_channels(data: Mapping[str, Channel]) -> list[str]:
    return [name for name in METRIC_CHANNELS if name in data]


def _format_scores(scores: np.ndarray) -> bytes:
    """As a batch transform writes text/csv: one line per row, newline-terminated
    (a row of class probabilities, from multi:softprob, is comma-separated)."""
    if not len(scores):
        return b""
    lines = (
        ",".join(repr(float(v)) for v in np.atleast_1d(row)) for row in scores
    )
    return ("\n".join(lines) + "\n").encode("utf-8")


def _parse_inference_body(body: bytes, features: int) -> np.ndarray:
    matrix = parse_csv_matrix(body.decode("utf-8"), source="request body")
    if matrix.shape[0] and matrix.shape[1] != features:
        raise ValueError(
            f"the model was trained on {features} features; the request has "
            f"{matrix.shape[1]} columns (CSV for inference has no label column)"
        )
    return matrix


# -- metrics -------------------------------------------------------------------------


def roc_auc(label: np.ndarray, score: np.ndarray) -> float:
    """Area under the ROC curve (ties count half); NaN when one class is absent."""
    positive = label > 0.5
    n_pos = int(positive.sum())
    n_neg = len(label) - n_pos
    if n_pos == 0 or n_neg == 0:
        return math.nan
    _, inverse, counts = np.unique(score, return_inverse=True, return_counts=True)
    average_rank = np.cumsum(counts) - (counts - 1) / 2.0  # 1-based, ties averaged
    ranks = average_rank[inverse]
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def _f_beta(label: np.ndarray, predicted: np.ndarray, beta: float = 1.0) -> tuple[float, ...]:
    positive = label > 0.5
    tp = float(np.sum(predicted & positive))
    fp = float(np.sum(predicted & ~positive))
    fn = float(np.sum(~predicted & positive))
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    b2 = beta * beta
    f = (1 + b2) * precision * recall / (b2 * precision + recall) if precision + recall else 0.0
    return precision, recall, f


def _macro_f1(label: np.ndarray, predicted: np.ndarray) -> float:
    classes = np.unique(np.concatenate([label, predicted]))
    scores = [_f_beta(label == c, predicted == c)[2] for c in classes]
    return float(np.mean(scores)) if scores else 0.0


# -- XGBoost ------------------------------------------------------------------------

#: Hyperparameters the SageMaker XGBoost container consumes itself instead
#: of handing them to xgboost's params.
_XGB_CONTAINER_ONLY = frozenset({
    "num_round", "eval_metric", "early_stopping_rounds", "csv_weights",
    "_tuning_objective_metric", "save_model_on_termination", "_kfold", "_num_cv_round",
    "use_dask_gpu_training",
})
#: Metrics the container computes itself (xgboost has no metric of that name).
_XGB_CONTAINER_METRICS = ("accuracy", "f1", "mse")
XGBOOST_MODEL = "xgboost-model"


def _positive_int(hyperparameters: Mapping[str, str], name: str, default: int | None) -> int:
    raw = hyperparameters.get(name)
    if raw is None:
        if default is None:
            raise ValueError(f"hyperparameter {name!r} is required")
        return default
    try:
        value = int(float(str(raw)))
    except ValueError:
        raise ValueError(f"hyperparameter {name}: expected an integer, got {raw!r}") from None
    if value < 1 or float(str(raw)) != value:
        raise ValueError(f"hyperparameter {name}: expected a positive integer, got {raw!r}")
    return value


def _flag(hyperparameters: Mapping[str, str], name: str, default: bool) -> bool:
    raw = hyperparameters.get(name)
    if raw is None or str(raw).strip().lower() == "auto":
        return default
    text = str(raw).strip().lower()
    if text in ("1", "true", "yes"):
        return True
    if text in ("0", "false", "no"):
        return False
    raise ValueError(f"hyperparameter {name}: expected true or false, got {raw!r}")


class XGBoostPredictor:
    """An xgboost Booster served as the built-in's transform/endpoint serves it."""

    def __init__(self, booster: xgboost.Booster) -> None:
        # One thread: requests are a few rows, and OpenMP's thread team costs
        # milliseconds per call as soon as another process loads the cores.
        booster.set_param({"nthread": 1})
        self.booster = booster

    def predict_csv(self, body: bytes) -> bytes:
        import xgboost

        matrix = _parse_inference_body(body, self.booster.num_features())
        if not matrix.shape[0]:
            return b""
        scores = np.asarray(self.booster.predict(
            xgboost.DMatrix(matrix, missing=math.nan, nthread=1)))
        return _format_scores(scores)


class _BuiltInStandIn(AlgorithmStandIn):
    """A built-in algorithm's stand-in: :meth:`fit` gets the hyperparameters as
    the container reads them, strings (SageMaker passes strings; a direct
    caller of :meth:`train` may pass numbers), and ``model_dir`` as a Path."""

    def train(self, *, channels: Mapping[str, Path], hyperparameters: Mapping[str, str],
              content_type: str, model_dir: Path) -> dict[str, float]:
        hp = {str(k): str(v) for k, v in hyperparameters.items()}
        return self.fit(channels, hp, content_type, Path(model_dir))

    @abstractmethod
    def fit(self, channels: Mapping[str, Path], hp: Mapping[str, str], content_type: str,
            model_dir: Path) -> dict[str, float]:
        """:meth:`AlgorithmStandIn.train`, the hyperparameters as strings."""


class XGBoostStandIn(_BuiltInStandIn):
    """SageMaker's built-in XGBoost (``sagemaker-xgboost``), trained by real xgboost."""

    name = "xgboost"

    def fit(self, channels: Mapping[str, Path], hp: Mapping[str, str], content_type: str,
            model_dir: Path) -> dict[str, float]:
        import xgboost

        num_round = _positive_int(hp, "num_round", None)
        csv_weights = hp.get("csv_weights", "0").strip() == "1"
        if csv_weights and _media_type(content_type) != CSV:
            raise ValueError("hyperparameter csv_weights=1 applies to text/csv input only")
        data = _read_channels(channels, content_type, csv_weights=csv_weights)
        metric_names = [m.strip() for m in hp.get("eval_metric", "").split(",") if m.strip()]
        container_metrics = [m for m in metric_names if m in _XGB_CONTAINER_METRICS]
        params: dict[str, Any] = {k: v for k, v in hp.items() if k not in _XGB_CONTAINER_ONLY}
        xgb_metrics = [m for m in metric_names if m not in _XGB_CONTAINER_METRICS]
        if xgb_metrics:
            params["eval_metric"] = xgb_metrics
        # Quiet unless asked: a local run prints its own summary.
        params.setdefault("verbosity", "0")

        matrices = {
            name: xgboost.DMatrix(
                channel.features, label=channel.label, weight=channel.weights, missing=math.nan
            )
            for name, channel in data.items()
        }
        evals = [(matrices[name], name) for name in _metric_channels(data)]
        early = hp.get("early_stopping_rounds")
        if early is not None and "validation" not in matrices:
            raise ValueError("early_stopping_rounds needs a 'validation' channel")
        history: dict[str, dict[str, list[float]]] = {}
        try:
            booster = xgboost.train(
                params,
                matrices["train"],
                num_boost_round=num_round,
                evals=evals,
                evals_result=history,
                early_stopping_rounds=(
                    _positive_int(hp, "early_stopping_rounds", None) if early else None
                ),
                verbose_eval=False,
            )
        except xgboost.core.XGBoostError as error:
            # The container reports xgboost's complaint as the job's failure reason.
            raise ValueError(f"XGB train call failed with exception: {error}") from error

        model_dir.mkdir(parents=True, exist_ok=True)
        # The container calls Booster.save_model('xgboost-model'); with no file
        # extension xgboost writes UBJSON. save_raw does the same without its warning.
        (model_dir / XGBOOST_MODEL).write_bytes(bytes(booster.save_raw("ubj")))

        metrics: dict[str, float] = {}
        for channel, values in history.items():
            for metric, series in values.items():
                metrics[f"{channel}:{metric}"] = float(series[-1])
        for channel in _metric_channels(data):
            if not container_metrics:
                break
            predictions = booster.predict(matrices[channel])
            for metric in container_metrics:
                metrics[f"{channel}:{metric}"] = _container_metric(
                    metric, data[channel].label, np.asarray(predictions)
                )
        return dict(sorted(metrics.items(), key=lambda item: _metric_order(item[0])))

    def load(self, model_dir: Path) -> XGBoostPredictor:
        import xgboost

        path = Path(model_dir) / XGBOOST_MODEL
        if not path.is_file():
            raise FileNotFoundError(f"{model_dir} has no {XGBOOST_MODEL} (an XGBoost artifact)")
        return XGBoostPredictor(xgboost.Booster(model_file=bytearray(path.read_bytes())))


def _container_metric(metric: str, label: np.ndarray, predictions: np.ndarray) -> float:
    """The container's own metrics: predictions rounded (argmax for class scores)."""
    if metric == "mse":
        return float(np.mean((predictions.reshape(len(label)) - label) ** 2))
    predicted = (
        np.argmax(predictions, axis=1) if predictions.ndim > 1 else np.round(predictions)
    ).astype(np.float64)
    if metric == "accuracy":
        return float(np.mean(predicted == label))
    return _macro_f1(label, predicted)


def _metric_order(name: str) -> tuple[int, str]:
    channel = name.split(":", 1)[0]
    return (METRIC_CHANNELS.index(channel) if channel in METRIC_CHANNELS else 99, name)


# -- Linear Learner -------------------------------------------------------------------

LINEAR_LEARNER_MODEL = "model_algo-1"
_LL_PARAMS = "mdlc-linear-learner.json"
_LL_PREDICTORS = ("binary_classifier", "regressor")


@dataclass(frozen=True)
class LinearModel:
    """A fitted linear model on standardized inputs (and, for regression, label)."""

    predictor_type: str
    weights: np.ndarray
    bias: float
    mean: np.ndarray
    scale: np.ndarray
    label_mean: float = 0.0
    label_scale: float = 1.0
    threshold: float = 0.5

    def score(self, features: np.ndarray) -> np.ndarray:
        """The response's ``score``: the probability of 1, or the regression estimate."""
        if np.isnan(features).any():
            raise ValueError("Linear Learner cannot score rows with missing values")
        margin = ((features - self.mean) / self.scale) @ self.weights + self.bias
        if self.predictor_type == "binary_classifier":
            return _sigmoid(margin)
        return margin * self.label_scale + self.label_mean

    def to_json(self) -> dict[str, Any]:
        return {
            "format": "mdlc-linear-learner/1",
            "predictor_type": self.predictor_type,
            "weights": self.weights.tolist(),
            "bias": self.bias,
            "mean": self.mean.tolist(),
            "scale": self.scale.tolist(),
            "label_mean": self.label_mean,
            "label_scale": self.label_scale,
            "threshold": self.threshold,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> LinearModel:
        return cls(
            predictor_type=str(data["predictor_type"]),
            weights=np.asarray(data["weights"], dtype=np.float64),
            bias=float(data["bias"]),
            mean=np.asarray(data["mean"], dtype=np.float64),
            scale=np.asarray(data["scale"], dtype=np.float64),
            label_mean=float(data["label_mean"]),
            label_scale=float(data["label_scale"]),
            threshold=float(data["threshold"]),
        )


class LinearLearnerPredictor:
    """A Linear Learner model answering with the ``score`` of each row."""

    def __init__(self, model: LinearModel) -> None:
        self.model = model

    def predict_csv(self, body: bytes) -> bytes:
        matrix = _parse_inference_body(body, len(self.model.weights))
        if not matrix.shape[0]:
            return b""
        return _format_scores(self.model.score(matrix))


def _sigmoid(margin: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * margin))  # stable for large |margin|


def _float_hp(hp: Mapping[str, str], name: str, default: float, minimum: float = 0.0) -> float:
    raw = hp.get(name)
    if raw is None or str(raw).strip().lower() == "auto":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"hyperparameter {name}: expected a number, got {raw!r}") from None
    if not math.isfinite(value) or value < minimum:
        raise ValueError(f"hyperparameter {name}: expected a number >= {minimum}, got {raw!r}")
    return value


class LinearLearnerStandIn(_BuiltInStandIn):
    """SageMaker's built-in Linear Learner (``linear-learner``), as a NumPy fit.

    Hyperparameters used: ``predictor_type`` (binary_classifier or
    regressor; multiclass is not covered), ``feature_dim`` (checked against
    the data), ``wd`` (L2 weight decay, default 1e-4), ``use_bias``,
    ``normalize_data``, ``normalize_label``, ``positive_example_weight_mult``
    (a number or 'balanced'), ``binary_classifier_model_selection_criteria``
    with ``target_recall``/``target_precision`` (the decision threshold the
    precision/recall/accuracy metrics use). The others (``epochs``,
    ``learning_rate``, ``mini_batch_size``, ``optimizer``, ``l1``, ...)
    steer the built-in's SGD and are accepted and ignored: the stand-in
    solves its objective exactly.
    """

    name = "linear-learner"

    def fit(self, channels: Mapping[str, Path], hp: Mapping[str, str], content_type: str,
            model_dir: Path) -> dict[str, float]:
        predictor_type = hp.get("predictor_type")
        if predictor_type not in _LL_PREDICTORS:
            raise ValueError(
                f"hyperparameter predictor_type: the local Linear Learner supports "
                f"{list(_LL_PREDICTORS)}, got {predictor_type!r}"
            )
        if _media_type(content_type) != CSV:
            raise ValueError(
                f"Linear Learner reads text/csv or recordio-protobuf; the local stand-in reads "
                f"text/csv only, got {content_type!r}"
            )
        data = _read_channels(channels, content_type)
        for name, channel in data.items():
            if np.isnan(channel.features).any() or np.isnan(channel.label).any():
                raise ValueError(f"channel {name!r}: Linear Learner does not accept missing values")
        train = data["train"]
        dim = hp.get("feature_dim", "auto").strip().lower()
        if dim != "auto" and int(float(dim)) != train.features.shape[1]:
            raise ValueError(
                f"hyperparameter feature_dim is {dim} but the data has "
                f"{train.features.shape[1]} features"
            )
        binary = predictor_type == "binary_classifier"
        if binary and not np.isin(train.label, (0.0, 1.0)).all():
            raise ValueError("binary_classifier labels must be 0 or 1")

        normalize = _flag(hp, "normalize_data", True)
        mean = train.features.mean(axis=0) if normalize else np.zeros(train.features.shape[1])
        scale = train.features.std(axis=0) if normalize else np.ones(train.features.shape[1])
        scale = np.where(scale > 0, scale, 1.0)
        x = (train.features - mean) / scale
        wd = _float_hp(hp, "wd", 1e-4)
        use_bias = _flag(hp, "use_bias", True)
        label_mean, label_scale = 0.0, 1.0
        if binary:
            weights = np.ones(len(train.label))
            multiplier = hp.get("positive_example_weight_mult", "1.0").strip().lower()
            if multiplier == "balanced":
                positives = max(float(train.label.sum()), 1.0)
                weights[train.label > 0.5] = (len(train.label) - positives) / positives
            else:
                weights[train.label > 0.5] = _float_hp(hp, "positive_example_weight_mult", 1.0)
            w, b = _fit_logistic(x, train.label, weights, wd, use_bias)
        else:
            y = train.label
            if _flag(hp, "normalize_label", True):
                label_mean = float(y.mean())
                label_scale = float(y.std()) or 1.0
            w, b = _fit_ridge(x, (y - label_mean) / label_scale, wd, use_bias)
        model = LinearModel(predictor_type, w, b, mean, scale, label_mean, label_scale)
        if binary:
            selection = data.get("validation", train)
            model = _with_threshold(model, selection, hp)

        model_dir.mkdir(parents=True, exist_ok=True)
        with zipfile.ZipFile(model_dir / LINEAR_LEARNER_MODEL, "w") as archive:
            archive.writestr(_LL_PARAMS, json.dumps(model.to_json(), indent=1))
        metrics: dict[str, float] = {}
        for channel in _metric_channels(data) + (["test"] if "test" in data else []):
            metrics.update(_ll_metrics(model, data[channel], channel))
        return metrics

    def load(self, model_dir: Path) -> LinearLearnerPredictor:
        path = Path(model_dir) / LINEAR_LEARNER_MODEL
        try:
            with zipfile.ZipFile(path) as archive:
                model = LinearModel.from_json(json.loads(archive.read(_LL_PARAMS)))
        except (KeyError, zipfile.BadZipFile) as error:
            raise ValueError(
                f"{path} is not a model the local Linear Learner wrote (a built-in's MXNet "
                f"artifact cannot be loaded here)"
            ) from error
        except FileNotFoundError:
            raise FileNotFoundError(
                f"{model_dir} has no {LINEAR_LEARNER_MODEL} (a Linear Learner artifact)"
            ) from None
        return LinearLearnerPredictor(model)


def _fit_logistic(
    x: np.ndarray, y: np.ndarray, weights: np.ndarray, wd: float, use_bias: bool
) -> tuple[np.ndarray, float]:
    """L2-regularized weighted logistic regression by Newton's method (IRLS).

    The objective is the weighted mean log loss plus wd/2 * |w|^2; the bias
    is not decayed. A tiny ridge keeps separable data finite.
    """
    design = np.column_stack([x, np.ones(len(x))]) if use_bias else x
    k = design.shape[1]
    penalty = np.full(k, max(wd, 1e-6))
    if use_bias:
        penalty[-1] = 1e-9
    beta = np.zeros(k)
    total = weights.sum()
    for _ in range(100):
        p = _sigmoid(design @ beta)
        gradient = design.T @ (weights * (p - y)) / total + penalty * beta
        hessian = (design.T * (weights * p * (1 - p))) @ design / total + np.diag(penalty)
        step = np.linalg.solve(hessian, gradient)
        beta -= step
        if np.max(np.abs(step)) < 1e-10:
            break
    return (beta[:-1], float(beta[-1])) if use_bias else (beta, 0.0)


def _fit_ridge(x: np.ndarray, y: np.ndarray, wd: float, use_bias: bool) -> tuple[np.ndarray, float]:
    """Ridge regression in closed form: mean squared loss plus wd/2 * |w|^2."""
    design = np.column_stack([x, np.ones(len(x))]) if use_bias else x
    n, k = design.shape
    penalty = np.full(k, wd)
    if use_bias:
        penalty[-1] = 0.0
    beta = np.linalg.solve(design.T @ design / n + np.diag(penalty) + 1e-12 * np.eye(k),
                           design.T @ y / n)
    return (beta[:-1], float(beta[-1])) if use_bias else (beta, 0.0)


def _with_threshold(model: LinearModel, channel: Channel, hp: Mapping[str, str]) -> LinearModel:
    """The decision threshold for ``binary_classifier_model_selection_criteria``."""
    criterion = hp.get("binary_classifier_model_selection_criteria", "accuracy").strip().lower()
    if criterion in ("cross_entropy_loss", "loss_function"):
        return model
    scores = model.score(channel.features)
    label = channel.label
    candidates = np.unique(np.concatenate([scores, [0.5]]))
    best, best_value = 0.5, -math.inf
    for threshold in candidates:
        predicted = scores >= threshold
        precision, recall, f1 = _f_beta(label, predicted, _float_hp(hp, "f_beta", 1.0))
        if criterion == "accuracy":
            value = float(np.mean(predicted == (label > 0.5)))
        elif criterion in ("f1", "f_beta"):
            value = f1
        elif criterion == "precision_at_target_recall":
            value = precision if recall >= _float_hp(hp, "target_recall", 0.8) else -math.inf
        elif criterion == "recall_at_target_precision":
            value = recall if precision >= _float_hp(hp, "target_precision", 0.8) else -math.inf
        else:
            raise ValueError(
                f"hyperparameter binary_classifier_model_selection_criteria: unknown "
                f"value {criterion!r}"
            )
        if value > best_value:
            best, best_value = float(threshold), value
    return LinearModel(
        model.predictor_type, model.weights, model.bias, model.mean, model.scale,
        model.label_mean, model.label_scale, best,
    )


def _ll_metrics(model: LinearModel, channel: Channel, name: str) -> dict[str, float]:
    score = model.score(channel.features)
    label = channel.label
    if model.predictor_type == "binary_classifier":
        clipped = np.clip(score, 1e-15, 1 - 1e-15)
        loss = -np.mean(label * np.log(clipped) + (1 - label) * np.log(1 - clipped))
        predicted = score >= model.threshold
        precision, recall, f1 = _f_beta(label, predicted)
        return {
            f"{name}:objective_loss": float(loss),
            f"{name}:binary_classification_accuracy": float(np.mean(predicted == (label > 0.5))),
            f"{name}:precision": precision,
            f"{name}:recall": recall,
            f"{name}:binary_f_beta": f1,
            f"{name}:roc_auc_score": roc_auc(label, score),
        }
    error = score - label
    return {
        f"{name}:objective_loss": float(np.mean(error**2)),
        f"{name}:mse": float(np.mean(error**2)),
        f"{name}:absolute_loss": float(np.mean(np.abs(error))),
    }


# -- the built-ins ------------------------------------------------------------------

#: Repository patterns of the built-in images (the SDK's 'xgboost' version 1 image
#: is in the legacy 'xgboost' repository; every later one in 'sagemaker-xgboost').
BUILTIN_STAND_INS: Sequence[tuple[str, type[AlgorithmStandIn]]] = (
    ("sagemaker-xgboost", XGBoostStandIn),
    ("xgboost", XGBoostStandIn),
    ("linear-learner", LinearLearnerStandIn),
)
for _pattern, _stand_in in BUILTIN_STAND_INS:
    register_stand_in(_pattern, _stand_in)
