# The hostpanel application image: web (gunicorn), Celery worker and beat all run from it.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HOSTPANEL_VAR_DIR=/var/lib/hostpanel

RUN groupadd --system --gid 10001 hostpanel \
    && useradd --system --uid 10001 --gid hostpanel --home-dir /app \
        --shell /usr/sbin/nologin hostpanel

# postgresql-client: pg_dump and psql for manage.py backup/restore.
# Debian's Caddy (2.6.2), for the compose file's caddy service: it runs from this image as
# the same user as web and worker, so the admin socket it creates is theirs too (Caddy 2.6
# cannot set a socket's mode). The file capability lets it bind 80/443 without root.
RUN apt-get update \
    && apt-get install -y --no-install-recommends caddy libcap2-bin postgresql-client \
    && setcap cap_net_bind_service=+ep /usr/bin/caddy \
    && apt-get purge -y libcap2-bin && rm -rf /var/lib/apt/lists/* \
    && mkdir -p /run/caddy /var/log/caddy /var/lib/caddy \
    && chown hostpanel:hostpanel /run/caddy /var/log/caddy /var/lib/caddy

WORKDIR /app
COPY requirements.txt .
RUN pip install -r requirements.txt

COPY . .
# Static files are collected into the image ($HOSTPANEL_VAR_DIR/static, served by
# WhiteNoise). The keys are throw-away: collectstatic needs settings to load, nothing more.
# The last check fails the build if settings generated anything else there (a key written
# into the image would silently become the production key).
RUN mkdir -p "$HOSTPANEL_VAR_DIR" \
    && SECRET_KEY=collectstatic-only TOKEN_HASH_KEY=collectstatic-only \
        AUDIT_CHAIN_KEY=collectstatic-only \
        ENV_ENCRYPTION_KEYS=collectstatic-only CELERY_BROKER_URL=memory:// \
        python manage.py collectstatic --noinput \
    && test "$(ls -A "$HOSTPANEL_VAR_DIR")" = static \
    && chown -R hostpanel:hostpanel "$HOSTPANEL_VAR_DIR"

USER hostpanel
EXPOSE 8000
CMD ["gunicorn", "hostpanel.wsgi", "--bind", "0.0.0.0:8000", "--workers", "3", \
     "--worker-class", "gthread", "--threads", "8", "--access-logfile", "-"]
