# synthstream worker image: one image, every role (`synthstream run --role ...`, `replay`, ...).
#
#   docker build -t synthstream:0.1.0 .
#   docker run --rm synthstream:0.1.0 --help
#
# Dependencies are pinned by constraints.txt (the same pins `make setup` uses), installed in
# their own layer so a source change does not re-download torch. GPU use is decided at run
# time: the trainer picks CUDA when the container is given a GPU and runs on CPU otherwise.
FROM python:3.11-slim

# TLDEXTRACT_...: presidio's email recognizer uses tldextract, which would fetch the public suffix list.
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    TLDEXTRACT_PUBLIC_SUFFIX_LIST_URLS=""

WORKDIR /opt/synthstream

# 1) Dependency layer: project metadata and pins only, with an empty package in place.
COPY pyproject.toml constraints.txt README.md ./
RUN mkdir synthstream \
    && touch synthstream/__init__.py \
    && pip install -c constraints.txt . \
    && pip uninstall -y synthstream \
    && rm -rf synthstream build ./*.egg-info

# 2) The package itself (dependencies are already satisfied, so this is quick).
COPY synthstream ./synthstream
RUN pip install -c constraints.txt . \
    && rm -rf build ./*.egg-info \
    && synthstream --help >/dev/null

# Non-root runtime user; /var/lib/synthstream holds the registry, ledger and stores
# (mount a named volume there; it inherits this ownership).
RUN groupadd --system --gid 10001 synthstream \
    && useradd --system --uid 10001 --gid synthstream --create-home --home-dir /home/synthstream synthstream \
    && mkdir -p /var/lib/synthstream /config /data \
    && chown -R synthstream:synthstream /var/lib/synthstream
USER synthstream
WORKDIR /home/synthstream

ENTRYPOINT ["synthstream"]
CMD ["--help"]
