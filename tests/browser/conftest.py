"""Browser tests: the `chromium` and `browse` fixtures are in tests/conftest.py."""
