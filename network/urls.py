"""REST endpoints of network/ (mounted under /api/v1/)."""

urlpatterns: list = []
