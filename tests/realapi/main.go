// kcache-realapi: a real etcd + kube-apiserver on 127.0.0.1 for kcache's
// integration tests (test-only; the product is C).
//
// It generates a throw-away PKI (CA, serving cert, admin client cert in
// group system:masters, ServiceAccount signing key), starts an embedded etcd
// (go.etcd.io/etcd/server/v3/embed) and the kube-apiserver from
// k8s.io/kubernetes/cmd/kube-apiserver/app in this process, creates the
// ServiceAccount kcache-system/kcache-controller, applies the YAML files given
// with --apply (server-side apply, as admin), writes one kubeconfig per
// identity into --kubeconfig-dir (admin.kubeconfig, controller.kubeconfig,
// mode 0600) and prints exactly "ready https://127.0.0.1:PORT" on stdout.
//
// Compaction on request (so that old resourceVersions get 410 Expired):
// SIGUSR1, or POST http://127.0.0.1:ADMINPORT/compact (the URL is written to
// KUBECONFIG_DIR/admin.url), which compacts etcd at its current revision and
// answers {"revision":N}.  GET /revision answers the current revision.
// kube-apiserver learns of it through compact_rev_key like of its own
// compactions: lists at older resourceVersions get 410 within ~15s; its
// watch cache still serves watches from them (see /restart).
//
// Restart on request: SIGUSR2, or POST /restart (answers when the new
// kube-apiserver is ready): kube-apiserver stops and a new one starts on
// the same port and etcd.  Every connection is cut, and the new watch cache
// starts at etcd's current revision, so watches from older
// resourceVersions get 410 Expired even with the watch cache on.
//
// Stops cleanly on SIGTERM/SIGINT, or by itself after --max-lifetime: the
// apiserver is stopped first, then etcd; its temporary directory (PKI, etcd
// data) is removed.  Exit status 0 on a clean stop.
//
// Everything after "--" on the command line is passed to kube-apiserver as
// extra flags (e.g. -- --watch-cache=false).
package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/spf13/pflag"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	utilerrors "k8s.io/apimachinery/pkg/util/errors"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	basecompatibility "k8s.io/component-base/compatibility"
	logsapi "k8s.io/component-base/logs/api/v1"
	"k8s.io/kubernetes/cmd/kube-apiserver/app"
	"k8s.io/kubernetes/cmd/kube-apiserver/app/options"
)

type config struct {
	kubeconfigDir string
	maxLifetime   time.Duration
	applyPaths    []string
	saNamespace   string
	saName        string
	apiserverLog  string
	verbosity     int
	extraArgs     []string
}

type stringList []string

func (s *stringList) String() string     { return strings.Join(*s, ",") }
func (s *stringList) Set(v string) error { *s = append(*s, v); return nil }

func main() {
	os.Exit(run())
}

// harnessErr is where the harness's own messages go: the original stderr,
// also when --log-file sends everything else (etcd, kube-apiserver, panics)
// to a file.
var harnessErr io.Writer = os.Stderr

func logf(format string, args ...any) {
	fmt.Fprintf(harnessErr, "%s realapi: "+format+"\n",
		append([]any{time.Now().UTC().Format("15:04:05.000")}, args...)...)
}

func run() int {
	var cfg config
	var apply stringList
	fs := flag.NewFlagSet("kcache-realapi", flag.ContinueOnError)
	fs.StringVar(&cfg.kubeconfigDir, "kubeconfig-dir", "", "directory for admin.kubeconfig, controller.kubeconfig, ca.crt, admin.url (created 0700; required)")
	fs.DurationVar(&cfg.maxLifetime, "max-lifetime", 2*time.Hour, "stop by itself after this long")
	fs.Var(&apply, "apply", "YAML file or directory of *.yaml/*.yml to server-side apply as admin once serving (repeatable)")
	fs.StringVar(&cfg.saNamespace, "sa-namespace", "kcache-system", "namespace of the controller's ServiceAccount")
	fs.StringVar(&cfg.saName, "sa-name", "kcache-controller", "name of the controller's ServiceAccount")
	fs.StringVar(&cfg.apiserverLog, "log-file", "", "write etcd and kube-apiserver logs here instead of stderr")
	fs.IntVar(&cfg.verbosity, "v", 0, "kube-apiserver log verbosity")
	if err := fs.Parse(os.Args[1:]); err != nil {
		return 2
	}
	cfg.applyPaths = apply
	cfg.extraArgs = fs.Args()
	if cfg.kubeconfigDir == "" {
		logf("--kubeconfig-dir is required")
		return 2
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGUSR1, syscall.SIGUSR2)

	h, err := start(ctx, &cfg)
	if err != nil {
		logf("start failed: %v", err)
		if h != nil {
			h.stop()
		}
		return 1
	}
	fmt.Printf("ready %s\n", h.serverURL)
	os.Stdout.Sync()

	deadline := time.NewTimer(cfg.maxLifetime)
	defer deadline.Stop()
	status := 0
loop:
	for {
		select {
		case s := <-sigs:
			if s == syscall.SIGUSR1 {
				rev, err := h.compact(ctx)
				if err != nil {
					logf("compact failed: %v", err)
				} else {
					logf("compacted at revision %d", rev)
				}
				continue
			}
			if s == syscall.SIGUSR2 {
				if err := h.restartAPIServer(ctx); err != nil {
					logf("restart failed: %v", err)
					status = 1
					break loop
				}
				continue
			}
			logf("got %v, stopping", s)
			break loop
		case reply := <-h.restartReq:
			err := h.restartAPIServer(ctx)
			reply <- err
			if err != nil {
				logf("restart failed: %v", err)
				status = 1
				break loop
			}
		case <-deadline.C:
			logf("max lifetime %v reached, stopping", cfg.maxLifetime)
			break loop
		case err := <-h.apiserverDone:
			logf("kube-apiserver stopped unexpectedly: %v", err)
			h.apiserverDone = nil
			status = 1
			break loop
		case err := <-h.etcd.Err():
			logf("etcd failed: %v", err)
			status = 1
			break loop
		}
	}
	signal.Reset(syscall.SIGTERM, syscall.SIGINT) // a second signal kills at once
	h.stop()
	logf("stopped")
	return status
}

type harness struct {
	tmpDir        string
	etcd          *embed.Etcd
	etcdClient    *clientv3.Client
	cancelAPI     context.CancelFunc
	apiserverDone chan error
	adminSrv      *http.Server
	serverURL     string
	compactMu     sync.Mutex
	admin         kubernetes.Interface
	apiArgs       []string
	verbosity     int
	port          int
	logsApplied   bool
	starts        int
	listener      *trackingListener
	restartReq    chan chan error // served by the main loop, which owns apiserverDone
}

// trackingListener remembers the connections it accepted, so that a stop
// can cut them (open watches would otherwise hold kube-apiserver's HTTP
// server for its 60s shutdown timeout).
type trackingListener struct {
	net.Listener
	mu    sync.Mutex
	conns map[net.Conn]struct{}
}

type trackedConn struct {
	net.Conn
	l *trackingListener
}

func (c *trackedConn) Close() error {
	c.l.mu.Lock()
	delete(c.l.conns, c.Conn)
	c.l.mu.Unlock()
	return c.Conn.Close()
}

func (l *trackingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	l.mu.Lock()
	l.conns[c] = struct{}{}
	l.mu.Unlock()
	return &trackedConn{Conn: c, l: l}, nil
}

func (l *trackingListener) closeAll() {
	l.mu.Lock()
	conns := make([]net.Conn, 0, len(l.conns))
	for c := range l.conns {
		conns = append(conns, c)
	}
	l.mu.Unlock()
	for _, c := range conns {
		c.Close()
	}
}

// startAPIServer runs kube-apiserver in this process on listener (the same
// flags every time; a restart reuses the port).
func (h *harness) startAPIServer(plain net.Listener) error {
	listener := &trackingListener{Listener: plain, conns: map[net.Conn]struct{}{}}
	h.listener = listener
	s := options.NewServerRunOptions()
	pfs := pflag.NewFlagSet("kube-apiserver", pflag.ContinueOnError)
	for _, f := range s.Flags().FlagSets {
		pfs.AddFlagSet(f)
	}
	if err := pfs.Parse(h.apiArgs); err != nil {
		listener.Close()
		return fmt.Errorf("kube-apiserver flags: %w", err)
	}
	s.SecureServing.Listener = listener
	s.SecureServing.BindPort = h.port
	if err := s.GenericServerRunOptions.ComponentGlobalsRegistry.Set(); err != nil {
		listener.Close()
		return err
	}
	rest.SetDefaultWarningHandler(rest.NoWarnings{})
	if !h.logsApplied {
		featureGate := s.GenericServerRunOptions.ComponentGlobalsRegistry.FeatureGateFor(basecompatibility.DefaultKubeComponent)
		s.Logs.Verbosity = logsapi.VerbosityLevel(h.verbosity)
		if err := logsapi.ValidateAndApply(s.Logs, featureGate); err != nil {
			listener.Close()
			return err
		}
		h.logsApplied = true
	}
	apiCtx, cancelAPI := context.WithCancel(context.Background())
	completed, err := s.Complete(apiCtx)
	if err != nil {
		cancelAPI()
		listener.Close()
		return fmt.Errorf("kube-apiserver options: %w", err)
	}
	if errs := completed.Validate(); len(errs) != 0 {
		cancelAPI()
		listener.Close()
		return fmt.Errorf("kube-apiserver options: %w", utilerrors.NewAggregate(errs))
	}
	// informer names are process-global and unique: one per start
	h.starts++
	completed.InformerName, err = cache.NewInformerName(fmt.Sprintf("kube-apiserver-%d", h.starts))
	if err != nil {
		cancelAPI()
		listener.Close()
		return err
	}
	h.cancelAPI = cancelAPI
	done := make(chan error, 1)
	h.apiserverDone = done
	go func() { done <- app.Run(apiCtx, completed) }()
	return nil
}

// stopAPIServer stops kube-apiserver and waits (at most 60s) for it.
func (h *harness) stopAPIServer() {
	if h.cancelAPI == nil {
		return
	}
	h.cancelAPI()
	h.cancelAPI = nil
	if h.apiserverDone != nil {
		// after a 1s grace the open connections (watches) are cut, as when
		// a real kube-apiserver goes away
		grace := time.NewTimer(time.Second)
		defer grace.Stop()
		limit := time.NewTimer(60 * time.Second)
		defer limit.Stop()
	wait:
		for {
			select {
			case err := <-h.apiserverDone:
				if err != nil {
					logf("kube-apiserver stopped with: %v", err)
				}
				break wait
			case <-grace.C:
				h.listener.closeAll()
			case <-limit.C:
				logf("kube-apiserver did not stop within 60s")
				break wait
			}
		}
		h.apiserverDone = nil
	}
}

// restartAPIServer stops kube-apiserver and starts a new one on the same
// port and etcd: every connection is cut, and the new watch cache starts at
// etcd's current revision, so watches from older resourceVersions get 410.
func (h *harness) restartAPIServer(ctx context.Context) error {
	logf("restarting kube-apiserver")
	h.stopAPIServer()
	var l net.Listener
	var err error
	for i := 0; i < 100; i++ {
		l, err = net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", h.port))
		if err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		return fmt.Errorf("listen again on port %d: %w", h.port, err)
	}
	if err := h.startAPIServer(l); err != nil {
		return err
	}
	if err := waitReady(ctx, h.admin, h.apiserverDone); err != nil {
		return err
	}
	logf("kube-apiserver restarted")
	return nil
}

func (h *harness) stop() {
	logf("stopping kube-apiserver")
	if h.adminSrv != nil {
		h.adminSrv.Close()
	}
	h.stopAPIServer()
	logf("stopping etcd")
	if h.etcdClient != nil {
		h.etcdClient.Close()
	}
	if h.etcd != nil {
		h.etcd.Close()
	}
	if h.tmpDir != "" {
		os.RemoveAll(h.tmpDir)
	}
}

// compact compacts etcd at its current revision (physically, so that a
// later watch from an older revision fails with "required revision has
// been compacted", which kube-apiserver turns into 410 Expired).
func (h *harness) compact(ctx context.Context) (int64, error) {
	h.compactMu.Lock()
	defer h.compactMu.Unlock()
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	resp, err := h.etcdClient.Get(cctx, "compact-probe", clientv3.WithCountOnly())
	if err != nil {
		return 0, err
	}
	rev := resp.Header.Revision
	// Tell kube-apiserver as its own compactor does: through the key
	// compact_rev_key, which it watches; its watch cache then drops list
	// snapshots older than rev (polled every 15s).
	if _, err := h.etcdClient.Put(cctx, "compact_rev_key", strconv.FormatInt(rev, 10)); err != nil {
		return 0, err
	}
	if _, err := h.etcdClient.Compact(cctx, rev, clientv3.WithCompactPhysical()); err != nil {
		if strings.Contains(err.Error(), "compacted") {
			return rev, nil // already compacted at this revision
		}
		return 0, err
	}
	return rev, nil
}

func (h *harness) revision(ctx context.Context) (int64, error) {
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	resp, err := h.etcdClient.Get(cctx, "compact-probe", clientv3.WithCountOnly())
	if err != nil {
		return 0, err
	}
	return resp.Header.Revision, nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func start(ctx context.Context, cfg *config) (*harness, error) {
	h := &harness{restartReq: make(chan chan error)}
	var err error
	if err = os.MkdirAll(cfg.kubeconfigDir, 0o700); err != nil {
		return nil, err
	}
	if err = os.Chmod(cfg.kubeconfigDir, 0o700); err != nil {
		return nil, err
	}
	h.tmpDir, err = os.MkdirTemp("", "kcache-realapi-")
	if err != nil {
		return nil, err
	}

	if cfg.apiserverLog != "" {
		// everything written to fd 2 (klog, etcd's zap logger, panics) goes
		// to the log file; the harness keeps a copy of the real stderr
		f, err := os.OpenFile(cfg.apiserverLog, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
		if err != nil {
			return h, err
		}
		saved, err := syscall.Dup(2)
		if err != nil {
			return h, err
		}
		harnessErr = os.NewFile(uintptr(saved), "stderr")
		if err := syscall.Dup3(int(f.Fd()), 2, 0); err != nil {
			return h, err
		}
		f.Close()
	}
	etcdLogOutputs := []string{"stderr"}

	pki, err := makePKI(filepath.Join(h.tmpDir, "pki"))
	if err != nil {
		return h, fmt.Errorf("pki: %w", err)
	}

	// etcd
	clientPort, err := freePort()
	if err != nil {
		return h, err
	}
	peerPort, err := freePort()
	if err != nil {
		return h, err
	}
	ecfg := embed.NewConfig()
	ecfg.Name = "realapi"
	ecfg.Dir = filepath.Join(h.tmpDir, "etcd")
	curl, _ := url.Parse(fmt.Sprintf("http://127.0.0.1:%d", clientPort))
	purl, _ := url.Parse(fmt.Sprintf("http://127.0.0.1:%d", peerPort))
	ecfg.ListenClientUrls = []url.URL{*curl}
	ecfg.AdvertiseClientUrls = []url.URL{*curl}
	ecfg.ListenPeerUrls = []url.URL{*purl}
	ecfg.AdvertisePeerUrls = []url.URL{*purl}
	ecfg.InitialCluster = ecfg.InitialClusterFromName(ecfg.Name)
	ecfg.LogLevel = "error"
	ecfg.LogOutputs = etcdLogOutputs
	ecfg.UnsafeNoFsync = true // throw-away test data
	h.etcd, err = embed.StartEtcd(ecfg)
	if err != nil {
		return h, fmt.Errorf("etcd: %w", err)
	}
	select {
	case <-h.etcd.Server.ReadyNotify():
	case <-time.After(60 * time.Second):
		return h, errors.New("etcd not ready within 60s")
	}
	h.etcdClient, err = clientv3.New(clientv3.Config{
		Endpoints:   []string{curl.String()},
		DialTimeout: 10 * time.Second,
	})
	if err != nil {
		return h, fmt.Errorf("etcd client: %w", err)
	}

	// kube-apiserver
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return h, err
	}
	port := listener.Addr().(*net.TCPAddr).Port
	h.serverURL = fmt.Sprintf("https://127.0.0.1:%d", port)

	h.apiArgs = []string{
		"--advertise-address=127.0.0.1",
		"--bind-address=127.0.0.1",
		"--etcd-servers=" + curl.String(),
		"--tls-cert-file=" + pki.serverCert,
		"--tls-private-key-file=" + pki.serverKey,
		"--client-ca-file=" + pki.caCert,
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file=" + pki.saKey,
		"--service-account-signing-key-file=" + pki.saKey,
		"--authorization-mode=RBAC",
		"--service-cluster-ip-range=10.0.0.0/24",
		"--endpoint-reconciler-type=none",
		"--allow-privileged=false",
		"--profiling=false",
		"--cert-dir=" + filepath.Join(h.tmpDir, "certs"),
	}
	h.apiArgs = append(h.apiArgs, cfg.extraArgs...)
	h.verbosity = cfg.verbosity
	h.port = port
	if err := h.startAPIServer(listener); err != nil {
		return h, err
	}

	// admin identity
	adminCfg := &rest.Config{
		Host: h.serverURL,
		TLSClientConfig: rest.TLSClientConfig{
			CAData:   pki.caPEM,
			CertData: pki.adminCertPEM,
			KeyData:  pki.adminKeyPEM,
		},
		QPS:   100,
		Burst: 200,
	}
	admin, err := kubernetes.NewForConfig(adminCfg)
	if err != nil {
		return h, err
	}
	h.admin = admin
	if err := waitReady(ctx, admin, h.apiserverDone); err != nil {
		return h, err
	}

	// controller identity: a ServiceAccount with a bound token
	if err := ensureServiceAccount(ctx, admin, cfg.saNamespace, cfg.saName); err != nil {
		return h, err
	}
	tokenSecs := int64(cfg.maxLifetime/time.Second) + 3600
	tr, err := admin.CoreV1().ServiceAccounts(cfg.saNamespace).CreateToken(ctx, cfg.saName,
		&authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: &tokenSecs}},
		metav1.CreateOptions{})
	if err != nil {
		return h, fmt.Errorf("token request: %w", err)
	}

	for _, p := range cfg.applyPaths {
		if err := applyPath(ctx, adminCfg, p); err != nil {
			return h, fmt.Errorf("apply %s: %w", p, err)
		}
	}

	// kubeconfigs
	if err := writeFile0600(filepath.Join(cfg.kubeconfigDir, "ca.crt"), pki.caPEM); err != nil {
		return h, err
	}
	if err := writeKubeconfig(filepath.Join(cfg.kubeconfigDir, "admin.kubeconfig"), h.serverURL, pki.caPEM,
		"kcache-admin", &clientcmdapi.AuthInfo{ClientCertificateData: pki.adminCertPEM, ClientKeyData: pki.adminKeyPEM}, ""); err != nil {
		return h, err
	}
	if err := writeKubeconfig(filepath.Join(cfg.kubeconfigDir, "controller.kubeconfig"), h.serverURL, pki.caPEM,
		"kcache-controller", &clientcmdapi.AuthInfo{Token: tr.Status.Token}, cfg.saNamespace); err != nil {
		return h, err
	}

	// admin endpoint
	al, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return h, err
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/compact", func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			http.Error(w, "POST only", http.StatusMethodNotAllowed)
			return
		}
		rev, err := h.compact(r.Context())
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		logf("compacted at revision %d", rev)
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, "{\"revision\":%d}\n", rev)
	})
	mux.HandleFunc("/restart", func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			http.Error(w, "POST only", http.StatusMethodNotAllowed)
			return
		}
		reply := make(chan error, 1)
		select {
		case h.restartReq <- reply:
		case <-r.Context().Done():
			return
		}
		if err := <-reply; err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, "{\"restarted\":true}\n")
	})
	mux.HandleFunc("/revision", func(w http.ResponseWriter, r *http.Request) {
		rev, err := h.revision(r.Context())
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, "{\"revision\":%d}\n", rev)
	})
	h.adminSrv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go h.adminSrv.Serve(al)
	adminURL := "http://" + al.Addr().String()
	if err := writeFile0600(filepath.Join(cfg.kubeconfigDir, "admin.url"), []byte(adminURL+"\n")); err != nil {
		return h, err
	}
	return h, nil
}

func waitReady(ctx context.Context, c kubernetes.Interface, done chan error) error {
	deadline := time.Now().Add(5 * time.Minute)
	var last error
	for time.Now().Before(deadline) {
		select {
		case err := <-done:
			done <- err
			return fmt.Errorf("kube-apiserver exited: %v", err)
		default:
		}
		rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		body, err := c.CoreV1().RESTClient().Get().AbsPath("/readyz").DoRaw(rctx)
		cancel()
		if err == nil && strings.TrimSpace(string(body)) == "ok" {
			// the default namespace comes from a controller, not a hook
			if _, err = c.CoreV1().Namespaces().Get(ctx, "default", metav1.GetOptions{}); err == nil {
				return nil
			}
		}
		last = err
		time.Sleep(200 * time.Millisecond)
	}
	return fmt.Errorf("kube-apiserver not ready within 5m: %v", last)
}

func ensureServiceAccount(ctx context.Context, c kubernetes.Interface, ns, name string) error {
	_, err := c.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("namespace %s: %w", ns, err)
	}
	_, err = c.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("serviceaccount %s/%s: %w", ns, name, err)
	}
	return nil
}

// applyPath server-side applies every object of a YAML file, or of every
// *.yaml/*.yml/*.json file of a directory in name order.
func applyPath(ctx context.Context, cfg *rest.Config, path string) error {
	st, err := os.Stat(path)
	if err != nil {
		return err
	}
	var files []string
	if st.IsDir() {
		ents, err := os.ReadDir(path)
		if err != nil {
			return err
		}
		for _, e := range ents {
			n := e.Name()
			if !e.IsDir() && (strings.HasSuffix(n, ".yaml") || strings.HasSuffix(n, ".yml") || strings.HasSuffix(n, ".json")) {
				files = append(files, filepath.Join(path, n))
			}
		}
		sort.Strings(files)
	} else {
		files = []string{path}
	}
	dc, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		return err
	}
	mapper := restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(dc))
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return err
	}
	for _, f := range files {
		fh, err := os.Open(f)
		if err != nil {
			return err
		}
		dec := utilyaml.NewYAMLOrJSONDecoder(fh, 4096)
		for {
			var obj map[string]any
			if err := dec.Decode(&obj); err != nil {
				if err == io.EOF {
					break
				}
				fh.Close()
				return fmt.Errorf("%s: %w", f, err)
			}
			if len(obj) == 0 {
				continue
			}
			u := &unstructured.Unstructured{Object: obj}
			if err := applyOne(ctx, mapper, dyn, u); err != nil {
				fh.Close()
				return fmt.Errorf("%s: %s %s: %w", f, u.GetKind(), u.GetName(), err)
			}
			logf("applied %s %s", u.GetKind(), u.GetName())
		}
		fh.Close()
	}
	return nil
}

func applyOne(ctx context.Context, mapper *restmapper.DeferredDiscoveryRESTMapper, dyn dynamic.Interface, u *unstructured.Unstructured) error {
	gvk := u.GroupVersionKind()
	var m *meta.RESTMapping
	var err error
	for i := 0; i < 20; i++ { // a CRD applied just before may take a moment to be served
		m, err = mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
		if err == nil {
			break
		}
		mapper.Reset()
		time.Sleep(500 * time.Millisecond)
	}
	if err != nil {
		return err
	}
	data, err := json.Marshal(u.Object)
	if err != nil {
		return err
	}
	var ri dynamic.ResourceInterface = dyn.Resource(m.Resource)
	if m.Scope.Name() == meta.RESTScopeNameNamespace {
		ns := u.GetNamespace()
		if ns == "" {
			ns = "default"
		}
		ri = dyn.Resource(m.Resource).Namespace(ns)
	}
	force := true
	_, err = ri.Patch(ctx, u.GetName(), types.ApplyPatchType, data, metav1.PatchOptions{FieldManager: "kcache-realapi", Force: &force})
	return err
}

func writeFile0600(path string, data []byte) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return err
	}
	if err := os.Chmod(tmp, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

func writeKubeconfig(path, server string, caPEM []byte, name string, auth *clientcmdapi.AuthInfo, ns string) error {
	kc := clientcmdapi.NewConfig()
	kc.Clusters["realapi"] = &clientcmdapi.Cluster{Server: server, CertificateAuthorityData: caPEM}
	kc.AuthInfos[name] = auth
	kc.Contexts[name] = &clientcmdapi.Context{Cluster: "realapi", AuthInfo: name, Namespace: ns}
	kc.CurrentContext = name
	data, err := clientcmd.Write(*kc)
	if err != nil {
		return err
	}
	return writeFile0600(path, data)
}

type pkiFiles struct {
	caCert, serverCert, serverKey, saKey string
	caPEM, adminCertPEM, adminKeyPEM     []byte
}

func makePKI(dir string) (*pkiFiles, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	p := &pkiFiles{
		caCert:     filepath.Join(dir, "ca.crt"),
		serverCert: filepath.Join(dir, "server.crt"),
		serverKey:  filepath.Join(dir, "server.key"),
		saKey:      filepath.Join(dir, "sa.key"),
	}
	now := time.Now().Add(-time.Hour)
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "kcache-realapi-ca"},
		NotBefore:             now,
		NotAfter:              now.Add(30 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return nil, err
	}
	ca, _ := x509.ParseCertificate(caDER)
	p.caPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER})
	if err := os.WriteFile(p.caCert, p.caPEM, 0o600); err != nil {
		return nil, err
	}

	issue := func(serial int64, subj pkix.Name, server bool) (certPEM, keyPEM []byte, err error) {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return nil, nil, err
		}
		t := &x509.Certificate{
			SerialNumber: big.NewInt(serial),
			Subject:      subj,
			NotBefore:    now,
			NotAfter:     now.Add(30 * 24 * time.Hour),
			KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		}
		if server {
			t.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
			t.IPAddresses = []net.IP{net.ParseIP("127.0.0.1"), net.ParseIP("10.0.0.1")}
			t.DNSNames = []string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local"}
		} else {
			t.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
		}
		der, err := x509.CreateCertificate(rand.Reader, t, ca, &key.PublicKey, caKey)
		if err != nil {
			return nil, nil, err
		}
		kder, err := x509.MarshalECPrivateKey(key)
		if err != nil {
			return nil, nil, err
		}
		return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
			pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), nil
	}
	sc, sk, err := issue(2, pkix.Name{CommonName: "kube-apiserver"}, true)
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(p.serverCert, sc, 0o600); err != nil {
		return nil, err
	}
	if err := os.WriteFile(p.serverKey, sk, 0o600); err != nil {
		return nil, err
	}
	p.adminCertPEM, p.adminKeyPEM, err = issue(3, pkix.Name{CommonName: "kcache-admin", Organization: []string{"system:masters"}}, false)
	if err != nil {
		return nil, err
	}
	saKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	saDER, err := x509.MarshalECPrivateKey(saKey)
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(p.saKey, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: saDER}), 0o600); err != nil {
		return nil, err
	}
	return p, nil
}
