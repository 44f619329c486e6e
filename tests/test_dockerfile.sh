#!/usr/bin/env bash
# The Dockerfile, checked without a Docker engine (none runs here):
# - its shape: a build stage from debian:bookworm, a bookworm-slim runtime
#   stage, USER 65532 (the UID manifests/deployment.yaml runs as), the
#   kcache-controller entrypoint, no "latest" tags;
# - every package it installs exists in Debian (apt-cache show);
# - the build stage installs every package scripts/deps.sh may ask for, so
#   `make` in the image never has to install more;
# - with the controller built: linked as the Dockerfile links it
#   (the Makefile's link line), every shared library it needs comes from a
#   package the runtime stage installs (or libc6, which the base image has).
set -u
cd "$(dirname "$0")/.." || exit 1
build=${KC_BUILD:-build}
fails=0
ok()   { echo "ok: $*"; }
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# apt-get install package lists per stage: stage index, then the package names.
# Join continuation lines, then take the words after each "apt-get install"
# up to the next "&&".
sed -e ':a' -e '/\\$/N; s/\\\n/ /; ta' Dockerfile | sed 's/#.*//' | awk '
    /^FROM / { stage++ }
    {
        n = split($0, w, /[ \t]+/); inst = 0
        for (i = 1; i <= n; i++) {
            if (w[i] == "&&" || w[i] == ";") inst = 0
            else if (w[i] == "install" && w[i - 1] == "apt-get") inst = 1
            else if (inst && w[i] !~ /^-/) print stage, w[i]
        }
    }' > "$tmp/pkgs"
build_pkgs=$(awk '$1 == 1 { print $2 }' "$tmp/pkgs" | sort -u)
run_pkgs=$(awk '$1 == 2 { print $2 }' "$tmp/pkgs" | sort -u)

# 1. Shape.
stages=$(grep -c '^FROM ' Dockerfile)
[ "$stages" = 2 ] && ok "two stages" || fail "expected 2 FROM lines, found $stages"
grep -q '^ARG DEBIAN_RELEASE=bookworm$' Dockerfile && ok "Debian release: bookworm" || fail "no ARG DEBIAN_RELEASE=bookworm"
grep -q '^FROM debian:\${DEBIAN_RELEASE} AS build$' Dockerfile && ok "build stage: debian:bookworm" || fail "build stage is not debian:\${DEBIAN_RELEASE} AS build"
[ "$(grep '^FROM ' Dockerfile | tail -n 1)" = 'FROM debian:${DEBIAN_RELEASE}-slim' ] &&
    ok "runtime stage: debian:bookworm-slim" || fail "runtime stage is not debian:\${DEBIAN_RELEASE}-slim"
grep -q -i ':latest' Dockerfile && fail "a :latest tag" || ok "no :latest tag"
[ "$(grep '^USER ' Dockerfile | tail -n 1)" = 'USER 65532:65532' ] && ok "runs as 65532:65532" || fail "last USER is not 65532:65532"
grep -q '^ENTRYPOINT \["/usr/local/bin/kcache-controller"\]$' Dockerfile &&
    ok "entrypoint kcache-controller" || fail "ENTRYPOINT is not kcache-controller"
grep -q 'COPY --from=build /src/build/kcache-controller /usr/local/bin/kcache-controller' Dockerfile &&
    ok "runtime stage copies only the binary from the build stage" || fail "no COPY --from=build of the binary"
uid=$(sed -n 's/^ *runAsUser: *//p' manifests/deployment.yaml | sort -u)
[ "$uid" = 65532 ] && ok "manifests run as the image's UID" || fail "deployment runAsUser '$uid' is not 65532"
for p in libcmocka0 libcmocka-dev python3 build-essential gcc make; do
    echo "$run_pkgs" | grep -qx "$p" && fail "runtime stage installs build/test package $p"
done
[ -n "$run_pkgs" ] && [ -n "$build_pkgs" ] || fail "could not read the apt-get install lists"

# 2. The packages exist.
if command -v apt-cache >/dev/null 2>&1 && grep -q 'VERSION_CODENAME=bookworm' /etc/os-release 2>/dev/null; then
    missing=
    for p in $build_pkgs $run_pkgs; do
        apt-cache show --no-all-versions "$p" > /dev/null 2>&1 || missing="$missing $p"
    done
    [ -z "$missing" ] && ok "all $(echo $build_pkgs $run_pkgs | wc -w) packages exist in Debian bookworm" ||
        fail "not in this machine's bookworm package lists (apt-get update?):$missing"
else
    echo "SKIP: not a Debian bookworm machine with apt-cache: package names not checked"
fi

# 3. The build stage covers scripts/deps.sh.
deps_pkgs=$(sed -n 's/^\(mods\|cmds\)=(\(.*\)/\2/p; s/^ \{6,\}\([a-z].*:.*\)/\1/p' scripts/deps.sh |
            tr ' )' '\n\n' | sed -n 's/^[^:]*:\(.*\)$/\1/p' | sort -u)
deps_pkgs="$deps_pkgs $(grep -o 'missing+=(python3-[a-z]*)' scripts/deps.sh | sed 's/missing+=(\(.*\))/\1/')"
missing=
for p in $deps_pkgs; do
    [ "$p" = coreutils ] && continue     # essential, in every Debian image
    echo "$build_pkgs" | grep -qx "$p" || missing="$missing $p"
done
[ -z "$missing" ] && ok "build stage installs all of scripts/deps.sh's packages ($(echo $deps_pkgs | wc -w))" ||
    fail "build stage misses packages scripts/deps.sh wants:$missing"

# 4. Runtime libraries of the controller as the Makefile links it (the image
#    runs `make build/kcache-controller`): every shared library it needs comes
#    from a package the runtime stage installs (or libc6, in the base image),
#    and libcurl, OpenSSL and the libraries only Debian's libcurl4 needs
#    (GnuTLS, LDAP, RTMP, SSH, Kerberos) are not among them.
bin=$build/kcache-controller
if [ -n "${KC_SANITIZER:-}" ]; then
    echo "SKIP: runtime libraries checked in the plain build only"
elif [ ! -x "$bin" ]; then
    echo "SKIP: $bin not built: runtime libraries not checked"
elif ! command -v dpkg >/dev/null 2>&1; then
    echo "SKIP: no dpkg: runtime libraries not checked"
else
    needed=$(readelf -d "$bin" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p')
    bad=
    for so in $needed; do
        path=$(ldd "$bin" | awk -v so="$so" '$1 == so { print $3 }')
        pkg=$( { dpkg -S "$path" 2>/dev/null || dpkg -S "$(readlink -f "$path")" 2>/dev/null; } | head -n 1 | cut -d: -f1)
        case $pkg in
            libc6) ;;
            "") bad="$bad $so(no package)" ;;
            *) echo "$run_pkgs" | grep -qx "$pkg" || bad="$bad $so($pkg)" ;;
        esac
    done
    [ -z "$bad" ] && ok "runtime stage provides every library the binary needs: $(echo $needed)" ||
        fail "libraries the runtime stage does not install:$bad"
    loaded=$(ldd "$bin" | awk '{ print $1 }')
    for l in libcmocka libcurl libssl libcrypto libgnutls libldap librtmp libssh2 libgssapi_krb5; do
        echo "$loaded" | grep -q "^$l\." && fail "the controller loads $l"
    done
    echo "$loaded" | grep -q '^libcurl\.' || ok "libcurl and OpenSSL linked in, no shared library of Debian's libcurl4 loaded"
fi

if [ $fails -gt 0 ]; then echo "test_dockerfile: $fails failed"; exit 1; fi
echo "test_dockerfile: all ok"
