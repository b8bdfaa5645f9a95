"""HTTP lookups for page renderers: ``GET /v1/users/{user_id}/recommendations?k=``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import FastAPI, Path, Query

from stream.lookups import MAX_K, RecoClient
from stream.settings import Settings


def create_lookup_app(settings: Settings) -> FastAPI:
    state: dict[str, RecoClient] = {}

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        state["client"] = RecoClient.from_settings(settings)
        yield
        await state.pop("client").close()

    app = FastAPI(title="profilestream lookups", version="1", lifespan=lifespan)

    @app.get("/v1/users/{user_id}/recommendations")
    async def recommendations(
        user_id: Annotated[str, Path(min_length=1, max_length=128)],
        k: Annotated[int, Query(ge=1, le=MAX_K)] = settings.top_k,
    ) -> dict[str, Any]:
        """The user's top-k with reasons; `source` is "popular" when the user has no profile."""
        result = await state["client"].get(user_id, k)
        return result.to_dict()

    @app.get("/healthz")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    return app
