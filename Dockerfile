# ollama-preloader: a one-shot container that warms the models an Ollama stack needs and exits
# 0 (all loaded), 2 (bad configuration), 3 (server never healthy) or 4 (a model failed / not resident).
#
# The base is a build argument so that machines without a registry can substitute a local stand-in
# of the same shape (see scripts/prepare_docker.sh); the default is the real public image.
ARG PYTHON_IMAGE=python:3.12-slim

# --- build stage: a virtualenv holding the pinned dependencies and the package ---------------------
FROM ${PYTHON_IMAGE} AS build

# A venv works the same on the official image (python at /usr/local/bin) and on Debian's python3,
# whose system site-packages are marked externally managed (PEP 668).
# Pinned runtime dependencies (pyproject.toml's ranges, resolved), in a layer of their own so that
# editing the source does not reinstall them. `pip check` below fails the build if these pins stop
# satisfying pyproject.toml.
RUN python3 -m venv /opt/preloader \
    && /opt/preloader/bin/pip install --no-cache-dir --disable-pip-version-check \
        requests==2.34.2 \
        certifi==2026.5.20 \
        charset-normalizer==3.4.7 \
        idna==3.13 \
        urllib3==2.7.0 \
        tenacity==9.2.1 \
        prometheus-client==0.26.0

COPY pyproject.toml README.md* /src/
COPY preloader /src/preloader
# --no-deps: everything it needs is pinned above. pip and setuptools are removed from the venv
# afterwards: the image runs the tool, it installs nothing.
RUN /opt/preloader/bin/pip install --no-cache-dir --disable-pip-version-check --no-deps /src \
    && /opt/preloader/bin/pip check \
    && /opt/preloader/bin/pip uninstall --yes --quiet pip setuptools

# --- runtime stage: the base image plus the venv, nothing from the build's pip or sources ----------
FROM ${PYTHON_IMAGE}

LABEL org.opencontainers.image.title="ollama-preloader" \
      org.opencontainers.image.description="Waits for Ollama, loads the listed models, verifies them in /api/ps, exits with a status a pipeline can trust." \
      org.opencontainers.image.licenses="MIT"

# A fixed numeric uid so orchestrators can verify runAsNonRoot without resolving names.
RUN groupadd --gid 10001 preloader \
    && useradd --uid 10001 --gid preloader --no-create-home \
        --home-dir /nonexistent --shell /usr/sbin/nologin preloader

COPY --from=build /opt/preloader /opt/preloader

# Unbuffered output: every log line reaches `docker logs` as it happens, not when the buffer fills
# or the process exits. No bytecode writes: the user cannot write there anyway.
ENV PATH="/opt/preloader/bin:${PATH}" \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1

USER 10001:10001
ENTRYPOINT ["python", "-m", "preloader"]
