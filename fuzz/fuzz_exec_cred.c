/* libFuzzer target: the exec credential plugin's output parser.  It is a
 * static function of k8sclient/exec_plugin.c, so this file includes that
 * source (its other functions then come from here, not the library). */
#include "../k8sclient/exec_plugin.c"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static kc__exec_t ex;
    static kc_config_t cfg;
    kc__exec_cred_t cr;
    kc_errbuf_t eb;

    ex.command = "fuzz-plugin";
    ex.api_version = "client.authentication.k8s.io/v1";
    cfg.exec = &ex;
    memset(&cr, 0, sizeof(cr));
    if (parse_cred(&cfg, (const char *)data, size, &cr, &eb) == 0)
        kc__exec_cred_free(&cr);
    return 0;
}
