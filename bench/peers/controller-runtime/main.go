// controller-runtime bench peer: the smallest useful controller-runtime
// manager — one controller reconciling ConfigMaps (all namespaces) and doing
// nothing but counting — against a kubeconfig.  The cache strips
// managedFields (as kcache-controller does by default); metrics, health
// probes and leader election are off.  Once the cache has synced and every
// object was reconciled once, it waits --settle and reports as JSON lines
// (bench/README.md), then exits by itself:
//
//	idle_rss     VmRSS after sync + settle (bytes): compare with the idle
//	             RSS of build/kcache-controller on the same server
//	peak_rss     VmHWM at that point (bytes)
//	idle_rss_anon RssAnon at that point (bytes): the private heap and
//	             stacks, without the binary's own file-backed pages
//	initial_reconcile_time  wall seconds from manager start until --expect
//	             objects were reconciled
//	reconciles   reconciles done before measuring
//	cpu_total    user+system CPU seconds of the process
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/tools/clientcmd"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
)

func main() {
	// controller-runtime's config package already registers --kubeconfig.
	kubeconfig := new(string)
	if f := flag.Lookup("kubeconfig"); f == nil {
		kubeconfig = flag.String("kubeconfig", "", "kubeconfig of the API server")
	}
	expect := flag.Int64("expect", 0, "ConfigMaps expected; wait until this many were reconciled")
	settle := flag.Duration("settle", 3*time.Second, "idle time after sync before measuring")
	timeout := flag.Duration("timeout", 10*time.Minute, "give up after this long")
	workload := flag.String("workload", "", "workload label in the records (default configmaps-EXPECT)")
	out := flag.String("out", os.Getenv("KC_BENCH_OUT"), "append JSON-lines records here (default: stdout)")
	run := flag.Int("run", envInt("KC_BENCH_RUN", 1), "run number in the records")
	flag.Parse()
	if f := flag.Lookup("kubeconfig"); f != nil && *kubeconfig == "" {
		*kubeconfig = f.Value.String()
	}
	if *kubeconfig == "" {
		*kubeconfig = os.Getenv("KUBECONFIG")
	}
	if *workload == "" {
		*workload = fmt.Sprintf("configmaps-%d", *expect)
	}
	ctrllog.SetLogger(logr.Discard())
	rec, err := newRecorder(*out, "controller", "controller-runtime", *workload, *run)
	if err != nil {
		fatal(err)
	}
	cpuBase := cpuSeconds()

	cfg, err := clientcmd.BuildConfigFromFlags("", *kubeconfig)
	if err != nil {
		fatal(err)
	}
	cfg.QPS, cfg.Burst = 1000, 2000
	cfg.ContentType = "application/json"
	cfg.AcceptContentTypes = "application/json"
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
		LeaderElection:         false,
		Cache:                  cache.Options{DefaultTransform: cache.TransformStripManagedFields()},
	})
	if err != nil {
		fatal(err)
	}
	var reconciles atomic.Int64
	err = ctrl.NewControllerManagedBy(mgr).For(&corev1.ConfigMap{}).
		Complete(reconcile.Func(func(context.Context, reconcile.Request) (reconcile.Result, error) {
			reconciles.Add(1)
			return reconcile.Result{}, nil
		}))
	if err != nil {
		fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	t0 := time.Now()
	errc := make(chan error, 1)
	go func() { errc <- mgr.Start(ctx) }()
	// The manager starts its cache and controller in the background; the
	// initial sync counts as done once every expected object was reconciled.
	for reconciles.Load() < *expect && ctx.Err() == nil {
		time.Sleep(5 * time.Millisecond)
	}
	if ctx.Err() != nil {
		fatal(fmt.Errorf("only %d of %d reconciled: %v", reconciles.Load(), *expect, ctx.Err()))
	}
	syncTime := time.Since(t0).Seconds()
	time.Sleep(*settle)
	rec.put("idle_rss", float64(procStatus("VmRSS")), "bytes")
	rec.put("peak_rss", float64(procStatus("VmHWM")), "bytes")
	rec.put("idle_rss_anon", float64(procStatus("RssAnon")), "bytes")
	rec.put("initial_reconcile_time", syncTime, "s")
	rec.put("reconciles", float64(reconciles.Load()), "count")
	rec.put("cpu_total", cpuSeconds()-cpuBase, "s")
	if err := rec.close(); err != nil {
		fatal(err)
	}
	fmt.Fprintf(os.Stderr, "controller-runtime peer: synced in %.3fs, %d reconciles\n", syncTime, reconciles.Load())
	cancel()
	select {
	case <-errc:
	case <-time.After(5 * time.Second):
	}
}

func envInt(name string, def int) int {
	var v int
	if _, err := fmt.Sscan(os.Getenv(name), &v); err == nil {
		return v
	}
	return def
}

func fatal(err error) {
	fmt.Fprintln(os.Stderr, "controller-runtime peer:", err)
	os.Exit(1)
}
