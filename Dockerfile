# syntax=docker/dockerfile:1
#
# One build, five images: a build stage compiles every executable product once, and each runtime target
# carries only its own binary.
#
#   docker build --target producer  -t squall-producer  .
#   docker build --target consumer  -t squall-consumer  .
#   docker build --target observer  -t squall-observer  .
#   docker build --target collector -t squall-collector .
#   docker build --target squallctl -t squallctl        .
#
# Base images are pinned by version: the Swift toolchain the project builds with (6.3.1) on Debian 12
# (bookworm), and a bookworm point release for the runtime, so the C libraries the binaries were linked
# against (rabbitmq-c 0.11, libpq 15, libcurl 7.88) are the ones they find at run time. Pin digests on top
# (swift:6.3.1-bookworm@sha256:…) when your registry policy asks for it. scripts/check-deploy lints this
# file with hadolint and checks that every COPY source exists and every apt package exists in bookworm.

ARG SWIFT_IMAGE=swift:6.3.1-bookworm
ARG RUNTIME_IMAGE=debian:12.13-slim

# ---------------------------------------------------------------------------------------------------------
FROM ${SWIFT_IMAGE} AS build
# The -dev packages Package.swift's system-library targets name (found by pkg-config).
RUN apt-get update \
    && apt-get install -y --no-install-recommends \
        librabbitmq-dev \
        libpq-dev \
        libcurl4-openssl-dev \
        libssl-dev \
        pkg-config \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# The manifest first, so dependency resolution is cached while only sources change.
COPY Package.swift ./
RUN swift package resolve
COPY Sources ./Sources
# Test target folders must exist for the manifest to load, although nothing here builds them.
COPY Tests ./Tests
COPY scripts/build-release ./scripts/build-release
# The same release build command anyone runs outside Docker (static Swift runtime, stripped binaries).
RUN scripts/build-release /out

# ---------------------------------------------------------------------------------------------------------
FROM ${RUNTIME_IMAGE} AS runtime
# Only the shared C libraries the binaries link, and the CA bundle for https:// sources, S3 and amqps://.
RUN apt-get update \
    && apt-get install -y --no-install-recommends \
        librabbitmq4 \
        libpq5 \
        libcurl4 \
        libssl3 \
        ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 squall \
    && useradd --uid 10001 --gid squall --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin squall
# Numeric, so Kubernetes' runAsNonRoot can verify it without reading /etc/passwd.
USER 10001:10001
WORKDIR /
# Services log one JSON object per line in containers; SQUALL_LOG_FORMAT=text overrides it.
ENV SQUALL_LOG_FORMAT=json
# Each process is PID 1 (exec-form ENTRYPOINT, no shell in between), so SIGTERM from `docker stop` or the
# kubelet reaches it and starts the graceful shutdown.
STOPSIGNAL SIGTERM

# A service image: the health, readiness and metrics endpoint listens on SQUALL_HTTP_PORT (8080 here).
FROM runtime AS service
ENV SQUALL_HTTP_PORT=8080
EXPOSE 8080

FROM service AS producer
COPY --from=build /out/squall-producer /usr/local/bin/squall-producer
ENTRYPOINT ["/usr/local/bin/squall-producer"]

FROM service AS consumer
COPY --from=build /out/squall-consumer /usr/local/bin/squall-consumer
ENTRYPOINT ["/usr/local/bin/squall-consumer"]

FROM service AS observer
COPY --from=build /out/squall-observer /usr/local/bin/squall-observer
ENTRYPOINT ["/usr/local/bin/squall-observer"]

FROM service AS collector
COPY --from=build /out/squall-collector /usr/local/bin/squall-collector
ENTRYPOINT ["/usr/local/bin/squall-collector"]

# The operator's tool, for one-shot Jobs (`squallctl migrate`) and `kubectl run`; it serves no port.
FROM runtime AS squallctl
COPY --from=build /out/squallctl /usr/local/bin/squallctl
ENTRYPOINT ["/usr/local/bin/squallctl"]
CMD ["--help"]
