from hostpanel.retry import MAX_BACKOFF_SECONDS, backoff


def test_backoff_grows_exponentially_with_jitter_and_is_capped(settings):
    settings.TASK_RETRY_BACKOFF_SECONDS = 2.0
    for retries, step in ((0, 2.0), (1, 4.0), (2, 8.0), (3, 16.0)):
        waits = {backoff(retries) for _ in range(50)}
        assert all(step / 2 <= w <= step for w in waits)
        assert len(waits) > 1  # jittered, so many workers do not retry in lockstep
    assert all(backoff(20) <= MAX_BACKOFF_SECONDS for _ in range(50))
