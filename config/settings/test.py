"""Test settings: the database comes from DATABASE_URL (SQLite by default)."""

from .base import *  # noqa: F403

DEBUG = False
SECRET_KEY = "aurum-tests-not-secret"  # noqa: S105
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
AURUM_INGEST_CHUNK_SIZE = 500
AURUM_WEBHOOK_ALLOW_LOOPBACK = True  # the tests' receivers listen on 127.0.0.1
# The suite sends many bad tokens from 127.0.0.1; the rate-limit tests set their own limits.
AURUM_AUTH_FAILURES_PER_MINUTE = 0
AURUM_INGEST_REQUESTS_PER_MINUTE = 0
