from django.urls import path

from telehealth.api import views

urlpatterns = [
    path("health/", views.HealthView.as_view(), name="api-health"),
    path("auth/token/", views.TokenView.as_view(), name="api-token"),
    path("me/", views.MeView.as_view(), name="api-me"),
    path("provinces/", views.ProvinceListView.as_view(), name="api-province-list"),
    path("provinces/<str:code>/", views.ProvinceDetailView.as_view(), name="api-province-detail"),
    path("communes/", views.CommuneListView.as_view(), name="api-commune-list"),
    path("specialties/", views.SpecialtyListView.as_view(), name="api-specialty-list"),
    path("facilities/", views.FacilityListView.as_view(), name="api-facility-list"),
    path("facilities/<str:code>/", views.FacilityDetailView.as_view(), name="api-facility-detail"),
    path(
        "patients/<int:patient_id>/", views.PatientDetailView.as_view(), name="api-patient-detail"
    ),
    path(
        "patients/<int:patient_id>/break-glass/",
        views.PatientBreakGlassView.as_view(),
        name="api-patient-break-glass",
    ),
    path(
        "patients/<int:patient_id>/access-log/",
        views.PatientAccessLogView.as_view(),
        name="api-patient-access-log",
    ),
    path("break-glass/", views.BreakGlassReviewListView.as_view(), name="api-break-glass-list"),
    path(
        "break-glass/<int:access_id>/review/",
        views.BreakGlassReviewView.as_view(),
        name="api-break-glass-review",
    ),
]
