"""synthstream: streaming synthetic data for Kafka.

Turns topics of sensitive records into redacted streams, differentially private statistics
and continuous synthetic feeds.
"""

from __future__ import annotations

__version__ = "0.1.0"
