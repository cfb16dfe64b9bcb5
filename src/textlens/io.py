"""Reading batch input files: JSONL, CSV or plain lines, with bad lines reported, not fatal."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import InputFileError

__all__ = ["InputRecord", "read_records"]


@dataclass(frozen=True)
class InputRecord:
    """One line of an input file: a text to explain, or the reason it cannot be.

    Attributes
    ----------
    line : int
        1-based line number in the file (for CSV, the data row's line).
    text : str or None
        The text, or None when the line is bad.
    label : str or None
        The optional ``label`` field (a true label, kept in the output).
    error : str or None
        Why the line cannot be explained.
    extra : dict
        Other fields of the line, passed through to the output.
    """

    line: int
    text: str | None
    label: str | None = None
    error: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def read_records(path: str | Path, fmt: str = "auto") -> Iterator[InputRecord]:
    """Yield the records of ``path``; ``fmt`` is 'jsonl', 'csv', 'lines' or 'auto'
    (by extension)."""
    file = Path(path)
    if not file.is_file():
        raise InputFileError(f"Input file {file} does not exist. Give a JSONL, CSV or text file.")
    if fmt == "auto":
        fmt = {".jsonl": "jsonl", ".json": "jsonl", ".ndjson": "jsonl", ".csv": "csv"}.get(
            file.suffix.lower(), "lines"
        )
    readers = {"jsonl": _read_jsonl, "csv": _read_csv, "lines": _read_lines}
    if fmt not in readers:
        raise InputFileError(f"Unknown input format {fmt!r}; use jsonl, csv, lines or auto.")
    try:
        with file.open(encoding="utf-8", newline="" if fmt == "csv" else None) as handle:
            yield from readers[fmt](handle)
    except UnicodeDecodeError as exc:
        raise InputFileError(
            f"Input file {file} is not UTF-8 ({exc.reason} at byte {exc.start}). "
            "Convert it, e.g. iconv -f latin1 -t utf-8."
        ) from exc


def _checked(
    line: int, text: Any, label: Any = None, extra: dict[str, Any] | None = None
) -> InputRecord:
    if not isinstance(text, str):
        kind = "missing" if text is None else f"a {type(text).__name__}, not a string"
        return InputRecord(line, None, error=f"line {line}: the 'text' field is {kind}.")
    if not text.strip():
        return InputRecord(line, None, error=f"line {line}: the text is empty; nothing to explain.")
    return InputRecord(line, text, None if label is None else str(label), None, extra or {})


def _read_jsonl(handle: Any) -> Iterator[InputRecord]:
    for number, raw in enumerate(handle, start=1):
        if not raw.strip():
            continue
        try:
            data = json.loads(raw)
        except json.JSONDecodeError as exc:
            yield InputRecord(number, None, error=f"line {number}: not valid JSON ({exc.msg}).")
            continue
        if not isinstance(data, dict):
            yield InputRecord(
                number, None, error=f'line {number}: expected an object like {{"text": "..."}}.'
            )
            continue
        extra = {k: v for k, v in data.items() if k not in ("text", "label")}
        yield _checked(number, data.get("text"), data.get("label"), extra)


def _read_csv(handle: Any) -> Iterator[InputRecord]:
    reader = csv.DictReader(handle)
    if reader.fieldnames is None or "text" not in reader.fieldnames:
        raise InputFileError(
            f"The CSV header must have a 'text' column; found {reader.fieldnames or 'no header'}."
        )
    for row in reader:
        line = reader.line_num
        if None in row:
            yield InputRecord(line, None, error=f"line {line}: more fields than the header has.")
            continue
        extra = {k: v for k, v in row.items() if k not in ("text", "label")}
        yield _checked(line, row.get("text"), row.get("label") or None, extra)


def _read_lines(handle: Any) -> Iterator[InputRecord]:
    for number, raw in enumerate(handle, start=1):
        text = raw.rstrip("\n")
        if text.strip():
            yield InputRecord(number, text)
