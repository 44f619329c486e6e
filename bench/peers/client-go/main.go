// client-go bench peer: runs one client-go SharedIndexInformer (ConfigMaps or
// Pods, all namespaces) against a kubeconfig, with a transform that drops
// managedFields (as kcache does by default) and a handler that only counts
// events, and reports its figures as JSON lines (bench/README.md):
//
//	sync_time        wall seconds from factory start to HasSynced
//	sync_cpu         user+system CPU seconds of the process up to then
//	objects          objects in the store after the initial sync
//	rss_synced       VmRSS after the initial sync (bytes)
//	bytes_per_object (RssAnon after sync - RssAnon before start) / objects
//	bytes_per_object_rss  the same with VmRSS
//	heap_per_object  (Go HeapAlloc after sync and a forced GC - the same
//	                 before start) / objects: live heap only, a lower bound
//	events_per_s     events handled in the churn phase / (last - first event)
//	churn_events     events handled in the churn phase
//	churn_cpu        CPU seconds used during the churn phase
//	cpu_per_kevent   churn_cpu / churn_events * 1000
//	peak_rss         VmHWM at exit (bytes)
//	cpu_total        CPU seconds of the whole run
//
// The churn phase starts right after the initial sync: the program runs
// --churn-cmd (if given, through sh -c, without waiting for it) and counts
// events until --churn-events were seen, or nothing arrived for --idle
// after the first one, or --duration passed.  Then it exits by itself.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"sync/atomic"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/clientcmd"
)

type counter struct {
	n     atomic.Int64
	first atomic.Int64 // unix nanos of the first event counted, 0: none
	last  atomic.Int64
}

func (c *counter) hit() {
	now := time.Now().UnixNano()
	c.first.CompareAndSwap(0, now)
	c.last.Store(now)
	c.n.Add(1)
}

func (c *counter) reset() {
	c.n.Store(0)
	c.first.Store(0)
	c.last.Store(0)
}

func main() {
	kubeconfig := flag.String("kubeconfig", os.Getenv("KUBECONFIG"), "kubeconfig of the API server")
	resource := flag.String("resource", "configmaps", "configmaps or pods")
	expect := flag.Int("expect", 0, "objects expected after the initial sync (only checked and used in the workload label)")
	duration := flag.Duration("duration", 20*time.Second, "longest churn phase")
	idle := flag.Duration("idle", 2*time.Second, "end the churn phase after this long without events (once one was seen)")
	churnEvents := flag.Int64("churn-events", 0, "end the churn phase after this many events (0: no limit)")
	churnCmd := flag.String("churn-cmd", "", "shell command started right after the initial sync")
	syncTimeout := flag.Duration("sync-timeout", 10*time.Minute, "give up on the initial sync after this long")
	watchList := flag.String("watchlist", "default", "WatchListClient feature: default (client-go's), on or off")
	workload := flag.String("workload", "", "workload label in the records (default RESOURCE-EXPECT)")
	impl := flag.String("impl", "client-go", "impl label in the records")
	out := flag.String("out", os.Getenv("KC_BENCH_OUT"), "append JSON-lines records here (default: stdout)")
	run := flag.Int("run", envInt("KC_BENCH_RUN", 1), "run number in the records")
	flag.Parse()

	switch *watchList {
	case "on":
		os.Setenv("KUBE_FEATURE_WatchListClient", "true")
	case "off":
		os.Setenv("KUBE_FEATURE_WatchListClient", "false")
	}
	if *workload == "" {
		*workload = fmt.Sprintf("%s-%d", *resource, *expect)
	}
	rec, err := newRecorder(*out, "informer", *impl, *workload, *run)
	if err != nil {
		fatal(err)
	}

	runtime.GC()
	rssBase := procStatus("VmRSS")
	anonBase := procStatus("RssAnon")
	heapBase := heapAlloc()
	cpuBase := cpuSeconds()

	cfg, err := clientcmd.BuildConfigFromFlags("", *kubeconfig)
	if err != nil {
		fatal(err)
	}
	cfg.QPS, cfg.Burst = 1000, 2000
	cfg.ContentType = "application/json"
	cfg.AcceptContentTypes = "application/json"
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		fatal(err)
	}
	factory := informers.NewSharedInformerFactoryWithOptions(cs, 0)
	var inf cache.SharedIndexInformer
	switch *resource {
	case "configmaps":
		inf = factory.Core().V1().ConfigMaps().Informer()
	case "pods":
		inf = factory.Core().V1().Pods().Informer()
	default:
		fatal(fmt.Errorf("unknown resource %q", *resource))
	}
	if err := inf.SetTransform(func(o any) (any, error) {
		if m, err := meta.Accessor(o); err == nil {
			m.SetManagedFields(nil)
		}
		return o, nil
	}); err != nil {
		fatal(err)
	}
	var c counter
	if _, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { c.hit() },
		UpdateFunc: func(any, any) { c.hit() },
		DeleteFunc: func(any) { c.hit() },
	}); err != nil {
		fatal(err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	t0 := time.Now()
	factory.Start(ctx.Done())
	// Poll HasSynced every millisecond: cache.WaitForCacheSync polls every
	// 100 ms, which would round the sync time up by as much.
	for !inf.HasSynced() {
		if time.Since(t0) > *syncTimeout {
			fatal(fmt.Errorf("initial sync did not finish within %v", *syncTimeout))
		}
		time.Sleep(time.Millisecond)
	}
	syncTime := time.Since(t0).Seconds()
	syncCPU := cpuSeconds() - cpuBase
	// Let the handler drain the initial adds before reading memory, so the
	// figure is the cache at rest rather than the notification backlog.
	for c.n.Load() < int64(len(inf.GetStore().ListKeys())) && time.Since(t0) < *syncTimeout {
		time.Sleep(5 * time.Millisecond)
	}
	objects := len(inf.GetStore().ListKeys())
	if *expect > 0 && objects != *expect {
		fmt.Fprintf(os.Stderr, "client-go peer: %d objects after sync, expected %d\n", objects, *expect)
	}
	rssSynced := procStatus("VmRSS")
	anonSynced := procStatus("RssAnon")
	runtime.GC()
	heapSynced := heapAlloc()
	fmt.Fprintf(os.Stderr, "client-go peer: synced %d %s in %.3fs\n", objects, *resource, syncTime)

	rec.put("sync_time", syncTime, "s")
	rec.put("sync_cpu", syncCPU, "s")
	rec.put("objects", float64(objects), "objects")
	rec.put("rss_synced", float64(rssSynced), "bytes")
	if objects > 0 {
		// the process's own memory (heap, stacks) per object, as kcache's
		// bench_informer measures it; bytes_per_object_rss adds the code
		// pages first touched during the sync
		rec.put("bytes_per_object", float64(anonSynced-anonBase)/float64(objects), "bytes")
		rec.put("bytes_per_object_rss", float64(rssSynced-rssBase)/float64(objects), "bytes")
		rec.put("heap_per_object", float64(int64(heapSynced)-int64(heapBase))/float64(objects), "bytes")
	}

	// Churn phase.
	c.reset()
	cpuChurn0 := cpuSeconds()
	tc0 := time.Now()
	var cmd *exec.Cmd
	if *churnCmd != "" {
		cmd = exec.Command("sh", "-c", *churnCmd)
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := cmd.Start(); err != nil {
			fatal(err)
		}
	}
	for {
		time.Sleep(10 * time.Millisecond)
		n := c.n.Load()
		if *churnEvents > 0 && n >= *churnEvents {
			break
		}
		if time.Since(tc0) >= *duration {
			break
		}
		if n > 0 && time.Since(time.Unix(0, c.last.Load())) >= *idle {
			break
		}
	}
	n := c.n.Load()
	churnCPU := cpuSeconds() - cpuChurn0
	if cmd != nil {
		// The churn command only starts the burst; never let it hold the
		// exit (a server busy churning may answer its last request late).
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			_ = cmd.Process.Kill()
		}
	}
	if n >= 2 {
		span := float64(c.last.Load()-c.first.Load()) / 1e9
		if span > 0 {
			rec.put("events_per_s", float64(n)/span, "events/s")
		}
		rec.put("cpu_per_kevent", churnCPU/float64(n)*1000, "s")
	} else {
		fmt.Fprintln(os.Stderr, "client-go peer: no churn events seen; events_per_s not reported")
	}
	rec.put("churn_events", float64(n), "events")
	rec.put("churn_cpu", churnCPU, "s")
	rec.put("peak_rss", float64(procStatus("VmHWM")), "bytes")
	rec.put("cpu_total", cpuSeconds()-cpuBase, "s")
	if err := rec.close(); err != nil {
		fatal(err)
	}
	fmt.Fprintf(os.Stderr, "client-go peer: %d churn events\n", n)
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil {
		return v
	}
	return def
}

func fatal(err error) {
	fmt.Fprintln(os.Stderr, "client-go peer:", err)
	os.Exit(1)
}
