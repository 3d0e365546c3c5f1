from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class NetworkConfig(AppConfig):
    name = "network"
    verbose_name = _("Doctor network")

    def ready(self) -> None:
        from telehealth.realtime import register_watchable_topic

        # Coordinators watch an auto-assignment run's progress: "network.run.<id>".
        register_watchable_topic("network", may_watch_network_topic)


async def may_watch_network_topic(user, topic: str) -> bool:  # type: ignore[no-untyped-def]
    from channels.db import database_sync_to_async

    from network.selectors import run_get_for_user
    from telehealth.errors import DomainError

    parts = topic.split(".")
    if len(parts) != 3 or parts[1] != "run" or not parts[2].isdigit():
        return False

    def check() -> bool:
        try:
            run_get_for_user(user=user, run_id=int(parts[2]))
        except DomainError:
            return False
        return True

    return await database_sync_to_async(check)()
