"""Shared machinery of the loaders: reading delimited files into typed frames with exact,
line-numbered errors, and assembling the normalised frames of :mod:`recoworld.world.model`.

A :class:`Table` is what every reader returns: a frame of *String* columns named by the caller,
plus ``_line``, the 1-based line (or, for Parquet, row) each record came from. The checks
(:func:`to_number`, :func:`check_ids`, :func:`check_unique`, :func:`check_known`, ...) are
vectorised; only when one fails is the offending record looked up, so that every error names
the file, the line and the expected format (see :class:`recoworld.errors.DataError`).

Text files are decoded in one piece (so an undecodable byte is reported with its line and
column), CRLF is normalised to LF, and blank lines are skipped. Files without quote
characters are split with polars string kernels; CSV files that use quoting go through the
:mod:`csv` module, which knows where each record starts.
"""

from __future__ import annotations

import ast
import csv
import gzip
import io
import re
import zlib
from dataclasses import dataclass, replace
from pathlib import Path

import msgspec
import polars as pl

from recoworld.errors import DataError
from recoworld.world.model import DEMOGRAPHIC_COLUMNS, INTERACTION_SCHEMA, ITEM_SCHEMA

LINE = "_line"
_CONTROL = r"[\x00-\x1f\x7f]"
_CONTROL_RE = re.compile(_CONTROL)
_SEP_NAMES = {"\t": "tab", ",": "comma", "|": "pipe", "::": "'::'", ";": "semicolon"}
_ENCODING_NAMES = {"utf-8": "UTF-8", "latin-1": "Latin-1 (ISO-8859-1)"}


def _show(value: object, limit: int = 80) -> str:
    """repr() of an offending value, cut to a readable length."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 4] + "...'"


def separator_name(separator: str) -> str:
    return _SEP_NAMES.get(separator, repr(separator))


@dataclass(frozen=True)
class Table:
    """Records of one file: String columns plus ``_line`` (1-based line or row number).

    ``layout`` describes the expected format in words and ends up in error messages;
    ``unit`` is ``"line"`` for text files and ``"row"`` for Parquet files.
    """

    path: Path
    frame: pl.DataFrame
    layout: str
    unit: str = "line"

    def error(self, at: int | None, problem: str, expected: str | None = None) -> DataError:
        """A DataError located at line (or row) ``at`` of this file."""
        if self.unit == "line" or at is None:
            return DataError(self.path, problem, expected=expected, line=at)
        return DataError(self.path, f"row {at}: {problem}", expected=expected)

    def with_frame(self, frame: pl.DataFrame) -> Table:
        return replace(self, frame=frame)

    def first_where(self, mask: pl.Expr) -> dict[str, object] | None:
        """The earliest record (by line) where ``mask`` holds, or None."""
        hit = self.frame.filter(mask)
        if hit.height == 0:
            return None
        return hit.sort(LINE).row(0, named=True)


# ---- reading ---------------------------------------------------------------------------------


def require_folder(path: Path, expected: str) -> Path:
    """``path`` as a Path, or a DataError when it is not an existing folder."""
    path = Path(path)
    if not path.is_dir():
        raise DataError(
            path, "not a folder" if path.exists() else "folder not found", expected=expected
        )
    return path


def read_bytes(path: Path, *, what: str) -> bytes:
    """The file's bytes, gunzipped when they start with the gzip magic (``.gz`` or not). A
    missing file, a folder, or a truncated or corrupt gzip stream raises a DataError."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise DataError(path, "file not found", expected=what) from None
    except IsADirectoryError:
        raise DataError(path, "is a folder", expected=what) from None
    if data[:2] != b"\x1f\x8b":
        return data
    try:
        return gzip.decompress(data)
    except EOFError:
        raise DataError(
            path, "the gzip stream is truncated", expected=f"a complete gzip file ({what})"
        ) from None
    except (gzip.BadGzipFile, zlib.error) as exc:
        raise DataError(
            path, f"corrupt gzip data ({exc})", expected=f"a gzip file ({what})"
        ) from None


def read_text(path: Path, *, encoding: str = "utf-8", what: str) -> str:
    """The whole file decoded strictly, BOM dropped, CRLF turned into LF.

    ``what`` describes the file for the "file not found" error. An undecodable byte raises a
    DataError naming its line and column.
    """
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise DataError(path, "file not found", expected=what) from None
    except IsADirectoryError:
        raise DataError(path, "is a folder", expected=what) from None
    label = _ENCODING_NAMES.get(encoding, encoding)
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError as exc:
        start = data.rfind(b"\n", 0, exc.start) + 1
        raise DataError(
            path,
            f"byte 0x{data[exc.start]:02x} at column {exc.start - start + 1} is not valid {label}",
            expected=f"{label} text",
            line=data.count(b"\n", 0, exc.start) + 1,
        ) from None
    text = text.removeprefix("\ufeff")
    return text.replace("\r\n", "\n") if "\r" in text else text


def _lines(text: str) -> pl.DataFrame:
    """Non-blank lines of ``text`` as a frame (raw, _line)."""
    # Splitting inside polars avoids materialising one Python str per line.
    frame = pl.DataFrame({"raw": pl.Series([text]).str.split("\n").explode()}).with_row_index(
        LINE, offset=1
    )
    return frame.filter(pl.col("raw").str.strip_chars() != "")


def _split_records(
    path: Path, lines: pl.DataFrame, separator: str, names: list[str], layout: str
) -> Table:
    split = lines.with_columns(pl.col("raw").str.split(separator).alias("_f"))
    table = Table(path, split, layout)
    bad = table.first_where(pl.col("_f").list.len() != len(names))
    if bad is not None:
        n = len(bad["_f"])
        raise table.error(
            bad[LINE], f"found {n} field{'s' if n != 1 else ''}: {_show(bad['raw'])}", layout
        )
    return table.with_frame(
        split.select(LINE, *(pl.col("_f").list.get(i).alias(name) for i, name in enumerate(names)))
    )


def read_fields(
    path: Path,
    *,
    separator: str,
    names: list[str],
    labels: list[str] | None = None,
    header: list[str] | None = None,
    encoding: str = "utf-8",
    what: str | None = None,
) -> Table:
    """Read a headerless (or fixed-header) delimited file without quoting, e.g. ``u.data``.

    Every non-blank line must have exactly ``len(names)`` fields. ``labels`` are the fields'
    names in words for messages (default: ``names``). With ``header`` given, the first
    non-blank line must be exactly that header (case-insensitive) and is skipped.
    """
    labels = labels or names
    layout = f"{len(names)} {separator_name(separator)}-separated fields ({', '.join(labels)})"
    lines = _lines(read_text(path, encoding=encoding, what=what or layout))
    if header is not None:
        if lines.height == 0 or lines["raw"][0].strip().lower() != separator.join(header).lower():
            got = _show(lines["raw"][0]) if lines.height else "an empty file"
            at = lines[LINE][0] if lines.height else None
            raise DataError(
                path, f"header is {got}", expected=f"header {separator.join(header)!r}", line=at
            )
        lines = lines.slice(1)
    return _split_records(path, lines, separator, names, layout)


def read_header_table(
    path: Path,
    *,
    separator: str = ",",
    encoding: str = "utf-8",
    what: str | None = None,
) -> tuple[list[str], Table]:
    """Read a delimited file whose first line names its columns: ``(header, table)``.

    Column names come back exactly as in the header (stripped); the table's columns are the
    header names. Double-quote quoting is understood for comma-separated files.
    """
    sep_word = separator_name(separator)
    text = read_text(
        path, encoding=encoding, what=what or f"a {sep_word}-separated file with a header"
    )
    if separator == "," and '"' in text:
        return _read_quoted(path, text, separator, sep_word)
    lines = _lines(text)
    if lines.height == 0:
        raise DataError(path, "the file is empty", expected=f"a {sep_word}-separated header line")
    header = [h.strip() for h in lines["raw"][0].split(separator)]
    check_header(path, header, lines[LINE][0])
    layout = f"{len(header)} {sep_word}-separated fields ({', '.join(header)})"
    return header, _split_records(path, lines.slice(1), separator, header, layout)


def check_header(path: Path, header: list[str], line: int) -> None:
    """Raise when a header names a column twice (the second would silently shadow the first)."""
    seen: dict[str, int] = {}
    for k, name in enumerate(header, start=1):
        if name in seen:
            raise DataError(
                path,
                f"header repeats column {name!r} (columns {seen[name]} and {k})",
                expected="a header naming each column once",
                line=line,
            )
        seen[name] = k


def _read_quoted(path: Path, text: str, separator: str, sep_word: str) -> tuple[list[str], Table]:
    reader = csv.reader(io.StringIO(text), delimiter=separator, strict=True)
    rows: list[list[str]] = []
    starts: list[int] = []
    header: list[str] | None = None
    layout = ""
    end = 0
    try:
        for record in reader:
            start, end = end + 1, reader.line_num
            if not record or (len(record) == 1 and not record[0].strip()):
                continue
            if header is None:
                header = [h.strip() for h in record]
                check_header(path, header, start)
                layout = f"{len(header)} {sep_word}-separated fields ({', '.join(header)})"
                continue
            if len(record) != len(header):
                n = len(record)
                raise DataError(
                    path,
                    f"found {n} field{'s' if n != 1 else ''}: {_show(separator.join(record))}",
                    expected=layout,
                    line=start,
                )
            rows.append(record)
            starts.append(start)
    except csv.Error as exc:
        raise DataError(
            path,
            f"malformed quoting in the record that starts here ({exc})",
            expected="CSV with balanced double quotes",
            line=end + 1,
        ) from None
    if header is None:
        raise DataError(path, "the file is empty", expected=f"a {sep_word}-separated header line")
    columns = list(zip(*rows)) if rows else [() for _ in header]
    frame = pl.DataFrame(
        {LINE: pl.Series(starts, dtype=pl.UInt32)}
        | {
            name: pl.Series(list(col), dtype=pl.String)
            for name, col in zip(header, columns, strict=True)
        }
    )
    return header, Table(path, frame, layout)


def read_json_lines(
    path: Path,
    record: type[msgspec.Struct],
    *,
    layout: str,
    python_literals: bool = False,
) -> tuple[list[msgspec.Struct], list[int]]:
    """Decode a JSON-lines file (gzip or not) into ``record`` structs: (records, their 1-based
    line numbers). Blank lines are skipped; unknown fields are ignored. A line that is not a
    JSON object of ``record``'s fields raises a DataError naming the line, the field
    (msgspec's ``$.path``) and ``layout``. ``python_literals``: a line that is not JSON may be a
    Python literal (the 2014 Amazon metadata is written that way); it is read with
    :func:`ast.literal_eval`, never evaluated."""
    data = read_bytes(path, what=layout)
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    decoder = msgspec.json.Decoder(record)
    lines = data.split(b"\n")
    out: list[msgspec.Struct] = []
    numbers: list[int] = []
    for n, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        try:
            out.append(decoder.decode(raw))
        except msgspec.ValidationError as exc:
            raise DataError(path, str(exc), expected=layout, line=n) from None
        except msgspec.DecodeError as exc:
            if not python_literals:
                raise DataError(path, _json_problem(raw, exc), expected=layout, line=n) from None
            out.append(_literal_record(path, raw, record, layout, n, exc))
        numbers.append(n)
    return out, numbers


def _json_problem(raw: bytes, exc: msgspec.DecodeError) -> str:
    text = str(exc)
    if "truncated" in text.lower():
        return f"the JSON object is cut short: {_show(raw.decode('utf-8', 'replace'))}"
    if "utf-8" in text.lower():
        return f"not valid UTF-8 ({text})"
    return f"not a JSON object ({text}): {_show(raw.decode('utf-8', 'replace'))}"


def _literal_record(
    path: Path, raw: bytes, record: type[msgspec.Struct], layout: str, n: int, exc: Exception
) -> msgspec.Struct:
    try:
        value = ast.literal_eval(raw.decode("utf-8"))
    except SyntaxError as err:
        cut = "never closed" in str(err) or "unexpected EOF" in str(err)
        problem = (
            f"the record is cut short: {_show(raw.decode('utf-8', 'replace'))}"
            if cut
            else _json_problem(raw, exc)  # type: ignore[arg-type]
        )
        raise DataError(path, problem, expected=layout, line=n) from None
    except (ValueError, UnicodeDecodeError, MemoryError, RecursionError):
        raise DataError(path, _json_problem(raw, exc), expected=layout, line=n) from None  # type: ignore[arg-type]
    try:
        return msgspec.convert(value, record)
    except msgspec.ValidationError as err:
        raise DataError(path, str(err), expected=layout, line=n) from None


def records_table(
    path: Path,
    records: list[msgspec.Struct],
    numbers: list[int],
    columns: dict[str, str],
    layout: str,
) -> Table:
    """A :class:`Table` of decoded records: ``columns`` maps each struct field to a column
    name; the values keep their decoded types (str, float, int)."""
    frame = pl.DataFrame(
        {LINE: pl.Series(numbers, dtype=pl.UInt32)}
        | {
            name: pl.Series(name, [getattr(r, field) for r in records], strict=False)
            for field, name in columns.items()
        }
    )
    return Table(path, frame, layout)


def require_columns(
    table: Table, header: list[str], required: list[str], *, described: str
) -> None:
    """Raise if the header lacks any of ``required``; ``described`` is the expected layout."""
    missing = [c for c in required if c not in header]
    if missing:
        names = ", ".join(repr(c) for c in missing)
        found = ", ".join(repr(c) for c in header)
        raise table.error(
            1 if table.unit == "line" else None,
            f"header lacks column{'s' if len(missing) > 1 else ''} {names} (found {found})",
            described,
        )


# ---- checks and conversions ------------------------------------------------------------------


def check_ids(table: Table, *columns: str, labels: dict[str, str] | None = None) -> Table:
    """Strip id columns and require them non-empty."""
    frame = table.frame.with_columns(pl.col(c).str.strip_chars() for c in columns)
    table = table.with_frame(frame)
    for c in columns:
        label = (labels or {}).get(c, c.replace("_", " "))
        bad = table.first_where(pl.col(c).is_null() | (pl.col(c) == ""))
        if bad is not None:
            raise table.error(bad[LINE], f"empty {label}", f"a non-empty {label}")
        # A NUL or other control character in an id is a corrupt file, not an id: it would
        # print invisibly and break the text formats that carry ids downstream.
        bad = table.first_where(pl.col(c).str.contains(_CONTROL))
        if bad is not None:
            value = bad[c]
            at = next(k for k, ch in enumerate(value, start=1) if _CONTROL_RE.match(ch))
            raise table.error(
                bad[LINE],
                f"{label} {_show(value)} holds control character {value[at - 1]!r} at "
                f"character {at}",
                f"a {label} of printable characters",
            )
    return table


def require_records(table: Table, what: str) -> Table:
    """Raise when ``table`` holds no records (an empty file, or a header and nothing else)."""
    if table.frame.height == 0:
        raise DataError(
            table.path,
            "no records" + (" after the header" if table.unit == "line" else " (0 rows)"),
            expected=f"at least one {what}",
        )
    return table


_KIND_WORDS = {
    "text": "text",
    "integer": "integers",
    "number": "numbers",
    "time": "integer seconds, a datetime or a date",
    "text list": "text or a list of text",
}


def check_dtype(table: Table, column: str, kind: str) -> None:
    """Raise when a Parquet column's type cannot hold ``kind`` (see :data:`_KIND_WORDS`).

    Text columns accept strings, categoricals and integers (ids written as numbers); numeric
    kinds accept integers, floats and strings (parsed later, line by line). Nested types,
    booleans and binary are refused for every kind but ``"text list"`` (list of strings).
    """
    dtype = table.frame.schema[column]
    textual = dtype == pl.String or isinstance(dtype, pl.Categorical | pl.Enum)
    ok = {
        "text": textual or dtype.is_integer(),
        "integer": textual or dtype.is_integer() or dtype.is_float(),
        "number": textual or dtype.is_integer() or dtype.is_float(),
        "time": textual
        or dtype.is_integer()
        or dtype.is_float()
        or isinstance(dtype, pl.Datetime | pl.Date),
        "text list": textual
        or (
            isinstance(dtype, pl.List)
            and (dtype.inner == pl.String or isinstance(dtype.inner, pl.Categorical | pl.Enum))
        ),
    }[kind]
    if not ok:
        raise table.error(
            None, f"column {column!r} has type {dtype}", f"{column} as {_KIND_WORDS[kind]}"
        )


def to_number(
    table: Table,
    column: str,
    dtype: pl.DataType,
    *,
    label: str,
    required: bool = True,
    low: float | None = None,
    high: float | None = None,
    positive: bool = False,
    note: str = "",
) -> Table:
    """Parse a String column into ``dtype`` (Float64 or Int64), with range checks.

    Empty strings are missing values: an error when ``required``, null otherwise. A value that
    does not parse, is not finite, lies outside ``[low, high]`` or is not > 0 (``positive``)
    raises a DataError naming its line.
    """
    kind = "an integer" if dtype.is_integer() else "a number"
    if low is not None and high is not None:
        expected = f"{kind} from {_bound(low)} to {_bound(high)}"
    elif positive:
        expected = f"{kind} > 0"
    else:
        expected = kind
    if note:
        expected += f" ({note})"
    raw = pl.col(column)
    if table.frame.schema[column] == pl.String:
        raw = raw.str.strip_chars()
        raw = pl.when(raw == "").then(None).otherwise(raw)
    frame = table.frame.with_columns(raw.alias("_raw")).with_columns(
        pl.col("_raw").cast(dtype, strict=False).alias("_num")
    )
    t = table.with_frame(frame)
    if required:
        bad = t.first_where(pl.col("_raw").is_null())
        if bad is not None:
            raise t.error(bad[LINE], f"{label} is missing", expected)
    bad = t.first_where(pl.col("_raw").is_not_null() & pl.col("_num").is_null())
    if bad is not None:
        raise t.error(bad[LINE], f"{label} {_show(bad['_raw'])} is not {kind}", expected)
    source = table.frame.schema[column]
    if dtype.is_integer():
        # A non-strict cast truncates 1.5 to 1: a fractional value is not an integer.
        fractional = (
            pl.col("_raw").cast(pl.Float64, strict=False)
            if source == pl.String
            else (pl.col("_raw") if source.is_float() else None)
        )
        if fractional is not None:
            bad = t.first_where(fractional.is_not_null() & (fractional != fractional.floor()))
            if bad is not None:
                raise t.error(bad[LINE], f"{label} {_show(bad['_raw'])} is not {kind}", expected)
    num = pl.col("_num")
    if dtype.is_float():
        bad = t.first_where(num.is_not_null() & ~num.is_finite())
        if bad is not None:
            raise t.error(bad[LINE], f"{label} {_show(bad['_raw'])} is not finite", expected)
    out = pl.lit(False)
    if low is not None:
        out = out | (num < low)
    if high is not None:
        out = out | (num > high)
    if positive:
        out = out | (num <= 0)
    bad = t.first_where(num.is_not_null() & out)
    if bad is not None:
        raise t.error(bad[LINE], f"{label} {_show(bad['_raw'])} is out of range", expected)
    return table.with_frame(
        frame.drop(column, "_raw").rename({"_num": column}).select(table.frame.columns)
    )


def _bound(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else f"{x:g}"


def check_unique(table: Table, column: str, *, label: str) -> None:
    """Raise on the first repeated value of ``column``, naming both lines."""
    bad = table.first_where(
        pl.col(column).is_duplicated() & (pl.col(LINE) > pl.col(LINE).min().over(column))
    )
    if bad is not None:
        first = table.frame.filter(pl.col(column) == bad[column])[LINE].min()
        raise table.error(
            bad[LINE],
            f"duplicate {label} {_show(bad[column])} (first on {table.unit} {first})",
            f"unique {label}s",
        )


def check_known(
    table: Table, column: str, known: pl.Series, *, label: str, source: Path | str
) -> None:
    """Raise if a value of ``column`` is absent from ``known`` (the ids defined by ``source``)."""
    unknown = table.frame.join(pl.DataFrame({column: known}), on=column, how="anti")
    if unknown.height:
        bad = unknown.sort(LINE).row(0, named=True)
        raise table.error(
            bad[LINE],
            f"{label} {_show(bad[column])} is not in {source}",
            f"every {label} in {table.path.name} to appear in {source}",
        )


def split_tags(expr: pl.Expr, separator: str) -> pl.Expr:
    """A separated String into a list of non-empty stripped tags (null -> empty list)."""
    parts = expr.fill_null("").str.split(separator).list.eval(pl.element().str.strip_chars())
    return parts.list.eval(pl.element().filter(pl.element() != ""))


# ---- descriptions ----------------------------------------------------------------------------

_TITLE_YEAR = r"^(.*?)\s*\((\d{4})(?:[-–]\d{0,4})?\)(?:\s*\(V\))?\s*$"


MAX_TIMESTAMP = 253_402_300_799
"""9999-12-31 23:59:59 UTC in seconds: a larger timestamp is in milliseconds or corrupt."""


def to_timestamp(table: Table, column: str = "timestamp", *, required: bool = False) -> Table:
    """Parse ``column`` into Int64 unix seconds from 0 (1970) to :data:`MAX_TIMESTAMP`."""
    return to_number(
        table,
        column,
        pl.Int64(),
        label="timestamp",
        required=required,
        low=0,
        high=MAX_TIMESTAMP,
        note="unix seconds, up to the year 9999",
    )


def title_and_year(expr: pl.Expr) -> tuple[pl.Expr, pl.Expr]:
    """Split 'Toy Story (1995)' into ('Toy Story', '1995'); titles without a year stay whole.

    Year ranges of series ('(1975-1979)', '(2007-)') give their first year.
    """
    title = expr.str.strip_chars()
    return (
        pl.coalesce(title.str.extract(_TITLE_YEAR, 1), title),
        title.str.extract(_TITLE_YEAR, 2),
    )


def title_or_id(title: pl.Expr) -> pl.Expr:
    """The stripped title, or the item id where the title is missing or blank."""
    stripped = title.str.strip_chars()
    return (
        pl.when(stripped.is_null() | (stripped == "")).then(pl.col("item_id")).otherwise(stripped)
    )


def sentence(prefix: str, values: pl.Expr) -> pl.Expr:
    """'Prefix: a, b.' from a list expression, or null when the list is empty."""
    return pl.when(values.list.len() > 0).then(
        pl.lit(f"{prefix}: ") + values.list.join(", ") + pl.lit(".")
    )


def describe(*parts: pl.Expr) -> pl.Expr:
    """Join sentence parts with spaces, skipping nulls; '' when all are null."""
    return pl.concat_str(list(parts), separator=" ", ignore_nulls=True).fill_null("")


def released(year: pl.Expr) -> pl.Expr:
    """'Released 1995.' where ``year`` (String) is a 4-digit year, else null."""
    return pl.when(year.str.contains(r"^\d{4}$")).then(pl.lit("Released ") + year + pl.lit("."))


# ---- normalised frames -----------------------------------------------------------------------


def items_frame(frame: pl.DataFrame) -> pl.DataFrame:
    """Select and type the item columns of the model contract (missing text/creator -> '')."""
    defaults = {
        "text": pl.lit(""),
        "creator": pl.lit(""),
        "tags": pl.lit([], dtype=pl.List(pl.String)),
    }
    cols = []
    for name, dtype in ITEM_SCHEMA.items():
        expr = pl.col(name) if name in frame.columns else defaults.get(name, pl.col("item_id"))
        if name in ("text", "creator"):
            expr = expr.fill_null("")
        cols.append(expr.cast(dtype).alias(name))
    return frame.select(cols)


def interactions_frame(frame: pl.DataFrame) -> pl.DataFrame:
    """Select and type the interaction columns (missing rating/timestamp -> null, weight -> 1.0)."""
    defaults = {"rating": pl.lit(None), "timestamp": pl.lit(None), "weight": pl.lit(1.0)}
    return frame.select(
        (pl.col(name) if name in frame.columns else defaults[name]).cast(dtype).alias(name)
        for name, dtype in INTERACTION_SCHEMA.items()
    )


def users_frame(frame: pl.DataFrame) -> pl.DataFrame:
    """``user_id`` plus whichever demographic columns ``frame`` has, typed; '' -> null."""
    cols = [pl.col("user_id").cast(pl.String)]
    for name, dtype in DEMOGRAPHIC_COLUMNS.items():
        if name in frame.columns:
            col = pl.col(name).cast(dtype)
            if dtype == pl.String:
                col = col.str.strip_chars()
                col = pl.when(col != "").then(col)
            cols.append(col.alias(name))
    return frame.select(cols)


def distinct_ids(column: str, *ids: pl.Series) -> pl.DataFrame:
    """A one-column frame of the distinct values of ``ids``, in order of first appearance."""
    return pl.DataFrame({column: pl.concat([s.rename(column) for s in ids])}).unique(
        maintain_order=True
    )


def observed_scale(ratings: pl.Series) -> tuple[float, float] | None:
    """(min, max) of the non-null ratings, or None when there are none."""
    clean = ratings.drop_nulls()
    if clean.len() == 0:
        return None
    return float(clean.min()), float(clean.max())  # type: ignore[arg-type]
