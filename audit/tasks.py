"""The audit chain's periodic work: seal rows whose seal after commit was lost, and write
the chain head out once a day."""

from celery import shared_task

from audit import chain


@shared_task(ignore_result=True)
def seal_audit_chain() -> int:
    """Idempotent: rows are sealed once, under the head's lock."""
    return chain.seal()


@shared_task(ignore_result=True)
def write_audit_chain_head() -> str:
    return chain.write_head()
