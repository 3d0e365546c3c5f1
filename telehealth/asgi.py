"""ASGI entry point: HTTP through Django, websockets through Channels.

Django is set up first (get_asgi_application) so that consumers can import models.
"""

import gc
import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "telehealth.settings")
django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402

from telehealth.routing import websocket_urlpatterns  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": AllowedHostsOriginValidator(
            AuthMiddlewareStack(URLRouter(websocket_urlpatterns))
        ),
    }
)


def _tune_garbage_collection() -> None:
    """Keep full garbage collections from stopping the event loop.

    A generation-2 collection walks every tracked object: Django's and the app's,
    loaded once, and each socket's. With 1,000 sockets each one stopped the loop
    for 60-300 ms every few seconds, and those pauses were the chat's p99
    (bench/chat_bench.py: 201 ms at 300 messages/s; 10.5 ms with this). Objects
    that exist once start-up is done move to the permanent generation and are
    never walked again, and generation 0 is collected after 50,000 allocations
    instead of 700, so fewer short-lived objects are promoted to be walked later.
    """
    from django.conf import settings

    if settings.TELEHEALTH_GC_TUNING:
        gc.collect()
        gc.freeze()
        gc.set_threshold(50_000, 20, 100)


_tune_garbage_collection()
