/*
 * bench_out.h: the KC_BENCH_OUT record protocol of bench/README.md for the
 * C bench programs.  When env KC_BENCH_OUT names a file, every figure is
 * appended to it as one JSON line, written with a single write(2) on an
 * O_APPEND descriptor (several programs may share the file).  The run number
 * comes from env KC_BENCH_RUN (default 1).  Values that are not finite are
 * left out, as the protocol asks.  Header-only: each bench includes it once.
 */
#ifndef KC_BENCH_OUT_H
#define KC_BENCH_OUT_H

#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Append one record; impl NULL means "kcache", workload NULL means "". */
static inline void bench_record(const char *bench, const char *impl, const char *workload,
                                const char *name, double value, const char *unit)
{
    const char *path = getenv("KC_BENCH_OUT"), *run = getenv("KC_BENCH_RUN");
    char line[512];
    long r = run ? strtol(run, NULL, 10) : 1;
    int n, fd;

    if (path == NULL || *path == '\0' || !isfinite(value))
        return;
    n = snprintf(line, sizeof(line),
                 "{\"bench\":\"%s\",\"impl\":\"%s\",\"workload\":\"%s\",\"name\":\"%s\","
                 "\"value\":%.9g,\"unit\":\"%s\",\"run\":%ld}\n",
                 bench, impl ? impl : "kcache", workload ? workload : "", name, value, unit,
                 r > 0 ? r : 1);
    if (n <= 0 || (size_t)n >= sizeof(line))
        return;
    fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) {
        perror(path);
        return;
    }
    if (write(fd, line, (size_t)n) != n)
        perror(path);
    close(fd);
}

#endif
