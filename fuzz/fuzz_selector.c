/* libFuzzer target: label and field selector parsing (the fake API
 * server's; the client passes selectors through unparsed).  The input is
 * "LABEL\nFIELD"; what parses is matched against a ConfigMap and a Pod. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "fakeapi_int.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static fa_obj_t *objs[2];
    static const fa_res_t *res[2];
    char *in = malloc(size + 1), *nl;
    const char *field = NULL;

    if (in == NULL)
        return 0;
    if (objs[0] == NULL) {
        static const char *const js[2] = {
            "{\"metadata\":{\"name\":\"a\",\"namespace\":\"ns\",\"labels\":{\"app\":\"web\","
            "\"tier\":\"x\"}},\"data\":{\"k\":\"v\"}}",
            "{\"metadata\":{\"name\":\"p\",\"namespace\":\"ns\",\"labels\":{\"app\":\"db\"}},"
            "\"spec\":{\"nodeName\":\"n1\"},\"status\":{\"phase\":\"Running\"}}" };
        res[0] = fa_res_by_plural("configmaps");
        res[1] = fa_res_by_plural("pods");
        for (int i = 0; i < 2; i++) {
            cJSON *j = cJSON_Parse(js[i]);
            objs[i] = fa_obj_from_json(res[i], j);
            cJSON_Delete(j);
        }
    }
    memcpy(in, data, size);
    in[size] = '\0';
    if ((nl = strchr(in, '\n')) != NULL) {
        *nl = '\0';
        field = nl + 1;
    }
    for (int i = 0; i < 2; i++) {
        fa_selector_t sel;
        fa_status_t st;
        memset(&sel, 0, sizeof(sel));
        memset(&st, 0, sizeof(st));
        if (fa_selector_parse(&sel, res[i], in, field, &st) == 0) {
            (void)fa_selector_match(&sel, objs[i]);
            (void)fa_selector_empty(&sel);
        }
        fa_selector_free(&sel);
    }
    free(in);
    return 0;
}
