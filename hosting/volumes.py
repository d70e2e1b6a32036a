"""The sites' /data volumes after their containers: the audited download, and removal a
while after the site is deleted. Engine calls happen outside any transaction; each record
is its own short transaction."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone
from docker.errors import ImageNotFound, NotFound

from accounts.models import User
from audit import actions
from audit.services import record
from hosting import docker as engine
from hosting.models import Site

log = logging.getLogger(__name__)


class NoVolume(Exception):
    api_status = 404
    api_code = "no_volume"


def archive(site: Site, *, actor: User | None) -> engine.ArchiveStream:
    """The site's /data as a tar stream, for its admins; the download is audited before the
    first byte leaves. NoVolume when the site has never had one."""
    if not site.persistent_volume and site.volume_bytes is None:
        raise NoVolume("This site has no /data volume (persistent_volume is off).")
    try:
        stream = engine.volume_archive(site.host, site, settings.HOSTPANEL_STATIC_IMAGE)
    except engine.SpecRejected as exc:
        cause = exc.__cause__
        if isinstance(cause, NotFound) and not isinstance(cause, ImageNotFound):
            # the volume itself: no container has mounted it yet
            raise NoVolume("The /data volume is empty: no container has mounted it yet.") from None
        raise
    try:
        with transaction.atomic():
            record(
                actions.VOLUME_DOWNLOAD,
                actor=actor,
                organization=site.organization,
                target=site,
                changes={"volume": site.volume_name, "bytes_measured": site.volume_bytes},
            )
    except BaseException:
        stream.close()
        raise
    return stream


def purge_deleted(now: datetime | None = None) -> int:
    """Remove the volumes of sites deleted more than VOLUME_RETENTION_HOURS ago; returns how
    many. A host that is down or still has the volume mounted is tried again next time."""
    cutoff = (now or timezone.now()) - timedelta(hours=settings.VOLUME_RETENTION_HOURS)
    removed = 0
    due = Site.objects.filter(deleted_at__lt=cutoff, volume_removed_at__isnull=True).filter(
        Q(persistent_volume=True) | Q(volume_bytes__isnull=False)  # it had one once
    )
    for site in due.select_related("host", "organization"):
        try:
            engine.remove_volume(site.host, site.volume_name)
        except (*engine.TRANSIENT_ERRORS, engine.SpecRejected) as exc:
            log.warning("volume %s of %s not removed yet: %s", site.volume_name, site, exc)
            continue
        with transaction.atomic():
            Site.objects.filter(pk=site.pk).update(volume_removed_at=timezone.now())
            record(
                actions.VOLUME_REMOVE,
                organization=site.organization,
                target=site,
                changes={"volume": site.volume_name, "deleted_at": site.deleted_at.isoformat()},
            )
        removed += 1
    return removed
