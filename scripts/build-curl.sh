#!/usr/bin/env bash
# Builds the libcurl that kcache's programs link: Debian's own curl source
# package (upstream release plus Debian's security patches, fetched and
# signature-checked by apt-get from the machine's Debian archive), configured
# with only what kcache uses -- HTTP/1.1 and HTTP/2 (nghttp2) over OpenSSL,
# gzip (zlib), proxies, basic auth -- as a static, position-independent
# library.
#
# Why not Debian's libcurl4: it links 23 more shared libraries for protocols
# kcache never speaks (LDAP, RTMP, SSH, Kerberos, IDN, PSL, brotli; through
# librtmp and libldap, GnuTLS with nettle, gmp, p11-kit ...).  Mapping and
# relocating them costs every kcache process ~2.4 MiB of resident memory
# (bench/RESULTS.md, "Controller").
#
# Usage: build-curl.sh OUTDIR.  Writes OUTDIR/lib/libcurl.a and
# OUTDIR/include/curl/*.h; does nothing when OUTDIR/stamp matches this
# script.  Needs no root: apt-get runs with private lists under OUTDIR.
set -euo pipefail
out=${1:?usage: build-curl.sh OUTDIR}
mkdir -p "$out"
out=$(cd "$out" && pwd)
stamp=$(sha256sum "$0" | cut -c1-16)
if [ -f "$out/lib/libcurl.a" ] && [ "$(cat "$out/stamp" 2>/dev/null)" = "$stamp" ]; then
    exit 0
fi
for c in apt-get dpkg-source cc make; do
    command -v "$c" >/dev/null 2>&1 || { echo "build-curl: needs $c (scripts/deps.sh installs it)" >&2; exit 1; }
done
work=$out/work
rm -rf "$work" "$out/lib" "$out/include" "$out/stamp"
mkdir -p "$work/apt/sources" "$work/apt/lists/partial" "$work/apt/cache/archives/partial" "$work/src"

# The machine's Debian archive entries ("deb" lines and deb822 files), as
# source entries in a private sources directory: /etc/apt is not changed.
for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [ -f "$f" ] && sed -n 's/^[[:space:]]*deb[[:space:]]/deb-src /p' "$f"
done > "$work/apt/sources/kcache-src.list"
for f in /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] || continue
    sed 's/^Types:.*/Types: deb-src/' "$f" > "$work/apt/sources/$(basename "$f")"
done
apt=(apt-get -q -o "Dir::Etc::SourceList=/dev/null" -o "Dir::Etc::SourceParts=$work/apt/sources"
     -o "Dir::State::Lists=$work/apt/lists" -o "Dir::Cache=$work/apt/cache"
     -o "Debug::NoLocking=1" -o "APT::Sandbox::User=$(id -un)")
echo "build-curl: fetching Debian's curl source package" >&2
"${apt[@]}" update >"$work/apt.log" 2>&1 || { cat "$work/apt.log" >&2; echo "build-curl: apt-get update failed" >&2; exit 1; }
(cd "$work/src" && "${apt[@]}" source --download-only curl) >>"$work/apt.log" 2>&1 ||
    { tail -20 "$work/apt.log" >&2; echo "build-curl: apt-get source curl failed" >&2; exit 1; }
dsc=$(ls "$work"/src/curl_*.dsc)
dpkg-source -q -x "$dsc" "$work/src/curl" >>"$work/apt.log" 2>&1 ||
    { tail -20 "$work/apt.log" >&2; echo "build-curl: dpkg-source -x $dsc failed" >&2; exit 1; }
echo "build-curl: building $(basename "$dsc" .dsc) (HTTP and HTTPS only, static)" >&2

cd "$work/src/curl"
# Debian's patches touch a few Makefile.am files (the zsh completion, test
# data): not the library's sources; never re-run autotools here.
noauto=(ACLOCAL=: AUTOCONF=: AUTOMAKE=: AUTOHEADER=:)
./configure -q --prefix="$out" --disable-shared --enable-static --with-pic \
    --with-openssl --with-nghttp2 --with-zlib \
    --disable-ftp --disable-file --disable-ldap --disable-ldaps --disable-rtsp \
    --disable-dict --disable-telnet --disable-tftp --disable-pop3 --disable-imap \
    --disable-smb --disable-smtp --disable-gopher --disable-mqtt --disable-websockets \
    --disable-manual --disable-ntlm --disable-ntlm-wb --disable-tls-srp --disable-crypto-auth \
    --disable-cookies --disable-mime --disable-netrc --disable-alt-svc --disable-hsts \
    --disable-doh --disable-unix-sockets --disable-dateparse --disable-libcurl-option \
    --without-librtmp --without-libssh2 --without-libssh --without-libpsl \
    --without-libidn2 --without-brotli --without-zstd --without-gssapi --without-libgsasl \
    >"$work/configure.log" 2>&1 || { tail -30 "$work/configure.log" >&2; echo "build-curl: configure failed ($work/configure.log)" >&2; exit 1; }
make -s -j"$(nproc)" -C lib "${noauto[@]}" >"$work/make.log" 2>&1 ||
    { tail -30 "$work/make.log" >&2; echo "build-curl: make failed ($work/make.log)" >&2; exit 1; }
make -s -C lib "${noauto[@]}" install >>"$work/make.log" 2>&1
make -s -C include "${noauto[@]}" install >>"$work/make.log" 2>&1
rm -f "$out"/lib/*.la
cd "$out"
rm -rf "$work"
echo "$stamp" > "$out/stamp"
echo "build-curl: $out/lib/libcurl.a" >&2
