"""The moto server (DynamoDB + SQS emulator) behind waitress instead of werkzeug.

werkzeug's development server closes every connection after one response, so each AWS SDK call
would open a new TCP connection; waitress keeps connections alive, as the real services do.
Usage: moto_server.py HOST PORT
"""

import os
import sys

from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
from waitress import serve

host, port = sys.argv[1], int(sys.argv[2])
os.environ.setdefault("MOTO_PORT", str(port))
serve(DomainDispatcherApplication(create_backend_app), host=host, port=port, threads=8, _quiet=True)
