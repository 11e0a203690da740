"""streams: wiring only.

Topics, the ingest loop, the retrain scheduler, the publisher and the worker roles that connect
processors, models and connectors.
"""
