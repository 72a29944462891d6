"""The llm brain attaches item images to its slate prompts (``[llm] attach_images``): the
requests it builds on the scripted model (recoworld.testing.scripted_llm) with generated PNGs
(recoworld.testing.images), as the chat transports would send them. The CPU vLLM engine path is
in tests/llm/test_llm_images.py."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path

import msgspec
import polars as pl
import pytest

from recoworld.config import (
    ArmConfig,
    BrainConfig,
    CreatorConfig,
    CreatorItem,
    EngineConfig,
    ItemsConfig,
    LLMConfig,
    PopulationConfig,
    RecommenderConfig,
    SimulationConfig,
    StudyConfig,
    WorldConfig,
    decode_study,
)
from recoworld.errors import ConfigError, DataError
from recoworld.io.runs import scan_table
from recoworld.llm.openai_http import OpenAIHTTPModel
from recoworld.llm.types import LLMRequest, user_message
from recoworld.study.prepare import load_world_for
from recoworld.study.runner import RunResult, run_study
from recoworld.testing.images import png_bytes, row_of, with_images
from recoworld.testing.scripted_llm import ScriptedModel
from recoworld.users.prompts import images_line

CHAT = EngineConfig(chat_template=True)
BASE = StudyConfig(
    name="llm-images",
    seed=11,
    world=WorldConfig(dataset="synthetic", synthetic_users=60, synthetic_items=90, embedding_dim=4),
    population=PopulationConfig(size=6),
    simulation=SimulationConfig(sessions=1, turns=2, slate_size=5, replicates=1),
    brain=BrainConfig(kind="llm"),
    recommender=RecommenderConfig(kind="mf", candidates=15),
    creator=CreatorConfig(
        id="c", items=[CreatorItem(title="Poster", tags=["drama"], image="img/creator.png")]
    ),
    arms=[
        ArmConfig(name="control"),
        ArmConfig(name="inject", treatment="inject", position=0, rate=1.0),
    ],
    llm=LLMConfig(backend="openai", model="scripted", engine=CHAT, attach_images=True),
)


def with_(cfg: StudyConfig, **parts: object) -> StudyConfig:
    return msgspec.structs.replace(cfg, **parts)


def llm(**kw: object) -> LLMConfig:
    assert BASE.llm is not None
    return msgspec.structs.replace(BASE.llm, **kw)


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("images-world")


@pytest.fixture(scope="module")
def world(folder: Path):  # noqa: ANN201
    """Every second item has an image (a PNG whose colour encodes its row), but every sixth
    item's is not an image; the creator's item has one too (white)."""
    w = with_images(load_world_for(BASE.world, BASE.seed), folder, every=2, broken=BROKEN)
    (folder / "img" / "creator.png").write_bytes(png_bytes(rgb=(255, 255, 255)))
    return w


BROKEN = tuple(range(0, 90, 6))


def run(cfg: StudyConfig, world, out: Path, model: ScriptedModel) -> RunResult:  # noqa: ANN001
    return run_study(cfg, world, run_id="r", out_dir=out, model=model)


def slate_ids(prompt: str) -> list[str]:
    part = prompt.split("## The slate, in order", 1)[1]
    return re.findall(r"^\d+\. id <<([^<>]*)>>", part, flags=re.MULTILINE)


def shown_positions(prompt: str) -> list[int]:
    m = re.search(r"attached after this text shows? slate items? (\d+(?:, \d+)*)", prompt)
    return [int(p) - 1 for p in m.group(1).split(", ")] if m else []


def decoded(url: str) -> bytes:
    head, data = url.split(",", 1)
    assert head == "data:image/png;base64"
    return base64.b64decode(data)


def test_slate_requests_carry_the_first_readable_images_in_slate_order(
    world, tmp_path: Path
) -> None:
    model = ScriptedModel()
    r = run(with_(BASE, llm=llm(max_images=2)), world, tmp_path, model)
    ids = world.items["item_id"].to_list()
    row = {i: k for k, i in enumerate(ids)}
    slates = [q for q in model.requests if q.purpose == "slate"]
    assert slates and all(not q.images for q in model.requests if q.purpose == "summary")
    attached = 0
    broken_met: list[list[str]] = []
    for q in slates:
        shown = slate_ids(q.prompt)
        positions = shown_positions(q.prompt)
        assert len(q.images) == len(positions) <= 2
        # expected: the slate's first items with a readable image (even rows but the broken
        # ones; the creator's), at most two
        readable = [
            j
            for j, i in enumerate(shown)
            if i == "c:0" or (row[i] % 2 == 0 and row[i] not in BROKEN)
        ]
        assert positions == readable[:2]
        # a broken image met before two readable ones fell back
        last = readable[1] if len(readable) > 1 else len(shown)
        met = [i for i in shown[:last] if i != "c:0" and row[i] in BROKEN]
        broken_met.append(met)
        for j, url in zip(positions, q.images):
            got = decoded(url)
            if shown[j] == "c:0":
                assert got == png_bytes(rgb=(255, 255, 255))
            else:
                assert row_of(got) == row[shown[j]]  # the image is this item's
        attached += len(q.images)
        # as the chat transports send it: the text, then one image_url part per image
        msg = user_message(q)
        if q.images:
            assert msg["content"][0] == {"type": "text", "text": q.prompt}  # type: ignore[index]
            assert [p["image_url"]["url"] for p in msg["content"][1:]] == list(q.images)  # type: ignore[index]
    assert attached > len(slates)  # most slates show two
    creator_shown = [q for q in slates if "c:0" in slate_ids(q.prompt)[:1]]
    assert creator_shown and all(shown_positions(q.prompt)[0] == 0 for q in creator_shown)
    # the broken images met fell back: one llm_calls row per prompt, naming items and files
    calls = scan_table(r.path, "llm_calls").collect()
    notes = calls.filter(pl.col("parse_status").cast(pl.String) == "image_fallback")
    img = Path(world.source) / "img"

    def problem(i: str) -> str:
        path = str(img / f"{row[i]}.png")
        return (
            f"item {i!r}: column 'image' ('img/{row[i]}.png'): {path!r} is not a PNG, JPEG, "
            "GIF or WebP image"
        )

    expected = sorted("; ".join(problem(i) for i in met) for met in broken_met if met)
    assert len(expected) > 0 and sorted(notes["error"]) == expected
    manifest = json.loads((r.path / "manifest.json").read_text())
    assert manifest["llm"]["calls"] == model.calls  # the notes are no calls
    assert manifest["llm"]["by_status"].get("image_fallback", 0) == notes.height


def test_repairs_carry_the_images_of_the_question(world, tmp_path: Path) -> None:
    model = ScriptedModel(invalid_every=3)
    run(with_(BASE, arms=[ArmConfig(name="control")]), world, tmp_path, model)
    by_key = {(q.user, q.key.session, q.key.turn, q.purpose): q for q in model.requests}
    repairs = [q for q in model.requests if q.purpose == "repair-slate"]
    assert repairs
    for q in repairs:
        first = by_key[(q.user, q.key.session, q.key.turn, "slate")]
        assert q.images == first.images and q.prompt.startswith(first.prompt)


def test_without_attach_images_nothing_changes(world, tmp_path: Path) -> None:
    on, off = ScriptedModel(), ScriptedModel()
    run(with_(BASE, llm=llm(max_images=1)), world, tmp_path / "on", on)
    run(with_(BASE, llm=llm(attach_images=False)), world, tmp_path / "off", off)
    assert all(not q.images for q in off.requests)
    assert not any("attached after this text" in q.prompt for q in off.requests)
    # the same decisions, so the same requests: the prompts differ by the images line only
    assert [q.id for q in on.requests] == [q.id for q in off.requests]
    for a, b in zip(on.requests, off.requests):
        line = images_line(shown_positions(a.prompt))
        assert a.prompt.replace(line, "") == b.prompt
        assert len(a.images) == (1 if line else 0)


def test_an_unreadable_image_stops_the_run_when_configured(tmp_path: Path) -> None:
    world = with_images(load_world_for(BASE.world, BASE.seed), tmp_path / "w", every=2)
    creator = CreatorConfig(
        id="c", items=[CreatorItem(title="Poster", tags=["drama"], image="img/missing.png")]
    )
    cfg = with_(BASE, creator=creator, items=ItemsConfig(on_bad_image="error"))
    with pytest.raises(DataError) as e:  # the creator's item leads every slate of "inject"
        run(cfg, world, tmp_path, ScriptedModel())
    msg = str(e.value)
    missing = Path(world.source) / "img" / "missing.png"
    assert msg == (
        f"item 'c:0': column 'image' ('img/missing.png'): no file {str(missing)!r}; "
        "expected a readable PNG, JPEG, GIF or WebP image (or [items] on_bad_image = "
        '"fallback")'
    )


def test_the_openai_chat_transport_sends_the_images_and_the_completion_one_refuses() -> None:
    url = "data:image/png;base64," + base64.b64encode(png_bytes()).decode()
    req = LLMRequest(id="r", prompt="Slate ...", seed=1, images=(url,))
    chat = OpenAIHTTPModel(model="m", base_url="http://127.0.0.1:9/v1", chat=True)
    path, body = chat._body(req)
    assert path == "/chat/completions"
    assert body["messages"][0]["content"][1] == {"type": "image_url", "image_url": {"url": url}}
    plain = OpenAIHTTPModel(model="m", base_url="http://127.0.0.1:9/v1", chat=False)
    with pytest.raises(ValueError, match=r"images need the chat endpoint"):
        plain._body(req)


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        (
            '[llm]\nbackend = "openai"\nattach_images = true\n',
            "Expected true: attach_images sends images as parts of a chat message, got False "
            "- at `$.llm.engine.chat_template`",
        ),
        (
            '[llm]\nbackend = "openai"\nattach_images = true\nmax_images = 0\n'
            "[llm.engine]\nchat_template = true\n",
            "Expected an integer >= 1, got 0 - at `$.llm.max_images`",
        ),
    ],
)
def test_image_settings_are_checked(toml: str, message: str) -> None:
    with pytest.raises(ConfigError) as e:
        decode_study(f'name = "x"\n{toml}', source="s.toml")
    assert str(e.value) == f"s.toml: {message}"


def test_a_replay_needs_no_chat_template_for_images() -> None:
    cfg = decode_study(
        'name = "x"\n[llm]\nbackend = "replay"\nreplay_from = "runs/a"\nattach_images = true\n',
        source="s.toml",
    )
    assert cfg.llm is not None and cfg.llm.attach_images and cfg.llm.max_images == 4
