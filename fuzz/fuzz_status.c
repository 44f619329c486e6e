/* libFuzzer target: metav1.Status decoding (kc_status_from_json) and the
 * predicates on what it fills. */
#include <stdint.h>
#include <string.h>

#include "kc_client.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    kc_status_t st;
    int rc;

    kc_status_clear(&st);
    rc = kc_status_from_json((const char *)data, size, &st);
    if (rc > 0)
        __builtin_trap();
    /* the fixed-size fields stay NUL-terminated */
    if (memchr(st.reason, 0, sizeof(st.reason)) == NULL ||
        memchr(st.message, 0, sizeof(st.message)) == NULL ||
        memchr(st.detail, 0, sizeof(st.detail)) == NULL ||
        memchr(st.continue_token, 0, sizeof(st.continue_token)) == NULL)
        __builtin_trap();
    (void)kc_status_is_gone(&st);
    (void)kc_status_is_retryable(&st);
    (void)kc_status_is_already_exists(&st);
    return 0;
}
