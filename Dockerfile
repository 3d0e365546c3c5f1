# One image for every process: web (daphne), worker and beat (Celery), and relay nodes.
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    TELEHEALTH_DATA_DIR=/var/lib/telehealth \
    DJANGO_STATIC_ROOT=/app/staticfiles

WORKDIR /app
RUN apt-get update \
    && apt-get install -y --no-install-recommends libopus0 libvpx7 curl \
    && rm -rf /var/lib/apt/lists/*
COPY requirements.txt .
RUN pip install -r requirements.txt
COPY . .
RUN python scripts/compilemessages.py \
    && DJANGO_DEBUG=0 DJANGO_SECRET_KEY=build-only-collectstatic-key-not-used-at-runtime-0123456789 \
       python manage.py collectstatic --noinput \
    && useradd --system --uid 10001 telehealth \
    && mkdir -p /var/lib/telehealth && chown telehealth /var/lib/telehealth
USER telehealth
EXPOSE 8000
CMD ["daphne", "-b", "0.0.0.0", "-p", "8000", "--proxy-headers", "telehealth.asgi:application"]
