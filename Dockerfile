# One image with the three binaries (metallb-allocator, metallb-watcher, metallb-announcer);
# each workload in deploy/ picks its binary with `command`. For machines with registry access;
# scripts/build-image.sh builds the same layout (binaries in /usr/local/bin, user 65532, the
# same ports) with no registry at all, from this machine's release build.
#
#   docker build -t registry.example/metallb-rs:0.1.0-$(git rev-parse --short=12 HEAD) .
#
# The binaries are linked statically against musl, so the final image needs no C library and
# holds nothing but them (no shell, no package manager). protoc comes from the
# protoc-bin-vendored crate, so the builder needs no protobuf package; musl-gcc compiles ring's
# C and assembly for the musl target.

FROM rust:1.95-trixie AS builder
RUN apt-get update \
 && apt-get install -y --no-install-recommends musl-tools \
 && rm -rf /var/lib/apt/lists/*
RUN rustup target add x86_64-unknown-linux-musl
WORKDIR /src
COPY . .
RUN cargo build --release --locked --target x86_64-unknown-linux-musl \
      --bin metallb-allocator --bin metallb-watcher --bin metallb-announcer \
 && mkdir /out \
 && cp target/x86_64-unknown-linux-musl/release/metallb-allocator \
       target/x86_64-unknown-linux-musl/release/metallb-watcher \
       target/x86_64-unknown-linux-musl/release/metallb-announcer \
       /out/

# Distroless static: CA certificates, /etc/passwd with the nonroot user, nothing else.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=builder /out/ /usr/local/bin/
# 65532 is distroless's nonroot user; the manifests run as it too.
USER 65532:65532
# gRPC API (allocator), admin endpoint (/metrics, /healthz, /readyz) of the allocator and the
# watcher, admin endpoint of the announcer on the host network.
EXPOSE 50051 7472 7473
