from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class SchedulerConfig(AppConfig):
    name = "scheduler"
    verbose_name = _("Appointments and referrals")

    def ready(self) -> None:
        from scheduler.events import may_watch_board
        from telehealth.realtime import register_watchable_topic

        # board.facility.<code> and board.province.<code>: coordinators' live boards.
        register_watchable_topic("board", may_watch_board)
