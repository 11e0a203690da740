"""PII detection and redaction: recognizers, NER over free text, operators, the per-field plan.

The redactor is the only stage that ever sees raw values: everything downstream (buffer,
statistics, models, logs, files) receives its output.
"""
