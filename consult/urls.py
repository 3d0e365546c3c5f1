from django.urls import path

from consult import api

urlpatterns = [
    path("threads/", api.ThreadListView.as_view(), name="api-thread-list"),
    path("threads/<int:thread_id>/", api.ThreadDetailView.as_view(), name="api-thread-detail"),
    path(
        "threads/<int:thread_id>/participants/",
        api.ParticipantsView.as_view(),
        name="api-thread-participants",
    ),
    path(
        "threads/<int:thread_id>/participants/<int:user_id>/",
        api.ParticipantDetailView.as_view(),
        name="api-thread-participant",
    ),
    path(
        "threads/<int:thread_id>/messages/", api.MessagesView.as_view(), name="api-thread-messages"
    ),
    path("threads/<int:thread_id>/search/", api.SearchView.as_view(), name="api-thread-search"),
    path("threads/<int:thread_id>/read/", api.ReadView.as_view(), name="api-thread-read"),
    path(
        "threads/<int:thread_id>/attachments/",
        api.AttachmentUploadView.as_view(),
        name="api-thread-attachments",
    ),
    path(
        "attachments/<uuid:attachment_id>/",
        api.AttachmentDownloadView.as_view(),
        name="api-attachment-download",
    ),
]
