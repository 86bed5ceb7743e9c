"""Loggers fed by ``fit``: TensorBoard (read back with TensorBoard's own reader), history.csv
and a user's own logger through the three-method protocol."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import pytest

import depthlab as dl
from depthlab.loggers import CSVHistory, TensorBoard, write_history_csv

pytest.importorskip("tensorboard")

SPEC = {
    "arch": {"family": "mlp", "depth": 2, "width": 8},
    "data": {"name": "iris", "seed": 0},
    "train": {"optimizer": "sgd", "lr": 0.05, "epochs": 4, "batch_size": 16},
}


def _spec(**train: object) -> dl.RunSpec:
    return dl.RunSpec.from_dict({**SPEC, "train": {**SPEC["train"], **train}})


def _events(path: Path):  # type: ignore[no-untyped-def]
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(path), size_guidance={"scalars": 0})
    acc.Reload()
    return acc


def _hparams(acc) -> tuple[dict, list[str]]:  # type: ignore[no-untyped-def]
    """The run's hyperparameters and the metric tags the HParams tab compares them on."""
    from tensorboard.plugins.hparams import plugin_data_pb2

    content = acc.PluginTagToContent("hparams")
    start = plugin_data_pb2.HParamsPluginData.FromString(
        content["_hparams_/session_start_info"]
    ).session_start_info
    experiment = plugin_data_pb2.HParamsPluginData.FromString(
        content["_hparams_/experiment"]
    ).experiment
    params = {
        k: (v.string_value if v.HasField("string_value") else v.number_value)
        for k, v in start.hparams.items()
    }
    return params, [m.name.tag for m in experiment.metric_infos]


def test_fit_writes_curves_final_metrics_and_hparams(tmp_path: Path) -> None:
    result = dl.run(_spec(), loggers=[TensorBoard(tmp_path / "tb")])
    acc = _events(tmp_path / "tb")
    for name in ("train_loss", "train_accuracy", "val_loss", "test_accuracy", "lr"):
        events = acc.Scalars(name)
        assert [e.step for e in events] == [1, 2, 3, 4]
        want = [row[name] for row in result.history]
        assert [e.value for e in events] == pytest.approx(want, rel=1e-6)
    params, metrics = _hparams(acc)
    assert params["train.lr"] == pytest.approx(0.05) and params["arch.depth"] == 2
    assert params["arch.act"] == "relu" and params["state"] == "COMPLETE"
    assert sorted(metrics) == sorted(f"final/{k}" for k in result.metrics)
    for key, value in result.metrics.items():
        assert acc.Scalars(f"final/{key}")[0].value == pytest.approx(value, rel=1e-6)


def test_a_diverged_run_is_logged_as_diverged(tmp_path: Path) -> None:
    result = dl.run(_spec(lr=1.0e9), loggers=[TensorBoard(tmp_path / "tb")])
    assert result.state is dl.RunState.DIVERGED
    params, _ = _hparams(_events(tmp_path / "tb"))
    assert params["state"] == "DIVERGED"


def test_fit_without_a_run_spec_logs_its_train_fields(tmp_path: Path) -> None:
    spec = _spec()
    data = dl.load_data(spec.data)
    model = dl.build_model(spec.arch, in_shape=data.in_shape, out_dim=data.out_dim)
    dl.fit(model, data, spec.train, loggers=[TensorBoard(tmp_path / "tb")])
    params, _ = _hparams(_events(tmp_path / "tb"))
    assert params["train.optimizer"] == "sgd" and not any(k.startswith("arch.") for k in params)


@pytest.mark.parametrize("eval_every", [1, 2])
def test_csv_history_streams_the_file_write_run_dir_writes(tmp_path: Path, eval_every) -> None:  # type: ignore[no-untyped-def]
    # eval_every 2: the first row has no val/test columns, the second brings them
    result = dl.run(_spec(eval_every=eval_every), loggers=[CSVHistory(tmp_path / "live.csv")])
    write_history_csv(tmp_path / "after.csv", result.history)
    assert (tmp_path / "live.csv").read_text() == (tmp_path / "after.csv").read_text()
    assert (tmp_path / "live.csv").read_text().count("\n") == 1 + len(result.history)


class JsonLines:
    """A user's own logger: the README's example (three methods, one JSON object per line)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def start(self, hparams: Mapping[str, object]) -> None:
        self.file = self.path.open("w")
        self.file.write(json.dumps({"hparams": dict(hparams)}) + "\n")

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        self.file.write(json.dumps({**metrics, "epoch": step}) + "\n")

    def finish(self, metrics: Mapping[str, float], state: str) -> None:
        self.file.write(json.dumps({"state": state, "final": dict(metrics)}) + "\n")
        self.file.close()


def test_a_users_logger_gets_hparams_every_epoch_and_the_result(tmp_path: Path) -> None:
    result = dl.run(_spec(), loggers=[JsonLines(tmp_path / "log.jsonl")])
    lines = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert lines[0]["hparams"]["train.lr"] == 0.05 and lines[0]["hparams"]["data.name"] == "iris"
    assert [line["epoch"] for line in lines[1:-1]] == [1, 2, 3, 4]
    assert [line["train_loss"] for line in lines[1:-1]] == [r["train_loss"] for r in result.history]
    assert lines[-1] == {"state": "COMPLETE", "final": result.metrics}


class MLflow:
    """The README's MLflow logger, as printed there."""

    def start(self, hparams: Mapping[str, object]) -> None:
        import mlflow

        mlflow.start_run()
        mlflow.log_params(hparams)

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        import mlflow

        mlflow.log_metrics(dict(metrics), step=step)

    def finish(self, metrics: Mapping[str, float], state: str) -> None:
        import mlflow

        mlflow.log_metrics({f"final_{k}": v for k, v in metrics.items()})
        mlflow.set_tag("state", state)
        mlflow.end_run()


def test_the_readme_mlflow_logger_against_a_file_store(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    mlflow = pytest.importorskip("mlflow")
    uri = (tmp_path / "mlruns").as_uri()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # the file store, kept for tests
    result = dl.run(_spec(), loggers=[MLflow()])
    client = mlflow.tracking.MlflowClient(uri)
    (run,) = client.search_runs(experiment_ids=["0"])
    assert run.data.params["train.lr"] == "0.05" and run.data.params["arch.act"] == "relu"
    assert run.data.tags["state"] == "COMPLETE"
    history = client.get_metric_history(run.info.run_id, "train_loss")
    assert [m.step for m in history] == [1, 2, 3, 4]
    want = [row["train_loss"] for row in result.history]
    assert [m.value for m in history] == pytest.approx(want)
    final = run.data.metrics["final_test_accuracy"]
    assert final == pytest.approx(result.metrics["test_accuracy"])


def test_something_that_is_not_a_logger_is_refused(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="start, log_metrics and finish"):
        dl.run(_spec(), loggers=[object()])  # type: ignore[list-item]


def test_log_diagnosis_writes_scalars_and_per_layer_histograms(tmp_path: Path) -> None:
    from depthlab.loggers import log_diagnosis

    diagnosis = {
        "verdict": "vanishing signal",
        "p_trains": 0.1,
        "probes": {"signal": {"status": "ok"}},
        "signal": {"second_moment_ratio": 1e-4, "layers": [{"var": 1.0}, {"var": 0.5}]},
        "findings": [{"verdict": "vanishing signal", "evidence": "ratio 1e-4", "advice": ""}],
    }
    tb = TensorBoard(tmp_path / "tb")
    log_diagnosis(tb, diagnosis)
    tb.close()
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(tmp_path / "tb"), size_guidance={"histograms": 0, "tensors": 0})
    acc.Reload()
    assert acc.Scalars("diagnosis/p_trains")[0].value == pytest.approx(0.1)
    assert acc.Scalars("diagnosis/signal/second_moment_ratio")[0].value == pytest.approx(1e-4)
    hist = acc.Histograms("diagnosis/signal/layers/var")[0].histogram_value
    assert hist.num == 2 and hist.sum == pytest.approx(1.5) and hist.max == pytest.approx(1.0)
    text = acc.Tensors("diagnosis/verdict/text_summary")[0].tensor_proto.string_val[0].decode()
    assert text.startswith("vanishing signal") and "ratio 1e-4" in text


def test_depthlab_train_tensorboard(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    from depthlab.cli.main import main

    (tmp_path / "run.yaml").write_text(_spec().to_yaml())
    with pytest.raises(SystemExit) as exit_:
        main(
            ["train", str(tmp_path / "run.yaml"), "--quiet", "--tensorboard", str(tmp_path / "tb")]
        )
    assert exit_.value.code in (0, None)
    params, metrics = _hparams(_events(tmp_path / "tb"))
    assert params["arch.depth"] == 2 and "final/test_accuracy" in metrics
