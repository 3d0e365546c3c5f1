"""REST endpoints of network/ (mounted under /api/v1/)."""

from django.urls import path

from network import api

urlpatterns = [
    path("network/me/", api.OverviewView.as_view(), name="api-network-me"),
    path("network/graph/", api.GraphView.as_view(), name="api-network-graph"),
    path("network/suggestions/", api.SuggestionsView.as_view(), name="api-network-suggestions"),
    path("network/people/<int:user_id>/", api.PersonView.as_view(), name="api-network-person"),
    path("network/mentorships/", api.MentorshipListView.as_view(), name="api-network-mentorships"),
    path(
        "network/mentorships/<int:mentorship_id>/",
        api.MentorshipDetailView.as_view(),
        name="api-network-mentorship",
    ),
    path(
        "network/mentorships/<int:mentorship_id>/accept/",
        api.MentorshipAcceptView.as_view(),
        name="api-network-mentorship-accept",
    ),
    path(
        "network/mentorships/<int:mentorship_id>/decline/",
        api.MentorshipDeclineView.as_view(),
        name="api-network-mentorship-decline",
    ),
    path(
        "network/mentorships/<int:mentorship_id>/end/",
        api.MentorshipEndView.as_view(),
        name="api-network-mentorship-end",
    ),
    path("network/policy/", api.PolicyView.as_view(), name="api-network-policy"),
    path("network/coverage/", api.CoverageView.as_view(), name="api-network-coverage"),
    path(
        "network/coverage/export/",
        api.CoverageExportView.as_view(),
        name="api-network-coverage-export",
    ),
    path("network/assignment-runs/", api.RunListView.as_view(), name="api-network-runs"),
    path(
        "network/assignment-runs/<int:run_id>/",
        api.RunDetailView.as_view(),
        name="api-network-run",
    ),
    path(
        "network/assignment-runs/<int:run_id>/proposals/",
        api.ProposalListView.as_view(),
        name="api-network-run-proposals",
    ),
    path(
        "network/assignment-runs/<int:run_id>/review/",
        api.ReviewView.as_view(),
        name="api-network-run-review",
    ),
    path(
        "network/assignment-runs/<int:run_id>/apply/",
        api.ApplyView.as_view(),
        name="api-network-run-apply",
    ),
    path(
        "network/case-conferences/",
        api.ConferenceListView.as_view(),
        name="api-network-conferences",
    ),
    path(
        "network/case-conferences/<int:conference_id>/",
        api.ConferenceDetailView.as_view(),
        name="api-network-conference",
    ),
    path(
        "network/case-conferences/<int:conference_id>/present/",
        api.PresentView.as_view(),
        name="api-network-conference-present",
    ),
    path(
        "network/case-conferences/<int:conference_id>/invite/",
        api.InviteView.as_view(),
        name="api-network-conference-invite",
    ),
    path(
        "network/case-conferences/<int:conference_id>/conclude/",
        api.ConcludeView.as_view(),
        name="api-network-conference-conclude",
    ),
]
