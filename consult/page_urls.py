"""Pages of consult/ (mounted at the site root). The API lives in consult/urls.py."""

from django.urls import path

from consult import views

urlpatterns = [
    path("conversations/", views.conversation_list, name="conversations"),
    path("conversations/<int:thread_id>/", views.conversation_page, name="conversation"),
    path("visits/summaries/", views.visit_summaries, name="visit-summaries"),
    path("visits/clinicians/", views.visit_clinician_search, name="visit-clinician-search"),
]
