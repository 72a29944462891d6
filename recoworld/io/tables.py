"""Single-file Parquet tables (a run's summary and users, a sweep's summary, fidelity tables,
report samples): every whole-table write and read outside the part writers goes through here.

A table is written with its schema version and name in the file's metadata, under a temporary
name first and then renamed, so a reader never sees half a file; a read checks both.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterable
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from recoworld.errors import RunError
from recoworld.io.schema import METADATA_KEY, SCHEMA_VERSION, TABLE_KEY, version_problem

COMPRESSION = "zstd"
CODECS = ("zstd", "lz4", "snappy", "none")
"""The codecs a table may be written with (``[output] compression``)."""


def writer_options(schema: pa.Schema, compression: str = COMPRESSION) -> dict:
    """``compression`` (one of :data:`CODECS`; zstd unless said); dictionary encoding for the
    categorical columns only; statistics on the key columns readers filter on; a CRC checksum
    on every page, verified by pyarrow reads (:func:`read_table`). (Dictionary attempts and
    statistics on float columns cost more than half the write time and buy nothing.)"""
    if compression not in CODECS:
        raise ValueError(f"Expected a codec of {CODECS}, got {compression!r}")
    dict_cols = [f.name for f in schema if pa.types.is_dictionary(f.type)]
    keys = ("user", "session", "turn", "arm", "segment", "metric")
    stats_cols = [c for c in keys if c in schema.names]
    return {
        "compression": compression,
        "use_dictionary": dict_cols or False,
        "write_statistics": stats_cols or False,
        "write_page_checksum": True,
    }


def tag_schema(schema: pa.Schema, table: str) -> pa.Schema:
    """``schema`` carrying the schema version and the table name in its metadata."""
    meta = dict(schema.metadata or {})
    meta |= {METADATA_KEY: str(SCHEMA_VERSION).encode(), TABLE_KEY: table.encode()}
    return schema.with_metadata(meta)


def write_table(path: str | Path, table: pa.Table, name: str) -> Path:
    """Write ``table`` (table ``name``) to ``path`` atomically; returns the path."""
    return write_tables(path, [table], name)


def write_tables(path: str | Path, tables: Iterable[pa.Table], name: str) -> Path:
    """Write the ``tables`` (one schema; each a row group or more), one after the other, as
    table ``name`` to ``path`` atomically, holding one at a time; returns the path. At least
    one table."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    writer: pq.ParquetWriter | None = None
    try:
        for table in tables:
            table = table.replace_schema_metadata(tag_schema(table.schema, name).metadata)
            if writer is None:
                writer = pq.ParquetWriter(tmp, table.schema, **writer_options(table.schema))
            writer.write_table(table)
        if writer is None:
            raise ValueError(f"{path}: no table to write as {name!r}")
        writer.close()
        writer = None
        os.replace(tmp, path)
    finally:
        if writer is not None:
            writer.close()
        tmp.unlink(missing_ok=True)
    return path


def check_file(path: str | Path, table: str) -> None:
    """A RunError unless ``path`` is a readable Parquet file of ``table`` at this schema version."""
    path = Path(path)
    try:
        meta = pq.read_schema(path).metadata or {}
    except (pa.ArrowException, OSError) as e:
        raise RunError(
            f"{path}: not a readable Parquet file ({e}); "
            f"expected table {table!r} of a RecoWorld run"
        ) from None
    version = meta.get(METADATA_KEY, b"").decode() or None
    if version is None:
        raise RunError(
            f"{path}: no RecoWorld schema version in the file's metadata; "
            f"expected table {table!r} of version {SCHEMA_VERSION}"
        )
    if version != str(SCHEMA_VERSION):
        raise RunError(f"{path}: table {table!r} {version_problem(version)}")
    if meta.get(TABLE_KEY, b"").decode() != table:
        found = meta.get(TABLE_KEY, b"").decode()
        raise RunError(f"{path}: holds table {found!r}; expected {table!r}")


def read_table(path: str | Path, name: str, columns: list[str] | None = None) -> pa.Table:
    """Table ``name`` from ``path``, after checking its version and name; every page's
    checksum is verified."""
    check_file(path, name)
    try:
        return pq.read_table(path, columns=columns, page_checksum_verification=True)
    except (pa.ArrowException, OSError) as e:
        raise RunError(f"{path}: cannot read table {name!r} ({e})") from None


def write_frame(path: str | Path, frame: pl.DataFrame, schema: pa.Schema, name: str) -> Path:
    """Write polars ``frame`` as table ``name`` with ``schema``'s columns, types and
    descriptions (:func:`write_table`)."""
    return write_table(path, frame.select(schema.names).to_arrow().cast(schema), name)


def read_frame(path: str | Path, name: str, missing: str) -> pl.DataFrame:
    """Table ``name`` from ``path`` as a polars frame (:func:`read_table`); a RunError
    ``"<path>: <missing>"`` when the file does not exist."""
    path = Path(path)
    if not path.is_file():
        raise RunError(f"{path}: {missing}")
    return pl.from_arrow(read_table(path, name))  # type: ignore[return-value]
