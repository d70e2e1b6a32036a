"""The ASGI entry, served by uvicorn beside gunicorn (bin/run, compose's `terminal`): the
terminal's WebSocket at /ws/terminal/, and Django for anything else that reaches it.

A small ASGI app rather than Channels: one socket route needs no channel layer, no groups
and no second routing system, and every other request stays on the WSGI server."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "hostpanel.settings")

django_application = get_asgi_application()

from hosting.terminal_socket import terminal  # noqa: E402 (after Django is set up)

TERMINAL_PATH = "/ws/terminal/"


async def application(scope, receive, send):
    if scope["type"] == "websocket":
        if scope["path"] == TERMINAL_PATH:
            return await terminal(scope, receive, send)
        await receive()
        return await send({"type": "websocket.close", "code": 4404})
    return await django_application(scope, receive, send)
