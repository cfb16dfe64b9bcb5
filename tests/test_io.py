"""Reading batch input files: a line that is not UTF-8 is one bad record, not a lost file."""

from __future__ import annotations

from pathlib import Path

import pytest

from textlens.errors import InputFileError
from textlens.io import read_records


def records(tmp_path: Path, name: str, data: bytes) -> list[tuple[int, str | None, str | None]]:
    path = tmp_path / name
    path.write_bytes(data)
    return [(r.line, r.text, r.error) for r in read_records(path)]


def test_a_jsonl_line_that_is_not_utf8_is_reported_and_the_rest_is_read(tmp_path) -> None:
    rows = records(
        tmp_path,
        "in.jsonl",
        b'{"text": "good one"}\n{"text": "caf\xe9 au lait"}\r\n\n{"text": "also good"}\n',
    )
    assert [(line, text) for line, text, _ in rows] == [
        (1, "good one"),
        (2, None),
        (4, "also good"),
    ]
    error = rows[1][2]
    assert error is not None
    assert error.startswith("line 2: not UTF-8 (byte 0xe9 at column 14)")
    assert "iconv -f latin1 -t utf-8" in error


def test_plain_lines_keep_going_past_a_bad_line_and_drop_crlf(tmp_path) -> None:
    rows = records(tmp_path, "in.txt", b"first\r\nsecond \xff\nthird\n")
    assert [(line, text) for line, text, _ in rows] == [(1, "first"), (2, None), (3, "third")]
    assert "byte 0xff at column 8" in str(rows[1][2])


def test_a_bad_line_inside_a_multi_line_csv_row_spoils_only_that_row(tmp_path) -> None:
    rows = records(
        tmp_path,
        "in.csv",
        b'text,label\n"two\nlines caf\xe9",positive\nfine,negative\n"quoted\nbreak",neutral\n',
    )
    assert [(line, text) for line, text, _ in rows] == [
        (3, None),
        (4, "fine"),
        (6, "quoted\nbreak"),
    ]
    assert str(rows[0][2]).startswith("line 3: not UTF-8")


def test_a_csv_header_that_is_not_utf8_is_a_file_error(tmp_path) -> None:
    path = tmp_path / "in.csv"
    path.write_bytes(b"te\xffxt,label\nfine,negative\n")
    with pytest.raises(InputFileError, match=r"CSV header \(line 1\) is not UTF-8 \(byte 0xff"):
        list(read_records(path))


@pytest.mark.parametrize(
    ("name", "data"),
    [
        ("in.jsonl", b'\xef\xbb\xbf{"text": "hello"}\n'),
        ("in.csv", b"\xef\xbb\xbftext\nhello\n"),
        ("in.txt", b"\xef\xbb\xbfhello\n"),
    ],
)
def test_a_utf8_byte_order_mark_is_dropped(tmp_path, name: str, data: bytes) -> None:
    assert records(tmp_path, name, data) == [(2 if name == "in.csv" else 1, "hello", None)]


@pytest.mark.parametrize(
    ("data", "fmt", "expected"),
    [
        (b'\n{"text": "one"}\n{"text": "two"}\n', "auto", [(2, "one"), (3, "two")]),
        (b'\xef\xbb\xbf{"text": "bom"}\n', "auto", [(1, "bom")]),
        (b"first line\n{not json}\n", "auto", [(1, "first line"), (2, "{not json}")]),
        (b'text,label\n"a, b",x\n', "csv", [(2, "a, b")]),
        (b'{"text": "x"}\n', "lines", [(1, '{"text": "x"}')]),
    ],
)
def test_standard_input_is_read_with_its_format_sniffed_or_given(
    monkeypatch, data: bytes, fmt: str, expected: list[tuple[int, str]]
) -> None:
    import io
    import sys

    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data)))
    got = [(r.line, r.text) for r in read_records("-", fmt)]
    assert got == expected


def test_an_unknown_format_is_an_input_file_error(tmp_path) -> None:
    with pytest.raises(InputFileError, match="Unknown input format 'xml'"):
        list(read_records("-", "xml"))


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "utf-16-be"])
@pytest.mark.parametrize("name", ["in.txt", "in.jsonl", "in.csv"])
def test_a_utf16_file_is_refused_with_how_to_convert_it(tmp_path, encoding, name) -> None:
    """Read line by line as UTF-8, a UTF-16 file would give NUL-interleaved 'texts'."""
    text = {"in.txt": "a good day\nbad\n", "in.jsonl": '{"text": "a good day"}\n',
            "in.csv": "text\na good day\n"}[name]  # fmt: skip
    with pytest.raises(InputFileError, match=r"not UTF-8 text.*iconv -f utf-16 -t utf-8"):
        records(tmp_path, name, text.encode(encoding))


def test_a_folder_is_not_a_missing_file(tmp_path) -> None:
    with pytest.raises(InputFileError, match="is a folder"):
        list(read_records(tmp_path))
