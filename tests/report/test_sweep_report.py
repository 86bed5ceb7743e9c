"""The sweep report: built from real tiny runs, checked as files and as a browser renders it."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest

from depthlab.report import write_sweep_report
from depthlab.store.base import RunRecord, RunState
from depthlab.testing.browser import BrowserError, check_page, require_chromium

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
SECTIONS = ("id='summary'", "id='phase'", "id='best'", "id='curves'", "id='problems'")


def _spec(depth=2, width=8, act="relu", seed=0, name=None, dataset="iris"):
    from depthlab.spec import RunSpec

    spec = RunSpec.from_dict(
        {
            "arch": {"family": "mlp", "depth": depth, "width": width, "act": act},
            "data": {"name": dataset},
            "train": {"epochs": 3, "lr": 0.01, "seed": seed},
        }
    ).to_dict()
    spec["name"] = name or f"arch.depth={depth},arch.width={width},arch.act={act},seed={seed}"
    return spec


def _record(spec, state, *, metrics=None, history=None, error="", probes=None, seconds=0.5):
    return RunRecord(
        run_id=f"{abs(hash(spec['name'])):x}-s{spec['train']['seed']}",
        spec_hash="synthetic",
        spec=spec,
        seed=spec["train"]["seed"],
        state=state,
        metrics=metrics or {},
        history=history or [],
        error=error,
        probes=probes or {},
        seconds=seconds,
    )


@pytest.fixture(scope="module")
def sweep_records():
    """A real 2 × 2 × 2 sweep on iris, plus one FAILED, one DIVERGED and one diagnosed run."""
    from depthlab.diagnosis import DiagnoseOptions, diagnose
    from depthlab.diagnosis.sources import dataset_batch
    from depthlab.models import build_model
    from depthlab.spec import RunSpec
    from depthlab.sweep.expand import expand
    from depthlab.sweep.spec import SweepSpec
    from depthlab.train import run

    sweep = SweepSpec.from_dict(
        {
            "base": {
                "arch": {"family": "mlp"},
                "data": {"name": "iris"},
                "train": {"epochs": 3, "lr": 0.01},
            },
            "axes": {"arch.depth": [1, 4], "arch.width": [8, 16], "arch.act": ["relu", "tanh"]},
            "seeds": [0],
        }
    )
    records = []
    for spec in expand(sweep):
        result = run(spec, progress=False)
        assert result.state == RunState.COMPLETE
        records.append(
            RunRecord(
                run_id=f"{spec.content_hash()}-s{spec.train.seed}",
                spec_hash=spec.content_hash(),
                spec=spec.to_dict(),
                seed=spec.train.seed,
                state=result.state,
                metrics=result.metrics,
                history=list(result.history),
                seconds=result.seconds,
            )
        )
    # The first run, diagnosed at initialisation as a sweep with `probes:` does it.
    first = RunSpec.from_dict(records[0].spec)
    batch, in_shape, out_dim = dataset_batch(first.data)
    model = build_model(first.arch, in_shape=in_shape, out_dim=out_dim, seed=0)
    summary = diagnose(
        model, batch, DiagnoseOptions(probes=("signal", "gradients"), seeds=1), progress=False
    )
    records[0] = RunRecord.from_dict({**records[0].to_dict(), "probes": {"diagnose": summary}})
    records.append(
        _record(
            _spec(depth=8, width=16, act="relu"),
            RunState.FAILED,
            error="RuntimeError: out of memory <while> allocating & friends",
        )
    )
    nan = math.nan
    records.append(
        _record(
            _spec(depth=8, width=8, act="tanh"),
            RunState.DIVERGED,
            metrics={"train_loss": nan, "test_loss": nan, "test_accuracy": nan},
            history=[
                {"epoch": 1.0, "step": 2.0, "lr": 0.01, "train_loss": 3.5},
                {"epoch": 2.0, "step": 4.0, "lr": 0.01, "train_loss": nan},
            ],
            error="loss became nan at step 3",
        )
    )
    return records


@pytest.fixture(scope="module")
def sweep_page(sweep_records, tmp_path_factory):
    out = tmp_path_factory.mktemp("sweep-report")
    return write_sweep_report(sweep_records, out, title="tiny <sweep> & co")


def _images(page: Path) -> list[Path]:
    names = re.findall(r"<img src='([^']+)'", page.read_text())
    return [page.parent / name for name in names]


def _assert_pngs(page: Path) -> list[Path]:
    images = _images(page)
    for img in images:
        assert img.parent == page.parent, "images must be relative links beside the page"
        data = img.read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) > 1000, img
    return images


def test_sweep_report_sections_and_images(sweep_page):
    assert sweep_page.name == "index.html"
    text = sweep_page.read_text()
    for section in (*SECTIONS, "id='diagnose'"):
        assert section in text, section
    assert "tiny &lt;sweep&gt; &amp; co" in text
    assert "<sweep>" not in text
    # The axes detected from the specs: name and train.seed are not axes.
    for axis in ("arch.depth", "arch.width", "arch.act"):
        assert f"<td class='l'>{axis}</td>" in text
    assert "<td class='l'>train.seed</td>" not in text
    assert "test_accuracy" in text
    # Failed and diverged runs with their (escaped) errors.
    assert "out of memory &lt;while&gt; allocating &amp; friends" in text
    assert "loss became nan at step 3" in text
    assert "1 failed" in text and "1 diverged" in text
    # The diagnosed run's verdict.
    assert re.search(r"class='(ok|bad)'>[a-z ]+</span>", text)
    names = {p.name for p in _assert_pngs(sweep_page)}
    assert {"phase.png", "curves.png", "diagnose_signal.png", "diagnose_gradients.png"} <= names
    # No external resources: nothing is fetched from anywhere.
    assert not re.search(r"(src|href)=['\"]?(https?:)?//", text)
    assert "<script" not in text


def test_ranking_orders_by_metric(sweep_records, tmp_path):
    page = write_sweep_report(sweep_records, tmp_path, metric="train_loss").read_text()
    best = page[page.index("id='best'") : page.index("id='curves'")]
    losses = [float(v) for v in re.findall(r"<td>([0-9.e+-]+)</td><td>1</td><td>1 COMPLETE", best)]
    assert len(losses) == 8 and losses == sorted(losses)
    assert "lower is better" in page


def test_empty_store(tmp_path):
    page = write_sweep_report([], tmp_path)
    assert "the store is empty" in page.read_text()
    assert _images(page) == []


def test_all_failed(tmp_path):
    records = [
        _record(_spec(depth=d, width=w), RunState.FAILED, error=f"boom {d}x{w}")
        for d in (2, 3)
        for w in (8, 16)
    ]
    page = write_sweep_report(records, tmp_path)
    text = page.read_text()
    assert "4 failed" in text and "boom 3x16" in text
    assert "No run has a finite training loss" in text
    assert {p.name for p in _assert_pngs(page)} == {"phase.png"}


def test_single_run_and_nan_metric(tmp_path):
    history = [{"epoch": 1.0, "train_loss": 1.0}, {"epoch": 2.0, "train_loss": 0.5}]
    one = _record(_spec(), RunState.COMPLETE, metrics={"train_loss": math.nan}, history=history)
    page = write_sweep_report([one], tmp_path)
    text = page.read_text()
    assert "No field varies between the runs" in text
    assert "Neither arch.depth nor arch.width varies" in text
    assert "n/a" in text
    assert {p.name for p in _assert_pngs(page)} == {"curves.png"}


def test_one_axis_and_tuple_widths_regression(tmp_path):
    """Per-layer width tuples are labels; only width varies: a line plot, not a heatmap."""
    records = []
    for k, width in enumerate(([16, 8], [32, 16], [64, 32])):
        spec = _spec(depth=2, width=width, name=f"w{k}", dataset="teacher")
        history = [{"epoch": e, "train_loss": 1.0 / (e + k)} for e in (1.0, 2.0)]
        records.append(
            _record(spec, RunState.COMPLETE, metrics={"train_loss": 0.5 / (k + 1)}, history=history)
        )
    page = write_sweep_report(records, tmp_path)
    text = page.read_text()
    assert "[16,8]" in text and "train_loss (lower is better)" in text
    assert {p.name for p in _assert_pngs(page)} == {"phase.png", "curves.png"}


def test_many_panels_split_into_figures(tmp_path):
    records = [
        _record(
            _spec(depth=d, width=8, act=act, seed=s),
            RunState.COMPLETE,
            metrics={"test_accuracy": 0.1 * d + 0.01 * s},
            history=[{"epoch": 1.0, "train_loss": 1.0 + s}],
        )
        for act in ("relu", "tanh", "gelu", "selu", "elu", "sigmoid", "softplus", "silu")
        for d in (2, 3)
        for s in (0, 1)
    ]
    # A second width and init, so there are 16 panels of depth × width.
    for act in ("relu", "tanh", "gelu", "selu", "elu", "sigmoid", "softplus", "silu"):
        spec = _spec(depth=2, width=16, act=act)
        spec["arch"]["init"] = "lecun"
        records.append(_record(spec, RunState.DIVERGED))
    page = write_sweep_report(records, tmp_path)
    names = {p.name for p in _assert_pngs(page)}
    assert {"phase_1.png", "phase_2.png"} <= names
    assert "± " in page.read_text()  # two seeds: a standard deviation


# --------------------------------------------------------------------------- in a browser


def test_sweep_report_renders_in_chromium(sweep_page):
    chromium = require_chromium()
    report = check_page(sweep_page, chromium=chromium)
    assert report.console_errors == ()
    assert report.broken_images == ()
    assert len(report.images) == len(_images(sweep_page)) >= 4
    assert all(img.natural_width > 100 and img.natural_height > 100 for img in report.images)


def test_browser_check_catches_broken_image_and_script_error(tmp_path, sweep_page):
    """The check can fail: a missing image, an undecodable one and a script error are caught."""
    chromium = require_chromium()
    good = _images(sweep_page)[0]
    (tmp_path / "good.png").write_bytes(good.read_bytes())
    (tmp_path / "junk.png").write_bytes(b"not a png at all")
    broken = tmp_path / "broken.html"
    broken.write_text(
        "<!doctype html><html><body><img src='good.png'><img src='missing.png'>"
        "<img src='junk.png'></body></html>"
    )
    report = check_page(broken, chromium=chromium)
    assert set(report.broken_images) == {"missing.png", "junk.png"}
    assert [img.src for img in report.images if not img.broken] == ["good.png"]
    assert not report.ok
    assert any("missing.png" in e for e in report.console_errors)

    script = tmp_path / "script.html"
    script.write_text(
        "<!doctype html><html><body><p>hi</p><script>console.error('logged'); "
        "notDefined();</script></body></html>"
    )
    report = check_page(script, chromium=chromium)
    assert report.broken_images == ()
    assert any("logged" in e for e in report.console_errors)
    assert any("notDefined" in e for e in report.console_errors)

    clean = tmp_path / "clean.html"
    clean.write_text("<!doctype html><html><body><img src='good.png'></body></html>")
    assert check_page(clean, chromium=chromium).ok


def test_browser_check_missing_binary(tmp_path):
    page = tmp_path / "p.html"
    page.write_text("<!doctype html><p>x</p>")
    with pytest.raises(BrowserError, match="cannot start"):
        check_page(page, chromium=str(tmp_path / "no-such-chromium"))


def test_require_chromium_fails_under_ci(monkeypatch):
    import depthlab.testing.browser as browser

    monkeypatch.setattr(browser, "find_chromium", lambda: None)
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI is set"):
        browser.require_chromium()
    monkeypatch.delenv("CI")
    with pytest.raises(pytest.skip.Exception, match="no Chromium"):
        browser.require_chromium()
