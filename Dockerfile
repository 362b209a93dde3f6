# One image for every Chainlog service and the CLI:
#   docker run IMAGE chainlog serve ingest   (or chainer, enricher, exporter, alerter, streamer)
FROM python:3.11.11-slim-bookworm AS build
WORKDIR /app
# The runtime lock only: no test or lint tools in the image.
COPY requirements-runtime.lock pyproject.toml ./
RUN python -m venv /venv && /venv/bin/pip install --no-cache-dir uv==0.13.9 \
 && /venv/bin/uv pip sync --python /venv/bin/python requirements-runtime.lock
COPY libs ./libs
COPY services ./services
RUN /venv/bin/uv pip install --python /venv/bin/python --no-deps --compile-bytecode .

FROM python:3.11.11-slim-bookworm
RUN useradd --system --uid 10001 chainlog \
 && mkdir -p /data/files && chown chainlog /data/files
COPY --from=build /venv /venv
ENV PATH=/venv/bin:$PATH PYTHONUNBUFFERED=1
USER chainlog
ENV CHAINLOG_API_HOST=0.0.0.0 CHAINLOG_METRICS_HOST=0.0.0.0
CMD ["chainlog", "serve", "ingest"]
