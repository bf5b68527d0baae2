"""threads-receiver: a self-hosted SMTP push receiver.

The package folders follow the way a message travels (see docs/architecture.md):
smtp → verify → policy → parse → threads → store, with cli driving the same pipeline.
"""

__version__ = "0.1.0"
