"""[output] compression: every codec writes part files that read back as the same tables."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import msgspec
import polars as pl
import pyarrow.parquet as pq
import pytest
from polars.testing import assert_frame_equal

from recoworld.config import (
    OutputConfig,
    PopulationConfig,
    SimulationConfig,
    StudyConfig,
    WorldConfig,
    decode_study,
)
from recoworld.errors import ConfigError
from recoworld.io.runs import Parts
from recoworld.io.tables import read_table
from recoworld.study.prepare import Prepared, load_world_for, prepare
from recoworld.study.shard import simulate_to

TABLES = ("events", "sessions", "user_metrics")


@pytest.fixture(scope="module")
def prep() -> Prepared:
    cfg = StudyConfig(
        name="codecs",
        seed=3,
        world=WorldConfig(dataset="synthetic", synthetic_users=60, synthetic_items=40),
        population=PopulationConfig(size=30),
        simulation=SimulationConfig(sessions=2, turns=2, slate_size=4),
    )
    return prepare(cfg, load_world_for(cfg.world, cfg.seed))


def written(prep: Prepared, folder: Path, codec: str) -> dict[str, pl.DataFrame]:
    cfg = msgspec.structs.replace(prep.cfg, output=OutputConfig(compression=codec))  # type: ignore[arg-type]
    parts = Parts(folder)
    simulate_to(parts, replace(prep, cfg=cfg))
    parts.close()
    out = {}
    for t in TABLES:
        f = folder / t / "arm=control" / "part-00000.parquet"
        meta = pq.ParquetFile(f).metadata
        codecs = {meta.row_group(0).column(c).compression for c in range(meta.num_columns)}
        assert codecs == {"UNCOMPRESSED" if codec == "none" else codec.upper()}, (t, codecs)
        out[t] = pl.from_arrow(read_table(f, t))
    return out


@pytest.mark.parametrize("codec", ["lz4", "snappy", "none"])
def test_every_codec_writes_tables_that_read_back_the_same(
    prep: Prepared, tmp_path: Path, codec: str
) -> None:
    zstd = written(prep, tmp_path / "zstd", "zstd")
    other = written(prep, tmp_path / codec, codec)
    assert zstd["events"].height > 0
    for t in TABLES:
        assert_frame_equal(other[t], zstd[t])


def test_zstd_is_the_default_and_an_unknown_codec_is_a_one_line_error() -> None:
    assert OutputConfig().compression == "zstd"
    with pytest.raises(ConfigError, match=r"\$\.output\.compression"):
        decode_study('name = "x"\n[output]\ncompression = "gzip"\n')
