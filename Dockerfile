# syntax=docker/dockerfile:1
# The image of both services: tenantctl (the control plane; `tenantctl serve`) and tenant-router,
# with the tenant migrations and plan templates tenantctl reads at run time, pg_dump for the
# archive it takes before dropping a deprovisioned tenant (and, with pg_restore, for moves by
# dump: `tenants move --method dump`), and Amazon's RDS CA bundle
# (/app/rds-global-bundle.pem) that terraform sets as PG_SSL_ROOT_CERT. Terraform's task definitions choose
# the command: ["tenantctl", "serve"] or ["tenant-router"].
#
#   docker build -t tenancy:<version> .

ARG RUST_VERSION=1.95
ARG DEBIAN_RELEASE=trixie

FROM rust:${RUST_VERSION}-${DEBIAN_RELEASE} AS build
# libclang: the router's statement classifier binds PostgreSQL's own parser (pg_query) at build time.
RUN apt-get update \
 && apt-get install -y --no-install-recommends libclang-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
# Cache mounts keep the registry and the target directory between builds (BuildKit).
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin tenantctl --bin tenant-router \
 && install -D -m 0755 target/release/tenantctl /out/tenantctl \
 && install -D -m 0755 target/release/tenant-router /out/tenant-router
# Amazon's RDS CA bundle (every region's roots), which PG_SSL_ROOT_CERT points at so that
# `sslmode=verify-full` authenticates Aurora. Fetched over HTTPS when the image is built (the
# bundle changes as Amazon rotates CAs); the build fails if it is not a PEM bundle.
RUN curl --fail --silent --show-error --location --proto '=https' --tlsv1.2 \
      https://truststore.pki.rds.amazonaws.com/global/global-bundle.pem -o /out/rds-global-bundle.pem \
 && grep -q -- '-----BEGIN CERTIFICATE-----' /out/rds-global-bundle.pem

FROM debian:${DEBIAN_RELEASE}-slim
#checkov:skip=CKV_DOCKER_2:ECS does not use Docker HEALTHCHECK here; the ALB checks /healthz over HTTP (the router's on ROUTER_ADMIN_LISTEN) and the image has no HTTP client to run one.
# postgresql-client: pg_dump (PG_DUMP) and pg_restore (PG_RESTORE) must be at least the
# server's major version; trixie
# ships 17, which dumps Aurora PostgreSQL 16 and older.
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates postgresql-client \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 tenancy \
 && useradd --system --uid 10001 --gid tenancy --home-dir /app --shell /usr/sbin/nologin tenancy

WORKDIR /app
COPY --from=build /out/tenantctl /out/tenant-router /usr/local/bin/
COPY --from=build /out/rds-global-bundle.pem /app/rds-global-bundle.pem
COPY migrations/ /app/migrations/
COPY tenant-templates/ /app/tenant-templates/

# The defaults of TENANT_MIGRATIONS_DIR and TENANT_TEMPLATES_DIR are relative to /app.
USER 10001:10001
EXPOSE 8080 8081 9091
CMD ["tenantctl", "--help"]
