from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from consult import views as consult_views
from telehealth import views

urlpatterns = [
    path("api/v1/", include("telehealth.api.urls")),
    path("api/v1/", include("consult.urls")),
    path("api/v1/", include("network.urls")),
    path("api/v1/", include("scheduler.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
    path("i18n/", include("django.conf.urls.i18n")),
    path("", views.home, name="home"),
    path("profile/", views.profile, name="profile"),
    path("session-expired/", views.session_expired, name="session-expired"),
    path("visits/", consult_views.visit_list, name="visits"),
    path("visits/<int:visit_id>/", consult_views.visit_page, name="visit"),
    path("", include("consult.page_urls")),
    path("", include("network.page_urls")),
    path("", include("scheduler.page_urls")),
    path(
        "login/",
        auth_views.LoginView.as_view(redirect_authenticated_user=True),
        name="login",
    ),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("admin/", admin.site.urls),
]

handler400 = "telehealth.views.bad_request"
handler403 = "telehealth.views.permission_denied"
handler404 = "telehealth.views.page_not_found"
handler500 = "telehealth.views.server_error"
