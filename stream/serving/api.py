"""HTTP lookups for page renderers: ``GET /v1/users/{user_id}/recommendations?k=`` and
``GET /v1/search?q=&user_id=&k=``.

Search needs the encoder and the item index; they load at start-up. When they are missing the
app still starts and serves recommendations (which need only Redis), and search answers 503
naming the settings to fix, so a page renderer without search is not held hostage by the model.
``GET /healthz`` is liveness, ``GET /readyz`` readiness (Redis answers), ``GET /metrics`` request
counts and latencies by route template (never by user id).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import FastAPI, HTTPException, Path, Query
from fastapi.responses import JSONResponse
from pydantic import AfterValidator

from stream.core.errors import ModelError
from stream.core.http_metrics import HttpMetrics
from stream.core.settings import Settings
from stream.serving.lookups import MAX_K, RecoClient
from stream.serving.search import (
    DEFAULT_SEARCH_K,
    MAX_QUERY_CHARS,
    MAX_SEARCH_K,
    MAX_USER_ID_CHARS,
    clean_query,
)

log = logging.getLogger(__name__)


def create_lookup_app(settings: Settings) -> FastAPI:
    state: dict[str, RecoClient] = {}
    search_unavailable: dict[str, str] = {}

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        state["client"] = RecoClient.from_settings(settings)
        try:
            await state["client"].open_search()
        except ModelError as exc:
            search_unavailable["detail"] = (
                f"search is unavailable: {exc}. Point PROFILESTREAM_MODEL_DIR at an exported encoder "
                "(`profilestream export`) and PROFILESTREAM_INDEX_DIR at its item index "
                "(`profilestream index CATALOG`), then restart `profilestream serve-lookups`"
            )
            log.warning("%s", search_unavailable["detail"])
        yield
        await state.pop("client").close()

    app = FastAPI(title="profilestream lookups", version="1", lifespan=lifespan)
    HttpMetrics("lookups").install(app)

    @app.get("/v1/users/{user_id}/recommendations")
    async def recommendations(
        user_id: Annotated[str, Path(min_length=1, max_length=128)],
        k: Annotated[int, Query(ge=1, le=MAX_K)] = settings.top_k,
    ) -> dict[str, Any]:
        """The user's top-k with reasons; `source` is "popular" when the user has no profile."""
        result = await state["client"].get(user_id, k)
        return result.to_dict()

    @app.get("/v1/search")
    async def search(
        q: Annotated[
            str,
            # The length limit applies after stripping, so clean_query checks it, not max_length.
            Query(min_length=1, description=f"What the user typed (at most {MAX_QUERY_CHARS} characters)."),
            AfterValidator(clean_query),
        ],
        user_id: Annotated[
            str | None,
            Query(
                min_length=1, max_length=MAX_USER_ID_CHARS, description="Leave out for anonymous visitors."
            ),
        ] = None,
        k: Annotated[int, Query(ge=1, le=MAX_SEARCH_K)] = DEFAULT_SEARCH_K,
    ) -> dict[str, Any]:
        """Items for `q`, re-ranked by the user's live profile; `personalised` false (and `why`)
        for unknown, forgotten or anonymous users, who get the plain query ranking."""
        if "detail" in search_unavailable:
            raise HTTPException(status_code=503, detail=search_unavailable["detail"])
        result = await state["client"].search(q, user_id, k)
        return result.to_dict()

    @app.get("/healthz")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", responses={503: {"description": "Redis does not answer."}})
    async def ready() -> JSONResponse:
        """Ready when Redis answers; search may be unavailable (no model) without failing this."""
        reason = await state["client"].unreachable()
        search = "unavailable" if "detail" in search_unavailable else "available"
        if reason is not None:
            return JSONResponse(status_code=503, content={"status": "not ready", "reason": reason})
        return JSONResponse(status_code=200, content={"status": "ready", "search": search})

    return app
