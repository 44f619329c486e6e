/*
 * A complete kcache controller in one file: it reconciles every ConfigMap
 * and prints how many data keys it holds, or that it is gone.  It is the
 * README's example, built by `make` and run by tests/test_examples.sh, so it
 * cannot drift from the API.
 *
 *   build/examples/configmap_sizes --kubeconfig PATH [--seconds N]
 *
 * Threads: the manager's informer threads feed the controller's queue; two
 * worker threads call reconcile(), never two for the same key.  Reconcile
 * reads the informer's cache only (no request to the API server).
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "kc_cache.h"
#include "kc_client.h"
#include "kc_common.h"
#include "kc_controller.h"
#include "kc_informer.h"

struct app {
    kc_informer_t *configmaps; /* its cache is what reconcile reads */
};

static kc_result_t reconcile(void *ud, const kc_key_t *key)
{
    struct app *app = ud;
    kc_obj_t *cm = NULL;
    cJSON *tree, *data;
    int n = 0;

    /* Always (namespace, name): team-a/app and team-b/app are two objects. */
    if (kc_cache_get(kc_informer_cache(app->configmaps), key, &cm) == KC_ENOTFOUND) {
        printf("%s/%s: gone\n", key->ns, key->name);
        fflush(stdout);
        return KC_RESULT_OK;
    }
    tree = kc_obj_parse(cm); /* the whole body, only when it is needed */
    data = tree ? cJSON_GetObjectItemCaseSensitive(tree, "data") : NULL;
    n = cJSON_GetArraySize(data);
    printf("%s/%s: %d keys (resourceVersion %s)\n", key->ns, key->name, n,
           kc_obj_resource_version(cm));
    fflush(stdout);
    cJSON_Delete(tree);
    kc_obj_unref(cm);
    return KC_RESULT_OK;
}

static kc_manager_t *g_manager; /* for the signal handler only */

static void on_signal(int sig)
{
    (void)sig;
    kc_manager_request_stop(g_manager);
}

int main(int argc, char **argv)
{
    kc_config_opts_t copts = KC_CONFIG_OPTS_INIT;
    kc_client_opts_t clopts = KC_CLIENT_OPTS_INIT;
    kc_informer_opts_t iopts = KC_INFORMER_OPTS_INIT;
    kc_controller_opts_t ctl = KC_CONTROLLER_OPTS_INIT;
    kc_manager_opts_t mopts = KC_MANAGER_OPTS_INIT;
    kc_source_t src = KC_SOURCE_INIT;
    kc_config_t *cfg = NULL;
    kc_client_t *client = NULL;
    kc_informer_factory_t *factory = NULL;
    kc_controller_t *controller = NULL;
    kc_manager_t *manager = NULL;
    kc_errbuf_t eb = { 0, "" };
    struct app app = { NULL };
    int seconds = 0, rc = 1;

    for (int i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--kubeconfig") == 0)
            copts.kubeconfig = argv[i + 1];
        else if (strcmp(argv[i], "--seconds") == 0)
            seconds = (int)strtol(argv[i + 1], NULL, 10);
    }
    if (kc_global_init() != 0)
        return 1;
    if (kc_config_load(&copts, &cfg, &eb) != 0 ||
        kc_client_new(cfg, &clopts, &client, &eb) != 0)
        goto fail;

    iopts.resource = &kc_res_configmaps;
    if (kc_informer_factory_new(client, &iopts, &factory) != 0 ||
        kc_informer_factory_get(factory, &kc_res_configmaps, NULL, NULL, NULL,
                                &app.configmaps) != 0)
        goto fail;

    ctl.name = "configmap-sizes";
    ctl.reconcile = reconcile;
    ctl.ud = &app;
    ctl.workers = 2;
    if (kc_controller_new(&ctl, &controller, &eb) != 0)
        goto fail;
    src.informer = app.configmaps; /* primary resource: enqueue its own key */
    if (kc_controller_watch(controller, &src) != 0)
        goto fail;

    mopts.informers = factory;
    mopts.metrics_addr = "0"; /* no servers in this example */
    mopts.probe_addr = "0";
    if (kc_manager_new(&mopts, &manager, &eb) != 0 || kc_manager_add(manager, controller) != 0)
        goto fail;
    controller = NULL; /* the manager owns it now */

    g_manager = manager;
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    signal(SIGALRM, on_signal);
    if (seconds > 0)
        alarm((unsigned)seconds);
    if (kc_manager_run(manager, &eb) == 0)
        rc = 0;
    else
        fprintf(stderr, "configmap_sizes: %s\n", eb.msg);
    goto out;

fail:
    fprintf(stderr, "configmap_sizes: %s\n", eb.msg[0] ? eb.msg : "setup failed");
out:
    kc_manager_free(manager);
    kc_controller_free(controller);
    kc_informer_factory_free(factory);
    kc_client_free(client);
    kc_config_free(cfg);
    kc_global_cleanup();
    return rc;
}
