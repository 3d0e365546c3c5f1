"""The scratch database of the chat benchmark: people, threads and signed-in sessions.

Nothing here is timed. :func:`recreate_database` drops and creates the
database and migrates it in a subprocess; :func:`make_people` then creates, in
this process (Django set up against the same ``DATABASE_URL`` and
``REDIS_URL``), N users, one consultation thread per ``room_size`` of them, and
one ``cached_db`` session per user, exactly as a web sign-in leaves it, so
the websocket's ``AuthMiddlewareStack`` finds the user from the cookie.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg import sql

REPO = Path(__file__).resolve().parents[2]


@dataclass
class Person:
    """One socket's identity: the user, its thread, and its session cookie."""

    user_id: int
    thread_id: int
    cookie: str


def _database_name(url: str) -> str:
    return urlsplit(url).path.lstrip("/")


def _maintenance_url(url: str) -> str:
    parts = urlsplit(url.replace("postgres://", "postgresql://", 1))
    return urlunsplit(parts._replace(path="/postgres"))


def recreate_database(url: str, env: dict[str, str]) -> None:
    """Drop and create the scratch database, then ``manage.py migrate`` it in a subprocess."""
    name = _database_name(url)
    if not name.startswith("bench"):
        raise SystemExit(
            f"refusing to drop {name!r}: the scratch database's name starts with bench"
        )
    with psycopg.connect(_maintenance_url(url), autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--verbosity", "0"],
        cwd=REPO,
        env={**os.environ, **env, "DATABASE_URL": url},
        check=True,
    )


def drop_database(url: str) -> None:
    from django.db import connections

    connections.close_all()
    with psycopg.connect(_maintenance_url(url), autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                sql.Identifier(_database_name(url))
            )
        )


def setup_django() -> None:
    """Set Django up in this process (the environment must already name the database)."""
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "telehealth.settings")
    import django

    django.setup()


def make_people(n_users: int, room_size: int) -> list[Person]:
    """Create ``n_users`` users, a consultation per ``room_size`` of them, a session each."""
    from django.conf import settings
    from django.contrib.auth.hashers import make_password
    from django.contrib.sessions.backends.cached_db import SessionStore

    from consult.services import thread_open
    from telehealth.models import User

    password = make_password("bench-not-a-real-password")
    users = User.objects.bulk_create(
        [
            User(
                username=f"bench{i:05d}",
                full_name=f"Bác sĩ Thử Nghiệm {i}",
                password=password,
                is_active=True,
            )
            for i in range(n_users)
        ],
        batch_size=1000,
    )
    people = []
    for start in range(0, n_users, room_size):
        room = users[start : start + room_size]
        thread = thread_open(
            kind="consultation",
            created_by=room[0],
            participants=[(user, "doctor") for user in room],
            subject=f"bench room {start // room_size}",
        )
        for user in room:
            session = SessionStore()
            session["_auth_user_id"] = str(user.pk)
            session["_auth_user_backend"] = "django.contrib.auth.backends.ModelBackend"
            session["_auth_user_hash"] = user.get_session_auth_hash()
            session.create()
            cookie = f"{settings.SESSION_COOKIE_NAME}={session.session_key}"
            people.append(Person(user_id=user.pk, thread_id=thread.pk, cookie=cookie))
    return people
