# syntax=docker/dockerfile:1.7
# eternia-backup container image: one static entrypoint, the eternia-backup binary, plus the PostgreSQL
# client tools it drives (pg_dump, pg_restore).
#
#   docker build -t eternia-backup:dev .
#   docker run --rm eternia-backup:dev --help
#
# PostgreSQL: pg_dump must be at least the server's major version. This image ships the PostgreSQL 17 client
# (Debian trixie's postgresql-client-17), which dumps and restores servers 12 to 17. For a PostgreSQL 18
# server, build from an image with the PostgreSQL 18 client (e.g. PGDG's apt repository on trixie,
# postgresql-client-18) and set PG_MAJOR=18.
#
# Both stages use the same Debian release, so the binary links against the glibc it runs with.

ARG RUST_VERSION=1.95
ARG DEBIAN_RELEASE=trixie
ARG PG_MAJOR=17

# ---- build: the release binary -----------------------------------------------------------------
FROM rust:${RUST_VERSION}-slim-${DEBIAN_RELEASE} AS build
WORKDIR /src
# cmake: fallback build of aws-lc-sys (rustls' crypto provider) where no prebuilt bindings fit.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends cmake \
    && rm -rf /var/lib/apt/lists/*
COPY . .
# Registry and target dir in BuildKit caches: rebuilds after a source change reuse compiled dependencies.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked \
    && install -D -m 0755 target/release/eternia-backup /out/eternia-backup

# ---- runtime -----------------------------------------------------------------------------------
FROM debian:${DEBIAN_RELEASE}-slim AS runtime
ARG PG_MAJOR
# Debian point releases replace package versions in place, so the versions are not pinned here: the
# release (trixie) and the PostgreSQL major (PG_MAJOR) are.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates "postgresql-client-${PG_MAJOR}" \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --gid 65532 nonroot \
    && useradd --uid 65532 --gid 65532 --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin nonroot \
    && install -d -o 65532 -g 65532 -m 0750 /backups
# The versioned client directory first: pg_dump/pg_restore are called directly, not through pg_wrapper.
ENV PATH="/usr/lib/postgresql/${PG_MAJOR}/bin:${PATH}" \
    BACKUP_DIR=/backups \
    TMPDIR=/tmp
COPY --from=build /out/eternia-backup /usr/local/bin/eternia-backup
# Smoke test at build time (the shell is only used here): the binary starts and finds its libraries, and
# the client tools on PATH are the expected major version.
RUN eternia-backup --help >/dev/null \
    && case "$(pg_dump --version)" in *" ${PG_MAJOR}."*) ;; *) echo "pg_dump is not ${PG_MAJOR}" >&2; exit 1 ;; esac \
    && case "$(pg_restore --version)" in *" ${PG_MAJOR}."*) ;; *) echo "pg_restore is not ${PG_MAJOR}" >&2; exit 1 ;; esac

USER 65532:65532
WORKDIR /backups
EXPOSE 8080
LABEL org.opencontainers.image.title="eternia-backup" \
      org.opencontainers.image.description="PostgreSQL + Kubernetes ConfigMap/Secret backup and one-command restore" \
      org.opencontainers.image.source="https://github.com/eternia/eternia-backup" \
      org.opencontainers.image.licenses="Apache-2.0"
# Exec form: no shell is needed (or used) at run time; the chart passes the subcommand as arguments.
ENTRYPOINT ["/usr/local/bin/eternia-backup"]
CMD ["--help"]
