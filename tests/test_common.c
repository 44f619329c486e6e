/* Unit tests for common/: error codes, texts and kc_errf. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "kc_common.h"

static void test_strerror_own_codes(void **state)
{
    (void)state;
    assert_string_equal(kc_strerror(KC_EGONE), "resource version too old (410 Gone/Expired)");
    assert_string_equal(kc_err_name(KC_ECONFLICT), "KC_ECONFLICT");
    assert_string_equal(kc_strerror(0), "success");
    assert_string_equal(kc_strerror(-ENOMEM), strerror(ENOMEM));
    assert_string_equal(kc_err_name(-ENOMEM), "ENOMEM");
    assert_string_equal(kc_strerror(-99999), "unknown error");
}

static void test_codes_distinct(void **state)
{
    static const int codes[] = {
#define XX(name, num, text) num,
        KC_ERRNO_MAP(XX)
#undef XX
    };
    size_t n = sizeof(codes) / sizeof(codes[0]);

    (void)state;
    for (size_t i = 0; i < n; i++) {
        assert_true(codes[i] <= -1000 && codes[i] > -2000);
        for (size_t j = i + 1; j < n; j++)
            assert_int_not_equal(codes[i], codes[j]);
    }
}

static void test_errf(void **state)
{
    kc_errbuf_t eb;

    (void)state;
    assert_int_equal(kc_errf(&eb, KC_EPARSE, "line %d: %s", 7, "bad"), KC_EPARSE);
    assert_int_equal(eb.code, KC_EPARSE);
    assert_string_equal(eb.msg, "line 7: bad");
    assert_int_equal(kc_errf(NULL, KC_ETLS, "x"), KC_ETLS);
}

static int captured_level = -1;
static char captured[128];

static void capture(void *ud, kc_log_level_t level, const char *comp, const char *msg)
{
    (void)ud;
    captured_level = (int)level;
    snprintf(captured, sizeof(captured), "%s: %s", comp, msg);
}

static void test_log_levels(void **state)
{
    kc_logger_t lg = { capture, NULL, KC_LOG_INFO };

    (void)state;
    kc_log(&lg, KC_LOG_DEBUG, "t", "hidden");
    assert_int_equal(captured_level, -1);
    kc_log(&lg, KC_LOG_WARN, "t", "shown %d", 1);
    assert_int_equal(captured_level, KC_LOG_WARN);
    assert_string_equal(captured, "t: shown 1");
    kc_log(NULL, KC_LOG_ERROR, "t", "no logger");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_strerror_own_codes),
        cmocka_unit_test(test_codes_distinct),
        cmocka_unit_test(test_errf),
        cmocka_unit_test(test_log_levels),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
