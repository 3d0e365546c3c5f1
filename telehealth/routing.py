"""All websocket routes. One socket per signed-in client; the apps add their frame handlers."""

websocket_urlpatterns: list = []
