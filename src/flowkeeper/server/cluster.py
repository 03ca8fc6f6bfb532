"""The store's identity on every response: the Flowkeeper-Cluster-Id header."""

from __future__ import annotations

from aiohttp import web

from flowkeeper.model import CLUSTER_HEADER
from flowkeeper.store.base import Store


def add_cluster_header(app: web.Application, store: Store) -> None:
    """Every response (errors and watch streams too) names the store it comes from, so an
    agent can tell another store's history from the one it follows."""
    cluster_id = store.cluster_id()  # made with the store, never changes

    async def header(_request: web.Request, response: web.StreamResponse) -> None:
        response.headers[CLUSTER_HEADER] = cluster_id

    app.on_response_prepare.append(header)
