"""Package data of the PII processors: the person-name lexicon and the script that builds it."""
