"""Bad input at the command line: exit code 2, one ``Error:`` line, no traceback, nothing left behind."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from helpers import one_line_error


@pytest.fixture(scope="module")
def bad_csvs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("bad-csv")
    files = {
        "empty": "",
        "wrong_column": "id,txt,label\n1,good film,pos\n2,bad film,neg\n",
        "one_class": "text,label\n" + "".join(f"review {i},pos\n" for i in range(20)),
        "header_only": "text,label\n",
    }
    out = {}
    for name, content in files.items():
        out[name] = folder / f"{name}.csv"
        out[name].write_text(content)
    return out


def assert_clean_error(res: Any, fragment: str, out: Path | None = None) -> str:
    return one_line_error(res, fragment, out=out)


def _run(run_cli: Any, out: Path, *args: Any) -> Any:
    return run_cli("run", "-q", "--out", out, *args)


def test_missing_data_path(run_cli: Any, tmp_path: Path, tiny_bert_dir: Path) -> None:
    out = tmp_path / "run"
    res = _run(run_cli, out, "--plugin", "bert", "--weights", tiny_bert_dir, "--data", tmp_path / "nope.csv")
    assert_clean_error(res, "does not exist", out)


def test_no_data_given(run_cli: Any, tmp_path: Path) -> None:
    out = tmp_path / "run"
    assert_clean_error(_run(run_cli, out, "--plugin", "bert"), "--data", out)


def test_misspelt_builtin_dataset_suggests(run_cli: Any, tmp_path: Path, tiny_bert_dir: Path) -> None:
    out = tmp_path / "run"
    res = _run(run_cli, out, "--plugin", "bert", "--weights", tiny_bert_dir, "--data", "rotten-tomatos")
    assert_clean_error(res, "Did you mean 'rotten-tomatoes'", out)


@pytest.mark.parametrize(
    "which,fragment",
    [
        ("empty", "is empty"),
        ("wrong_column", "has no column 'text'. Did you mean 'txt'?"),
        ("one_class", "one class only"),
        ("header_only", "no labelled examples"),
    ],
)
def test_bad_csv(
    run_cli: Any, tmp_path: Path, tiny_bert_dir: Path, bad_csvs: dict[str, Path], which: str, fragment: str
) -> None:
    out = tmp_path / "run"
    res = _run(run_cli, out, "--plugin", "bert", "--weights", tiny_bert_dir, "--data", bad_csvs[which])
    assert_clean_error(res, fragment, out)


def test_image_folder_with_text_backbone(run_cli: Any, tmp_path: Path, tiny_bert_dir: Path, image_folder: Path) -> None:
    out = tmp_path / "run"
    res = _run(run_cli, out, "--plugin", "bert", "--weights", tiny_bert_dir, "--data", image_folder)
    assert_clean_error(res, "vision data but the backbone is text", out)


@pytest.mark.parametrize(
    "args,fragment",
    [
        (["--plugin", "brt"], "Did you mean 'bert'"),
        (["--plugin", "efficientnet", "--model", "efficientnet_b9"], "Unknown model 'efficientnet_b9'"),
        (["--plugin", "bert", "--head", "fcc"], "Unknown head 'fcc'. Did you mean 'fc'"),
        (["--plugin", "bert", "--strategy", "fine-tun"], "Unknown strategy 'fine-tun'. Did you mean 'fine-tune'"),
        (["--plugin", "bert", "--set", "train.lrr=0.1"], "Unknown config key 'train.lrr'. Did you mean 'train.lr'"),
        (["--plugin", "bert", "--set", "train.epochs=many"], "Config key 'train.epochs' expects int"),
        (["--plugin", "bert", "--set", "head.hiden=3"], "Unknown option head.hiden"),
        (["--plugin", "bert", "--head", "logreg", "--strategy", "fine-tune"], "needs a trainable head"),
        (["--plugin", "bert", "--limit", "2"], "--limit 2 is smaller than the number of classes"),
    ],
)
def test_bad_choices(
    run_cli: Any, tmp_path: Path, text_csv: Path, tiny_bert_dir: Path, args: list[str], fragment: str
) -> None:
    out = tmp_path / "run"
    if args[1] == "bert":
        args = [*args, "--weights", str(tiny_bert_dir)]
    res = _run(run_cli, out, "--data", text_csv, *args)
    line = assert_clean_error(res, fragment, out)
    if "Did you mean" in fragment:
        assert line.count("Error:") == 1


def test_bad_weights_folder(run_cli: Any, tmp_path: Path, text_csv: Path) -> None:
    out = tmp_path / "run"
    empty = tmp_path / "weights"
    empty.mkdir()
    res = _run(run_cli, out, "--plugin", "bert", "--weights", empty, "--data", text_csv)
    assert_clean_error(res, "no config.json", out)


def test_non_empty_out_is_refused_and_kept(run_cli: Any, tmp_path: Path, text_csv: Path, tiny_bert_dir: Path) -> None:
    out = tmp_path / "run"
    out.mkdir()
    (out / "precious.txt").write_text("keep me")
    res = _run(run_cli, out, "--plugin", "bert", "--weights", tiny_bert_dir, "--data", text_csv)
    assert_clean_error(res, "already exists and is not empty")
    assert (out / "precious.txt").read_text() == "keep me"
    assert not out.with_name("run.incomplete").exists()


def test_predict_on_missing_run_dir(run_cli: Any, tmp_path: Path) -> None:
    assert_clean_error(run_cli("predict", tmp_path / "no-run", "some text"), "does not exist")


def test_predict_on_folder_without_model(run_cli: Any, tmp_path: Path) -> None:
    assert_clean_error(run_cli("predict", tmp_path, "some text"), "holds no trained model")


def test_predict_with_nothing_to_predict(run_cli: Any, tmp_path: Path) -> None:
    assert_clean_error(run_cli("predict", tmp_path), "Nothing to predict")


def test_unknown_command_suggests(run_cli: Any) -> None:
    res = run_cli("lsit")
    assert res.exit_code == 2 and "Did you mean 'list'" in res.stderr and "Traceback" not in res.output


def test_progress_log_has_no_traceback_on_error(
    run_cli: Any, tmp_path: Path, bad_csvs: dict[str, Path], tiny_bert_dir: Path
) -> None:
    """Without -q the steps are logged, and the failure still ends in one Error: line."""
    out = tmp_path / "run"
    res = run_cli("run", "--out", out, "--plugin", "bert", "--weights", tiny_bert_dir, "--data", bad_csvs["one_class"])
    assert res.exit_code == 2 and "Traceback" not in res.output
    errors = [line for line in res.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and res.stderr.strip().splitlines()[-1] == errors[0]
    assert "[ 1/12]" in res.stderr
    assert not out.exists() and not out.with_name("run.incomplete").exists()


def test_run_json_output(run_cli: Any, tmp_path: Path, text_csv: Path, tiny_bert_dir: Path) -> None:
    out = tmp_path / "run"
    res = run_cli(
        "run",
        "-q",
        "--json",
        "--out",
        out,
        "--plugin",
        "bert",
        "--weights",
        tiny_bert_dir,
        "--data",
        text_csv,
        "--max-length",
        "32",
        "--epochs",
        "2",
        "--head",
        "logreg",
    )
    assert res.exit_code == 0, res
    data = json.loads(res.stdout)
    assert data["run_dir"] == str(out) and 0 <= data["test"]["accuracy"] <= 1
    assert (out / "metrics.json").is_file() and not out.with_name("run.incomplete").exists()


def test_config_file_then_options_then_set(run_cli: Any, tmp_path: Path, text_csv: Path, tiny_bert_dir: Path) -> None:
    """Precedence: --config FILE < CLI options < --set; the run records the merged config."""
    conf = tmp_path / "base.toml"
    conf.write_text(
        f'seed = 3\n[model]\nplugin = "bert"\nweights = "{tiny_bert_dir}"\nmax_length = 16\n'
        f'[data]\npath = "{text_csv}"\n[train]\nepochs = 9\nlr = 0.5\n[head]\nname = "logreg"\n'
    )
    out = tmp_path / "run"
    res = run_cli(
        "run", "-q", "--config", conf, "--max-length", "24", "--set", "model.max_length=20", "--seed", "4", "--out", out
    )
    assert res.exit_code == 0, res
    from tlzoo.engine.config import RunConfig

    cfg = RunConfig.from_toml(out / "config.toml")
    assert cfg.model.max_length == 20 and cfg.seed == 4 and cfg.train.epochs == 9 and cfg.head.name == "logreg"
    assert json.loads((out / "metrics.json").read_text())["run"]["seed"] == 4


def test_data_export_writes_a_loadable_csv(run_cli: Any, tmp_path: Path) -> None:
    res = run_cli("data", "export", "rotten-tomatoes", tmp_path / "rt", "--limit", "30")
    assert res.exit_code == 0, res
    path = Path(res.stdout.strip())
    import csv

    rows = list(csv.DictReader(path.open(newline="", encoding="utf-8")))
    assert len(rows) == 30 and set(rows[0]) == {"id", "text", "label"}
    assert {r["label"] for r in rows} == {"fresh", "rotten", "plot"}
    assert_clean_error(run_cli("data", "export", "rotten-tomatos", tmp_path / "x"), "Did you mean 'rotten-tomatoes'")


@pytest.mark.parametrize("workers", ["0", "1"])
def test_corrupt_image_is_one_error_line_even_from_a_worker(run_cli: Any, tmp_path: Path, workers: str) -> None:
    """A TlzooError raised inside a DataLoader worker comes back without the worker's traceback."""
    from PIL import Image

    data = tmp_path / "images"
    for c in "ab":
        (data / c).mkdir(parents=True)
        for i in range(5):
            Image.new("RGB", (16, 16), (40 * i, 100 if c == "a" else 0, 0)).save(data / c / f"{i}.png")
    whole = (data / "a" / "0.png").read_bytes()
    cut = whole.index(b"IDAT") + 8  # the header reads; the pixels are cut short
    (data / "a" / "broken.png").write_bytes(whole[:cut])
    out = tmp_path / "run"
    res = run_cli(
        "run",
        "-q",
        "--plugin",
        "efficientnet",
        "--no-pretrained",
        "--image-size",
        "32",
        "--data",
        data,
        "--num-workers",
        workers,
        "--out",
        out,
    )
    assert_clean_error(res, "Cannot read image", out)
    assert "broken.png" in res.stderr and "Original Traceback" not in res.stderr


def test_a_file_that_is_no_image_is_left_out_and_counted(run_cli: Any, tmp_path: Path) -> None:
    """Issue 16 §3: one bad file must not end an image run; --strict-inputs makes it fatal."""
    from PIL import Image

    data = tmp_path / "images"
    for c in "ab":
        (data / c).mkdir(parents=True)
        for i in range(6):
            Image.new("RGB", (16, 16), (40 * i, 100 if c == "a" else 0, 0)).save(data / c / f"{i}.png")
    (data / "a" / "broken.png").write_bytes(b"not a png at all")
    (data / "b" / "empty.png").write_bytes(b"")
    args = ["run", "--plugin", "efficientnet", "--no-pretrained", "--image-size", "32", "--data", data]
    res = run_cli(*args, "--head", "logreg", "--out", tmp_path / "run")
    assert res.exit_code == 0, res
    assert "left out 2 unreadable images of 14, the first" in res.stderr and "--strict-inputs" in res.stderr
    strict = run_cli(*args, "-q", "--strict-inputs", "--out", tmp_path / "strict")
    assert_clean_error(strict, "Cannot read image", tmp_path / "strict")


def test_text_column_equal_to_label_column_is_refused(run_cli: Any, tmp_path: Path, text_csv: Path) -> None:
    out = tmp_path / "same"
    res = run_cli("run", "-q", "--plugin", "bert", "--data", text_csv, "--text-column", "label", "--out", out)
    assert_clean_error(res, "--text-column and --label-column are both 'label'", out)


def test_a_reader_that_went_away_is_not_an_error(capsys: pytest.CaptureFixture[str]) -> None:
    """`tl list | head`: a BrokenPipeError when stdout's reader has gone exits 0 without an Error line."""
    import sys

    from tlzoo.cli.errors import fail

    stdout = sys.stdout
    try:
        with pytest.raises(SystemExit) as caught:
            fail(BrokenPipeError(32, "Broken pipe"), "list")
    finally:
        sys.stdout = stdout
    assert caught.value.code == 0 and "Error" not in capsys.readouterr().err
