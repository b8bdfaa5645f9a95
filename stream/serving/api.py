"""HTTP lookups for page renderers: ``GET /v1/users/{user_id}/recommendations?k=`` and
``GET /v1/search?q=&user_id=&k=``.

A user id is any id the event schema accepts, ``/``, ``?``, ``#``, ``+``, ``=`` and ``..``
included: percent-encode it in the path (``/v1/users/shop-eu%2F4711/recommendations``; the route
takes the rest of the path up to ``/recommendations``), or, behind a proxy that rewrites encoded
slashes, use the query form ``GET /v1/recommendations?user_id=...``. An id no event can carry
(``stream.core.events.valid_id``: blank, whitespace or an invisible character at an edge, a
control character such as a line break anywhere, a bidi control, over 128 characters) is a 422
naming user_id and the rule; an id is read as events store it (Unicode NFC).

A recommendation's ``score`` is a ranking score, not a probability: the cosine of the user and
item vectors plus the popularity prior and, when a trained sequence tower serves, the
co-occurrence term (`stream.core.records.Recommendation`), rounded to 6 decimals; it orders one
user's list and can exceed 1. For the popular fallback (``source`` ``"popular"``) it is the item's
recent count relative to the most popular item's (the first is 1).

When Redis refuses, fails or does not answer within `lookup_redis_budget_ms`, recommendations
answer 503 with ``Retry-After`` and ``{"detail": "<the cause>"}`` (never a 500), and search
answers 200 ranked by the query alone (``personalised`` false, ``why`` names the cause). A stored
entry that cannot be read (corrupt, another format, a key of another Redis type) is no outage: it
is logged, counted (``profilestream_lookups_unreadable_entries_total``) and ignored, so
recommendations answer the popular fallback with ``why`` naming the cause.

Search needs the encoder and the item index; they load at start-up. When they are missing the
app still starts and serves recommendations (which need only Redis), and search answers 503
naming the settings to fix, so a page renderer without search is not held hostage by the model.
``GET /healthz`` is liveness, ``GET /readyz`` readiness (Redis answers), ``GET /metrics`` request
counts and latencies by route template (never by user id). ``GET /console`` is the live console
(`stream.serving.console`).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import FastAPI, HTTPException, Path, Query, Request
from fastapi.responses import JSONResponse
from pydantic import AfterValidator
from starlette.convertors import Convertor, register_url_convertor

from stream.core.errors import ModelError, ServiceUnavailable
from stream.core.events import MAX_QUERY_CHARS
from stream.core.logs import ThrottledWarning
from stream.core.settings import Settings
from stream.serving.console import install_console
from stream.serving.lookups import MAX_K, RecoClient, unreadable_entries_counter
from stream.serving.search import (
    DEFAULT_SEARCH_K,
    MAX_SEARCH_K,
    MAX_USER_ID_CHARS,
    check_user_id,
    clean_query,
)
from stream.serving.urls import require_utf8_url
from stream.web.limits import HttpEdges, OverLimit
from stream.web.metrics import HttpMetrics

log = logging.getLogger(__name__)

# Seconds a client waits before asking again after a 503: Redis restarts take seconds.
RETRY_AFTER_S = 5
_UNAVAILABLE = {
    "description": "Redis refused, failed or did not answer in time; `detail` names the cause.",
    "headers": {"Retry-After": {"schema": {"type": "string"}, "description": "Seconds."}},
}
# The schema's id rule (`stream.core.events.valid_id`): an id no event can carry is a 422 naming
# user_id, and an id is read in the spelling events store (NFC), not the spelling sent.
VALID_ID = AfterValidator(check_user_id)


class AnyPathConvertor(Convertor[str]):
    """Starlette's ``path`` convertor, with line breaks: its ``.*`` stops at ``\n``, so
    ``/v1/users/a%0Ab/recommendations`` matched no route (a bare 404) instead of reaching the id
    rule, which names user_id."""

    regex = "[\\s\\S]*"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


register_url_convertor("anypath", AnyPathConvertor())


def _over_limit_body(over: OverLimit) -> dict[str, Any]:
    return {"detail": over.reason}


def create_lookup_app(settings: Settings) -> FastAPI:
    state: dict[str, RecoClient] = {}
    search_unavailable: dict[str, str] = {}

    http_metrics = HttpMetrics("lookups")
    unreadable_entries = unreadable_entries_counter(http_metrics.registry)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        state["client"] = RecoClient.from_settings(settings)
        state["client"].unreadable_entries = unreadable_entries
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
    # Every request answers 503 while Redis is away: one line per interval, not per request.
    unavailable_warning = ThrottledWarning(log)
    http_metrics.install(app)
    install_console(app, settings, lambda: state["client"], http_metrics.registry)
    # Outermost: an over-long URL is refused before routing, validation or a Redis read.
    app.add_middleware(HttpEdges, render=_over_limit_body)

    @app.exception_handler(ServiceUnavailable)
    async def unavailable(_: Request, exc: Exception) -> JSONResponse:
        unavailable_warning.warning("answering 503: %s", exc)
        return JSONResponse(
            status_code=503, content={"detail": str(exc)}, headers={"Retry-After": str(RETRY_AFTER_S)}
        )

    # {user_id:anypath}: an id may hold "/" (percent-encoded by the client, decoded by the server).
    @app.get("/v1/users/{user_id:anypath}/recommendations", responses={503: _UNAVAILABLE})
    async def recommendations(
        request: Request,
        # No max_length here: the id rule counts characters once the id is in NFC, as events do.
        user_id: Annotated[str, Path(min_length=1), VALID_ID],
        k: Annotated[int, Query(ge=1, le=MAX_K)] = settings.top_k,
    ) -> dict[str, Any]:
        """The user's top-k with reasons; `source` is "popular" when the user has no profile.

        Each item's `score` orders the list and is not a probability. With `source` "profile" it
        is the ranking score: the cosine of the user and item vectors plus the popularity prior
        and, when a trained sequence tower serves, the co-occurrence term, rounded to 6 decimals;
        it can exceed 1 (and be negative). With `source` "popular" it is the item's recent count
        relative to the most popular item's, in (0, 1], the first item 1.
        """
        require_utf8_url(request)
        result = await state["client"].get(user_id, k)
        return result.to_dict()

    @app.get("/v1/recommendations", responses={503: _UNAVAILABLE})
    async def recommendations_by_query(
        request: Request,
        user_id: Annotated[str, Query(min_length=1), VALID_ID],
        k: Annotated[int, Query(ge=1, le=MAX_K)] = settings.top_k,
    ) -> dict[str, Any]:
        """The same as ``/v1/users/{user_id}/recommendations``, with the id in the query string.

        Each item's `score` orders the list and is not a probability: for `source` "profile" the
        ranking score (cosine + popularity prior + co-occurrence term, rounded to 6 decimals; it
        can exceed 1), for `source` "popular" the item's recent count relative to the top one's.
        """
        require_utf8_url(request)
        result = await state["client"].get(user_id, k)
        return result.to_dict()

    @app.get("/v1/search")
    async def search(
        request: Request,
        q: Annotated[
            str,
            # Over-long queries are cut by clean_query (the event schema's policy), not refused.
            Query(
                min_length=1,
                description=(
                    f"What the user typed; MAX_QUERY_CHARS = {MAX_QUERY_CHARS}: a longer query is trimmed "
                    f"and cut to its first {MAX_QUERY_CHARS} characters, as a tracked search event is."
                ),
            ),
            AfterValidator(clean_query),
        ],
        user_id: Annotated[
            str | None,
            Query(
                min_length=1,
                description=f"Leave out for anonymous visitors; at most {MAX_USER_ID_CHARS} characters.",
            ),
            VALID_ID,
        ] = None,
        k: Annotated[int, Query(ge=1, le=MAX_SEARCH_K)] = DEFAULT_SEARCH_K,
    ) -> dict[str, Any]:
        """Items for `q`, re-ranked by the user's live profile; `personalised` false (and `why`)
        for unknown, forgotten or anonymous users, who get the plain query ranking."""
        require_utf8_url(request, "the query and the user id")
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
