"""Pages of scheduler/ (mounted at the site root)."""

urlpatterns: list = []
