"""Pages of privacy/ (mounted at the site root)."""

from django.urls import path

from privacy import views

urlpatterns = [
    path("privacy/", views.privacy_page, name="privacy"),
    path("privacy/consent/", views.consent_answer, name="privacy-consent"),
    path(
        "privacy/consent/<str:purpose>/give/",
        views.consent_give,
        name="privacy-consent-give",
    ),
    path(
        "privacy/consent/<str:purpose>/withdraw/",
        views.consent_withdraw,
        name="privacy-consent-withdraw",
    ),
    path("privacy/export/", views.export_download, name="privacy-export"),
    path("privacy/restriction/lift/", views.restriction_lift, name="privacy-restriction-lift"),
    path("privacy/requests/", views.request_create, name="privacy-request-new"),
    path("privacy/requests/<int:request_id>/", views.request_page, name="privacy-request"),
    path(
        "privacy/requests/<int:request_id>/start/",
        views.request_start,
        name="privacy-request-start",
    ),
    path(
        "privacy/requests/<int:request_id>/complete/",
        views.request_complete,
        name="privacy-request-complete",
    ),
    path(
        "privacy/requests/<int:request_id>/refuse/",
        views.request_refuse,
        name="privacy-request-refuse",
    ),
    path(
        "privacy/requests/<int:request_id>/extend/",
        views.request_extend,
        name="privacy-request-extend",
    ),
    path("privacy/worklist/", views.worklist_page, name="privacy-worklist"),
]
