"""Python plug-ins: ``[recommender] kind = "python"``, ``target = "package.module:Factory"``.

The factory (a class or any callable) is called with the study's ``options`` as keyword
arguments and returns an object with the :class:`~recoworld.recommenders.base.Recommender`
methods. A plug-in that defines only the synchronous ``recommend`` gets ``recommend_async``
from it; one that defines only ``recommend_async`` gets a ``recommend`` that runs it to
completion. Each failure to load is one line naming the target and what was expected.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from recoworld.errors import RecommenderError
from recoworld.recommenders.base import Audience, Recommender
from recoworld.records import SlateFeedback

REQUIRED = ("bind", "observe", "instruct")

SHIP_HINT = (
    "on a cluster, ship the plug-in with the job (ray job submit --working-dir . or "
    "--runtime-env-json '{\"py_modules\": [...]}'; docs/recommenders.md)"
)


def load_plugin(target: str, options: dict[str, object], where: str) -> Recommender:
    """The recommender ``target`` makes from ``options``; ``where`` is the config path (errors)."""
    module_name, _, attr = target.partition(":")
    try:
        obj: object = _import(module_name)
    except ImportError as e:
        raise RecommenderError(
            f"{where}.target = {target!r}: cannot import module {module_name!r} "
            f"({type(e).__name__}: {e}); expected an importable module — {SHIP_HINT}"
        ) from None
    except Exception as e:  # the module's own code failed while importing
        raise RecommenderError(
            f"{where}.target = {target!r}: importing {module_name!r} raised "
            f"{type(e).__name__}: {' '.join(str(e).split())[:300]}"
        ) from None
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise RecommenderError(
                f"{where}.target = {target!r}: module {module_name!r} has no {attr!r}"
            ) from None
    if not callable(obj):
        raise RecommenderError(
            f"{where}.target = {target!r}: expected a class or factory function, got "
            f"{type(obj).__name__}"
        )
    try:
        rec = obj(**options)
    except TypeError as e:
        raise RecommenderError(
            f"{where}.options: the factory {target!r} refused them ({e}); got {sorted(options)!r}"
        ) from None
    except Exception as e:
        raise RecommenderError(
            f"{where}.target = {target!r}: the factory raised {type(e).__name__}: "
            f"{' '.join(str(e).split())[:300]}"
        ) from None
    missing = [m for m in REQUIRED if not callable(getattr(rec, m, None))]
    has_sync = callable(getattr(rec, "recommend", None))
    has_async = inspect.iscoroutinefunction(getattr(rec, "recommend_async", None))
    if missing or not (has_sync or has_async):
        missing += [] if has_sync or has_async else ["recommend (or async recommend_async)"]
        raise RecommenderError(
            f"{where}.target = {target!r}: the object it made ({type(rec).__name__}) lacks "
            f"{', '.join(missing)}; expected the recommender protocol (docs/recommenders.md)"
        )
    if has_sync and has_async:
        return rec  # type: ignore[return-value]
    return _Completed(rec, has_sync)


def _import(module_name: str) -> object:
    """``module_name``, looked for on ``sys.path`` and then in the working directory, as
    ``python -m`` would (the ``recoworld`` command's own path does not hold it): a plug-in in
    the project the study is run from imports as it does in the project's tests."""
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        cwd = os.getcwd()
        top = module_name.split(".")[0]
        if e.name != top or cwd in sys.path or "" in sys.path:
            raise
        if not (Path(cwd) / top).is_dir() and not (Path(cwd) / f"{top}.py").is_file():
            raise
        sys.path.append(cwd)  # last: never shadows an installed package
        return importlib.import_module(module_name)


class _Completed:
    """Gives a plug-in the side of ``recommend`` it does not define."""

    def __init__(self, inner: object, has_sync: bool) -> None:
        self.inner, self.has_sync = inner, has_sync

    def bind(self, audience: Audience) -> None:
        self.inner.bind(audience)  # type: ignore[attr-defined]

    def recommend(self, idx: np.ndarray, session: int, turn: int, k: int) -> np.ndarray:
        if self.has_sync:
            return self.inner.recommend(idx, session, turn, k)  # type: ignore[attr-defined]
        return asyncio.run(self.inner.recommend_async(idx, session, turn, k))  # type: ignore[attr-defined]

    async def recommend_async(self, idx: np.ndarray, session: int, turn: int, k: int) -> np.ndarray:
        if self.has_sync:
            return self.inner.recommend(idx, session, turn, k)  # type: ignore[attr-defined]
        return await self.inner.recommend_async(idx, session, turn, k)  # type: ignore[attr-defined]

    def observe(self, idx: np.ndarray, slates: np.ndarray, feedback: SlateFeedback) -> None:
        self.inner.observe(idx, slates, feedback)  # type: ignore[attr-defined]

    def instruct(
        self, idx: np.ndarray, more_of: np.ndarray, less_of: np.ndarray, texts: Sequence[str]
    ) -> None:
        self.inner.instruct(idx, more_of, less_of, texts)  # type: ignore[attr-defined]
