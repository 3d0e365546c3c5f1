"""Start every process of the service on the embedded defaults and say how to use it.

Processes are listed in the Procfile and supervised by honcho: their output is
interleaved with a prefix, and Ctrl-C (or any one dying) stops them all.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    os.chdir(ROOT)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "telehealth.settings")
    os.environ.setdefault("TELEHEALTH_HOST", "127.0.0.1")
    os.environ.setdefault("TELEHEALTH_PORT", "8000")
    os.environ.setdefault("VENV", str(Path(sys.executable).parent.parent))
    sys.path.insert(0, str(ROOT))

    import django

    django.setup()
    from django.conf import settings

    from telehealth.seeding import DEMO_LOGINS

    url = f"http://{os.environ['TELEHEALTH_HOST']}:{os.environ['TELEHEALTH_PORT']}/"
    database = "PostgreSQL" if settings.DATABASE_IS_POSTGRES else "SQLite (data/)"
    lines = [
        "",
        "Telehealth network is starting (Ctrl-C stops every process).",
        f"  Open:      {url}",
        f"  API docs:  {url}api/docs/",
        f"  Admin:     {url}admin/",
        f"  Database:  {database}; realtime and tasks: "
        + ("Redis" if settings.REDIS_URL else "in-process layer, file-system task queue"),
        "",
        f"  Demo logins (password: {settings.TELEHEALTH_DEMO_PASSWORD}):",
        *[f"    {username:<26} {role}" for username, role in DEMO_LOGINS],
        "",
    ]
    print("\n".join(lines), flush=True)

    from honcho.command import main as honcho_main

    honcho_main(["-f", str(ROOT / "Procfile"), "-d", str(ROOT), "start"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
