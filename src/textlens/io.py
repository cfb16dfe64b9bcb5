"""Batch files: reading the input (JSONL, CSV or plain lines, with bad lines reported, not
fatal), and reading back what an interrupted run wrote so that it can resume."""

from __future__ import annotations

import csv
import itertools
import json
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import InputFileError

__all__ = ["InputRecord", "WrittenRows", "read_records", "read_written_rows"]


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


STDIN = "-"
FORMATS = ("auto", "jsonl", "csv", "lines")


def read_records(path: str | Path, fmt: str = "auto") -> Iterator[InputRecord]:
    """Yield the records of ``path``; ``fmt`` is 'jsonl', 'csv', 'lines' or 'auto'.

    'auto' goes by the extension (.jsonl/.json/.ndjson, .csv, anything else: lines).
    ``path`` '-' reads standard input, where 'auto' means JSONL if the first non-blank
    line starts with ``{`` and plain lines otherwise (CSV needs ``fmt='csv'``).
    """
    readers = {"jsonl": _read_jsonl, "csv": _read_csv, "lines": _read_lines}
    if fmt != "auto" and fmt not in readers:
        raise InputFileError(f"Unknown input format {fmt!r}; use jsonl, csv, lines or auto.")
    if str(path) == STDIN:
        head, rest = _first_lines(sys.stdin.buffer)
        if fmt == "auto":
            first = next((line for line in head if line.strip()), b"")
            fmt = "jsonl" if first.lstrip(b"\xef\xbb\xbf \t").startswith(b"{") else "lines"
        yield from _records(itertools.chain(head, rest), readers[fmt])
        return
    file = Path(path)
    if file.is_dir():
        raise InputFileError(f"Input {file} is a folder. Give a JSONL, CSV or text file.")
    if not file.is_file():
        raise InputFileError(f"Input file {file} does not exist. Give a JSONL, CSV or text file.")
    if fmt == "auto":
        fmt = {".jsonl": "jsonl", ".json": "jsonl", ".ndjson": "jsonl", ".csv": "csv"}.get(
            file.suffix.lower(), "lines"
        )
    with file.open("rb") as raw:
        yield from _records(raw, readers[fmt])


def _first_lines(raw: Any) -> tuple[list[bytes], Iterator[bytes]]:
    """The lines of ``raw`` up to its first non-blank one, and an iterator over the rest."""
    lines = iter(raw)
    head: list[bytes] = []
    for line in lines:
        head.append(line)
        if line.strip():
            break
    return head, lines


def _records(raw: Iterable[bytes], reader: Any) -> Iterator[InputRecord]:
    lines = _DecodedLines(raw)
    read = 0  # physical lines behind the records yielded so far
    for record in reader(lines):
        # A line that is not UTF-8 spoils the record it belongs to (the first cause).
        why = lines.undecodable(read + 1, lines.last)
        read = lines.last
        if why is not None:
            record = InputRecord(record.line, None, error=why)
        yield record


class _DecodedLines:
    """The lines of a binary file, each decoded as UTF-8 on its own.

    A line that is not UTF-8 does not stop the file: it is decoded with replacement
    characters so that the readers can go on (a CSV row stays a row), and the record
    it belongs to is reported as bad, with the byte at fault and how to convert the
    file. A UTF-8 byte-order mark at the start is dropped.
    """

    def __init__(self, raw: Any):
        self._raw = raw
        self.last = 0  # physical lines read so far
        self._bad: dict[int, str] = {}

    def __iter__(self) -> Iterator[str]:
        for data in self._raw:
            self.last += 1
            if self.last == 1 and data.startswith(b"\xef\xbb\xbf"):
                data = data[3:]
            if self.last == 1 and (data.startswith((b"\xff\xfe", b"\xfe\xff")) or b"\0" in data):
                raise InputFileError(
                    "The input is not UTF-8 text: its first line "
                    + (
                        "starts with a UTF-16 byte-order mark"
                        if data[:2] in (b"\xff\xfe", b"\xfe\xff")
                        else "holds NUL bytes (UTF-16 without a byte-order mark, or not text)"
                    )
                    + ". Convert it, e.g. iconv -f utf-16 -t utf-8 IN > OUT, and give OUT."
                )
            try:
                yield data.decode("utf-8")
            except UnicodeDecodeError as exc:
                self._bad[self.last] = (
                    f"not UTF-8 (byte 0x{data[exc.start]:02x} at column {exc.start + 1}); "
                    "convert the file, e.g. iconv -f latin1 -t utf-8."
                )
                yield data.decode("utf-8", errors="replace")

    def undecodable(self, first: int, last: int) -> str | None:
        """Why lines ``first``..``last`` (one record) cannot be read, or None."""
        why = [f"line {n}: {self._bad.pop(n)}" for n in range(first, last + 1) if n in self._bad]
        return why[0] if why else None

    def header_fault(self) -> str | None:
        """Why line 1 cannot be read, or None."""
        return self._bad.pop(1, None)


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


def _read_csv(handle: _DecodedLines) -> Iterator[InputRecord]:
    reader = csv.DictReader(handle)
    header = reader.fieldnames
    fault = handle.header_fault()
    if fault is not None:
        raise InputFileError(f"The CSV header (line 1) is {fault}")
    if header is None or "text" not in header:
        raise InputFileError(
            f"The CSV header must have a 'text' column; found {header or 'no header'}."
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
        text = raw.rstrip("\r\n")
        if text.strip():
            yield InputRecord(number, text)


@dataclass(frozen=True)
class WrittenRows:
    """The complete rows an earlier run left in its JSONL output.

    Attributes
    ----------
    rows : list of dict
        The rows, in file order.
    size : int
        The bytes they take: the file is cut there before the run goes on.
    torn : bool
        Whether a row after them was cut off mid-write (it is dropped and redone).
    """

    rows: list[dict[str, Any]]
    size: int
    torn: bool


def read_written_rows(path: str | Path) -> WrittenRows:
    """Read back the output of an interrupted batch run (``textlens explain --resume``).

    Rows are written whole, one per line, so an interruption can only leave a last row
    without its newline: that one is dropped. A complete line that is not a JSON object
    means the file is not such an output, which is an :class:`InputFileError`.
    """
    data = Path(path).read_bytes()
    *complete, rest = data.split(b"\n")
    rows = []
    for number, raw in enumerate(complete, start=1):
        try:
            row = json.loads(raw)
        except ValueError:
            row = None
        if not isinstance(row, dict):
            raise InputFileError(
                f"{path}, line {number}, is not a JSON object, so the file is not the "
                "output of an earlier run to resume. Choose another --output, or remove "
                "the file to start over."
            )
        rows.append(row)
    return WrittenRows(rows=rows, size=len(data) - len(rest), torn=bool(rest))
