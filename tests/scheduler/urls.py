"""The site's URLs plus the scheduler's pages, as telehealth/urls.py will mount them
(``path("", include("scheduler.page_urls"))``)."""

from django.urls import include, path

from telehealth.urls import urlpatterns as site

urlpatterns = [path("", include("scheduler.page_urls")), *site]
