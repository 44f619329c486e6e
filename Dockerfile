# syntax=docker/dockerfile:1
# kcache-controller container image.
#
#   docker build -t kcache-controller:dev .
#
# Two stages: "build" compiles with Debian bookworm's -dev packages; the
# runtime stage is debian:bookworm-slim with only the shared libraries the
# binary links (libcurl with OpenSSL, cJSON, libyaml, libevent) and CA
# certificates (tests/test_dockerfile.sh checks that list against the
# binary's NEEDED entries), running as the numeric non-root user 65532 (the UID that
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
        libcmocka-dev openssl python3 python3-kubernetes \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
# Only the controller (the tests and benchmarks are not shipped).  The
# Makefile links every program with all of the project's pkg-config
# libraries (cmocka included); --as-needed keeps in the binary only those it
# uses, so the runtime stage need not carry test libraries.
RUN make -j"$(nproc)" LDFLAGS="-Wl,--as-needed" build/kcache-controller \
 && strip build/kcache-controller \
 && readelf -d build/kcache-controller | grep NEEDED

FROM debian:${DEBIAN_RELEASE}-slim
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        ca-certificates libcurl4 libssl3 libcjson1 libyaml-0-2 libevent-2.1-7 \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --gid 65532 nonroot \
 && useradd --uid 65532 --gid 65532 --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin nonroot
COPY --from=build /src/build/kcache-controller /usr/local/bin/kcache-controller
# Fail the image build if a shared library is missing, and run it once.
RUN if ldd /usr/local/bin/kcache-controller | grep 'not found'; then exit 1; fi \
 && /usr/local/bin/kcache-controller --version
USER 65532:65532
# Debian's libcurl links librtmp and libldap, which load GnuTLS; curl talks
# TLS through OpenSSL, so GnuTLS's implicit initialisation in its
# constructor (~0.65 MB resident) is skipped (nothing in the image uses it).
ENV GNUTLS_NO_IMPLICIT_INIT=1
# 8080: /metrics (Prometheus); 8081: /healthz and /readyz.
EXPOSE 8080 8081
# In a pod it uses the in-cluster configuration (the ServiceAccount token);
# elsewhere pass --kubeconfig.
ENTRYPOINT ["/usr/local/bin/kcache-controller"]
