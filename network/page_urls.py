"""Pages of network/ (mounted at the site root)."""

urlpatterns: list = []
