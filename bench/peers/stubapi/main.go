// stubapi: a tiny stand-in for build/kcache-fakeapi, used only to develop and
// smoke-test the Go bench peers and bench/run.sh before the C fake API server
// exists (bench/run.sh uses it only when build/kcache-fakeapi is missing, and
// says so).  It serves, over HTTPS on loopback with a bearer token, just what
// a client-go informer and a controller-runtime manager need for ConfigMaps
// and Pods: discovery, list (limit/continue), watch (resourceVersion replay,
// bookmarks, sendInitialEvents) and an admin endpoint that applies churn.
// Not a conformance target: the real semantics live in tests/fakeapi.
package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"flag"
	"fmt"
	"math/big"
	mrand "math/rand"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

type event struct {
	typ string
	rv  uint64
	obj []byte
}

type store struct {
	mu      sync.Mutex
	cond    *sync.Cond
	rv      uint64
	objs    map[string][]byte // key ns/name -> JSON
	hist    []event           // events with rv > histBase, in order
	histCap int
}

type server struct {
	token   string
	res     map[string]*store // "configmaps", "pods"
	nsCount int
	names   int
	rng     *mrand.Rand
	rngMu   sync.Mutex
	gen     uint64
}

var padding = strings.Repeat("x", 8192)

func (s *server) makeObj(resource, ns, name string, rv uint64, gen uint64) []byte {
	meta := map[string]any{
		"name": name, "namespace": ns,
		"uid":               fmt.Sprintf("%08x-0000-4000-8000-%012x", gen, rv),
		"resourceVersion":   strconv.FormatUint(rv, 10),
		"creationTimestamp": "2026-01-01T00:00:00Z",
		"labels":            map[string]string{"app": "bench", "tier": "backend", "gen": strconv.FormatUint(gen%7, 10)},
		"annotations":       map[string]string{"kcache.io/bench": "true"},
		"managedFields": []any{map[string]any{
			"manager": "kubectl-client-side-apply", "operation": "Update", "apiVersion": "v1",
			"time": "2026-01-01T00:00:00Z", "fieldsType": "FieldsV1",
			"fieldsV1": map[string]any{"f:data": map[string]any{".": map[string]any{}, "f:a": map[string]any{}}},
		}},
	}
	var o map[string]any
	if resource == "configmaps" {
		o = map[string]any{"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta,
			"data": map[string]string{"a": padding[:400], "b": padding[:200], "gen": strconv.FormatUint(gen, 10)}}
	} else {
		var ctrs []any
		for c := 0; c < 3; c++ {
			var env []any
			for e := 0; e < 12; e++ {
				env = append(env, map[string]string{"name": fmt.Sprintf("ENV_VAR_%d", e), "value": padding[:40]})
			}
			ctrs = append(ctrs, map[string]any{
				"name": fmt.Sprintf("c%d", c), "image": "registry.example/bench/app:v1.2.3",
				"args": []string{"--port=8080", "--verbose"}, "env": env,
				"ports":        []any{map[string]any{"containerPort": 8080, "protocol": "TCP"}},
				"resources":    map[string]any{"requests": map[string]string{"cpu": "100m", "memory": "128Mi"}},
				"volumeMounts": []any{map[string]any{"name": "data", "mountPath": "/data"}},
			})
		}
		o = map[string]any{"apiVersion": "v1", "kind": "Pod", "metadata": meta,
			"spec": map[string]any{"containers": ctrs, "nodeName": "node-1", "restartPolicy": "Always",
				"volumes": []any{map[string]any{"name": "data", "emptyDir": map[string]any{}}}},
			"status": map[string]any{"phase": "Running", "podIP": "10.0.0.1", "hostIP": "10.0.1.1",
				"conditions": []any{map[string]any{"type": "Ready", "status": "True", "lastTransitionTime": "2026-01-01T00:00:00Z"}},
				"startTime":  "2026-01-01T00:00:00Z"}}
	}
	b, _ := json.Marshal(o)
	return b
}

func (s *server) preload(resource string, n int) {
	st := s.res[resource]
	for i := 0; i < n; i++ {
		ns := fmt.Sprintf("load-%d", i%s.nsCount)
		name := fmt.Sprintf("obj-%d", i/s.nsCount)
		st.rv++
		s.gen++
		st.objs[ns+"/"+name] = s.makeObj(resource, ns, name, st.rv, s.gen)
	}
}

// churn applies n changes: ~25% creates, 50% updates, 25% deletes.
func (s *server) churn(resource string, n int) {
	st := s.res[resource]
	names := s.names
	for i := 0; i < n; i++ {
		s.rngMu.Lock()
		r := s.rng.Intn(4)
		ns := fmt.Sprintf("load-%d", s.rng.Intn(s.nsCount))
		name := fmt.Sprintf("obj-%d", s.rng.Intn(names))
		s.rngMu.Unlock()
		key := ns + "/" + name
		st.mu.Lock()
		old, exists := st.objs[key]
		st.rv++
		s.gen++
		var ev event
		switch {
		case r == 0 && exists: // delete
			delete(st.objs, key)
			ev = event{"DELETED", st.rv, setRV(old, st.rv)}
		case !exists: // create
			o := s.makeObj(resource, ns, name, st.rv, s.gen)
			st.objs[key] = o
			ev = event{"ADDED", st.rv, o}
		default:
			o := s.makeObj(resource, ns, name, st.rv, s.gen)
			st.objs[key] = o
			ev = event{"MODIFIED", st.rv, o}
		}
		st.hist = append(st.hist, ev)
		if len(st.hist) > st.histCap {
			st.hist = append([]event(nil), st.hist[len(st.hist)-st.histCap/2:]...)
		}
		st.mu.Unlock()
		st.cond.Broadcast()
	}
}

func setRV(obj []byte, rv uint64) []byte {
	var m map[string]any
	_ = json.Unmarshal(obj, &m)
	m["metadata"].(map[string]any)["resourceVersion"] = strconv.FormatUint(rv, 10)
	b, _ := json.Marshal(m)
	return b
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

func status(w http.ResponseWriter, code int, reason, msg string) {
	writeJSON(w, code, map[string]any{"kind": "Status", "apiVersion": "v1", "status": "Failure",
		"message": msg, "reason": reason, "code": code})
}

func (s *server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("Authorization") != "Bearer "+s.token {
		status(w, 401, "Unauthorized", "Unauthorized")
		return
	}
	p := r.URL.Path
	switch {
	case p == "/version":
		writeJSON(w, 200, map[string]string{"major": "1", "minor": "32", "gitVersion": "v1.32.0-stubapi"})
		return
	case p == "/api":
		writeJSON(w, 200, map[string]any{"kind": "APIVersions", "versions": []string{"v1"},
			"serverAddressByClientCIDRs": []any{map[string]string{"clientCIDR": "0.0.0.0/0", "serverAddress": r.Host}}})
		return
	case p == "/apis":
		writeJSON(w, 200, map[string]any{"kind": "APIGroupList", "apiVersion": "v1", "groups": []any{}})
		return
	case p == "/api/v1":
		var rl []any
		for _, n := range []string{"configmaps", "pods"} {
			kind := map[string]string{"configmaps": "ConfigMap", "pods": "Pod"}[n]
			rl = append(rl, map[string]any{"name": n, "singularName": strings.ToLower(kind), "namespaced": true,
				"kind": kind, "verbs": []string{"get", "list", "watch"}})
		}
		writeJSON(w, 200, map[string]any{"kind": "APIResourceList", "groupVersion": "v1", "resources": rl})
		return
	case p == "/admin/churn":
		n, _ := strconv.Atoi(r.URL.Query().Get("n"))
		res := r.URL.Query().Get("resource")
		if s.res[res] == nil {
			status(w, 404, "NotFound", "resource")
			return
		}
		go s.churn(res, n)
		writeJSON(w, 200, map[string]any{"churn": n})
		return
	}
	parts := strings.Split(strings.Trim(p, "/"), "/")
	// /api/v1/R or /api/v1/namespaces/NS/R
	var res, ns string
	if len(parts) == 3 && parts[0] == "api" && parts[1] == "v1" {
		res = parts[2]
	} else if len(parts) == 5 && parts[0] == "api" && parts[1] == "v1" && parts[2] == "namespaces" {
		ns, res = parts[3], parts[4]
	}
	st := s.res[res]
	if st == nil || r.Method != http.MethodGet {
		status(w, 404, "NotFound", "not found")
		return
	}
	q := r.URL.Query()
	if q.Get("watch") == "true" || q.Get("watch") == "1" {
		s.watch(w, r, st, res, ns)
		return
	}
	s.list(w, st, res, ns, q.Get("limit"), q.Get("continue"))
}

func kindOf(res string) string {
	if res == "pods" {
		return "Pod"
	}
	return "ConfigMap"
}

func (s *server) list(w http.ResponseWriter, st *store, res, ns, limitS, cont string) {
	st.mu.Lock()
	keys := make([]string, 0, len(st.objs))
	for k := range st.objs {
		if ns == "" || strings.HasPrefix(k, ns+"/") {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	start := 0
	if cont != "" {
		b, _ := base64.RawURLEncoding.DecodeString(cont)
		start = sort.SearchStrings(keys, string(b))
	}
	limit, _ := strconv.Atoi(limitS)
	end := len(keys)
	if limit > 0 && start+limit < end {
		end = start + limit
	}
	objs := make([][]byte, 0, end-start)
	for _, k := range keys[start:end] {
		objs = append(objs, st.objs[k])
	}
	rv := st.rv
	next := ""
	if end < len(keys) {
		next = base64.RawURLEncoding.EncodeToString([]byte(keys[end]))
	}
	st.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	fmt.Fprintf(w, `{"kind":"%sList","apiVersion":"v1","metadata":{"resourceVersion":"%d"`, kindOf(res), rv)
	if next != "" {
		fmt.Fprintf(w, `,"continue":"%s","remainingItemCount":%d`, next, len(keys)-end)
	}
	fmt.Fprint(w, `},"items":[`)
	for i, o := range objs {
		if i > 0 {
			w.Write([]byte{','})
		}
		w.Write(o)
	}
	fmt.Fprint(w, "]}\n")
}

func (s *server) watch(w http.ResponseWriter, r *http.Request, st *store, res, ns string) {
	q := r.URL.Query()
	fl, _ := w.(http.Flusher)
	timeout := 30 * time.Minute
	if t, err := strconv.Atoi(q.Get("timeoutSeconds")); err == nil && t > 0 {
		timeout = time.Duration(t) * time.Second
	}
	deadline := time.Now().Add(timeout)
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Transfer-Encoding", "chunked")
	w.WriteHeader(200)
	bookmarks := q.Get("allowWatchBookmarks") == "true"
	writeEv := func(typ string, obj []byte) bool {
		if _, err := fmt.Fprintf(w, `{"type":"%s","object":`, typ); err != nil {
			return false
		}
		w.Write(obj)
		_, err := w.Write([]byte("}\n"))
		return err == nil
	}
	bookmark := func(rv uint64, initEnd bool) bool {
		ann := ""
		if initEnd {
			ann = `,"annotations":{"k8s.io/initial-events-end":"true"}`
		}
		return writeEv("BOOKMARK", []byte(fmt.Sprintf(`{"kind":"%s","apiVersion":"v1","metadata":{"resourceVersion":"%d"%s}}`, kindOf(res), rv, ann)))
	}
	st.mu.Lock()
	var from uint64
	if q.Get("sendInitialEvents") == "true" {
		objs := make([][]byte, 0, len(st.objs))
		for k, o := range st.objs {
			if ns == "" || strings.HasPrefix(k, ns+"/") {
				objs = append(objs, o)
			}
		}
		from = st.rv
		st.mu.Unlock()
		for _, o := range objs {
			if !writeEv("ADDED", o) {
				return
			}
		}
		if !bookmark(from, true) {
			return
		}
		st.mu.Lock()
	} else {
		from, _ = strconv.ParseUint(q.Get("resourceVersion"), 10, 64)
		if from == 0 {
			from = st.rv
		}
		if len(st.hist) > 0 && from < st.hist[0].rv-1 {
			st.mu.Unlock()
			writeEv("ERROR", []byte(`{"kind":"Status","apiVersion":"v1","status":"Failure","reason":"Expired","code":410,"message":"too old resource version"}`))
			return
		}
	}
	if fl != nil {
		fl.Flush()
	}
	ctx := r.Context()
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
			case <-stop:
				return
			case <-t.C:
			}
			st.cond.Broadcast()
			if ctx.Err() != nil {
				return
			}
		}
	}()
	lastBM := time.Now()
	for {
		for ctx.Err() == nil && time.Now().Before(deadline) && (len(st.hist) == 0 || st.hist[len(st.hist)-1].rv <= from) &&
			!(bookmarks && time.Since(lastBM) > 5*time.Second) {
			st.cond.Wait()
		}
		if ctx.Err() != nil || !time.Now().Before(deadline) {
			st.mu.Unlock()
			return
		}
		i := sort.Search(len(st.hist), func(i int) bool { return st.hist[i].rv > from })
		batch := append([]event(nil), st.hist[i:]...)
		rvNow := st.rv
		st.mu.Unlock()
		for _, ev := range batch {
			if ns != "" && !strings.Contains(string(ev.obj[:min(len(ev.obj), 200)]), `"namespace":"`+ns+`"`) {
				continue
			}
			if !writeEv(ev.typ, ev.obj) {
				return
			}
			from = ev.rv
		}
		if len(batch) == 0 && bookmarks {
			if !bookmark(rvNow, false) {
				return
			}
			from = rvNow
			lastBM = time.Now()
		}
		if fl != nil {
			fl.Flush()
		}
		st.mu.Lock()
	}
}

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "address to listen on (loopback)")
	kcOut := flag.String("kubeconfig-out", "", "write a kubeconfig here")
	cms := flag.Int("preload-configmaps", 0, "generated ConfigMaps (~1 KB) to preload")
	pods := flag.Int("preload-pods", 0, "generated Pods (~5 KB) to preload")
	nsCount := flag.Int("namespaces", 10, "namespaces load-0..")
	flag.Parse()

	s := &server{token: fmt.Sprintf("stub-%d", time.Now().UnixNano()), res: map[string]*store{},
		nsCount: *nsCount, rng: mrand.New(mrand.NewSource(1))}
	for _, r := range []string{"configmaps", "pods"} {
		st := &store{objs: map[string][]byte{}, histCap: 200000}
		st.cond = sync.NewCond(&st.mu)
		s.res[r] = st
	}
	s.preload("configmaps", *cms)
	s.preload("pods", *pods)
	s.names = max(1, max(*cms, *pods) / *nsCount)

	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "stubapi"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, _ := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	kb, _ := x509.MarshalECPrivateKey(key)
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb})
	cert, _ := tls.X509KeyPair(certPEM, keyPEM)

	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	url := "https://" + ln.Addr().String()
	if *kcOut != "" {
		kc := fmt.Sprintf("apiVersion: v1\nkind: Config\nclusters:\n- name: stub\n  cluster:\n    server: %s\n    certificate-authority-data: %s\nusers:\n- name: admin\n  user:\n    token: %s\ncontexts:\n- name: stub\n  context:\n    cluster: stub\n    user: admin\ncurrent-context: stub\n",
			url, base64.StdEncoding.EncodeToString(certPEM), s.token)
		if err := os.WriteFile(*kcOut, []byte(kc), 0600); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
	}
	srv := &http.Server{Handler: s, TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert}}}
	go func() { _ = srv.ServeTLS(ln, "", "") }()
	fmt.Printf("ready %s\n", url)
	os.Stdout.Sync()
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	<-sig
}
