"""REST endpoints of scheduler/ (mounted under /api/v1/)."""

from django.urls import path

from scheduler import api

_referral_actions = [
    ("submit", api.ReferralSubmitView),
    ("receive", api.ReferralReceiveView),
    ("accept", api.ReferralAcceptView),
    ("reject", api.ReferralRejectView),
    ("advise", api.ReferralAdviseView),
    ("convert", api.ReferralConvertView),
    ("schedule", api.ReferralScheduleView),
    ("start", api.ReferralStartView),
    ("complete", api.ReferralCompleteView),
    ("cancel", api.ReferralCancelView),
    ("acknowledge", api.ReferralAcknowledgeView),
    ("attachments", api.ReferralAttachmentView),
    ("fhir", api.ReferralFhirView),
]
_appointment_actions = [
    ("cancel", api.AppointmentCancelView),
    ("reschedule", api.AppointmentRescheduleView),
    ("arrive", api.AppointmentArriveView),
    ("fulfil", api.AppointmentFulfilView),
    ("no-show", api.AppointmentNoShowView),
    ("fhir", api.AppointmentFhirView),
]

urlpatterns = [
    path("referrals/", api.ReferralListView.as_view(), name="api-referral-list"),
    path(
        "referrals/<int:referral_id>/",
        api.ReferralDetailView.as_view(),
        name="api-referral-detail",
    ),
    *[
        path(
            f"referrals/<int:referral_id>/{name}/",
            view.as_view(),
            name=f"api-referral-{name}",
        )
        for name, view in _referral_actions
    ],
    path("queues/", api.QueueListView.as_view(), name="api-queue-list"),
    path("queues/<int:queue_id>/", api.QueueDetailView.as_view(), name="api-queue-detail"),
    path("board/", api.BoardView.as_view(), name="api-board"),
    path("board/load/", api.BoardLoadView.as_view(), name="api-board-load"),
    path("board/accept/", api.BoardAcceptView.as_view(), name="api-board-accept"),
    path("board/reroute/", api.BoardRerouteView.as_view(), name="api-board-reroute"),
    path("availability/", api.AvailabilityView.as_view(), name="api-availability"),
    path(
        "availability/exceptions/",
        api.AvailabilityExceptionsView.as_view(),
        name="api-availability-exceptions",
    ),
    path(
        "availability/exceptions/<int:exception_id>/",
        api.AvailabilityExceptionDetailView.as_view(),
        name="api-availability-exception",
    ),
    path("clinicians/bookable/", api.ClinicianListView.as_view(), name="api-bookable-clinicians"),
    path("slots/", api.SlotListView.as_view(), name="api-slot-list"),
    path("appointments/", api.AppointmentListView.as_view(), name="api-appointment-list"),
    path(
        "appointments/<int:appointment_id>/",
        api.AppointmentDetailView.as_view(),
        name="api-appointment-detail",
    ),
    *[
        path(
            f"appointments/<int:appointment_id>/{name}/",
            view.as_view(),
            name=f"api-appointment-{name}",
        )
        for name, view in _appointment_actions
    ],
    path("waitlist/", api.WaitlistView.as_view(), name="api-waitlist"),
    path(
        "waitlist/<int:entry_id>/accept/",
        api.WaitlistAcceptView.as_view(),
        name="api-waitlist-accept",
    ),
    path(
        "waitlist/<int:entry_id>/decline/",
        api.WaitlistDeclineView.as_view(),
        name="api-waitlist-decline",
    ),
    path(
        "waitlist/<int:entry_id>/cancel/",
        api.WaitlistCancelView.as_view(),
        name="api-waitlist-cancel",
    ),
]
