from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class TelehealthConfig(AppConfig):
    name = "telehealth"
    verbose_name = _("Facilities, people and audit")
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from telehealth import signals  # noqa: F401  (sign-in/out audit receivers)
