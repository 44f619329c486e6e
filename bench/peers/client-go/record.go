package main

// Shared by both peers (copied, each module is self-contained): JSON-lines
// records, /proc/self/status fields and getrusage CPU time.

import (
	"bufio"
	"encoding/json"
	"os"
	"runtime"
	"strconv"
	"strings"
	"syscall"
)

type recorder struct {
	f                     *os.File
	bench, impl, workload string
	run                   int
}

func newRecorder(path, bench, impl, workload string, run int) (*recorder, error) {
	r := &recorder{f: os.Stdout, bench: bench, impl: impl, workload: workload, run: run}
	if path != "" {
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0644)
		if err != nil {
			return nil, err
		}
		r.f = f
	}
	return r, nil
}

// put writes one record in a single write, so lines from several processes
// appending to the same file never interleave.
func (r *recorder) put(name string, value float64, unit string) {
	b, _ := json.Marshal(map[string]any{"bench": r.bench, "impl": r.impl, "workload": r.workload,
		"name": name, "value": value, "unit": unit, "run": r.run})
	_, _ = r.f.Write(append(b, '\n'))
}

func (r *recorder) close() error {
	if r.f != os.Stdout {
		return r.f.Close()
	}
	return nil
}

// procStatus returns a "kB" field of /proc/self/status in bytes, or 0.
func procStatus(field string) int64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		line := s.Text()
		if strings.HasPrefix(line, field+":") {
			fs := strings.Fields(line[len(field)+1:])
			if len(fs) > 0 {
				v, _ := strconv.ParseInt(fs[0], 10, 64)
				return v * 1024
			}
		}
	}
	return 0
}

func cpuSeconds() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return float64(ru.Utime.Sec+ru.Stime.Sec) + float64(ru.Utime.Usec+ru.Stime.Usec)/1e6
}

func heapAlloc() uint64 {
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}
