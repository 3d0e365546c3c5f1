"""All websocket routes: one socket per signed-in client (docs/protocol.md)."""

from django.urls import path

from consult.consumers import RealtimeConsumer

websocket_urlpatterns = [path("ws/", RealtimeConsumer.as_asgi())]
