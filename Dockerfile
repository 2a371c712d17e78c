# syntax=docker/dockerfile:1
# Image of the operator: a Rust builder stage, then the binary alone on distroless.
#
#   docker build -t sklm-restore-operator:0.1.0 .
#
# NOTE: this file has never been built: the machines this project is developed on have no
# container engine. The cache mounts need BuildKit (the default builder since Docker 23;
# Buildah and Podman support them too).

# Debian 12 (bookworm) in both stages, so the binary links against the glibc it runs with.
ARG RUST_VERSION=1.95
FROM rust:${RUST_VERSION}-bookworm AS builder
WORKDIR /src
# .dockerignore keeps the context to the workspace manifests and sources.
COPY . .
# target/ is a cache mount, so the binary is copied out before the mount goes away.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p sklm-restore-operator \
    && install -D -m 0755 target/release/sklm-restore-operator /out/sklm-restore-operator

# glibc, libgcc and CA certificates, no shell; the `nonroot` variant runs as uid 65532.
FROM gcr.io/distroless/cc-debian12:nonroot
LABEL org.opencontainers.image.title="sklm-restore-operator" \
      org.opencontainers.image.description="Kubernetes operator that reports IBM SKLM / GKLM key-server restores" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=builder /out/sklm-restore-operator /usr/local/bin/sklm-restore-operator
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/sklm-restore-operator"]
CMD ["run"]
