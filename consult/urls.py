from django.urls import path

from consult import api, visit_api

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

_visit = [
    ("", visit_api.VisitDetailView, "detail"),
    ("open/", visit_api.VisitOpenView, "open"),
    ("check-in/", visit_api.VisitCheckInView, "check-in"),
    ("admit/", visit_api.VisitAdmitView, "admit"),
    ("remove/", visit_api.VisitRemoveView, "remove"),
    ("invite/", visit_api.VisitInviteView, "invite"),
    ("join/", visit_api.VisitJoinView, "join"),
    ("leave/", visit_api.VisitLeaveView, "leave"),
    ("published/", visit_api.VisitPublishedView, "published"),
    ("audio-only/", visit_api.VisitAudioOnlyView, "audio-only"),
    ("consent/", visit_api.VisitConsentView, "consent"),
    ("snapshot-notice/", visit_api.VisitSnapshotNoticeView, "snapshot-notice"),
    ("snapshots/", visit_api.VisitSnapshotView, "snapshots"),
    ("recording/ask/", visit_api.VisitRecordingAskView, "recording-ask"),
    ("recording/start/", visit_api.VisitRecordingStartView, "recording-start"),
    ("recording/stop/", visit_api.VisitRecordingStopView, "recording-stop"),
    ("recordings/", visit_api.VisitRecordingListView, "recordings"),
    ("recordings/upload/", visit_api.VisitRecordingUploadView, "recording-upload"),
    ("notes/", visit_api.VisitNotesView, "notes"),
    ("end/", visit_api.VisitEndView, "end"),
    ("cancel/", visit_api.VisitCancelView, "cancel"),
]
urlpatterns += [
    path("visits/", visit_api.VisitListView.as_view(), name="api-visit-list"),
    *[
        path(f"visits/<int:visit_id>/{suffix}", view.as_view(), name=f"api-visit-{name}")
        for suffix, view, name in _visit
    ],
    path(
        "snapshots/<uuid:snapshot_id>/",
        visit_api.SnapshotDownloadView.as_view(),
        name="api-snapshot-download",
    ),
    path(
        "recordings/<uuid:recording_id>/",
        visit_api.RecordingDownloadView.as_view(),
        name="api-recording-download",
    ),
]
