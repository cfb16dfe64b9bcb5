"""The ``textlens`` command line, built on the public Python API.

Every :class:`~textlens.errors.TextlensError` becomes one clear line on stderr and exit
code 2; nothing here is imported by the library.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys
import threading
import warnings
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, NoReturn, TextIO

from .errors import InvalidParameterError, TextlensError, TruncationWarning
from .io import FORMATS as INPUT_FORMATS

EXIT_USER_ERROR = 2

# CLI option -> explainer parameter; an option is passed to every chosen method that has it.
PARAM_OPTIONS: dict[str, str] = {
    "steps": "n_steps",
    "rule": "rule",
    "baseline": "baseline",
    "target_delta": "target_delta",
    "max_steps": "max_steps",
    "explained_output": "output",
    "layer": "layer",
    "head": "head",
    "max_batch_tokens": "max_batch_tokens",
    "budget": "budget",
    "seed": "seed",
    "features": "features",
    "span_size": "span_size",
    "masking": "masking",
    "window": "window",
    "precision": "precision",
}


# ---------------------------------------------------------------------------- helpers
def positive_int(value: str) -> int:
    """An argparse type: an integer >= 1 (thread counts, chunk sizes)."""
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {value!r}") from None
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {number}")
    return number


def _count(n: int, noun: str) -> str:
    """``1 line``, ``2 lines``."""
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _registry() -> dict[str, Any]:
    from .explainers import REGISTRY

    return REGISTRY


def _method_params(method: str, options: dict[str, Any]) -> dict[str, Any]:
    accepted = _registry()[method]._all_constraints()
    return {
        param: options[opt]
        for opt, param in PARAM_OPTIONS.items()
        if options.get(opt) is not None and param in accepted
    }


def _check_options_used(methods: Sequence[str], options: dict[str, Any]) -> None:
    for opt, param in PARAM_OPTIONS.items():
        if options.get(opt) is None or opt == "max_batch_tokens":
            continue
        if not any(param in _registry()[m]._all_constraints() for m in methods):
            raise InvalidParameterError(
                f"--{opt.replace('_', '-')} applies to none of the chosen methods "
                f"({', '.join(methods)}); drop it or add a method that takes it."
            )


def _resolve_methods(names: Sequence[str] | None, default: Sequence[str]) -> list[str]:
    from .explainers import get_explainer_class

    chosen = list(names or default)
    if "all" in chosen:
        return list(_registry())
    for name in chosen:
        get_explainer_class(name)  # raises UnknownMethodError with the list
    return list(dict.fromkeys(chosen))


def _layer_value(text: str) -> int | str:
    """An int, or a name such as 'mean' or 'logits' (each method validates its own)."""
    try:
        return int(text)
    except ValueError:
        return text


def _load_model(args: argparse.Namespace) -> Any:
    """The model of a command with ``model``, ``--device`` and ``--output-function``."""
    from . import api

    path = args.model
    if path == api.DEMO:
        from .demo.build import build_sentiment_model

        path = build_sentiment_model(progress=True).path
    return api.load(
        path,
        device=args.device,
        output_function=args.output_function,
        trust_remote_code=args.trust_remote_code,
    )


def _add_model_options(p: argparse.ArgumentParser) -> None:
    """``--device`` and ``--output-function``: how the model of a command is loaded."""
    from .model import OUTPUT_FUNCTIONS

    p.add_argument("--device", default="cpu", help="cpu (default), cuda or auto")
    p.add_argument(
        "--output-function",
        choices=OUTPUT_FUNCTIONS,
        help=(
            "how the model's logits become probabilities (default: from its config, as "
            "transformers' pipeline does: softmax; sigmoid for multi-label or one-logit "
            "models; none for regression)"
        ),
    )
    p.add_argument(
        "--trust-remote-code",
        action="store_true",
        help="run the model folder's own code (.py files named by auto_map in its config.json); "
        "read them first",
    )


def _check_output_file(value: str | None, flag: str, inputs: Sequence[str | None] = ()) -> None:
    """Fail before any work when ``value`` (given as ``flag``) cannot be written as a file.

    The heavy work comes before the writing, so a directory, a path through a file, an
    unwritable place or an output that would overwrite an input is refused up front.
    """
    if not value or (value == "-" and flag == "--output"):
        return
    if value == "-":
        raise InvalidParameterError(
            f"{flag} - would write a file named '-': {flag} takes a file path (only --output "
            "writes to standard output with '-')."
        )
    path = Path(value).expanduser()
    if path.is_dir():
        raise InvalidParameterError(
            f"{flag} {value} is a directory; give a file path, e.g. {path / 'report.html'}."
            if flag == "--html"
            else f"{flag} {value} is a directory; give a file path inside it."
        )
    for given in inputs:
        source = Path(given).expanduser() if given else None
        if source and source.exists() and path.exists() and os.path.samefile(path, source):
            raise InvalidParameterError(
                f"{flag} {value} is the input file: writing it would overwrite the input. "
                "Give another output path."
            )
    ancestor = path.parent
    while not ancestor.exists():
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise InvalidParameterError(
            f"{flag} {value} cannot be written: {ancestor} is a file, not a folder."
        )
    target = path if path.exists() else ancestor
    if not os.access(target, os.W_OK):
        raise InvalidParameterError(
            f"{flag} {value} cannot be written: no write permission on {target}. "
            "Choose another path."
        )
    if not path.exists():  # os.access says yes to root everywhere: try a file there
        import tempfile

        try:
            tempfile.TemporaryFile(dir=ancestor).close()
        except OSError as exc:
            raise InvalidParameterError(
                f"{flag} {value} cannot be written: {exc.strerror or exc} in {ancestor}. "
                "Choose another path."
            ) from None


def _check_distinct_outputs(*outputs: tuple[str, str | None]) -> None:
    """Refuse two outputs of one command that are the same file (one would replace the
    other after all the work)."""
    seen: dict[Path, str] = {}
    for flag, value in outputs:
        if not value or value == "-":
            continue
        path = Path(value).expanduser().resolve()
        if path in seen:
            raise InvalidParameterError(
                f"{seen[path]} and {flag} are the same file, {value}: the second would "
                "replace the first. Give each its own path."
            )
        seen[path] = flag


def _set_threads(threads: int | None) -> None:
    if threads is not None:
        import torch

        torch.set_num_threads(threads)


# ---------------------------------------------------------------------------- output
def _colored(units: Sequence[str], scores: Sequence[float], color: bool) -> str:
    from .report import score_color

    scale = max((abs(s) for s in scores), default=0.0)
    signed = any(s < 0 for s in scores)
    parts = []
    for unit, score in zip(units, scores, strict=True):
        if color:
            rgb = score_color(score, scale, signed)[4:-1].split(",")
            parts.append(f"\x1b[48;2;{rgb[0]};{rgb[1]};{rgb[2]}m\x1b[38;2;0;0;0m{unit}\x1b[0m")
        else:
            parts.append(f"{unit}[{score:+.3g}]")
    return " ".join(parts)


def _text_report(explanations: Sequence[Any], level: str, out: TextIO, color: bool) -> None:
    first = explanations[0]
    probs = ", ".join(
        f"{label} {p:.3f}" for label, p in zip(first.labels, first.probabilities, strict=True)
    )
    out.write(f"{first.text}\n  prediction: {first.predicted_label} ({probs})\n")
    for e in explanations:
        units, scores = e.aggregate(level)
        if level == "word":
            units = tuple(units)
        extra = ""
        if e.delta is not None:
            rel = e.quality.get("relative_delta")
            extra = (
                f"  [delta {e.delta:+.2g}"
                + (f", {100 * rel:.2g}% of |f(x)-f(baseline)|" if rel is not None else "")
                + "]"
            )
        top = ", ".join(f"{u} {s:+.3g}" for u, s in e.top(3, level))
        out.write(
            f"  {e.method} -> {e.target_label}{extra}\n"
            f"    {_colored(units, scores, color)}\n    top: {top}\n"
        )
    out.write("\n")


def _json_record(
    explanations: Sequence[Any], extra: dict[str, Any] | None = None
) -> dict[str, Any]:
    first = explanations[0]
    record: dict[str, Any] = {
        "text": first.text,
        "prediction": {
            "label": first.predicted_label,
            "probabilities": dict(zip(first.labels, first.probabilities, strict=True)),
        },
    }
    if extra:
        record.update(extra)
    record["explanations"] = [e.to_dict() for e in explanations]
    return record


def _explain_all(
    model: Any, texts: list[str], methods: Sequence[str], options: dict[str, Any], target: Any
) -> list[list[Any]]:
    """Explanations of ``texts`` by every method: result[i] lists text i's explanations."""
    from .explainers import make_explainer

    per_text: list[list[Any]] = [[] for _ in texts]
    encoding = model.encode(texts)
    for method in methods:
        explainer = make_explainer(method, model, **_method_params(method, options))
        for i, e in enumerate(explainer.explain_encoding(encoding, target)):
            per_text[i].append(e)
    return per_text


# ---------------------------------------------------------------------------- commands
def cmd_methods(args: argparse.Namespace) -> int:
    registry = _registry()
    width = max(len(n) for n in registry)
    for name, cls in registry.items():
        print(f"{name.ljust(width)}  {cls.description}")
    return 0


def cmd_explain(args: argparse.Namespace) -> int:
    options = vars(args)
    methods = _resolve_methods(args.method, ["integrated_gradients"])
    _check_options_used(methods, options)
    if bool(args.text) == bool(args.input):
        raise InvalidParameterError("Give texts to explain, or --input FILE (not both).")
    if args.input and not args.output:
        raise InvalidParameterError("--input needs --output FILE for the JSONL results.")
    _check_flags_fit(args)
    if args.target_field and not args.input:
        raise InvalidParameterError("--target-field goes with --input FILE.")
    if args.target_field and args.target is not None:
        raise InvalidParameterError("Give --target or --target-field, not both.")
    if args.pair_field and not args.input:
        raise InvalidParameterError("--pair-field goes with --input FILE; for texts use --pair.")
    if args.resume and (not args.input or args.output == "-"):
        raise InvalidParameterError(
            "--resume goes with --input FILE and --output FILE: it keeps the rows an "
            "interrupted run left in that file."
        )
    _check_pairs(args)
    for method in methods:  # bad parameters fail before the (possibly slow) model load
        _registry()[method].check_parameters(**_method_params(method, options))
    _check_output_file(args.output, "--output", [args.input])
    _check_output_file(args.html, "--html", [args.input])
    _check_distinct_outputs(("--output", args.output), ("--html", args.html))
    model = _load_model(args)
    if args.input:
        return _explain_file(model, methods, options, args)
    texts = _texts_and_pairs(args)
    per_text = _explain_all(model, texts, methods, options, args.target)
    if args.format == "json":
        for group in per_text:
            print(json.dumps(_json_record(group), ensure_ascii=False))
    else:
        color = sys.stdout.isatty() and "NO_COLOR" not in os.environ
        for group in per_text:
            _text_report(group, args.level or "word", sys.stdout, color)
    if args.html:
        from .report import write_html

        path = write_html(args.html, [e for group in per_text for e in group])
        print(f"HTML report: {path}", file=sys.stderr)
    return 0


def _check_flags_fit(args: argparse.Namespace) -> None:
    """Refuse flags that would do nothing with texts given as arguments or with --input,
    or next to the method flags that override them."""
    if args.steps is not None and args.target_delta is not None:
        raise InvalidParameterError(
            "--steps and --target-delta: with --target-delta integrated gradients chooses "
            "the steps of each text (cap them with --max-steps); give one of the two."
        )
    if args.max_steps is not None and args.target_delta is None:
        raise InvalidParameterError(
            "--max-steps caps the adaptive steps of --target-delta; for a fixed number of "
            "steps use --steps."
        )
    if args.span_size is not None and args.features != "span":
        raise InvalidParameterError("--span-size goes with --features span.")
    if args.input:
        for flag, value in (("--format", args.format), ("--level", args.level)):
            if value is not None:
                raise InvalidParameterError(
                    f"{flag} is for texts given on the command line; with --input the output "
                    "is JSONL with every token's and word's scores. Drop it."
                )
        if args.pair:
            raise InvalidParameterError(
                "--pair is for texts given on the command line; with --input, name the field "
                "that holds each row's second text with --pair-field FIELD."
            )
        return
    for flag, value in (
        ("--output", args.output),
        ("--chunk-size", args.chunk_size),
        ("--input-format", args.input_format),
    ):
        if value is not None:
            hint = (
                "; the results of texts given on the command line go to standard output "
                "(--format json for JSON) or to --html FILE"
                if flag == "--output"
                else ""
            )
            raise InvalidParameterError(f"{flag} goes with --input FILE{hint}.")


def _check_pairs(args: argparse.Namespace) -> None:
    if args.pair and len(args.pair) != len(args.text):
        raise InvalidParameterError(
            f"{len(args.pair)} --pair texts for {len(args.text)} texts: give one --pair per "
            "text, in the same order."
        )


def _texts_and_pairs(args: argparse.Namespace) -> list[Any]:
    """The command's texts, each paired with its ``--pair`` text when there are some."""
    return list(zip(args.text, args.pair, strict=True)) if args.pair else list(args.text)


def _explain_file(
    model: Any, methods: Sequence[str], options: dict[str, Any], args: argparse.Namespace
) -> int:
    from tqdm import tqdm

    from .io import read_records

    records = list(read_records(args.input, args.input_format or "auto"))
    if not records:
        where = "Standard input" if args.input == "-" else args.input
        raise InvalidParameterError(
            f"{where} has no texts: it is empty or only blank lines. Give one text per line, "
            "JSONL rows or a CSV with a 'text' column."
        )
    if args.pair_field:
        records = [_with_pair(r, args.pair_field) for r in records]
    if args.target_field:
        _check_field_exists(records, args.target_field, "--target-field")
        records = [_with_row_target(model, r, args.target_field) for r in records]
    records = [_with_text_checked(r) for r in records]
    to_stdout = args.output == "-"
    out_path = Path(args.output)
    html_explanations: list[Any] = []
    earlier_errors = 0  # error rows an earlier run already wrote (--resume)
    written = 0  # records whose rows are in the output
    try:
        if args.resume and out_path.exists():
            earlier = _rows_to_resume(out_path, records, model, methods, options)
            written = len(earlier)
            earlier_errors = sum("error" in row for row in earlier)
            if args.html:
                html_explanations = _explanations_of_rows(earlier)
        elif not to_stdout:
            out_path.parent.mkdir(parents=True, exist_ok=True)
            out_path.write_bytes(b"")
        sink: Any = (
            contextlib.nullcontext(sys.stdout)
            if to_stdout
            else out_path.open("a", encoding="utf-8")
        )
    except OSError as exc:  # /proc, a read-only mount... (os.access says yes to root)
        raise InvalidParameterError(
            f"--output {out_path} cannot be written: {exc.strerror or exc}. Choose another path."
        ) from None
    bad = [r for r in records[written:] if r.error]
    for r in bad:
        print(f"textlens: skipped {r.error}", file=sys.stderr)
    good = [r for r in records[written:] if not r.error]
    chunk = args.chunk_size or 64
    results: dict[int, dict[str, Any]] = {}
    failed: dict[int, str] = {}  # line -> why the model failed on that text
    with (
        _hint_on_interrupt(None if to_stdout else out_path),  # outermost: sees the closing too
        sink as out,
        tqdm(total=len(good), unit="text", disable=not args.progress, file=sys.stderr) as bar,
    ):
        for start in range(0, len(good), chunk):
            batch = good[start : start + chunk]
            target = (
                [_row_target(r, args.target_field) for r in batch]
                if args.target_field
                else args.target
            )
            done = _explain_rows(model, batch, methods, options, target)
            for r, group in zip(batch, done, strict=True):
                if isinstance(group, str):
                    failed[r.line] = group
                    print(f"textlens: failed {group}", file=sys.stderr)
                    continue
                extra = {
                    "line": r.line,
                    **({"label": r.label} if r.label is not None else {}),
                    **r.extra,
                }
                results[r.line] = _json_record(group, extra)
                html_explanations.extend(group)
            bar.update(len(batch))
            written = _write_due_rows(out, records, written, results, failed)
        _write_due_rows(out, records, written, results, failed)  # error rows after the last
    if args.html:
        from .report import write_html

        print(f"HTML report: {write_html(args.html, html_explanations)}", file=sys.stderr)
    where = "standard output" if to_stdout else out_path
    explained = len(good) - len(failed)
    print(
        f"textlens: wrote {explained} explained text{'' if explained == 1 else 's'} to {where}",
        file=sys.stderr,
    )
    errors = earlier_errors + len(bad) + len(failed)
    if errors:
        listed = (
            "listed above, and as error rows in the output"
            if not earlier_errors
            else f"{earlier_errors} of them written by the earlier run; all are error rows in "
            "the output"
        )
        print(
            f"textlens: error: {errors} of {_count(len(records), 'line')} could not be explained "
            f"({listed}); fix them and re-run those lines.",
            file=sys.stderr,
        )
        return EXIT_USER_ERROR
    return 0


def _write_due_rows(
    out: TextIO,
    records: Sequence[Any],
    written: int,
    results: dict[int, dict[str, Any]],
    failed: dict[int, str],
) -> int:
    """Write every row whose turn has come (output stays in input order); return how
    many records have their row written now."""
    while written < len(records):
        rec = records[written]
        if rec.error or rec.line in failed:
            error = rec.error or failed[rec.line]
            out.write(json.dumps({"line": rec.line, "error": error}, ensure_ascii=False) + "\n")
        elif rec.line in results:
            out.write(json.dumps(results.pop(rec.line), ensure_ascii=False) + "\n")
        else:
            break
        written += 1
    out.flush()
    return written


@contextlib.contextmanager
def _hint_on_interrupt(out_path: Path | None) -> Iterator[None]:
    """On Ctrl-C or a failed write, say that the rows written so far are kept and how to
    go on."""
    try:
        yield
    except KeyboardInterrupt:
        if out_path is not None:
            print(
                f"textlens: the rows written so far stay in {out_path}; run the same command "
                "with --resume to explain the rest.",
                file=sys.stderr,
            )
        raise
    except OSError as exc:  # a full disk, say: the only file written here is the output
        if out_path is None:
            raise
        raise InvalidParameterError(
            f"Writing {out_path} failed: {exc.strerror or exc}. The rows written before stay "
            "in it: fix the cause, then run the same command with --resume to explain the rest."
        ) from exc


def _rows_to_resume(
    out_path: Path,
    records: Sequence[Any],
    model: Any,
    methods: Sequence[str],
    options: dict[str, Any],
) -> list[dict[str, Any]]:
    """The rows an earlier run of this command wrote to ``out_path``, checked against
    this run; the file is cut after them (a row cut off mid-write is redone).
    """
    from .io import read_written_rows

    found = read_written_rows(out_path)
    rows = found.rows
    try:
        _check_rows_follow(out_path, rows, records, model, methods, options)
    except (KeyError, TypeError, AttributeError, IndexError, ValueError) as exc:
        if isinstance(exc, TextlensError):
            raise
        raise InvalidParameterError(
            f"{out_path} has rows that textlens explain does not write ({exc!r}). {_START_OVER}"
        ) from exc
    if found.torn:
        print(
            f"textlens: {out_path}: dropped a last row cut off mid-write; it is redone.",
            file=sys.stderr,
        )
    with out_path.open("r+b") as handle:
        handle.truncate(found.size)
    if rows:
        print(
            f"textlens: resuming after the {len(rows)} rows already in {out_path}",
            file=sys.stderr,
        )
    return rows


_START_OVER = "Run without --resume to start over, or choose another --output."


def _check_rows_follow(
    out_path: Path,
    rows: Sequence[dict[str, Any]],
    records: Sequence[Any],
    model: Any,
    methods: Sequence[str],
    options: dict[str, Any],
) -> None:
    """Refuse rows that are not what this run would write for the first input lines."""
    from .explainers import make_explainer

    if len(rows) > len(records):
        raise InvalidParameterError(
            f"{out_path} holds {len(rows)} rows but {options['input']} has only "
            f"{len(records)} rows: it is not this input's output. {_START_OVER}"
        )
    for number, (row, record) in enumerate(zip(rows, records, strict=False), start=1):
        if row.get("line") != record.line or row.get("text", record.text) != record.text:
            raise InvalidParameterError(
                f"{out_path} does not follow the input: its row {number} is for line "
                f"{row.get('line')} ({_short(row.get('text'))}), where line {record.line} "
                f"({_short(record.text)}) comes. {_START_OVER}"
            )
        for e in row.get("explanations", ()):
            wanted = _target_of_row(model, record, options, e["prediction"]["index"])
            if e.get("target") != wanted:
                raise InvalidParameterError(
                    f"{out_path} was written for other targets: its row {number} explains "
                    f"{e.get('target_label')!r}, where this run explains "
                    f"{model.labels[wanted]!r}. Resume with the command that wrote it. "
                    f"{_START_OVER}"
                )
    explained = next((row for row in rows if row.get("explanations")), None)
    if explained is not None:
        earlier = [
            (e.get("method"), _as_json(e.get("params")), e.get("model_id"))
            for e in explained["explanations"]
        ]
        now = [
            (
                m,
                _as_json(make_explainer(m, model, **_method_params(m, options)).get_params()),
                model.model_id,
            )
            for m in methods
        ]
        if earlier != now:
            with_model = {e[2] for e in earlier} != {model.model_id}
            raise InvalidParameterError(
                f"{out_path} was written with other settings: "
                f"{_settings(earlier, with_model)}, where this run has "
                f"{_settings(now, with_model)}. Resume with the command that wrote it. "
                f"{_START_OVER}"
            )


def _short(text: Any, width: int = 40) -> str:
    """A text cut for a message."""
    if not isinstance(text, str):
        return "no text"
    return repr(text if len(text) <= width else text[: width - 1] + "…")


def _target_of_row(model: Any, record: Any, options: dict[str, Any], predicted: int) -> int:
    """The class this run explains for ``record``, whose predicted class is ``predicted``."""
    field = options.get("target_field")
    value = _row_target(record, field) if field else options.get("target")
    return model.resolve_target(value, default=predicted)


def _as_json(value: Any) -> Any:
    """``value`` as it reads back from JSON (tuples become lists...), for comparing."""
    return json.loads(json.dumps(value, default=str))


def _settings(methods: Sequence[tuple[Any, Any, Any]], with_model: bool) -> str:
    """``(method, params, model id)`` triples for a message."""
    shown = "; ".join(
        f"{m} ({', '.join(f'{k}={v}' for k, v in sorted((p or {}).items()))})"
        for m, p, _ in methods
    )
    return f"{shown} on model {methods[0][2]}" if with_model else shown


def _explanations_of_rows(rows: Sequence[dict[str, Any]]) -> list[Any]:
    """The explanations held in output rows (for the HTML report of a resumed run)."""
    from .explanation import Explanation

    return [Explanation.from_dict(e) for row in rows for e in row.get("explanations", ())]


def _explain_rows(
    model: Any, rows: Sequence[Any], methods: Sequence[str], options: dict[str, Any], target: Any
) -> list[list[Any] | str]:
    """Explanations of a chunk of input rows; a row the model fails on gets the reason.

    The chunk runs as one batch; if the model fails on it, each row runs alone, so one
    text that breaks the model (say, longer than its position table) costs only its row.
    """
    from .errors import ExplanationError, InvalidInputError

    texts = [r.text for r in rows]
    try:
        return list(_explain_all(model, texts, methods, options, target))
    except (ExplanationError, InvalidInputError) as exc:  # a text the model cannot take
        if len(rows) == 1:
            return [f"line {rows[0].line}: {_about_the_row(exc)}"]
    targets = target if isinstance(target, list) else [target] * len(rows)
    done: list[list[Any] | str] = []
    for row, one in zip(rows, targets, strict=True):
        done += _explain_rows(model, [row], methods, options, one)
    return done


def _row_field(record: Any, name: str) -> Any:
    """The value of field ``name`` of an input row (None when it has none)."""
    return record.label if name == "label" else record.extra.get(name)


def _row_target(record: Any, name: str) -> Any:
    """The value of field ``name`` of an input row: its target, or None (predicted class)."""
    value = _row_field(record, name)
    if isinstance(value, str):
        value = value.strip() or None
    return value


def _with_pair(record: Any, name: str) -> Any:
    """``record`` with its text paired with its field ``name``, or an error row."""
    import dataclasses

    from .model import pair_text

    if record.error:
        return record
    second = _row_field(record, name)
    if not isinstance(second, str) or not second.strip():
        got = f" (got {second!r})" if second is not None else ""
        problem = f"it has no text in its --pair-field {name!r}{got}"
    else:
        try:
            return dataclasses.replace(record, text=pair_text(record.text, second))
        except TextlensError as exc:
            problem = str(exc)
    return dataclasses.replace(record, text=None, error=f"line {record.line}: {problem}")


def _with_text_checked(record: Any) -> Any:
    """``record``, or an error row when its text is not one textlens can explain (a pair
    mark out of place, say): such a line must not take its chunk's other rows down."""
    import dataclasses

    from .model import check_texts

    if record.error:
        return record
    try:
        check_texts([record.text])
    except TextlensError as exc:
        return dataclasses.replace(
            record, text=None, error=f"line {record.line}: {_about_the_row(exc)}"
        )
    return record


def _about_the_row(exc: Exception) -> str:
    """The message of an error about one text, said of a row ("the text", not "Text 0")."""
    return str(exc).replace("Text 0 ", "the text ", 1).replace(" of pair 0 ", " ", 1)


def _check_field_exists(records: Sequence[Any], name: str, flag: str) -> None:
    """Refuse a field name that no row of the input has (a typo, most likely)."""
    if records and all(_row_field(r, name) is None for r in records if not r.error):
        fields = sorted({"text", "label"} | {k for r in records for k in r.extra})
        raise InvalidParameterError(
            f"{flag} {name!r}: no row of the input has that field. The rows have: "
            f"{', '.join(fields)}."
        )


def _with_row_target(model: Any, record: Any, name: str) -> Any:
    """``record``, or an error row when its field ``name`` is not one of the model's labels."""
    import dataclasses

    value = None if record.error else _row_target(record, name)
    if value is None:
        return record
    try:
        model.resolve_target(value, default=0)
    except TextlensError as exc:
        return dataclasses.replace(
            record, text=None, error=f"line {record.line}: --target-field {name}: {exc}"
        )
    return record


def cmd_demo(args: argparse.Namespace) -> int:
    if args.which == "alerts":
        from .demo.alerts import run_alerts_demo

        return run_alerts_demo(
            rebuild=args.rebuild,
            cache_dir=args.cache_dir,
            n_alerts=args.texts if args.texts_given else 6,
            methods=_resolve_methods(args.method, ["grad_x_input", "integrated_gradients"]),
            serve=args.serve,
            host=args.host,
            port=args.port,
            out=sys.stdout,
            progress=args.progress,
        )
    if args.serve:
        raise InvalidParameterError(
            "--serve goes with `textlens demo alerts`; "
            "use `textlens serve demo` for the sentiment model."
        )
    _check_output_file(args.html, "--html")
    from .demo.run import run_demo

    return run_demo(
        rebuild=args.rebuild,
        cache_dir=args.cache_dir,
        html=args.html,
        n_texts=args.texts,
        n_train=args.n_train,
        epochs=args.epochs,
        methods=_resolve_methods(args.method, ["all"]),
        out=sys.stdout,
        progress=args.progress,
    )


def cmd_layers(args: argparse.Namespace) -> int:
    from .layers import heatmap_png, layer_sweep

    if args.layer is not None and args.all_layers:
        raise InvalidParameterError("Give --layer N or --all-layers, not both.")
    _check_pairs(args)
    if args.png and Path(args.png).suffix.lower() != ".png":
        raise InvalidParameterError(
            f"--png writes a PNG image; name the file .png (got {args.png})."
        )
    _check_output_file(args.png, "--png")
    _check_output_file(args.html, "--html")
    _check_distinct_outputs(("--png", args.png), ("--html", args.html))
    model = _load_model(args)
    params: dict[str, Any] = {}
    if args.seed is not None:
        params["seed"] = args.seed
    if args.precision is not None:
        params["precision"] = args.precision
    layers = None if args.layer is None else [args.layer]
    sweeps = layer_sweep(
        model, _texts_and_pairs(args), layers=layers, positions=args.positions, **params
    )
    if args.format == "json":
        for sweep in sweeps:
            print(json.dumps(sweep.to_dict(), ensure_ascii=False))
    else:
        for sweep in sweeps:
            _print_sweep(sweep)
    png = heatmap_png(sweeps) if (args.png or args.html) else None
    if args.png:
        Path(args.png).expanduser().parent.mkdir(parents=True, exist_ok=True)
        Path(args.png).expanduser().write_bytes(png or b"")
        print(f"PNG heatmap: {Path(args.png).expanduser().resolve()}", file=sys.stderr)
    if args.html:
        from .report.layers import write_layers_html

        print(f"HTML report: {write_layers_html(args.html, sweeps, png=png)}", file=sys.stderr)
    return 0


def _print_sweep(sweep: Any) -> None:
    print(sweep.text)
    print("  sigma per word (small = the layer still depends on the word):")
    width = max(len(w) for w in sweep.words)
    header = "  " + " " * width + "".join(f"{'L' + str(layer):>9}" for layer in sweep.layers)
    print(header)
    for j, word in enumerate(sweep.words):
        row = "".join(f"{sweep.word_sigma[i][j]:9.3g}" for i in range(len(sweep.layers)))
        print(f"  {word.ljust(width)}{row}")
    print()


def cmd_evaluate(args: argparse.Namespace) -> int:
    from .evaluation import leaderboard, load_evaluation_data

    methods = (
        None
        if args.methods is None
        else _resolve_methods([m.strip() for m in args.methods.split(",") if m.strip()], [])
    )
    _check_output_file(args.html, "--html", [args.input])
    data = load_evaluation_data(args.input, limit=args.limit, pair_field=args.pair_field)
    for problem in data.problems:
        print(f"textlens: skipped {problem}", file=sys.stderr)
    model = _load_model(args)
    board = leaderboard(model, data, methods, budget_ms=args.budget_ms, masking=args.masking)
    unknown = board.settings.get("unknown_labels")
    if unknown:
        print(
            f"textlens: warning: labels that are none of the model's "
            f"({', '.join(map(repr, unknown))}; it has {', '.join(map(repr, model.labels))}) "
            "were left out of its accuracy.",
            file=sys.stderr,
        )
    if args.format == "json":
        print(json.dumps(board.to_dict(), ensure_ascii=False))
    else:
        print(board.to_text(color=sys.stdout.isatty() and "NO_COLOR" not in os.environ))
    if args.html:
        from .report.evaluation import write_evaluation_html

        print(f"HTML report: {write_evaluation_html(args.html, board)}", file=sys.stderr)
    if data.problems:
        print(
            f"textlens: error: {_count(len(data.problems), 'line')} of {args.input} "
            f"{'was' if len(data.problems) == 1 else 'were'} skipped (listed "
            "above); the leaderboard is over the other "
            f"{len(data.examples)}. Fix those lines and re-run to include them.",
            file=sys.stderr,
        )
        return EXIT_USER_ERROR
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from .server.__main__ import main as serve_main

    return serve_main([args.model, *args.server_args], prog="textlens serve")


# ---------------------------------------------------------------------------- parser
def _add_method_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("method parameters (each goes to the chosen methods that take it)")
    g.add_argument("--steps", type=int, help="integrated_gradients: number of steps (default 50)")
    g.add_argument(
        "--rule",
        help=(
            "integrated_gradients: gauss_legendre (default) or "
            "riemann_{left,right,middle,trapezoid}"
        ),
    )
    g.add_argument("--baseline", help="integrated_gradients: pad (default), mask or zero")
    g.add_argument(
        "--target-delta",
        type=float,
        help=(
            "integrated_gradients: adaptive steps until "
            "|delta| <= this fraction of |f(x)-f(baseline)|"
        ),
    )
    g.add_argument(
        "--max-steps", type=int, help="integrated_gradients: cap on adaptive steps per text"
    )
    g.add_argument(
        "--explained-output",
        choices=["logit", "probability"],
        help="gradient methods: explain the target logit (default) or its probability",
    )
    g.add_argument(
        "--layer",
        type=_layer_value,
        help=(
            "attention: layer index (0-based, negative from the top) or 'mean'; "
            "information: layer 1..L or logits/pooled"
        ),
    )
    g.add_argument("--head", type=_layer_value, help="attention: head index or 'mean'")
    g.add_argument("--budget", type=int, help="lime/shap: model evaluations per text")
    g.add_argument("--seed", type=int, help="lime/shap: random seed (same seed, same result)")
    g.add_argument("--features", help="perturbation methods: word (default), token, span, sentence")
    g.add_argument(
        "--span-size", type=int, help="perturbation methods with --features span: tokens per span"
    )
    g.add_argument("--masking", help="perturbation methods: mask (default), pad or delete")
    g.add_argument("--window", type=int, help="occlusion: sliding window width in features")
    g.add_argument(
        "--precision",
        choices=["float32", "bfloat16"],
        help="perturbation methods and information: bfloat16 halves the cost of model calls "
        "on CPUs with native bfloat16 (AVX512-BF16/AMX) and GPUs",
    )
    g.add_argument(
        "--max-batch-tokens", type=int, help="bound on rows x tokens per model call (memory)"
    )


class _Parser(argparse.ArgumentParser):
    """argparse, with usage errors on one line like every other error of the command."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USER_ERROR, f"textlens: error: {message} (see {self.prog} --help)\n")


def thread_count(value: str) -> int:
    """An argparse type: torch CPU threads, 1 to a few per core."""
    number = positive_int(value)
    most = 4 * (os.cpu_count() or 1)
    if number > most:
        raise argparse.ArgumentTypeError(
            f"{number} threads on a machine with {os.cpu_count()} cores; give at most {most} "
            "(one per core is usually fastest)"
        )
    return number


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="textlens", description="Explain BERT-family text classifiers.")
    threads_help = "torch CPU threads (before or after the command)"
    parser.add_argument("--threads", type=thread_count, default=None, help=threads_help)
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    sub = parser.add_subparsers(dest="command")

    p = sub.add_parser("methods", help="list the registered explanation methods")
    p.set_defaults(func=cmd_methods)

    p = sub.add_parser("explain", help="explain texts or a file of texts")
    p.add_argument("model", help="a local model folder, or 'demo'")
    p.add_argument("text", nargs="*", help="texts to explain")
    p.add_argument(
        "--method",
        "-m",
        action="append",
        help="method name (repeatable, or 'all'); default integrated_gradients",
    )
    p.add_argument("--target", help="label name or index to explain (default: the predicted class)")
    p.add_argument(
        "--target-field",
        metavar="FIELD",
        help="with --input: explain the class named in each row's FIELD (e.g. label, the "
        "gold label); rows without it explain the predicted class",
    )
    p.add_argument(
        "--pair",
        action="append",
        metavar="TEXT",
        help="the second text of a pair (hypothesis, passage...) for a pair classifier; "
        "once per text, in order",
    )
    p.add_argument(
        "--pair-field",
        metavar="FIELD",
        help="with --input: each row's FIELD is the second text of its pair (e.g. hypothesis)",
    )
    p.add_argument(
        "--level",
        choices=["token", "word"],
        help="text output: scores per word (default) or per sub-word token",
    )
    p.add_argument(
        "--format",
        choices=["text", "json"],
        help="coloured words in the terminal (default) or one JSON object per text",
    )
    p.add_argument("--html", help="also write a self-contained HTML report here")
    p.add_argument(
        "--input",
        help="a JSONL ('text' field, optional 'label'), CSV ('text' column) or plain-text "
        "file; - reads standard input",
    )
    p.add_argument(
        "--input-format",
        choices=INPUT_FORMATS,
        help="how to read --input (default: by extension; for -, JSONL if it starts with "
        "'{', else lines)",
    )
    p.add_argument(
        "--output",
        help="with --input: the JSONL file of results (input order); - writes standard output",
    )
    p.add_argument(
        "--chunk-size", type=positive_int, help="texts per step when reading --input (default 64)"
    )
    p.add_argument(
        "--resume",
        action="store_true",
        help="with --input: keep the rows an interrupted run left in --output and explain "
        "the rest (same command, same input)",
    )
    _add_model_options(p)
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    _add_method_options(p)
    p.set_defaults(func=cmd_explain)

    p = sub.add_parser(
        "demo", help="fine-tune (first run) and explain a demo model: sentiment (default) or alerts"
    )
    p.add_argument("which", nargs="?", choices=["sentiment", "alerts"], default="sentiment")
    p.add_argument(
        "--serve",
        action="store_true",
        help="alerts: start the server with the alert model afterwards",
    )
    p.add_argument(
        "--host", default="127.0.0.1", help="alerts --serve: interface (default loopback)"
    )
    p.add_argument("--port", type=int, default=8000, help="alerts --serve: port")
    p.add_argument("--rebuild", action="store_true", help="retrain even if a cached model exists")
    p.add_argument("--cache-dir", type=Path, help="where the demo model is cached")
    p.add_argument(
        "--html", default="textlens-demo.html", help="report path (default ./textlens-demo.html)"
    )
    p.add_argument(
        "--texts", type=int, default=None, help="held-out texts to explain (12 tweets / 6 alerts)"
    )
    p.add_argument("--method", "-m", action="append", help="methods (default: all registered)")
    p.add_argument("--n-train", type=int, default=None, help=argparse.SUPPRESS)
    p.add_argument("--epochs", type=int, default=None, help=argparse.SUPPRESS)
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser(
        "layers", help="how much of each word survives into each layer (Guan et al. 2019)"
    )
    p.add_argument("model", help="a local model folder, or 'demo'")
    p.add_argument("text", nargs="+", help="one or a few texts")
    p.add_argument(
        "--pair",
        action="append",
        metavar="TEXT",
        help="the second text of a pair, for a pair classifier; once per text, in order",
    )
    p.add_argument("--layer", type=_layer_value, help="one layer (1..L)")
    p.add_argument("--all-layers", action="store_true", help="every layer 1..L (the default)")
    p.add_argument(
        "--positions",
        choices=["all", "cls"],
        default="all",
        help="Phi = all positions of the layer output, or [CLS]",
    )
    p.add_argument("--seed", type=int, help="random seed")
    p.add_argument(
        "--precision",
        choices=["float32", "bfloat16"],
        help="bfloat16: about 1.8x faster fits on CPUs with native bfloat16 "
        "(AVX512-BF16/AMX) and GPUs",
    )
    p.add_argument(
        "--format", choices=["text", "json"], default="text", help="a table (default) or JSON"
    )
    p.add_argument("--html", help="write the layers x words heatmap as HTML")
    p.add_argument("--png", help="write the heatmap as a PNG")
    _add_model_options(p)
    p.set_defaults(func=cmd_layers)

    p = sub.add_parser(
        "evaluate",
        help="faithfulness, agreement, sanity... of every method on your data: a leaderboard",
    )
    p.add_argument("model", help="a local model folder, or 'demo'")
    p.add_argument(
        "--input",
        required=True,
        help="JSONL/CSV with 'text' (optional 'label', 'rationale', 'planted')",
    )
    p.add_argument("--methods", help="comma-separated methods (default: all registered)")
    p.add_argument(
        "--pair-field",
        metavar="FIELD",
        help="each row's FIELD is the second text of its pair (e.g. hypothesis); "
        "'pair_rationale' spans refer to it",
    )
    p.add_argument("--limit", type=int, help="use the first N examples")
    p.add_argument(
        "--budget-ms", type=float, help="recommend the best method within this time per text"
    )
    p.add_argument("--masking", choices=["mask", "delete", "pad"], default="mask")
    p.add_argument(
        "--format", choices=["text", "json"], default="text", help="a table (default) or JSON"
    )
    p.add_argument("--html", help="write the leaderboard report here")
    _add_model_options(p)
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser(
        "serve",
        help=(
            "HTTP service + web page for online explanations "
            "(see --help of python -m textlens.server)"
        ),
    )
    p.add_argument("model", help="a local model folder, 'demo' or 'demo-alerts'")
    p.add_argument(
        "server_args",
        nargs=argparse.REMAINDER,
        help="--host, --port, --method, --api-key, --steps, --no-batching, ...",
    )
    p.set_defaults(func=cmd_serve)
    for command in sub.choices.values():  # --threads after the command's name too;
        command.add_argument(  # SUPPRESS: when not given there, the earlier value stays
            "--threads", type=thread_count, default=argparse.SUPPRESS, help=threads_help
        )
    return parser


def main(argv: Iterable[str] | None = None) -> int:
    """Entry point of the ``textlens`` command."""
    parser = build_parser()
    args = parser.parse_args(None if argv is None else list(argv))
    if args.version:
        from . import __version__

        print(__version__)
        return 0
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_USER_ERROR
    _set_threads(args.threads)
    if getattr(args, "command", None) == "demo":
        args.texts_given = args.texts is not None
        args.texts = args.texts if args.texts is not None else 12
    # The server stops on SIGTERM its own (graceful) way; every other command turns it
    # into an interrupt, so that a batch scheduler's stop keeps the rows written so far.
    stop_on_term = getattr(args, "command", None) != "serve"
    try:
        with (
            warnings.catch_warnings(),
            _terminate_as_interrupt() if stop_on_term else contextlib.nullcontext(),
        ):
            warnings.simplefilter("always", TruncationWarning)
            warnings.showwarning = _show_warning
            return int(args.func(args))
    except TextlensError as exc:
        print(f"textlens: error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    except BrokenPipeError:  # e.g. `textlens explain ... | head`
        sys.stderr.close()
        return 0
    except OSError as exc:  # a file that cannot be written after all: a full disk, say
        where = f" {exc.filename}:" if exc.filename else ""
        print(f"textlens: error:{where} {exc.strerror or exc}.", file=sys.stderr)
        return EXIT_USER_ERROR
    except Terminated:
        print("textlens: terminated", file=sys.stderr)
        return 128 + signal.SIGTERM
    except KeyboardInterrupt:
        print("textlens: interrupted", file=sys.stderr)
        return 130


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the command was, so that its clean-up runs as on Ctrl-C.

    Python's default for SIGTERM ends the process at once: ``finally`` blocks do not run,
    so a batch job stopped by a scheduler (SLURM, Kubernetes, ``timeout``) would lose its
    hint to resume and a demo build would leave its temporary folder behind.
    """


@contextlib.contextmanager
def _terminate_as_interrupt() -> Iterator[None]:
    """Raise :class:`Terminated` on SIGTERM within the block (main thread only).

    The first SIGTERM raises; the handler then goes back to the default, so a second
    one ends the process at once, clean-up or not. The previous handler is restored on
    the way out.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        raise Terminated

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)


def _show_warning(message: Any, category: type, *args: Any, **kwargs: Any) -> None:
    print(f"textlens: warning: {message}", file=sys.stderr)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
