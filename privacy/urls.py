"""REST endpoints of privacy/ (mounted under /api/v1/)."""

from django.urls import path

from privacy import api

urlpatterns = [
    path("privacy/notice/", api.NoticeView.as_view(), name="api-privacy-notice"),
    path("privacy/consent/", api.ConsentView.as_view(), name="api-privacy-consent"),
    path("privacy/consent/give/", api.ConsentGiveView.as_view(), name="api-privacy-consent-give"),
    path(
        "privacy/consent/withdraw/",
        api.ConsentWithdrawView.as_view(),
        name="api-privacy-consent-withdraw",
    ),
    path("privacy/export/", api.ExportView.as_view(), name="api-privacy-export"),
    path(
        "privacy/deletion-plan/",
        api.DeletionPlanView.as_view(),
        name="api-privacy-deletion-plan",
    ),
    path(
        "privacy/restriction/lift/",
        api.RestrictionLiftView.as_view(),
        name="api-privacy-restriction-lift",
    ),
    path("privacy/requests/", api.DataRequestListView.as_view(), name="api-privacy-request-list"),
    path(
        "privacy/requests/<int:request_id>/",
        api.DataRequestDetailView.as_view(),
        name="api-privacy-request-detail",
    ),
    path(
        "privacy/requests/<int:request_id>/start/",
        api.DataRequestStartView.as_view(),
        name="api-privacy-request-start",
    ),
    path(
        "privacy/requests/<int:request_id>/complete/",
        api.DataRequestCompleteView.as_view(),
        name="api-privacy-request-complete",
    ),
    path(
        "privacy/requests/<int:request_id>/refuse/",
        api.DataRequestRefuseView.as_view(),
        name="api-privacy-request-refuse",
    ),
    path(
        "privacy/requests/<int:request_id>/extend/",
        api.DataRequestExtendView.as_view(),
        name="api-privacy-request-extend",
    ),
    path("privacy/worklist/", api.WorklistView.as_view(), name="api-privacy-worklist"),
    path(
        "patients/<int:patient_id>/consent/",
        api.PatientConsentView.as_view(),
        name="api-patient-consent",
    ),
]
