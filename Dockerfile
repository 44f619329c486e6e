# syntax=docker/dockerfile:1
# kcache-controller container image.
#
#   docker build -t kcache-controller:dev .
#
# Two stages: "build" compiles with Debian bookworm's -dev packages and
# builds libcurl from Debian's curl source package with HTTP(S) only
# (scripts/build-curl.sh), linked in statically like OpenSSL, nghttp2, zlib,
# libevent and libyaml; the runtime stage is debian:bookworm-slim with only
# the shared library the binary still needs (cJSON) and CA certificates
# (tests/test_dockerfile.sh checks that list against the binary's NEEDED
# entries), running as the numeric non-root user 65532 (the UID that
# manifests/deployment.yaml's securityContext sets).  The binary writes no
# files, so it runs with a read-only root filesystem.

ARG DEBIAN_RELEASE=bookworm

FROM debian:${DEBIAN_RELEASE} AS build
# The packages scripts/deps.sh checks for, installed here so that `make`
# finds them all and deps.sh has nothing left to install.
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        build-essential pkg-config make \
        libcurl4-openssl-dev libcjson-dev libyaml-dev libssl-dev libevent-dev \
        libnghttp2-dev zlib1g-dev liblz4-dev dpkg-dev \
        libcmocka-dev openssl python3 python3-kubernetes \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
# Only the controller (the tests and benchmarks are not shipped).  The
# Makefile links the shared libraries with --as-needed, so the test library
# (cmocka) is not among them.  scripts/build-curl.sh fetches the curl source
# package with the image's apt sources.
RUN make -j"$(nproc)" build/kcache-controller \
 && strip build/kcache-controller \
 && readelf -d build/kcache-controller | grep NEEDED

FROM debian:${DEBIAN_RELEASE}-slim
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        ca-certificates libcjson1 \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --gid 65532 nonroot \
 && useradd --uid 65532 --gid 65532 --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin nonroot
COPY --from=build /src/build/kcache-controller /usr/local/bin/kcache-controller
# Fail the image build if a shared library is missing, and run it once.
RUN if ldd /usr/local/bin/kcache-controller | grep 'not found'; then exit 1; fi \
 && /usr/local/bin/kcache-controller --version
USER 65532:65532
# 8080: /metrics (Prometheus); 8081: /healthz and /readyz.
EXPOSE 8080 8081
# In a pod it uses the in-cluster configuration (the ServiceAccount token);
# elsewhere pass --kubeconfig.
ENTRYPOINT ["/usr/local/bin/kcache-controller"]
