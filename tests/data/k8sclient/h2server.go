// h2server: a tiny HTTPS server that negotiates HTTP/2 (Go's net/http does
// by ALPN), used by tests/test_k8sclient_h2.c to check kcache's client over
// HTTP/2 the way real kube-apiservers speak it.  Standard library only.
//
// Usage: h2server DIR STREAMFILE
// Writes DIR/ca.pem (its self-signed certificate) and DIR/port, serves on
// 127.0.0.1 until stdin is closed.  Routes:
//   GET  .../configmaps/NAME          {"kind":"ConfigMap","proto":"HTTP/2.0",...}
//   GET  ...?watch=true               the lines of STREAMFILE, flushed in pieces
//   GET  ...?watch=true&labelSelector=stall   one event, then nothing until the client leaves
//   GET  ...?watch=true&labelSelector=seq    SEQ numbered ADDED events, then
//                                     holds the stream until GET /release
//   GET  ...?watch=true&labelSelector=big    BIG numbered ADDED events (~0.5 KB
//                                     each), then ends; a slow reader holds it back
//   GET  /fail/404                    a NotFound Status
//   GET  /stats                       {"conns":N,"bigSent":B}: TCP connections
//                                     accepted so far, bytes of "big" streams written
//   GET  /release                     ends every held "seq" stream
// Non-watch GETs answer with "remote": the client's address and port, so a
// test can tell which connection carried them.
package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

const (
	seqEvents = 200
	bigEvents = 20000
)

func main() {
	dir, streamFile := os.Args[1], os.Args[2]
	stream, err := os.ReadFile(streamFile)
	if err != nil {
		panic(err)
	}
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "127.0.0.1"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IPAddresses:           []net.IP{net.ParseIP("127.0.0.1")},
		DNSNames:              []string{"localhost"},
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IsCA:                  true,
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		panic(err)
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	kb, _ := x509.MarshalECPrivateKey(key)
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb})
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		panic(err)
	}

	var conns, bigSent int64
	release := make(chan struct{})
	var releaseOnce sync.Once
	mux := http.NewServeMux()
	mux.HandleFunc("/stats", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"conns":%d,"bigSent":%d}`, atomic.LoadInt64(&conns), atomic.LoadInt64(&bigSent))
	})
	mux.HandleFunc("/release", func(w http.ResponseWriter, r *http.Request) {
		releaseOnce.Do(func() { close(release) })
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{}`)
	})
	mux.HandleFunc("/fail/404", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(404)
		fmt.Fprintf(w, `{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"configmaps \"x\" not found","reason":"NotFound","code":404}`)
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		if r.URL.Query().Get("watch") == "" {
			fmt.Fprintf(w, `{"kind":"ConfigMap","metadata":{"name":"x"},"proto":%q,"auth":%q,"remote":%q}`,
				r.Proto, r.Header.Get("Authorization"), r.RemoteAddr)
			return
		}
		fl := w.(http.Flusher)
		w.WriteHeader(200)
		fl.Flush()
		lines := strings.SplitAfter(string(stream), "\n")
		switch r.URL.Query().Get("labelSelector") {
		case "seq":
			for i := 1; i <= seqEvents; i++ {
				fmt.Fprintf(w, `{"type":"ADDED","object":{"kind":"ConfigMap","metadata":{"name":"s%d","resourceVersion":"%d"}}}`+"\n", i, i)
				if i%10 == 0 {
					fl.Flush()
				}
			}
			fl.Flush()
			select {
			case <-release:
			case <-r.Context().Done():
			}
			return
		case "big":
			pad := strings.Repeat("x", 400)
			for i := 1; i <= bigEvents; i++ {
				n, err := fmt.Fprintf(w, `{"type":"ADDED","object":{"kind":"ConfigMap","metadata":{"name":"b%d","resourceVersion":"%d"},"data":{"pad":%q}}}`+"\n", i, i, pad)
				if err != nil {
					return
				}
				atomic.AddInt64(&bigSent, int64(n))
				if i%20 == 0 {
					fl.Flush()
				}
			}
			return
		}
		if r.URL.Query().Get("labelSelector") == "stall" {
			io.WriteString(w, lines[0])
			fl.Flush()
			<-r.Context().Done()
			return
		}
		// odd piece sizes: events split across DATA frames, several per frame
		for off, step := 0, 1; off < len(stream); step++ {
			n := (step*977)%2900 + 1
			if off+n > len(stream) {
				n = len(stream) - off
			}
			w.Write(stream[off : off+n])
			fl.Flush()
			off += n
		}
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	srv := &http.Server{Handler: mux, ConnState: func(c net.Conn, st http.ConnState) {
		if st == http.StateNew {
			atomic.AddInt64(&conns, 1)
		}
	}, TLSConfig: &tls.Config{
		Certificates: []tls.Certificate{cert},
		NextProtos:   []string{"h2", "http/1.1"},
		MinVersion:   tls.VersionTLS12,
	}}
	os.WriteFile(filepath.Join(dir, "ca.pem"), certPEM, 0600)
	os.WriteFile(filepath.Join(dir, "port.tmp"), []byte(fmt.Sprint(ln.Addr().(*net.TCPAddr).Port)), 0600)
	os.Rename(filepath.Join(dir, "port.tmp"), filepath.Join(dir, "port"))
	go func() {
		io.Copy(io.Discard, os.Stdin)
		os.Exit(0)
	}()
	srv.ServeTLS(ln, "", "")
}
