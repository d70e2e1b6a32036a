"""The Celery application. Broker and schedule come from Django settings (CELERY_*)."""

import logging
import os

from celery import Celery, bootsteps

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "hostpanel.settings")

app = Celery("hostpanel")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

log = logging.getLogger(__name__)


class HostWorkerHeartbeat(bootsteps.StartStopStep):
    """In a host's own worker (HOST_WORKER set, bin/host-worker): beat in the host's row so
    its work is routed here (hosting/workers.py); sign off on a clean stop."""

    requires = {"celery.worker.components:Timer"}

    def __init__(self, worker, **kwargs):
        super().__init__(worker, **kwargs)
        self.timer_ref = None

    def include_if(self, worker):
        from django.conf import settings

        return bool(settings.HOST_WORKER)

    def start(self, worker):
        from django.conf import settings

        from hosting import workers

        host = settings.HOST_WORKER
        workers.beat(host, worker.hostname)  # an unknown host stops the worker here
        log.info("host worker for %s: consuming %s", host, workers.queue_name(host))

        def beat():
            try:
                workers.beat(host, worker.hostname)
            except Exception:  # a database hiccup: the next beat tries again
                log.exception("host worker heartbeat failed")

        self.timer_ref = worker.timer.call_repeatedly(
            settings.HOST_WORKER_HEARTBEAT_SECONDS, beat, priority=10
        )

    def stop(self, worker):
        from django.conf import settings

        from hosting import workers

        if self.timer_ref is not None:
            self.timer_ref.cancel()
            self.timer_ref = None
        try:
            workers.signed_off(settings.HOST_WORKER, worker.hostname)
        except Exception:
            log.exception("host worker sign-off failed")


app.steps["worker"].add(HostWorkerHeartbeat)
