"""Strict study decoding (recoworld/config.py): every error names the file and the `$.path`,
valid studies survive TOML -> struct -> study.json -> struct, and the shipped studies decode."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import msgspec
import msgspec.inspect as mi
import pytest
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st

from recoworld.config import (
    NON_NEGATIVE,
    PROBABILITIES,
    ArmConfig,
    BrainConfig,
    CreatorConfig,
    CreatorItem,
    OutputConfig,
    PopulationConfig,
    RayConfig,
    RecommenderConfig,
    SimulationConfig,
    Strict,
    StudyConfig,
    Targeting,
    WorldConfig,
    decode_strict,
    decode_study,
    decode_study_json,
    encode_study,
    load_study,
    results_difference,
    results_identity,
)
from recoworld.errors import ConfigError, RecoWorldError

ROOT = Path(__file__).resolve().parents[1]
STUDIES = sorted((ROOT / "studies").glob("*.toml"))

CREATOR = '[creator]\nid = "c"\n[[creator.items]]\ntitle = "t"\n'


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "study.toml"
    path.write_text(text)
    return path


def load_error(tmp_path: Path, text: str) -> str:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as e:
        load_study(path)
    return str(e.value)


# --- decoding errors: the full message, with the file and the path -------------------------

DECODE_ERRORS = {
    "unknown_key": (
        'name = "x"\n[simulation]\nturn = 3\n',
        "Object contains unknown field `turn` - at `$.simulation`",
    ),
    "unknown_key_in_an_arm": (
        'name = "x"\n[[arms]]\nname = "control"\npostion = 1\n',
        "Object contains unknown field `postion` - at `$.arms[0]`",
    ),
    "mistyped_value": (
        'name = "x"\n[simulation]\nturns = "3"\n',
        "Expected `int`, got `str` - at `$.simulation.turns`",
    ),
    "value_outside_a_literal": (
        'name = "x"\n[world]\ndataset = "ml-99"\n',
        "Invalid enum value 'ml-99' - at `$.world.dataset`",
    ),
    "missing_required_name": (
        "seed = 1\n",
        "Object missing required field `name`",
    ),
    "zero_turns": (
        'name = "x"\n[simulation]\nturns = 0\n',
        "Expected an integer >= 1, got 0 - at `$.simulation.turns`",
    ),
    "zero_sessions": (
        'name = "x"\n[simulation]\nsessions = 0\n',
        "Expected an integer >= 1, got 0 - at `$.simulation.sessions`",
    ),
    "negative_population": (
        'name = "x"\n[population]\nsize = -1\n',
        "Expected an integer >= 0, got -1 - at `$.population.size`",
    ),
    "embedding_dim_below_two": (
        'name = "x"\n[world]\nembedding_dim = 1\n',
        "Expected an integer >= 2, got 1 - at `$.world.embedding_dim`",
    ),
    "reversed_age_range": (
        'name = "x"\n[population.target]\nage = [40, 30]\n',
        "Expected [low, high] with low <= high, got [40, 30] - at `$.population.target.age`",
    ),
    "position_at_slate_size": (
        'name = "x"\n[simulation]\nslate_size = 5\n'
        + CREATOR
        + (
            '[[arms]]\nname = "control"\n'
            '[[arms]]\nname = "inject"\ntreatment = "inject"\nposition = 5\n'
        ),
        "Expected 0 <= position < slate_size (5), got 5 - at `$.arms[1].position`",
    ),
    "rate_above_one": (
        'name = "x"\n[[arms]]\nname = "control"\nrate = 1.5\n',
        "Expected a probability in [0, 1], got 1.5 - at `$.arms[0].rate`",
    ),
    # The first of the two equal names is the one reported.
    "duplicate_arm_names": (
        'name = "x"\n[[arms]]\nname = "a"\n[[arms]]\nname = "a"\n',
        "Expected unique arm names, got 'a' - at `$.arms[0].name`",
    ),
    "arm_name_with_a_slash": (
        'name = "x"\n[[arms]]\nname = "a/b"\n',
        "Expected an arm name of letters, digits, '_', '.' or '-' (1 to 100 bytes, not starting "
        "with '.', not only digits), got 'a/b' (contains '/') - at `$.arms[0].name`",
    ),
    "no_arms": (
        'name = "x"\narms = []\n',
        "Expected at least one arm (the first is the control), got [] - at `$.arms`",
    ),
    "treatment_without_creator": (
        'name = "x"\n[[arms]]\nname = "control"\n[[arms]]\nname = "b"\ntreatment = "boost"\n',
        "Expected a [creator] with items for a creator treatment, got 'boost' "
        "- at `$.arms[1].treatment`",
    ),
    "treatment_with_a_creator_without_items": (
        'name = "x"\n[creator]\nid = "c"\n'
        '[[arms]]\nname = "control"\n[[arms]]\nname = "i"\ntreatment = "inject"\n',
        "Expected a [creator] with items for a creator treatment, got 'inject' "
        "- at `$.arms[1].treatment`",
    ),
    "placebo_of_the_control": (
        'name = "x"\n'
        + CREATOR
        + '[[arms]]\nname = "control"\n[[arms]]\nname = "p"\ntreatment = "boost"\n'
        + 'placebo_of = "control"\n',
        "Expected the name of a treatment arm (inject or boost, not a placebo): arm 'control' "
        "has treatment 'none', got 'control' - at `$.arms[1].placebo_of`",
    ),
    "placebo_with_other_settings_than_its_treatment": (
        'name = "x"\n'
        + CREATOR
        + '[[arms]]\nname = "b"\ntreatment = "boost"\nboost = 2.0\n'
        + '[[arms]]\nname = "p"\ntreatment = "boost"\nplacebo_of = "b"\n',
        "Expected the boost of arm 'b' (2.0), of which this arm is the placebo, got 1.0 "
        "- at `$.arms[1].boost`",
    ),
    "candidates_below_slate_size_times_turns": (
        'name = "x"\n[simulation]\nturns = 5\nslate_size = 10\n[recommender]\ncandidates = 49\n',
        "Expected at least slate_size x turns (50), got 49 - at `$.recommender.candidates`",
    ),
}


@pytest.mark.parametrize("text, message", DECODE_ERRORS.values(), ids=DECODE_ERRORS.keys())
def test_invalid_study_error_names_the_file_and_the_path(
    tmp_path: Path, text: str, message: str
) -> None:
    path = write(tmp_path, text)
    assert load_error(tmp_path, text) == f"{path}: {message}"


def test_decode_study_names_the_given_source() -> None:
    with pytest.raises(ConfigError) as e:
        decode_study('name = "x"\n[simulation]\nturn = 3\n', source="inline.toml")
    assert str(e.value) == "inline.toml: Object contains unknown field `turn` - at `$.simulation`"


def test_config_error_is_a_recoworld_error() -> None:
    # The CLI turns RecoWorldError into a one-line message; ConfigError must be one.
    assert issubclass(ConfigError, RecoWorldError)


def test_missing_study_file_names_it(tmp_path: Path) -> None:
    path = tmp_path / "nope.toml"
    with pytest.raises(ConfigError) as e:
        load_study(path)
    assert str(e.value) == f"{path}: cannot read the study file: No such file or directory"


def test_bad_toml_names_the_file_and_the_line(tmp_path: Path) -> None:
    message = load_error(tmp_path, 'name = "x\n')
    assert message.startswith(f"{tmp_path / 'study.toml'}: ")
    assert message.endswith("Illegal character '\\n' (at line 1, column 10)")


def test_bad_toml_says_it_is_not_valid_toml(tmp_path: Path) -> None:
    path = write(tmp_path, 'name = "x\n')
    assert (
        load_error(tmp_path, 'name = "x\n')
        == f"{path}: not valid TOML: Illegal character '\\n' (at line 1, column 10)"
    )


def test_arm_recommender_candidates_below_slate_size_times_turns(tmp_path: Path) -> None:
    text = (
        'name = "x"\n[simulation]\nturns = 5\nslate_size = 10\n'
        '[[arms]]\nname = "control"\n[[arms]]\nname = "b"\n[arms.recommender]\ncandidates = 5\n'
    )
    path = write(tmp_path, text)
    assert load_error(tmp_path, text) == (
        f"{path}: Expected at least slate_size x turns (50), got 5 "
        "- at `$.arms[1].recommender.candidates`"
    )


def test_zero_row_group_rows(tmp_path: Path) -> None:
    text = 'name = "x"\n[output]\nrow_group_rows = 0\n'
    path = write(tmp_path, text)
    assert (
        load_error(tmp_path, text)
        == f"{path}: Expected an integer >= 1, got 0 - at `$.output.row_group_rows`"
    )


def test_non_finite_float(tmp_path: Path) -> None:
    text = 'name = "x"\n[brain]\nleave_bias = inf\n'
    path = write(tmp_path, text)
    assert (
        load_error(tmp_path, text)
        == f"{path}: Expected a finite number, got inf - at `$.brain.leave_bias`"
    )


def test_decode_study_json_errors_name_the_source_and_path() -> None:
    data = json.dumps({"name": "x", "simulation": {"turns": "5"}}).encode()
    with pytest.raises(ConfigError) as e:
        decode_study_json(data, source="runs/r/study.json")
    assert str(e.value) == "runs/r/study.json: Expected `int`, got `str` - at `$.simulation.turns`"


# --- round trips ------------------------------------------------------------------------------


def toml_string(s: str) -> str:
    out = []
    for ch in s:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def toml_value(v: Any) -> str:
    """An inline TOML value (tables inline, on one line); None never reaches here."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return toml_string(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return (
            "{"
            + ", ".join(
                f"{toml_string(k)} = {toml_value(x)}" for k, x in v.items() if x is not None
            )
            + "}"
        )
    raise TypeError(type(v))


def to_toml(cfg: StudyConfig) -> str:
    """A study as TOML; None fields are left out (every optional field defaults to None)."""
    data = msgspec.to_builtins(cfg)
    return "".join(
        f"{toml_string(k)} = {toml_value(v)}\n" for k, v in data.items() if v is not None
    )


INT = st.integers(0, 10**6)
FLOAT = st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False)
# Printable text: control characters are refused at decode time (tested on their own).
TEXT = st.text(st.characters(categories=["L", "N", "P", "S", "Zs"]), max_size=6)
BRAIN_PROBABILITIES = [p.split(".")[1] for p in PROBABILITIES]
BRAIN_NON_NEGATIVE = [p.split(".")[1] for p in NON_NEGATIVE if p.startswith("brain.")]

OVERRIDES: dict[tuple[type, str], st.SearchStrategy] = {
    (SimulationConfig, "sessions"): st.integers(1, 5),
    (SimulationConfig, "turns"): st.integers(1, 8),
    (SimulationConfig, "slate_size"): st.integers(1, 12),
    (RecommenderConfig, "candidates"): st.integers(96, 2000),
    # bring-your-own kinds need their fields (a target, a file, a service): keep the draws to
    # the built-in kinds, whose other fields may take any value
    (RecommenderConfig, "kind"): st.sampled_from(["random", "popular", "mf", "agentic"]),
    (RecommenderConfig, "max_fallback_rate"): st.floats(0.0, 1.0),
    (BrainConfig, "satiation_days"): st.floats(0.01, 1e3),
    # an export's pinned digest: empty, or 64 lower-case hex digits
    (RecommenderConfig, "sha256"): st.just("") | st.from_regex(r"[0-9a-f]{64}", fullmatch=True),
    (WorldConfig, "embedding_dim"): st.integers(2, 64),
    (ArmConfig, "name"): st.from_regex(r"[a-z][a-z0-9_.-]{0,5}", fullmatch=True),
    (ArmConfig, "position"): st.integers(0, 3),
    (ArmConfig, "rate"): st.floats(0.0, 1.0),
    # A placebo names another arm and repeats its settings: drawn as "" or a name arms may have
    # (valid where that arm is a matching treatment arm).
    (ArmConfig, "placebo_of"): st.sampled_from(["", "a", "b"]),
    **{(BrainConfig, name): st.floats(0.0, 1.0) for name in BRAIN_PROBABILITIES},
    **{(BrainConfig, name): st.floats(0.0, 1e6) for name in BRAIN_NON_NEGATIVE},
    (BrainConfig, "negatives_per_positive"): st.integers(0, 20),
    (PopulationConfig, "jitter"): st.floats(0.0, 1.0),
    (Targeting, "age"): st.none() | st.tuples(st.integers(0, 60), st.integers(60, 120)),
    (CreatorConfig, "id"): st.from_regex(r"[a-z][a-z0-9]{0,5}", fullmatch=True),
    (CreatorItem, "item_id"): st.just(""),
    (CreatorConfig, "existing_items"): st.lists(
        st.from_regex(r"[a-z0-9]{1,6}", fullmatch=True), max_size=3
    ),
    # Creator treatments need a creator with items: make that the common case.
    (StudyConfig, "creator"): st.deferred(lambda: for_struct(CreatorConfig)),
    (CreatorConfig, "items"): st.deferred(
        lambda: st.lists(for_struct(CreatorItem), min_size=1, max_size=2)
    ),
}


def for_type(t: mi.Type) -> st.SearchStrategy:
    """A strategy for one msgspec type, generic so that new config fields are covered too."""
    match t:
        case mi.BoolType():
            return st.booleans()
        case mi.IntType():
            return INT
        case mi.FloatType():
            return FLOAT
        case mi.StrType():
            return TEXT
        case mi.LiteralType(values=values):
            return st.sampled_from(values)
        case mi.NoneType():
            return st.none()
        case mi.ListType(item_type=item):
            return st.lists(for_type(item), max_size=3)
        case mi.TupleType(item_types=items):
            return st.tuples(*(for_type(i) for i in items))
        case mi.DictType(key_type=k, value_type=v):
            return st.dictionaries(for_type(k), for_type(v), max_size=2)
        case mi.UnionType(types=types):
            return st.one_of(*(for_type(u) for u in types))
        case mi.StructType(cls=cls):
            return for_struct(cls)
        case mi.AnyType():  # free-form values (plug-in options): any TOML value (no null)
            return st.one_of(st.booleans(), INT, FLOAT, TEXT, st.lists(INT, max_size=3))
    raise TypeError(f"no strategy for {t!r}")


def for_struct(cls: type) -> st.SearchStrategy:
    """Each field: its default half the time (so most draws are valid), else any value."""
    info = mi.type_info(cls)
    assert isinstance(info, mi.StructType)
    kwargs: dict[str, st.SearchStrategy] = {}
    for f in info.fields:
        value = OVERRIDES[(cls, f.name)] if (cls, f.name) in OVERRIDES else for_type(f.type)
        if f.name == "arms" and cls is StudyConfig:
            value = st.lists(
                for_struct(ArmConfig), min_size=1, max_size=3, unique_by=lambda a: a.name
            )
        kwargs[f.name] = (
            value if f.required else st.one_of(st.builds(default_of, st.just(f)), value)
        )
    return st.builds(cls, **kwargs)


def default_of(f: mi.Field) -> Any:
    return f.default if f.default is not msgspec.NODEFAULT else f.default_factory()


def decodes(cfg: StudyConfig) -> bool:
    try:
        decode_study(to_toml(cfg), source="generated.toml")
    except ConfigError:
        return False
    return True


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.filter_too_much, HealthCheck.too_slow],
)
@given(for_struct(StudyConfig))
def test_any_valid_study_round_trips_through_toml_and_study_json(cfg: StudyConfig) -> None:
    assume(decodes(cfg))
    event(
        "a creator treatment"
        if any(a.treatment != "none" for a in cfg.arms)
        else "no creator treatment"
    )
    assert decode_study(to_toml(cfg), source="generated.toml") == cfg
    assert decode_study_json(encode_study(cfg), source="study.json") == cfg


@pytest.mark.parametrize("path", STUDIES, ids=[p.name for p in STUDIES])
def test_every_shipped_study_decodes_and_round_trips(path: Path) -> None:
    cfg = load_study(path)
    assert cfg.arms[0].name == "control"
    assert decode_study_json(encode_study(cfg), source=str(path)) == cfg


def test_defaults_are_a_valid_study() -> None:
    assert decode_study('name = "x"\n') == StudyConfig(name="x")


# --- the shared strict decoder ----------------------------------------------------------------


class Tiny(Strict):
    n: int = 0


@pytest.mark.parametrize(
    ("data", "fmt", "message"),
    [
        (b"m = 1\n", "toml", "t.toml: Object contains unknown field `m`"),
        (b'n = "1"\n', "toml", "t.toml: Expected `int`, got `str` - at `$.n`"),
        (b"n = \n", "toml", "t.toml: not valid TOML: "),
        (b'{"m": 1}', "json", "t.json: Object contains unknown field `m`"),
        (b"{", "json", "t.json: not valid JSON: "),
        (b'{"n": -1}', "json", "t.json: Expected n >= 0, got -1 - at `$.n`"),
    ],
)
def test_decode_strict_errors_are_one_line_naming_source_and_path(data, fmt, message) -> None:
    def check(t: Tiny) -> None:
        if t.n < 0:
            raise ConfigError(f"Expected n >= 0, got {t.n} - at `$.n`")

    source = f"t.{fmt}"
    with pytest.raises(ConfigError) as e:
        decode_strict(data, Tiny, source=source, fmt=fmt, check=check)
    assert str(e.value).startswith(message) and "\n" not in str(e.value)
    if not message.endswith(": "):
        assert str(e.value) == message


def test_decode_strict_returns_the_struct() -> None:
    assert decode_strict("n = 3\n", Tiny, source="t.toml") == Tiny(n=3)
    assert decode_strict(b'{"n": 3}', Tiny, source="t.json", fmt="json") == Tiny(n=3)


# --- which parts of a study decide its results ----------------------------------------------


def test_results_identity_ignores_ray_and_output_only() -> None:
    cfg = StudyConfig(name="x")
    same = msgspec.structs.replace(
        cfg, ray=RayConfig(shards=4), output=OutputConfig(dir="elsewhere", row_group_rows=10)
    )
    other = msgspec.structs.replace(cfg, seed=1)
    assert len(results_identity(cfg)) == 64 and int(results_identity(cfg), 16) >= 0
    assert results_identity(same) == results_identity(cfg)
    assert results_difference(cfg, same) is None
    assert results_identity(other) != results_identity(cfg)
    assert results_difference(cfg, other) == "`$.seed` was 0, now 1"


def test_results_difference_names_the_first_nested_field() -> None:
    cfg = StudyConfig(name="x")
    new = msgspec.structs.replace(cfg, recommender=RecommenderConfig(candidates=120))
    assert results_difference(cfg, new) == "`$.recommender.candidates` was 100, now 120"


@settings(
    max_examples=50,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
@given(for_struct(StudyConfig))
def test_results_identity_survives_study_json(cfg: StudyConfig) -> None:
    assume(decodes(cfg))
    back = decode_study_json(encode_study(cfg), source="study.json")
    assert results_identity(back) == results_identity(cfg)
