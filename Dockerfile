# syntax=docker/dockerfile:1
#
# docker build -t share-hygiene:0.1.0 .                        the controller image (default)
# docker build --target samba -t share-hygiene-samba:0.1.0 .   Samba + the handle service
#                                                              (deploy/samba)

# ---- build ------------------------------------------------------------------------------
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY benches ./benches
# The registry and target caches survive between builds (BuildKit); the binary is copied out
# of the cache mount so later stages can take it.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin share-hygiene \
    && install -D -m 0755 target/release/share-hygiene /out/share-hygiene \
    && strip /out/share-hygiene

# ---- samba: Debian's Samba with the handle service, for both containers of deploy/samba ---
# smbd and the handle service's smbstatus/net/testparm must be the same Samba version: they
# share smbd's databases. Runs as root (smbd switches users; smbstatus reads root-owned
# databases).
FROM debian:bookworm-slim AS samba
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        samba samba-common-bin ca-certificates \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /out/share-hygiene /usr/local/bin/share-hygiene
EXPOSE 445 10004
ENTRYPOINT ["/usr/local/bin/share-hygiene"]
# Plain HTTP on the pod's address, for deploy/samba, whose NetworkPolicy admits only the
# controller and Prometheus; give --tls-cert and --tls-key instead to serve HTTPS.
CMD ["handle-service", "--backend", "samba", "--listen", "0.0.0.0:10004", "--allow-insecure-http"]

# ---- runtime: the controller (the default target) ---------------------------------------
# distroless cc: glibc and libgcc_s (all the binary links), CA certificates, no shell.
FROM gcr.io/distroless/cc-debian12:nonroot AS runtime
COPY --from=build /out/share-hygiene /usr/local/bin/share-hygiene
# nonroot (65532), numerically, so runAsNonRoot can verify it.
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/share-hygiene"]
CMD ["controller"]
