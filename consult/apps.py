from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class ConsultConfig(AppConfig):
    name = "consult"
    verbose_name = _("Consultations and video visits")

    def ready(self) -> None:
        from consult import signals  # noqa: F401
        from consult.visit_selectors import may_watch_visit
        from telehealth.realtime import register_watchable_topic

        register_watchable_topic("visit", may_watch_visit)
