"""Developer and demo settings: DEBUG on, a fixed throwaway secret if none is given."""

from .base import *  # noqa: F403
from .base import SECRET_KEY, env_bool

DEBUG = env_bool("DEBUG", True)
if not SECRET_KEY:
    SECRET_KEY = "aurum-local-development-only-not-secret"  # noqa: S105
