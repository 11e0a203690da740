"""processors: pure, transport-free logic over one record or one micro-batch.

Validation, redaction, buffering. Options are validated in ``__init__``; the work is in
``__call__``/``process``. Nothing here touches Kafka, so everything is testable alone.
"""
