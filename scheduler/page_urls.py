"""Pages of scheduler/ (mounted at the site root)."""

from django.urls import path

from scheduler import views

urlpatterns = [
    path("appointments/", views.appointments_page, name="scheduler-appointments"),
    path("referrals/", views.referrals_page, name="scheduler-referrals"),
    path("referrals/new/", views.referral_new_page, name="scheduler-referral-new"),
    path("doctor/day/", views.doctor_day_page, name="scheduler-doctor-day"),
    path("coordinator/board/", views.board_page, name="scheduler-board"),
]
