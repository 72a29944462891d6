"""Adversarial inputs to `recoworld run` (recoworld/config.py, recoworld/cli.py,
recoworld/study/preflight.py): bad study files and bad flags each end in ONE line on stderr that
names what was expected and where, the documented exit code, no traceback, and nothing written
to the output folder."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from recoworld.cli import main
from recoworld.config import check_run_id, decode_study, load_study
from recoworld.errors import ConfigError
from recoworld.study import preflight

ROOT = Path(__file__).resolve().parents[1]
STUDIES = sorted((ROOT / "studies").glob("*.toml"))

BASE = """\
name = "adv"
[world]
dataset = "synthetic"
synthetic_users = 40
synthetic_items = 60
embedding_dim = 4
[population]
size = 10
[simulation]
sessions = 1
turns = 2
slate_size = 3
[recommender]
candidates = 6
"""
CREATOR = '[creator]\nid = "c"\n[[creator.items]]\ntitle = "t"\n'


def arm(name: str) -> str:
    return f'[[arms]]\nname = "control"\n[[arms]]\nname = {name}\n'


def run_cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main(argv)
    err = capsys.readouterr().err
    return code, err


def assert_one_line(err: str, *needles: str) -> None:
    assert "Traceback" not in err
    lines = err.strip("\n").split("\n")
    assert len(lines) == 1, err
    assert lines[0].startswith("error: "), err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


# --- bad study files: (TOML text, words the one line must hold) -------------------------------

BAD_STUDIES: dict[str, tuple[str, tuple[str, ...]]] = {
    # arm names become folders and hive partition values
    **{
        f"arm_name_{label}": (BASE + arm(toml), ("`$.arms[1].name`", "Expected an arm name"))
        for label, toml in {
            "slash": '"a/b"',
            "backslash": '"a\\\\b"',
            "percent": '"a%41"',
            "equals": '"k=v"',
            "leading_dot": '".hidden"',
            "dotdot": '".."',
            "hive_default": '"__HIVE_DEFAULT_PARTITION__"',
            "numeric": '"1"',
            "numeric_long": '"0042"',
            "too_long": '"' + "a" * 101 + '"',
            "empty": '""',
            "space": '"a b"',
            "non_ascii": '"caf\u00e9"',
            "colon": '"a:b"',
        }.items()
    },
    "arm_name_nul": (BASE + arm('"a\\u0000b"'), ("`$.arms[1].name`", "NUL")),
    "arm_name_newline": (BASE + arm('"a\\nb"'), ("`$.arms[1].name`", "control character")),
    # seeds
    "seed_negative": ("seed = -1\n" + BASE, ("`$.seed`", "2**32 - 1")),
    "seed_2_32": (f"seed = {2**32}\n" + BASE, ("`$.seed`", "2**32 - 1")),
    "seed_2_64": (f"seed = {2**64}\n" + BASE, ("`$.seed`",)),
    "seed_float": ("seed = 1.5\n" + BASE, ("`$.seed`", "Expected `int`")),
    "engine_seed": (
        BASE + '[brain]\nkind = "hybrid"\n[llm]\nbackend = "replay"\nreplay_from = "r"\n'
        "[llm.engine]\nseed = -5\n",
        ("`$.llm.engine.seed`",),
    ),
    # probabilities and rates
    **{
        f"{field}_{label}": (
            BASE + f"[brain]\n{field} = {value}\n",
            (f"`$.brain.{field}`", "[0, 1]"),
        )
        for field in (
            "watch_threshold",
            "rate_probability",
            "satisfaction_rate",
            "boredom_rate",
            "instruct_below",
            "instruct_probability",
        )
        for label, value in (("negative", "-0.01"), ("above_one", "1.5"))
    },
    "arm_rate_negative": (
        BASE + CREATOR + arm('"i"\ntreatment = "inject"\nrate = -0.1'),
        ("`$.arms[1].rate`", "[0, 1]"),
    ),
    "nan": (BASE + "[brain]\nleave_bias = nan\n", ("`$.brain.leave_bias`", "finite")),
    # counts
    "negatives_per_positive": (
        BASE + "[brain]\nnegatives_per_positive = -1\n",
        ("`$.brain.negatives_per_positive`", ">= 0"),
    ),
    "fatigue_per_item": (BASE + "[brain]\nfatigue_per_item = -1.0\n", (">= 0",)),
    "jitter": (
        BASE.replace("size = 10", "size = 10\njitter = -0.5"),
        ("`$.population.jitter`",),
    ),
    "population_negative": (BASE.replace("size = 10", "size = -10"), ("`$.population.size`",)),
    "sessions_zero": (BASE.replace("sessions = 1", "sessions = 0"), ("`$.simulation.sessions`",)),
    "items_zero": (
        BASE.replace("synthetic_items = 60", "synthetic_items = 0"),
        ("`$.world.synthetic_items`",),
    ),
    # ages
    **{
        f"age_{label}": (
            BASE + f"[population.target]\nage = {value}\n",
            ("`$.population.target.age`",),
        )
        for label, value in (
            ("negative", "[-1, 30]"),
            ("too_old", "[30, 200]"),
            ("reversed", "[40, 30]"),
            ("huge", "[0, 9223372036854775807]"),
        )
    },
    "arm_target_age": (
        BASE + arm('"b"\n[arms.target]\nage = [10, 130]'),
        ("`$.arms[1].target.age`", "120"),
    ),
    # creator ids
    "creator_duplicate_item_ids": (
        BASE + '[creator]\nid = "c"\n[[creator.items]]\ntitle = "a"\nitem_id = "x"\n'
        '[[creator.items]]\ntitle = "b"\nitem_id = "x"\n',
        ("`$.creator.items[1].item_id`", "distinct"),
    ),
    "creator_ids_differ_by_case": (
        BASE + '[creator]\nid = "c"\n[[creator.items]]\ntitle = "a"\nitem_id = "Song"\n'
        '[[creator.items]]\ntitle = "b"\nitem_id = "song"\n',
        ("`$.creator.items[1].item_id`", "normalisation"),
    ),
    "creator_ids_differ_by_nfkc": (
        BASE + '[creator]\nid = "c"\n[[creator.items]]\ntitle = "a"\nitem_id = "\ufb01ne"\n'
        '[[creator.items]]\ntitle = "b"\nitem_id = "fine"\n',
        ("`$.creator.items[1].item_id`",),
    ),
    "creator_id_collides_with_a_default": (
        BASE + '[creator]\nid = "c"\n[[creator.items]]\ntitle = "a"\n'
        '[[creator.items]]\ntitle = "b"\nitem_id = "c:0"\n',
        ("`$.creator.items[1].item_id`", "'c:0'"),
    ),
    "creator_id_spaces": (
        BASE + '[creator]\nid = "c"\n[[creator.items]]\ntitle = "a"\nitem_id = " x "\n',
        ("`$.creator.items[0].item_id`", "spaces"),
    ),
    "creator_id_empty": (BASE + '[creator]\nid = ""\n', ("`$.creator.id`",)),
    # control characters in any string
    **{
        f"control_{label}": (
            text + BASE if text.startswith("description") else BASE + text,
            (path, "control characters"),
        )
        for label, (text, path) in {
            "title_bell": (
                '[creator]\nid = "c"\n[[creator.items]]\ntitle = "a\\u0007"\n',
                "`$.creator.items[0].title`",
            ),
            "tag_escape": (
                '[creator]\nid = "c"\n[[creator.items]]\ntitle = "a"\ntags = ["\\u001b[31m"]\n',
                "`$.creator.items[0].tags[0]`",
            ),
            "creator_name_nul": ('[creator]\nid = "c"\nname = "a\\u0000"\n', "`$.creator.name`"),
            "description_nul": ('description = "x\\u0000"\n', "`$.description`"),
            "likes_del": ('[population.target]\nlikes = ["a\\u007f"]\n', "`$.population"),
            "output_dir_nul": ('[output]\ndir = "r\\u0000uns"\n', "`$.output.dir`"),
        }.items()
    },
    # the file itself
    "not_toml": ("name = \n", ("not valid TOML",)),
    "unknown_field": (BASE + "[brain]\nfoo = 1\n", ("unknown field `foo`",)),
    "nested_5000_deep": ("x = " + "[" * 5000 + "]" * 5000 + "\n", ("nest",)),
    "nested_tables_5000_deep": (
        "x = " + "{a = " * 5000 + "1" + "}" * 5000 + "\n",
        ("nest",),
    ),
    # memory pre-flight
    "population_1e9": (
        BASE.replace("size = 10", "size = 1_000_000_000"),
        ("memory available", "estimated to need", "population"),
    ),
    "synthetic_items_1e9": (
        BASE.replace("synthetic_items = 60", "synthetic_items = 1_000_000_000"),
        ("memory available", "estimated to need"),
    ),
    "synthetic_users_1e9": (
        BASE.replace("synthetic_users = 40", "synthetic_users = 1_000_000_000"),
        ("memory available",),
    ),
}

BAD_BYTES: dict[str, tuple[bytes, tuple[str, ...]]] = {
    "latin1": (b'name = "caf\xe9"\n', ("Expected UTF-8 text", "0xe9", "line 1")),
    "utf16": ('name = "x"\n'.encode("utf-16"), ("Expected UTF-8 text",)),
    "binary_line_3": (b'name = "x"\n\n\xff\xfe\n', ("line 3",)),
    "nul_byte": (b'name = "x\x00"\n', ("not valid TOML",)),
    "empty": (b"", ("missing required field `name`",)),
}


@pytest.mark.parametrize(("text", "needles"), BAD_STUDIES.values(), ids=list(BAD_STUDIES.keys()))
def test_a_bad_study_is_one_line_exit_2_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, needles: tuple[str, ...]
) -> None:
    study = tmp_path / "study.toml"
    study.write_text(text)
    out = tmp_path / "out"
    t0 = time.perf_counter()
    code, err = run_cli(["run", str(study), "--out", str(out), "--quiet"], capsys)
    assert time.perf_counter() - t0 < 5
    assert code == 2
    assert_one_line(err, str(study), *needles)
    assert not out.exists() or not any(out.iterdir())


@pytest.mark.parametrize(("data", "needles"), BAD_BYTES.values(), ids=list(BAD_BYTES.keys()))
def test_a_study_that_is_not_utf8_toml_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], data: bytes, needles: tuple[str, ...]
) -> None:
    study = tmp_path / "study.toml"
    study.write_bytes(data)
    code, err = run_cli(["run", str(study), "--out", str(tmp_path / "out")], capsys)
    assert code == 2
    assert_one_line(err, str(study), *needles)


# --- bad flags ----------------------------------------------------------------------------------

BAD_FLAGS: dict[str, tuple[list[str], tuple[str, ...]]] = {
    "seed_2_32": (["--seed", str(2**32)], ("--seed", "2**32 - 1")),
    "seed_negative": (["--seed", "-1"], ("--seed",)),
    "seed_huge": (["--seed", "9" * 40], ("--seed",)),
    "seed_not_int": (["--seed", "x"], ("--seed", "invalid int")),
    "run_id_300_bytes": (["--run-id", "r" * 300], ("--run-id", "300 bytes")),
    "run_id_256_multibyte": (["--run-id", "\u00e9" * 128], ("--run-id",)),
    "run_id_nul": (["--run-id", "a\x00b"], ("--run-id", "NUL")),
    "run_id_traversal": (["--run-id", "../evil"], ("--run-id", "'/'")),
    "run_id_dot": (["--run-id", "."], ("--run-id", "'.'")),
    "run_id_numeric": (["--run-id", "2024"], ("--run-id", "digits")),
    "run_id_hive": (["--run-id", "__HIVE_DEFAULT_PARTITION__"], ("--run-id", "hive")),
    "run_id_newline": (["--run-id", "a\nb"], ("--run-id",)),
    "resume_slash": (["--resume", "a/b"], ("--resume",)),
    "users_negative": (["--users", "-5"], ("--users", ">= 0")),
    "users_1e9": (["--users", "1000000000"], ("memory available",)),
    "workers_zero": (["--workers", "0"], ("--workers", ">= 1")),
    "shards_zero": (["--shards", "0"], ("--shards",)),
    "out_is_a_file": (["--out", "{tmp}/file"], ("--out", "not a folder")),
    "out_dev_null": (["--out", "/dev/null"], ("--out", "/dev/null")),
    "out_uri_with_credentials": (["--out", "s3://AK:SK@b/r"], ("--out", "without credentials")),
    "out_ftp_uri": (["--out", "ftp://b/r"], ("--out", "ftp:// is not supported")),
    "out_under_a_file": (["--out", "{tmp}/file/sub"], ("--out", "{tmp}/file/sub")),
    "out_read_only_fs": (["--out", "/proc/recoworld-runs"], ("--out", "/proc/recoworld-runs")),
    "unknown_flag": (["--frobnicate"], ("unrecognized arguments",)),
    "resume_and_overwrite": (["--resume", "r1", "--overwrite"], ("--resume",)),
}


@pytest.mark.parametrize(("flags", "needles"), BAD_FLAGS.values(), ids=list(BAD_FLAGS.keys()))
def test_a_bad_flag_is_one_line_exit_2_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], flags: list[str], needles: tuple[str, ...]
) -> None:
    study = tmp_path / "study.toml"
    study.write_text(BASE)
    (tmp_path / "file").write_text("not a folder")
    flags = [f.replace("{tmp}", str(tmp_path)) for f in flags]
    if "--out" not in flags:
        flags += ["--out", str(tmp_path / "out")]
    before = sorted(p.name for p in tmp_path.iterdir())
    try:
        code, err = run_cli(["run", str(study), *flags, "--quiet"], capsys)
    except SystemExit as e:  # argparse's own usage errors (one line: recoworld.cli._Parser)
        code, err = e.code, capsys.readouterr().err
    assert code == 2
    assert_one_line(err, *(n.replace("{tmp}", str(tmp_path)) for n in needles))
    assert (tmp_path / "file").read_text() == "not a folder"
    out = tmp_path / "out"
    assert not out.exists() or not any(out.iterdir())
    assert sorted(p.name for p in tmp_path.iterdir() if p.name != "out") == [
        n for n in before if n != "out"
    ]


MISC: dict[str, tuple[list[str], tuple[str, ...]]] = {
    "missing_study": (["run", "{tmp}/nope.toml"], ("nope.toml", "No such file")),
    "study_is_a_folder": (["run", "{tmp}"], ("cannot read the study file",)),
    "summary_of_nothing": (["summary", "{tmp}/nope"], ("nope",)),
}


@pytest.mark.parametrize(("argv", "needles"), MISC.values(), ids=list(MISC.keys()))
def test_other_bad_paths_are_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], needles: tuple[str, ...]
) -> None:
    code, err = run_cli([a.replace("{tmp}", str(tmp_path)) for a in argv], capsys)
    assert code == 2
    assert_one_line(err, *needles)


# --- failures in the middle of a run ---------------------------------------------------------


def _raise(exc: BaseException):  # noqa: ANN202
    def f(*args: object, **kwargs: object) -> None:
        raise exc

    return f


@pytest.mark.parametrize(
    ("exc", "code", "needles"),
    [
        (KeyboardInterrupt(), 130, ("interrupted",)),
        (
            OSError(errno.ENOSPC, "No space left on device", "/runs/x/events"),
            2,
            ("/runs/x/events",),
        ),
        (OSError(errno.EROFS, "Read-only file system", "/runs/x"), 2, ("Read-only",)),
        (PermissionError(errno.EACCES, "Permission denied", "/runs/x"), 2, ("Permission denied",)),
        (MemoryError(), 2, ("out of memory",)),
        (RecursionError(), 2, ("nest",)),
        (ValueError("boom\nsecond line"), 1, ("internal error", "RECOWORLD_DEBUG=1", "boom")),
    ],
    ids=["interrupt", "disk_full", "read_only", "permission", "memory", "recursion", "unexpected"],
)
def test_a_failure_inside_the_run_is_one_line(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    exc: BaseException,
    code: int,
    needles: tuple[str, ...],
) -> None:
    study = tmp_path / "study.toml"
    study.write_text(BASE)
    monkeypatch.delenv("RECOWORLD_DEBUG", raising=False)
    monkeypatch.setattr("recoworld.config.load_study", _raise(exc))
    got, err = run_cli(["run", str(study), "--out", str(tmp_path / "out")], capsys)
    assert got == code
    assert_one_line(err, *needles)


def test_recoworld_debug_shows_the_traceback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    study = tmp_path / "study.toml"
    study.write_text(BASE)
    monkeypatch.setenv("RECOWORLD_DEBUG", "1")
    monkeypatch.setattr("recoworld.config.load_study", _raise(ValueError("boom")))
    with pytest.raises(ValueError, match="boom"):
        main(["run", str(study)])


# --- the same, across a process boundary --------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "argv", "needles"),
    [
        (BAD_STUDIES["nested_5000_deep"][0], [], ("nest",)),
        (BAD_STUDIES["population_1e9"][0], [], ("memory available",)),
        (BASE, ["--seed", str(2**32)], ("--seed",)),
        (BASE, ["--out", "/dev/null"], ("--out",)),
    ],
    ids=["deep", "memory", "seed", "dev_null"],
)
def test_the_installed_command_prints_one_line(
    tmp_path: Path, text: str, argv: list[str], needles: tuple[str, ...]
) -> None:
    study = tmp_path / "study.toml"
    study.write_text(text)
    argv = argv if "--out" in argv else [*argv, "--out", str(tmp_path / "out")]
    env = {**os.environ, "COLUMNS": "400"}
    env.pop("RECOWORLD_DEBUG", None)
    p = subprocess.run(
        [sys.executable, "-m", "recoworld.cli", "run", str(study), *argv],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=120,
    )
    assert p.returncode == 2
    assert p.stdout == ""
    assert_one_line(p.stderr, *needles)


# --- the pieces ----------------------------------------------------------------------------------


@pytest.mark.parametrize("good", ["r1", "study-2024.01.02_x", "a" * 100, "0x1", "1e5", "_"])
def test_check_run_id_returns_a_safe_id(good: str) -> None:
    assert check_run_id(good) == good


@pytest.mark.parametrize(
    "bad", ["", ".", "..", ".x", "a/b", "a\\b", "a%2F", "k=v", "12", "a\x00", "a" * 101, "a b"]
)
def test_check_run_id_refuses_in_one_line(bad: str) -> None:
    with pytest.raises(ConfigError) as e:
        check_run_id(bad)
    assert "\n" not in str(e.value) and str(e.value).startswith("Expected a run id of")


def test_prose_may_hold_line_breaks_and_tabs() -> None:
    cfg = decode_study('description = "line one\\nline\\ttwo"\n' + BASE)
    assert cfg.description == "line one\nline\ttwo"


@pytest.mark.parametrize("path", STUDIES, ids=[p.name for p in STUDIES])
def test_every_shipped_study_passes_the_memory_preflight(path: Path) -> None:
    cfg = load_study(path)
    need = preflight.check_memory(cfg, source=str(path), workers=2, available=8 * 2**30)
    assert 0 < need < 8 * 2**30


@pytest.mark.parametrize("field", ["population.size", "world.synthetic_items"])
def test_a_billion_is_refused_within_a_second(field: str) -> None:
    table, key = field.split(".")
    world = '[world]\ndataset = "synthetic"\n'
    if table == "world":
        cfg = decode_study(f'name = "x"\n{world}{key} = 1_000_000_000\n')
    else:
        cfg = decode_study(f'name = "x"\n{world}[{table}]\n{key} = 1_000_000_000\n')
    t0 = time.perf_counter()
    with pytest.raises(ConfigError, match="estimated to need"):
        preflight.check_memory(cfg, source="s.toml", available=64 * 2**30)
    assert time.perf_counter() - t0 < 1


def test_the_estimate_grows_with_the_population_and_the_catalog() -> None:
    small = decode_study('name = "x"\n[world]\ndataset = "synthetic"\n')
    users = decode_study('name = "x"\n[world]\ndataset = "synthetic"\n[population]\nsize = 1\n')
    assert preflight.estimate_peak_memory(users) <= preflight.estimate_peak_memory(small)
    big = decode_study('name = "x"\n[world]\ndataset = "synthetic"\nsynthetic_items = 400000\n')
    assert preflight.estimate_peak_memory(big) > preflight.estimate_peak_memory(small)


def test_available_memory_is_known_here() -> None:
    have = preflight.available_memory()
    assert have is not None and have > 0


@pytest.mark.parametrize("n_items", [1, 100, 1682, 1831, 1832, 58_593, 58_594, 10**6, 10**9])
def test_the_preflight_batch_bound_is_the_shards(n_items: int) -> None:
    from recoworld.study.shard import batch_size_for

    assert preflight.batch_users(n_items) == batch_size_for(n_items)
