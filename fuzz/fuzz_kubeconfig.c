/* libFuzzer target: the kubeconfig parser (YAML), through kc_config_load
 * on a file holding the input (the parser's only entry point).  Files the
 * input names are read like any kubeconfig would have them read. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kc_client.h"

static char path[64];

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    kc_config_opts_t o = KC_CONFIG_OPTS_INIT;
    kc_config_t *cfg = NULL;
    kc_errbuf_t eb;
    FILE *f;

    if (path[0] == '\0') {
        snprintf(path, sizeof(path), "/tmp/kc-fuzz-kubeconfig-%d", (int)getpid());
        kc_global_init();
    }
    f = fopen(path, "w");
    if (f == NULL)
        return 0;
    fwrite(data, 1, size, f);
    fclose(f);
    o.kubeconfig = path;
    if (kc_config_load(&o, &cfg, &eb) == 0) {
        (void)kc_config_server(cfg);
        (void)kc_config_namespace(cfg);
        (void)kc_config_context(cfg);
        kc_config_free(cfg);
    } else if (memchr(eb.msg, 0, sizeof(eb.msg)) == NULL) {
        __builtin_trap();
    }
    return 0;
}
