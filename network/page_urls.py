"""Pages of network/ (mounted at the site root)."""

from django.urls import path

from network import views

urlpatterns = [
    path("network/", views.my_network, name="network"),
    path("network/coverage/", views.coverage, name="network-coverage"),
]
