/*
 * Allocation-failure hook for cmocka test programs (libuv's test-loop-oom,
 * curl's torture mode): include it in exactly ONE .c file of a test program.
 * It replaces malloc, calloc, realloc, aligned_alloc and free (glibc allows
 * it) so that a test can fail the Nth allocation from now (fail_at = N) and
 * count the blocks still live (live).  Under ASan/TSan, which bring their
 * own allocator, it defines NO_MALLOC_HOOK and nothing else: tests skip.
 * Single-threaded use only (the counters are plain longs).
 */
#ifndef KC_TEST_ALLOC_H
#define KC_TEST_ALLOC_H

#include <stddef.h>

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define NO_MALLOC_HOOK 1
#endif

#ifndef NO_MALLOC_HOOK
extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void *__libc_memalign(size_t, size_t);
extern void __libc_free(void *);

static long fail_at; /* 0: never; else the fail_at-th allocation from now fails */
static long live;    /* blocks allocated and not freed */

static int fail_now(void)
{
    return fail_at > 0 && --fail_at == 0;
}

void *malloc(size_t n)
{
    void *p;

    if (fail_now())
        return NULL;
    p = __libc_malloc(n);
    if (p)
        live++;
    return p;
}

void *calloc(size_t a, size_t b)
{
    void *p;

    if (fail_now())
        return NULL;
    p = __libc_calloc(a, b);
    if (p)
        live++;
    return p;
}

void *realloc(void *q, size_t n)
{
    void *p;

    if (q && n == 0) {
        live--;
        return __libc_realloc(q, 0);
    }
    if (fail_now())
        return NULL;
    p = __libc_realloc(q, n);
    if (p && !q)
        live++;
    return p;
}

void *aligned_alloc(size_t al, size_t n)
{
    void *p;

    if (fail_now())
        return NULL;
    p = __libc_memalign(al, n);
    if (p)
        live++;
    return p;
}

void free(void *p)
{
    if (p)
        live--;
    __libc_free(p);
}
#endif

#endif
