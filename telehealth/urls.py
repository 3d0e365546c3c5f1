from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from consult import views as consult_views
from telehealth import auth_views as th_auth_views
from telehealth import views

urlpatterns = [
    path("api/v1/", include("telehealth.api.urls")),
    path("api/v1/", include("consult.urls")),
    path("api/v1/", include("network.urls")),
    path("api/v1/", include("scheduler.urls")),
    path("api/v1/", include("privacy.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    # The split view serves Swagger UI's start-up script as a file of its own, so the
    # page needs no inline script under the Content-Security-Policy.
    path(
        "api/docs/",
        SpectacularSwaggerSplitView.as_view(
            url_name="api-schema", template_name="api/swagger_ui.html"
        ),
        name="api-docs",
    ),
    path("i18n/", include("django.conf.urls.i18n")),
    path("", views.home, name="home"),
    path("profile/", views.profile, name="profile"),
    path("session-expired/", views.session_expired, name="session-expired"),
    path("patients/", views.patients_page, name="telehealth-patients"),
    path(
        "patients/<int:patient_id>/",
        views.patient_record_page,
        name="telehealth-patient-record",
    ),
    path(
        "patients/<int:patient_id>/break-glass/",
        views.patient_break_glass,
        name="telehealth-patient-break-glass",
    ),
    path("access-log/", views.access_log_page, name="telehealth-access-log"),
    path(
        "break-glass/review/",
        views.break_glass_review_page,
        name="telehealth-break-glass-review",
    ),
    path(
        "break-glass/<int:access_id>/review/",
        views.break_glass_review_submit,
        name="telehealth-break-glass-review-submit",
    ),
    path("visits/", consult_views.visit_list, name="visits"),
    path("visits/<int:visit_id>/", consult_views.visit_page, name="visit"),
    path("", include("consult.page_urls")),
    path("", include("network.page_urls")),
    path("", include("scheduler.page_urls")),
    path("", include("privacy.page_urls")),
    path("login/", th_auth_views.SignInView.as_view(), name="login"),
    path("login/verify/", th_auth_views.login_verify, name="login-verify"),
    path("account/two-factor/", th_auth_views.totp_setup, name="totp-setup"),
    path("account/two-factor/disable/", th_auth_views.totp_disable, name="totp-disable"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("admin/", admin.site.urls),
]

handler400 = "telehealth.views.bad_request"
handler403 = "telehealth.views.permission_denied"
handler404 = "telehealth.views.page_not_found"
handler500 = "telehealth.views.server_error"
