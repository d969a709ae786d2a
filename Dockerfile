# syntax=docker/dockerfile:1
# The vmcp image for users with a Docker daemon (or buildkit, podman, kaniko):
#
#   docker build -t vmcp .                                                   # the gateway
#   docker build --target vmcp-example-server -t vmcp-example-server .      # the example backend
#   docker build --target vmcp-operator -t vmcp-operator .                  # the operator
#
# Equivalent to what scripts/build-images.sh assembles without a daemon (the images the test
# node runs): the stripped release binary, glibc and libgcc from Debian 12 (distroless "cc"),
# the non-root user 65532, no shell. vmcp listens on loopback unless told otherwise: in a pod,
# run `vmcp serve --config ... --host 0.0.0.0`.

# The workspace's rust-version (Cargo.toml); older toolchains refuse to build it.
ARG RUST_VERSION=1.89
FROM rust:${RUST_VERSION}-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin vmcp --bin vmcp-example-server --bin vmcp-operator \
 && strip target/release/vmcp target/release/vmcp-example-server target/release/vmcp-operator

FROM gcr.io/distroless/cc-debian12:nonroot AS vmcp-example-server
COPY --from=build /src/target/release/vmcp-example-server /usr/local/bin/vmcp-example-server
USER 65532:65532
WORKDIR /tmp
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/vmcp-example-server"]

# The operator (deploy/operator/deployment.yaml); /healthz, /readyz, /metrics on 8081.
FROM gcr.io/distroless/cc-debian12:nonroot AS vmcp-operator
COPY --from=build /src/target/release/vmcp-operator /usr/local/bin/vmcp-operator
USER 65532:65532
WORKDIR /tmp
EXPOSE 8081
ENTRYPOINT ["/usr/local/bin/vmcp-operator"]

# Last stage: the default target.
FROM gcr.io/distroless/cc-debian12:nonroot AS vmcp
COPY --from=build /src/target/release/vmcp /usr/local/bin/vmcp
USER 65532:65532
WORKDIR /tmp
EXPOSE 4483
ENTRYPOINT ["/usr/local/bin/vmcp"]
