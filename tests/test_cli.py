"""The CLI through its entry point: text and JSON output, batch files, every documented error."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from textlens.cli import main
from textlens.explainers import REGISTRY


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory, planted_adapter) -> Path:
    folder = tmp_path_factory.mktemp("model")
    planted_adapter.model.save_pretrained(folder)
    planted_adapter.tokenizer.save_pretrained(folder)
    return folder


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_methods_lists_every_registered_method(capsys) -> None:
    code, out, _ = run(capsys, "methods")
    assert code == 0
    for name, cls in REGISTRY.items():
        assert name in out and cls.description in out


def test_explain_text_output(capsys, model_dir: Path) -> None:
    code, out, _ = run(
        capsys,
        "explain",
        str(model_dir),
        "the movie was wonderful",
        "-m",
        "integrated_gradients",
        "-m",
        "saliency",
    )
    assert code == 0
    assert "prediction: positive" in out
    assert "integrated_gradients -> positive" in out and "saliency -> positive" in out
    assert "top: wonderful" in out


def test_explain_json_contract(capsys, model_dir: Path) -> None:
    code, out, _ = run(
        capsys,
        "explain",
        str(model_dir),
        "an awful film",
        "the road",
        "--format",
        "json",
        "--steps",
        "8",
        "--target",
        "negative",
    )
    assert code == 0
    records = [json.loads(line) for line in out.splitlines()]
    assert [r["text"] for r in records] == ["an awful film", "the road"]
    for record in records:
        assert set(record["prediction"]) == {"label", "probabilities"}
        [e] = record["explanations"]
        for key in ("method", "target", "tokens", "scores", "words", "word_scores", "delta"):
            assert key in e
        assert e["target_label"] == "negative"
        assert e["params"]["n_steps"] == 8
        assert len(e["tokens"]) == len(e["scores"])


def test_explain_token_level_and_html(capsys, model_dir: Path, tmp_path: Path) -> None:
    html = tmp_path / "r.html"
    code, out, err = run(
        capsys,
        "explain",
        str(model_dir),
        "unbelievably <script>alert(1)</script>",
        "--level",
        "token",
        "--html",
        str(html),
        "-m",
        "grad_x_input",
    )
    assert code == 0
    assert "[CLS]" in out
    page = html.read_text()
    assert "<script>alert(1)</script>" not in page and "&lt;script&gt;" in page
    assert str(html) in err


def test_batch_file_keeps_order_and_reports_bad_lines(
    capsys, model_dir: Path, tmp_path: Path
) -> None:
    source = tmp_path / "in.jsonl"
    source.write_text(
        '{"text": "a wonderful day", "id": 7}\nnot json\n{"text": ""}\n{"text": 5}\n'
        '{"text": "awful road", "label": "negative"}\n',
        encoding="utf-8",
    )
    target = tmp_path / "out.jsonl"
    code, _, err = run(
        capsys,
        "explain",
        str(model_dir),
        "--input",
        str(source),
        "--output",
        str(target),
        "-m",
        "grad_x_input",
        "--no-progress",
    )
    assert code == 2
    rows = [json.loads(line) for line in target.read_text().splitlines()]
    assert len(rows) == 5
    assert rows[0]["text"] == "a wonderful day" and rows[0]["id"] == 7 and rows[0]["line"] == 1
    assert (
        "not valid JSON" in rows[1]["error"]
        and "empty" in rows[2]["error"]
        and "not a string" in rows[3]["error"]
    )
    assert rows[4]["label"] == "negative" and rows[4]["explanations"][0]["method"] == "grad_x_input"
    assert "3 of 5 lines could not be explained" in err


def test_batch_target_field_explains_each_rows_own_class(
    capsys, model_dir: Path, tmp_path: Path
) -> None:
    source = tmp_path / "in.jsonl"
    source.write_text(
        '{"text": "a wonderful day", "label": "negative"}\n'
        '{"text": "awful road", "gold": 2, "label": " neutral "}\n'
        '{"text": "a wonderful day", "label": "bogus"}\n'
        '{"text": "awful road"}\n',
        encoding="utf-8",
    )
    out = tmp_path / "out.jsonl"
    argv = ["explain", str(model_dir), "--input", str(source), "-m", "saliency", "--no-progress"]
    code, _, err = run(capsys, *argv, "--output", str(out), "--target-field", "label")
    assert code == 2 and "1 of 4 lines could not be explained" in err
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert rows[0]["explanations"][0]["target"] == 0
    assert "--target-field label" in rows[2]["error"] and "'bogus'" in rows[2]["error"]
    predicted = ["negative", "positive", "neutral"].index(rows[3]["prediction"]["label"])
    assert rows[1]["explanations"][0]["target"] == 2  # the label, stripped
    assert rows[3]["explanations"][0]["target"] == predicted
    # The same scores as asking for that class with --target.
    code, alone, _ = run(capsys, "explain", str(model_dir), "a wonderful day", "-m", "saliency",
                         "--target", "negative", "--format", "json")  # fmt: skip
    assert code == 0
    assert json.loads(alone)["explanations"][0]["scores"] == pytest.approx(
        rows[0]["explanations"][0]["scores"], rel=1e-4, abs=1e-6
    )
    code, _, _ = run(capsys, *argv, "--output", str(out), "--target-field", "gold")
    assert code == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert rows[1]["explanations"][0]["target"] == 2
    code, _, err = run(
        capsys, *argv, "--output", str(out), "--target-field", "gold", "--target", "1"
    )
    assert code == 2 and "not both" in err


def test_a_text_the_model_fails_on_costs_only_its_row(
    capsys, planted_adapter, tmp_path: Path, monkeypatch
) -> None:
    import textlens.cli as cli
    from textlens.model import ModelAdapter

    # The tiny model has 64 positions; an adapter that lets 200 tokens through makes
    # the model itself fail on a long text (set afterwards: the constructor refuses it).
    loose = ModelAdapter(planted_adapter.model, planted_adapter.tokenizer)
    loose.max_length = 200
    monkeypatch.setattr(cli, "_load_model", lambda *a, **k: loose)
    source = tmp_path / "in.jsonl"
    long = " ".join(["the movie"] * 60)
    source.write_text(
        "".join(json.dumps({"text": t}) + "\n" for t in ["a wonderful day", long, "awful road"]),
        encoding="utf-8",
    )
    out = tmp_path / "out.jsonl"
    code, _, err = run(
        capsys, "explain", "m", "--input", str(source), "--output", str(out), "-m", "saliency",
        "--no-progress", "--html", str(tmp_path / "r.html"),
    )  # fmt: skip
    assert code == 2
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["line"] for r in rows] == [1, 2, 3]
    assert rows[0]["explanations"] and rows[2]["explanations"]
    assert (
        rows[1]["error"].startswith("line 2: The model")
        and "failed on a batch of 1" in rows[1]["error"]
    )
    assert "wrote 2 explained texts" in err and "1 of 3 lines could not be explained" in err
    assert "Traceback" not in err and (tmp_path / "r.html").is_file()


def test_batch_file_with_a_line_that_is_not_utf8_loses_no_other_row(
    capsys, model_dir: Path, tmp_path: Path
) -> None:
    source = tmp_path / "in.jsonl"
    source.write_bytes(
        b'{"text": "a wonderful day"}\n{"text": "caf\xe9 awful"}\n{"text": "awful road"}\n'
    )
    target = tmp_path / "out.jsonl"
    code, _, err = run(
        capsys, "explain", str(model_dir), "--input", str(source), "--output", str(target),
        "-m", "saliency", "--no-progress",
    )  # fmt: skip
    assert code == 2
    rows = [json.loads(line) for line in target.read_text().splitlines()]
    assert [r.get("text") for r in rows] == ["a wonderful day", None, "awful road"]
    assert rows[1] == {
        "line": 2,
        "error": "line 2: not UTF-8 (byte 0xe9 at column 14); "
        "convert the file, e.g. iconv -f latin1 -t utf-8.",
    }
    assert "skipped line 2: not UTF-8" in err and "1 of 3 lines could not be explained" in err


@pytest.mark.parametrize("fmt", ["csv", "txt"])
def test_batch_csv_and_plain_lines(capsys, model_dir: Path, tmp_path: Path, fmt: str) -> None:
    source = tmp_path / f"in.{fmt}"
    if fmt == "csv":
        source.write_text(
            'text,label\n"the film, wonderful",positive\nawful day,negative\n', encoding="utf-8"
        )
    else:
        source.write_text("the film wonderful\n\nawful day\n", encoding="utf-8")
    target = tmp_path / "out.jsonl"
    code, _, _ = run(
        capsys,
        "explain",
        str(model_dir),
        "--input",
        str(source),
        "--output",
        str(target),
        "-m",
        "saliency",
        "--no-progress",
    )
    assert code == 0
    rows = [json.loads(line) for line in target.read_text().splitlines()]
    assert [r["prediction"]["label"] for r in rows] == ["positive", "negative"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["explain", "/no/such/model", "hi"], "does not exist"),
        (["explain", "MODEL", "   "], "empty"),
        (["explain", "MODEL", "hi", "-m", "nope"], "Unknown method 'nope'"),
        (["explain", "MODEL", "hi", "--target", "bogus"], "0='negative', 1='positive'"),
        (
            ["explain", "MODEL", "hi", "--steps", "0"],
            "The 'n_steps' parameter of IntegratedGradients must be an int >= 1. Got 0.",
        ),
        (["explain", "MODEL", "hi", "-m", "saliency", "--steps", "4"], "--steps applies to none"),
        (
            ["explain", "MODEL", "--input", "/no/file.jsonl", "--output", "/tmp/x.jsonl"],
            "does not exist",
        ),
        (["explain", "MODEL", "--input", "x.jsonl"], "--input needs --output"),
        (  # the report would replace the rows after all the work
            [
                "explain",
                "MODEL",
                "--input",
                __file__,
                "--output",
                "/tmp/tl-same.out",
                "--html",
                "/tmp/../tmp/tl-same.out",
            ],
            "--output and --html are the same file",
        ),
        (["explain", "MODEL", "hi", "--html", "-"], "--html - would write a file named '-'"),
        (
            ["layers", "MODEL", "hi", "--png", "/tmp/tl-same.png", "--html", "/tmp/tl-same.png"],
            "--png and --html are the same file",
        ),
    ],
)
def test_errors_are_one_line_with_exit_code_2(
    capsys, model_dir: Path, argv: list[str], message: str
) -> None:
    argv = [str(model_dir) if a == "MODEL" else a for a in argv]
    code, _, err = run(capsys, *argv)
    assert code == 2
    lines = [line for line in err.splitlines() if line.startswith("textlens: error:")]
    assert len(lines) == 1 and message in lines[0], err
    assert "Traceback" not in err


def test_console_script_entry_point(model_dir: Path) -> None:
    exe = Path(sys.executable).with_name("textlens")
    done = subprocess.run(
        [str(exe), "explain", str(model_dir), "a wonderful film", "-m", "saliency"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "prediction: positive" in done.stdout
    missing = subprocess.run(
        [str(exe), "explain", "/no/model", "x"], capture_output=True, text=True, timeout=120
    )
    assert missing.returncode == 2 and missing.stderr.startswith("textlens: error:")


def test_layers_json_html_png_and_precision(
    capsys, model_dir: Path, tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.setenv("TEXTLENS_CACHE_DIR", str(tmp_path / "cache"))
    html, png = tmp_path / "layers.html", tmp_path / "layers.png"
    code, out, err = run(
        capsys, "layers", str(model_dir), "the movie was wonderful", "--all-layers",
        "--format", "json", "--precision", "bfloat16", "--html", str(html), "--png", str(png),
    )  # fmt: skip
    assert code == 0
    [sweep] = [json.loads(line) for line in out.splitlines()]
    assert sweep["layers"] == [1, 2] and sweep["params"]["precision"] == "bfloat16"
    assert len(sweep["word_sigma"]) == 2 and len(sweep["word_sigma"][0]) == 4
    assert png.read_bytes().startswith(b"\x89PNG") and "<html" in html.read_text().lower()
    assert "HTML report" in err and "PNG heatmap" in err
    code, out, _ = run(capsys, "layers", str(model_dir), "the movie was wonderful", "--layer", "2")
    assert code == 0 and "L2" in out and "L1" not in out


def test_layers_bad_layer_is_a_one_line_error(capsys, model_dir: Path) -> None:
    code, _, err = run(capsys, "layers", str(model_dir), "a text", "--png", "heat.jpg")
    assert code == 2 and "name the file .png" in err
    for layer in ("9", "0", "logits"):
        code, out, err = run(
            capsys, "layers", str(model_dir), "the movie was wonderful", "--layer", layer
        )
        assert code == 2 and out == "" and len(err.strip().splitlines()) == 1
        assert "numbered layers 1..2" in err and "-m information --layer pooled" in err


def test_output_paths_that_cannot_be_written_fail_before_any_work(
    capsys, model_dir: Path, tmp_path: Path, monkeypatch
) -> None:
    inp = tmp_path / "in.jsonl"
    inp.write_text('{"text": "a wonderful film"}\n', encoding="utf-8")
    a_file = tmp_path / "plain"
    a_file.write_text("x", encoding="utf-8")
    loads: list[str] = []
    import textlens.cli as cli

    monkeypatch.setattr(cli, "_load_model", lambda *a, **k: loads.append("load"))
    cases = [
        (["explain", str(model_dir), "hi", "--html", str(tmp_path)], "is a directory"),
        (
            ["explain", str(model_dir), "--input", str(inp), "--output", str(inp)],
            "would overwrite the input",
        ),
        (
            ["explain", str(model_dir), "--input", str(inp), "--output", str(a_file / "o.jsonl")],
            "is a file, not a folder",
        ),
        (["layers", str(model_dir), "hi", "--png", str(tmp_path)], "--png"),
        (
            ["evaluate", str(model_dir), "--input", str(inp), "--html", str(inp)],
            "would overwrite the input",
        ),
        (["evaluate", str(model_dir), "--input", str(inp), "--html", str(tmp_path)], "directory"),
        (["demo", "--html", str(a_file / "r.html")], "is a file, not a folder"),
    ]
    for argv, message in cases:
        code, _, err = run(capsys, *argv)
        assert code == 2, (argv, err)
        assert err.count("textlens: error:") == 1 and message in err, (argv, err)
        assert "Traceback" not in err
    assert loads == []  # refused before the model load, so no work is lost
    assert inp.read_text(encoding="utf-8") == '{"text": "a wonderful film"}\n'


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--threads", "0", "methods"], "argument --threads: must be >= 1, got 0"),
        (["--threads", "two", "methods"], "expected a whole number >= 1, got 'two'"),
        (["explain", "m", "--input", "i", "--output", "o", "--chunk-size", "-5"], "must be >= 1"),
        (["serve", "m", "--threads", "-2"], "argument --threads: must be >= 1, got -2"),
    ],
)
def test_counts_below_one_are_usage_errors_not_tracebacks(
    capsys, argv: list[str], message: str
) -> None:
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert message in err.splitlines()[-1] and "Traceback" not in err


def test_batch_from_standard_input_to_standard_output(capsys, model_dir: Path, monkeypatch) -> None:
    import io

    data = b'{"text": "a wonderful day"}\n\n{"text": ""}\n{"text": "awful road"}\n'
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data)))
    code, out, err = run(
        capsys, "explain", str(model_dir), "--input", "-", "--output", "-", "-m", "saliency",
        "--no-progress",
    )  # fmt: skip
    assert code == 2  # the empty text is an error row; the others are explained
    rows = [json.loads(line) for line in out.splitlines()]
    assert [r["line"] for r in rows] == [1, 3, 4]
    assert rows[0]["text"] == "a wonderful day" and "error" in rows[1]
    assert rows[2]["explanations"][0]["method"] == "saliency"
    assert "wrote 2 explained texts to standard output" in err


def _explain_file_argv(model_dir: Path, source: Path, out: Path, *more: str) -> list[str]:
    return [
        "explain", str(model_dir), "--input", str(source), "--output", str(out),
        "-m", "grad_x_input", "--chunk-size", "2", "--no-progress", *more,
    ]  # fmt: skip


def test_an_interrupted_batch_resumes_where_it_stopped(
    capsys, model_dir: Path, tmp_path: Path, monkeypatch
) -> None:
    import textlens.cli as cli

    texts = ["a wonderful day", "awful road", "the movie was fine", "", "great cast", "bad"]
    source = tmp_path / "in.jsonl"
    source.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts), encoding="utf-8")
    whole = tmp_path / "whole.jsonl"
    assert run(capsys, *_explain_file_argv(model_dir, source, whole))[0] == 2  # line 4 is empty

    explained: list[list[str]] = []
    real = cli._explain_rows

    def interrupted_on_the_second_chunk(model, rows, *args):
        if explained:
            raise KeyboardInterrupt
        explained.append([r.text for r in rows])
        return real(model, rows, *args)

    monkeypatch.setattr(cli, "_explain_rows", interrupted_on_the_second_chunk)
    out = tmp_path / "out.jsonl"
    code, _, err = run(capsys, *_explain_file_argv(model_dir, source, out))
    assert code == 130 and "run the same command with --resume" in err
    assert [json.loads(line)["line"] for line in out.read_text().splitlines()] == [1, 2]
    with out.open("a", encoding="utf-8") as handle:  # killed in the middle of a row
        handle.write('{"text": "the movie was fine", "predi')

    explained.clear()
    monkeypatch.setattr(cli, "_explain_rows", lambda model, rows, *args: explained.append(
        [r.text for r in rows]) or real(model, rows, *args))  # fmt: skip
    html = tmp_path / "report.html"
    code, _, err = run(
        capsys, *_explain_file_argv(model_dir, source, out, "--resume", "--html", str(html))
    )
    assert code == 2 and "1 of 6 lines could not be explained" in err
    assert "resuming after the 2 rows" in err and "cut off mid-write" in err
    assert explained == [["the movie was fine", "great cast"], ["bad"]]  # only the rest
    assert out.read_text() == whole.read_text()
    page = html.read_text()
    assert all(t in page for t in texts if t)  # the earlier run's rows too

    code, _, err = run(capsys, *_explain_file_argv(model_dir, source, out, "--resume"))
    assert code == 2 and "resuming after the 6 rows" in err and out.read_text() == whole.read_text()


def test_sigterm_stops_a_batch_like_ctrl_c_and_it_resumes(
    capsys, model_dir: Path, tmp_path: Path, monkeypatch
) -> None:
    """A scheduler's stop (SIGTERM) keeps the rows written so far and says how to go on."""
    import os
    import signal

    import textlens.cli as cli

    texts = ["a wonderful day", "awful road", "the movie was fine", "great cast", "bad"]
    source = tmp_path / "in.jsonl"
    source.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts), encoding="utf-8")
    whole = tmp_path / "whole.jsonl"
    assert run(capsys, *_explain_file_argv(model_dir, source, whole))[0] == 0

    calls: list[int] = []
    real = cli._explain_rows

    def terminated_on_the_second_chunk(model, rows, *args):
        calls.append(len(rows))
        if len(calls) == 2:
            os.kill(os.getpid(), signal.SIGTERM)
        return real(model, rows, *args)

    def not_caught(signum, frame):  # without textlens' handler: no kill of the test run
        calls.append(-1)

    before = signal.signal(signal.SIGTERM, not_caught)
    monkeypatch.setattr(cli, "_explain_rows", terminated_on_the_second_chunk)
    out = tmp_path / "out.jsonl"
    try:
        code, _, err = run(capsys, *_explain_file_argv(model_dir, source, out))
        assert signal.getsignal(signal.SIGTERM) is not_caught  # the handler is put back
    finally:
        signal.signal(signal.SIGTERM, before)
    assert code == 143 and "textlens: terminated" in err, err
    assert "run the same command with --resume" in err
    assert [json.loads(line)["line"] for line in out.read_text().splitlines()] == [1, 2]

    monkeypatch.setattr(cli, "_explain_rows", real)
    code, _, err = run(capsys, *_explain_file_argv(model_dir, source, out, "--resume"))
    assert code == 0 and "resuming after the 2 rows" in err
    assert out.read_text() == whole.read_text()


def test_resume_refuses_an_output_that_is_not_this_commands(
    capsys, model_dir: Path, tmp_path: Path
) -> None:
    source = tmp_path / "in.txt"
    source.write_text("a wonderful day\nawful road\nthe movie\n", encoding="utf-8")
    out = tmp_path / "out.jsonl"
    assert run(capsys, *_explain_file_argv(model_dir, source, out))[0] == 0
    before = out.read_bytes()
    other = tmp_path / "other.txt"
    other.write_text("\nawful road\nthe movie\nfine\n", encoding="utf-8")  # lines 2 to 4
    cases = [
        (_explain_file_argv(model_dir, source, out, "--resume", "-m", "saliency"),
         "written with other settings"),
        (_explain_file_argv(model_dir, source, out, "--resume", "--explained-output",
                            "probability"), "written with other settings"),
        (_explain_file_argv(model_dir, other, out, "--resume"), "does not follow the input"),
        (["explain", str(model_dir), "text", "--resume"], "--resume goes with --input"),
        (_explain_file_argv(model_dir, source, Path("-"), "--resume"), "--output FILE"),
    ]  # fmt: skip
    for argv, message in cases:
        code, _, err = run(capsys, *argv)
        assert code == 2 and message in err and err.count("\n") == 1, err
        assert out.read_bytes() == before  # nothing cut
    source.write_text("a wonderful day\nawful road\n", encoding="utf-8")
    code, _, err = run(capsys, *_explain_file_argv(model_dir, source, out, "--resume"))
    assert code == 2 and "holds 3 rows but" in err and "has only 2 rows" in err
    out.write_text('{"line": 1}\nnot json\n', encoding="utf-8")
    code, _, err = run(capsys, *_explain_file_argv(model_dir, source, out, "--resume"))
    assert code == 2 and "line 2, is not a JSON object" in err


def test_resume_without_an_output_yet_starts_from_the_top(
    capsys, model_dir: Path, tmp_path: Path
) -> None:
    source = tmp_path / "in.txt"
    source.write_text("a wonderful day\nawful road\n", encoding="utf-8")
    out = tmp_path / "new" / "out.jsonl"
    code, _, err = run(capsys, *_explain_file_argv(model_dir, source, out, "--resume"))
    assert code == 0 and "resuming" not in err
    assert [json.loads(line)["line"] for line in out.read_text().splitlines()] == [1, 2]


def test_a_malformed_pair_line_is_an_error_row_not_the_end_of_the_batch(
    capsys, model_dir: Path, tmp_path: Path
) -> None:
    source = tmp_path / "in.txt"
    source.write_text("good line\na ␞ b ␞ c\n␞ only second\nfine too\n", encoding="utf-8")
    out = tmp_path / "out.jsonl"
    code, _, err = run(capsys, *_explain_file_argv(model_dir, source, out))
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert code == 2 and [r["line"] for r in rows] == [1, 2, 3, 4]
    assert rows[0]["explanations"] and rows[3]["explanations"]
    assert rows[1]["error"].startswith("line 2: the text contains '␞' (U+241E) more than once")
    assert (
        rows[2]["error"].startswith("line 3: the text is a pair")
        and "empty side" in rows[2]["error"]
    )
    assert "2 of 4 lines could not be explained" in err


def test_a_file_of_bad_lines_only_still_gets_its_error_rows(
    capsys, model_dir: Path, tmp_path: Path
) -> None:
    source = tmp_path / "in.jsonl"
    source.write_bytes(b'{"text": ""}\n{"x": 1}\n{"text": "caf\xe9"}\n')
    out = tmp_path / "out.jsonl"
    code, _, err = run(capsys, *_explain_file_argv(model_dir, source, out))
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert code == 2 and [r["line"] for r in rows] == [1, 2, 3]
    assert all("error" in r for r in rows) and "3 of 3 lines" in err


def test_resume_refuses_other_targets_and_other_texts(
    capsys, model_dir: Path, tmp_path: Path
) -> None:
    source = tmp_path / "in.jsonl"
    lines = [{"text": t, "gold": g} for t, g in [("a wonderful day", "positive"),
             ("awful road", "negative"), ("the movie", "negative")]]  # fmt: skip
    source.write_text("".join(json.dumps(x) + "\n" for x in lines), encoding="utf-8")
    out = tmp_path / "out.jsonl"
    for how, other in [
        (["--target", "negative"], ["--target", "positive"]),
        (["--target-field", "gold"], ["--target", "positive"]),  # line 2's gold is negative
        (["--target", "positive"], ["--target-field", "gold"]),
    ]:
        assert run(capsys, *_explain_file_argv(model_dir, source, out, *how))[0] == 0
        before = out.read_bytes()
        code, _, err = run(capsys, *_explain_file_argv(model_dir, source, out, "--resume", *other))
        assert code == 2 and "written for other targets" in err, err
        assert out.read_bytes() == before
        assert run(capsys, *_explain_file_argv(model_dir, source, out, "--resume", *how))[0] == 0
        assert out.read_bytes() == before

    other = tmp_path / "other.jsonl"
    lines[0]["text"] = "a wonderful night"
    other.write_text("".join(json.dumps(x) + "\n" for x in lines), encoding="utf-8")
    code, _, err = run(capsys, *_explain_file_argv(model_dir, other, out, "--resume"))
    assert code == 2 and "does not follow the input" in err and "'a wonderful night'" in err


def test_a_target_field_no_row_has_is_refused(capsys, model_dir: Path, tmp_path: Path) -> None:
    source = tmp_path / "in.jsonl"
    source.write_text('{"text": "a wonderful day", "label": "positive"}\n', encoding="utf-8")
    code, _, err = run(capsys, *_explain_file_argv(model_dir, source, tmp_path / "o.jsonl",
                                                   "--target-field", "lable"))  # fmt: skip
    assert code == 2 and "no row of the input has that field" in err and "label" in err


@pytest.mark.parametrize(
    "argv",
    [
        ["explain", "m", "t", "--format", "xml"],
        ["explain", "m", "t", "--chunk-size", "0"],
        ["--threads", "100000", "methods"],
        ["explain"],
        ["layers", "m"],
    ],
)
def test_usage_errors_are_one_line_too(capsys, argv: list[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(argv)
    err = capsys.readouterr().err
    assert info.value.code == 2 and len(err.splitlines()) == 1, err
    assert err.startswith("textlens: error: ") and "--help)" in err


def test_threads_may_follow_the_command(capsys, model_dir: Path, monkeypatch) -> None:
    """`textlens explain ... --threads 1` was a usage error: it had to come first."""
    import textlens.cli as cli

    set_to: list[int | None] = []
    monkeypatch.setattr(cli, "_set_threads", set_to.append)
    text = ["explain", str(model_dir), "a wonderful day", "-m", "saliency"]
    for argv, threads in [
        ([*text, "--threads", "1"], 1),
        (["--threads", "2", *text], 2),
        (["--threads", "2", *text, "--threads", "1"], 1),  # the later one
        (text, None),
    ]:
        assert run(capsys, *argv)[0] == 0
        assert set_to.pop() == threads
    assert main(["methods", "--threads", "1"]) == 0 and set_to.pop() == 1


def test_flags_that_would_do_nothing_are_refused(capsys, model_dir: Path, tmp_path: Path) -> None:
    source = tmp_path / "in.txt"
    source.write_text("a wonderful day\n", encoding="utf-8")
    out = str(tmp_path / "o.jsonl")
    cases = [
        (["explain", str(model_dir), "a text", "--output", out], "--output goes with --input"),
        (["explain", str(model_dir), "a text", "--chunk-size", "8"], "--chunk-size goes with"),
        (["explain", str(model_dir), "a text", "--input-format", "csv"], "--input-format goes"),
        (["explain", str(model_dir), "--input", str(source), "--output", out, "--format", "json"],
         "--format is for texts given on the command line"),
        (["explain", str(model_dir), "--input", str(source), "--output", out, "--level", "token"],
         "--level is for texts"),
        (["explain", str(model_dir), "--input", str(source), "--output", out, "--pair", "b"],
         "--pair-field FIELD"),
        (["explain", str(model_dir), "a text", "--steps", "8", "--target-delta", "0.01"],
         "give one of the two"),
        (["explain", str(model_dir), "a text", "--max-steps", "64"], "for a fixed number"),
        (["explain", str(model_dir), "a text", "-m", "shap", "--span-size", "3"],
         "--span-size goes with --features span"),
    ]  # fmt: skip
    for argv, message in cases:
        code, _, err = run(capsys, *argv)
        assert code == 2 and message in err and len(err.splitlines()) == 1, err
    assert not Path(out).exists()
    source.write_text("\n  \n", encoding="utf-8")  # nothing to explain: said, as evaluate does
    code, _, err = run(capsys, "explain", str(model_dir), "--input", str(source), "--output", out)
    assert code == 2 and "has no texts: it is empty or only blank lines" in err


@pytest.mark.skipif(not Path("/proc/version").exists(), reason="needs Linux's /proc and /dev/full")
def test_outputs_the_system_will_not_take_are_one_line_errors(
    capsys, model_dir: Path, tmp_path: Path
) -> None:
    """os.access says yes to root everywhere, so the checks must try for real."""
    source = tmp_path / "in.txt"
    source.write_text("a wonderful day\nawful road\n", encoding="utf-8")
    cases = [
        (["--input", str(source), "--output", "/proc/nope/x.jsonl"], "cannot be written"),
        (["--input", str(source), "--output", "/proc/version"], "cannot be written"),
        (["a text", "--html", "/proc/r.html"], "cannot be written"),
        (["--input", str(source), "--output", "/dev/full"], "the same command with --resume"),
    ]
    for argv, message in cases:
        code, _, err = run(capsys, "explain", str(model_dir), *argv, "-m", "saliency",
                           "--no-progress")  # fmt: skip
        assert code == 2 and message in err and "Traceback" not in err, err
        assert err.splitlines()[-1].startswith("textlens: error: ")
