/*
 * read_fixture: the bytes of a file of ../shared/fixtures/api-testdata/
 * (tests run from the project root), or of $KC_FIXTURES/NAME when set.
 * For cmocka test programs: fails the test when the file is missing.
 * The caller frees the NUL-terminated result.
 */
#ifndef KC_TEST_FIXTURE_H
#define KC_TEST_FIXTURE_H

#include <stdio.h>
#include <stdlib.h>

static char *read_fixture(const char *name, size_t *len)
{
    const char *dirs[] = { getenv("KC_FIXTURES"), "../shared/fixtures/api-testdata" };
    char path[512];

    for (size_t i = 0; i < sizeof(dirs) / sizeof(dirs[0]); i++) {
        if (!dirs[i])
            continue;
        snprintf(path, sizeof(path), "%s/%s", dirs[i], name);
        FILE *f = fopen(path, "rb");
        if (!f)
            continue;
        fseek(f, 0, SEEK_END);
        long n = ftell(f);
        fseek(f, 0, SEEK_SET);
        char *b = malloc((size_t)n + 1);
        assert_non_null(b);
        assert_int_equal(fread(b, 1, (size_t)n, f), (size_t)n);
        fclose(f);
        b[n] = '\0';
        *len = (size_t)n;
        return b;
    }
    fail_msg("fixture %s not found (run from the project root, or set KC_FIXTURES)", name);
    return NULL;
}

#endif
