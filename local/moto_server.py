"""The moto server (DynamoDB + SQS emulator) behind waitress instead of werkzeug.

werkzeug's development server closes every connection after one response, so each AWS SDK call
would open a new TCP connection; waitress keeps connections alive, as the real services do.
Usage: moto_server.py HOST PORT
"""

import os
import sys
import threading

from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
from waitress import serve



class OneDynamoDbCallAtATime:
    """DynamoDB applies a conditional write atomically; moto evaluates the condition and applies
    the update without a lock, so concurrent calls could both pass one condition. Serialising the
    DynamoDB calls restores the atomicity the rate limiter relies on. SQS calls stay concurrent
    (long polls must not block the others)."""

    def __init__(self, app):
        self.app = app
        self.lock = threading.Lock()

    def __call__(self, environ, start_response):
        if not environ.get("HTTP_X_AMZ_TARGET", "").startswith("DynamoDB_"):
            return self.app(environ, start_response)
        with self.lock:
            # The body is produced inside the lock too: moto works while it is iterated.
            return list(self.app(environ, start_response))


host, port = sys.argv[1], int(sys.argv[2])
os.environ.setdefault("MOTO_PORT", str(port))
app = OneDynamoDbCallAtATime(DomainDispatcherApplication(create_backend_app))
# waitress stops reading new connections beyond `connection_limit` (default 100) while idle
# keep-alive connections stay open, so a busy test run's extra requests would wait unanswered.
serve(app, host=host, port=port, threads=8, connection_limit=2000, _quiet=True)
