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
        ENV_ENCRYPTION_KEYS=collectstatic-only CELERY_BROKER_URL=memory:// \
        python manage.py collectstatic --noinput \
    && test "$(ls -A "$HOSTPANEL_VAR_DIR")" = static \
    && chown -R hostpanel:hostpanel "$HOSTPANEL_VAR_DIR"

USER hostpanel
EXPOSE 8000
CMD ["gunicorn", "hostpanel.wsgi", "--bind", "0.0.0.0:8000", "--workers", "3", \
     "--worker-class", "gthread", "--threads", "8", "--access-logfile", "-"]
