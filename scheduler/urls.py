"""REST endpoints of scheduler/ (mounted under /api/v1/)."""

urlpatterns: list = []
