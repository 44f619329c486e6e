# kcache-controller image: multi-stage build.
#   docker build -t kcache/kcache-controller:0.1.0 .
# Build stage: Debian with the -dev packages; only the controller program is
# built (no tests).  Runtime stage: debian:bookworm-slim with the runtime
# libraries only, running as a non-root user; the Deployment in manifests/
# adds a read-only root filesystem (the program writes nothing to disk).

FROM debian:bookworm AS build
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        build-essential pkg-config libcurl4-openssl-dev libcjson-dev libyaml-dev \
        libssl-dev libevent-dev libcmocka-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
# Write the pkg-config flags the Makefile wants directly (scripts/deps.sh
# would also insist on the test-only tools).
RUN mkdir -p build \
 && mods="libcurl libcjson yaml-0.1 openssl libevent libevent_openssl libevent_pthreads" \
 && printf 'PKG_CFLAGS := %s\nPKG_LIBS := %s\n' \
        "$(pkg-config --cflags $mods)" "$(pkg-config --libs $mods)" > build/deps.mk \
 && make -j"$(nproc)" CFLAGS="-O2 -g0" LDFLAGS="-Wl,--as-needed" build/kcache-controller \
 && strip build/kcache-controller \
 && build/kcache-controller --version

FROM debian:bookworm-slim
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        ca-certificates libcurl4 libcjson1 libyaml-0-2 libevent-2.1-7 \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/build/kcache-controller /usr/local/bin/kcache-controller
USER 65532:65532
EXPOSE 8080 8081
ENTRYPOINT ["/usr/local/bin/kcache-controller"]
CMD ["--leader-elect", "--metrics-bind-address=:8080", "--health-probe-bind-address=:8081"]
