"""``depthlab.load_runs`` and ``depthlab runs --format ...`` on a diagnosed sweep run here, and
the same sweep's TensorBoard event files read back with TensorBoard's own reader."""

from __future__ import annotations

import csv
import io
import json
import sys
from pathlib import Path

import pytest

import depthlab as dl
from depthlab.store import RunState, SQLiteStore
from depthlab.sweep import SweepSpec
from depthlab.testing.cli import run_cli

pd = pytest.importorskip("pandas")

SWEEP = """
base:
  arch:  {family: mlp, depth: 2, width: 8, init: he}
  data:  {name: iris, seed: 0}
  train: {optimizer: sgd, lr: 0.05, epochs: 3, batch_size: 16}
axes:  {arch.act: [relu, tanh], train.lr: [0.05, 1.0e9]}
seeds: [0]
probes: [signal, gradients]
"""


@pytest.fixture(scope="module")
def swept(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A diagnosed 2 × 2 sweep (two runs diverge), run once with --tensorboard."""
    root = tmp_path_factory.mktemp("swept")
    (root / "sweep.yaml").write_text(SWEEP)
    out = run_cli(
        "sweep",
        str(root / "sweep.yaml"),
        "--store",
        str(root / "runs.db"),
        "--workers",
        "1",
        "--quiet",
        "--tensorboard",
        str(root / "tb"),
    )
    assert out.returncode == 0, out.stderr
    return root


def _records(db: Path) -> dict[str, dl.store.RunRecord]:
    with SQLiteStore(db) as store:
        return {r.run_id: r for r in store.runs()}


def test_the_frame_has_axis_verdict_metric_and_probe_columns(swept: Path) -> None:
    df = dl.load_runs(swept / "runs.db").to_pandas()
    records = _records(swept / "runs.db")
    assert len(df) == 4 and set(df["run_id"]) == set(records)
    expected = ["arch.act", "train.lr", "seed", "state", "verdict", "p_trains", "decided_by"]
    expected += ["progress", "trained", "train_loss", "test_accuracy"]
    expected += ["probes.signal.second_moment_ratio", "probes.gradients.max_ratio"]
    assert set(expected) <= set(df.columns)
    cols = list(df.columns)
    assert cols.index("train.lr") < cols.index("seed") < cols.index("verdict")
    assert df["train.lr"].dtype == "float64" and set(df["arch.act"]) == {"relu", "tanh"}
    for got in df.to_dict("records"):
        rec = records[got["run_id"]]
        diag = rec.probes["diagnose"]
        assert got["arch.act"] == rec.spec["arch"]["act"]
        assert got["train.lr"] == rec.spec["train"]["lr"]
        assert got["state"] == rec.state.value and got["seed"] == rec.seed
        assert got["verdict"] == diag["verdict"] and got["p_trains"] == diag["p_trains"]
        assert got["probes.signal.second_moment_ratio"] == diag["signal"]["second_moment_ratio"]
        assert got["probes.gradients.max_ratio"] == diag["gradients"]["max_ratio"]
        if rec.state is RunState.COMPLETE:
            assert got["test_accuracy"] == rec.metrics["test_accuracy"]
    diverged = df[df["state"] == "DIVERGED"]
    assert len(diverged) >= 1 and set(diverged["train.lr"]) == {1.0e9}
    assert diverged["trained"].tolist() == [False] * len(diverged)


def test_progress_is_measured_from_chance_to_the_best_configuration(swept: Path) -> None:
    df = dl.load_runs(swept / "runs.db").to_pandas()
    data = dl.load_data(dl.DataSpec(name="iris", seed=0))
    counts = data.y_test.bincount()
    chance = float(counts.max() / counts.sum())
    done = df[df["state"] == "COMPLETE"]
    best = done["test_accuracy"].max()
    for row in done.to_dict("records"):
        want = (row["test_accuracy"] - chance) / (best - chance)
        assert row["progress"] == pytest.approx(want)
        assert row["trained"] == (None if 0.35 < want < 0.65 else want >= 0.5)


def test_a_sweep_file_selects_its_runs_and_names_the_axes(swept: Path) -> None:
    # the same sweep with one activation: its runs are a subset of the store's
    sub = SweepSpec.from_dict(
        {**_sweep_dict(), "axes": {"arch.act": ["tanh"], "train.lr": [0.05, 1.0e9]}}
    )
    runs = dl.load_runs(swept / "runs.db", sub)
    assert len(runs) == 2 and {r["arch.act"] for r in runs} == {"tanh"}
    assert runs.columns[2:4] == ("arch.act", "train.lr")
    runs = dl.load_runs(swept / "runs.db", swept / "sweep.yaml", state="COMPLETE")
    assert len(runs) >= 2 and {r["state"] for r in runs} == {"COMPLETE"}


def _sweep_dict() -> dict:
    import yaml

    return yaml.safe_load(SWEEP)


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """``depthlab ARGS...`` in this process (the command's own code path, without a new
    interpreter): exit code, stdout, stderr."""
    from depthlab.cli.main import main

    capsys.readouterr()
    try:
        main(list(args))
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_formats_write_the_frames_columns(swept: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    db = str(swept / "runs.db")
    df = dl.load_runs(db).to_pandas()
    code, text, err = cli(capsys, "runs", "--store", db, "--format", "csv")
    assert code == 0, err
    rows = list(csv.DictReader(io.StringIO(text)))
    assert list(rows[0]) == list(df.columns) and len(rows) == 4
    assert cli(capsys, "runs", "--store", db, "--csv")[1] == text  # the old spelling
    by_id = {r["run_id"]: r for r in rows}
    for row in df.to_dict("records"):
        assert float(by_id[row["run_id"]]["p_trains"]) == pytest.approx(row["p_trains"])

    lines = cli(capsys, "runs", "--store", db, "--format", "jsonl")[1].splitlines()
    parsed = [json.loads(line) for line in lines]
    assert [list(p) for p in parsed] == [list(df.columns)] * 4

    picked = cli(capsys, "runs", "--store", db, "--format", "csv", "--columns", "arch.act,state")
    assert picked[1].splitlines()[0] == "arch.act,state"

    code, table, _ = cli(capsys, "runs", "--store", db, "--columns", "arch.act,verdict,seed")
    assert code == 0 and "verdict" in table and "tanh" in table


def test_parquet_and_polars_hold_the_same_table(swept: Path, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    db = str(swept / "runs.db")
    df = dl.load_runs(db).to_pandas()
    code, _, err = cli(
        capsys, "runs", "--store", db, "--format", "parquet", "--out", str(tmp_path / "r.pq")
    )
    assert code == 0, err
    back = pd.read_parquet(tmp_path / "r.pq")
    assert list(back.columns) == list(df.columns)
    pd.testing.assert_series_equal(back["p_trains"], df["p_trains"])
    pd.testing.assert_series_equal(back["arch.act"], df["arch.act"], check_dtype=False)
    pl = pytest.importorskip("polars")
    frame = dl.load_runs(db).to_polars()
    assert isinstance(frame, pl.DataFrame)
    assert frame.columns == list(df.columns) and frame.height == 4


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--format", "xml"], ["xml", "table, csv, jsonl, parquet"]),
        (["--format", "parquet"], ["--out"]),
        (["--columns", "arch.act,nope"], ["'nope'", "choices", "arch.act"]),
    ],
)
def test_bad_runs_options_are_one_line_and_exit_2(
    swept: Path, args: list, words: list, capsys
) -> None:  # type: ignore[no-untyped-def]
    code, _, err = cli(capsys, "runs", "--store", str(swept / "runs.db"), *args)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and all(w in lines[0] for w in words), err


def test_history_frame_is_the_runs_curve(swept: Path) -> None:
    record = next(r for r in _records(swept / "runs.db").values() if r.state is RunState.COMPLETE)
    frame = record.history_frame()
    assert list(frame.columns[:4]) == ["epoch", "step", "lr", "train_loss"]
    assert frame["epoch"].tolist() == [1, 2, 3] and frame["epoch"].dtype == "int64"
    assert frame["train_loss"].tolist() == [row["train_loss"] for row in record.history]


def _blocked(module: str, code: str) -> str:
    """Python source that runs ``code`` as if ``module`` were not installed."""
    return f"import sys\nsys.modules[{module!r}] = None\n{code}"


def test_without_pandas_or_pyarrow_one_line_names_the_extra(swept: Path) -> None:
    import subprocess

    db = str(swept / "runs.db")
    code = _blocked(
        "pandas",
        "import depthlab as dl\n"
        f"runs = dl.load_runs({db!r})\n"
        "assert len(runs) == 4\n"  # the table itself needs no pandas
        "try:\n    runs.to_pandas()\n"
        "except dl.MissingDependencyError as err:\n    print(err)\n",
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert 'pip install "depthlab[frames]"' in out.stdout and "pandas" in out.stdout
    cli = _blocked(
        "pyarrow",
        "from depthlab.cli.main import main\n"
        f"main(['runs', '--store', {db!r}, '--format', 'parquet', '--out', 'x.pq'])",
    )
    out = subprocess.run([sys.executable, "-c", cli], capture_output=True, text=True)
    assert out.returncode == 2
    assert out.stderr.count("\n") == 1 and 'pip install "depthlab[frames]"' in out.stderr


# -- the same sweep in TensorBoard ------------------------------------------------------------


def _events(path: Path):  # type: ignore[no-untyped-def]
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(path), size_guidance={"scalars": 0, "histograms": 0})
    acc.Reload()
    return acc


def _hparams(acc) -> dict:  # type: ignore[no-untyped-def]
    from tensorboard.plugins.hparams import plugin_data_pb2

    content = acc.PluginTagToContent("hparams")["_hparams_/session_start_info"]
    info = plugin_data_pb2.HParamsPluginData.FromString(content).session_start_info
    return {
        k: (v.string_value if v.HasField("string_value") else v.number_value)
        for k, v in info.hparams.items()
    }


def test_sweep_tensorboard_has_a_run_per_directory_with_hparams(swept: Path) -> None:
    records = _records(swept / "runs.db")
    dirs = sorted(p.name for p in (swept / "tb").iterdir())
    assert dirs == sorted(r.spec["name"] for r in records.values())
    for record in records.values():
        acc = _events(swept / "tb" / record.spec["name"])
        params = _hparams(acc)
        assert params["arch.act"] == record.spec["arch"]["act"]
        assert params["train.lr"] == pytest.approx(record.spec["train"]["lr"])
        assert params["seed"] == record.seed and params["state"] == record.state.value
        want = [row["train_loss"] for row in record.history]
        if want:  # a run that diverged in its first epoch has no epoch row at all
            losses = [e.value for e in acc.Scalars("train_loss")]
            assert losses == pytest.approx(want, rel=1e-6)  # event files hold float32
            assert [e.step for e in acc.Scalars("train_loss")] == list(range(1, len(want) + 1))
        else:
            assert "train_loss" not in acc.Tags()["scalars"]
        p = acc.Scalars("diagnosis/p_trains")[0].value
        assert p == pytest.approx(record.probes["diagnose"]["p_trains"], rel=1e-6)
        layers = record.probes["diagnose"]["signal"]["layers"]
        hist = acc.Histograms("diagnosis/signal/layers/second_moment")[0].histogram_value
        assert hist.num == len(layers)
        assert hist.sum == pytest.approx(sum(la["second_moment"] for la in layers), rel=1e-5)
        if record.state is RunState.COMPLETE:
            final = acc.Scalars("final/test_accuracy")[0].value
            assert final == pytest.approx(record.metrics["test_accuracy"], rel=1e-6)
        else:  # a diverged run has no final metrics: its curve stops where it diverged
            assert not record.metrics
            assert not [t for t in acc.Tags()["scalars"] if t.startswith("final/")]


def _record(name: str, width: object, lr: float, seed: int, state: str = "COMPLETE"):  # type: ignore[no-untyped-def]
    spec = {
        "name": name,
        "arch": {"family": "mlp", "depth": 2, "width": width},
        "data": {"name": "iris", "seed": 0},
        "train": {"lr": lr, "seed": seed},
    }
    return dl.store.RunRecord(
        run_id=f"{name}-s{seed}",
        spec_hash=name,
        spec=spec,
        seed=seed,
        state=RunState(state),
        metrics={"train_loss": 0.5} if state == "COMPLETE" else {},
        probes={"optimality": {"gap": 1e-3, "certified": True, "layers": [1.0, 2.0]}},
    )


def test_axes_come_from_names_and_differences_and_each_column_has_one_type(
    tmp_path: Path,
) -> None:
    records = [
        _record("arch.width=16,seed=0", 16, 1, 0),
        _record("arch.width=[16,8],seed=0", [16, 8], 0.5, 0),
        _record("arch.width=16,seed=1", 16, 1, 1, "DIVERGED"),
    ]
    runs = dl.results.runs_table(records)
    # arch.width from the names; train.lr because it differs; train.seed is the seed column
    assert runs.columns[2:5] == ("arch.width", "train.lr", "seed")
    assert [r["arch.width"] for r in runs] == ["16", "[16,8]", "16"]  # one type: text
    assert [r["train.lr"] for r in runs] == [1.0, 0.5, 1.0]
    assert all(type(r["train.lr"]) is float for r in runs)
    assert (
        "probes.optimality.gap" in runs.columns and "probes.optimality.layers" not in runs.columns
    )
    assert "verdict" not in runs.columns  # nothing was diagnosed
    runs.write_parquet(tmp_path / "r.pq")
    assert pd.read_parquet(tmp_path / "r.pq")["arch.width"].tolist() == ["16", "[16,8]", "16"]
    pl = pytest.importorskip("polars")
    assert pl.DataFrame(runs.to_dicts())["train.lr"].dtype == pl.Float64
    assert runs.to_polars()["arch.width"].to_list() == ["16", "[16,8]", "16"]
    with pytest.raises(dl.DepthlabError, match="unknown state 'done'; choices: PENDING"):
        dl.load_runs(_store(tmp_path, records), state="done")
    assert len(dl.load_runs(_store(tmp_path, records), state="diverged")) == 1


def _store(tmp_path: Path, records: list) -> Path:  # type: ignore[type-arg]
    path = tmp_path / "s.db"
    if not path.exists():
        with SQLiteStore(path) as store:
            store.add_pending(
                dl.store.RunRecord.pending(r.spec_hash, r.spec, r.seed) for r in records
            )
            for r in records:
                store.claim(r.run_id, "here")
                store.finish(r)
    return path
