package integration

import (
	"bufio"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	securer "github.com/securer-runc/securer-runc"
)

// streamCodes are the two ways of printing 10,000 lines: one cat() call,
// and one cat() per line (bounded by R itself).
var streamCodes = []struct{ name, code string }{
	{"one_cat", `cat(sprintf("line %d\n", 1:10000), sep = "")`},
	{"cat_loop", `for (i in 1:10000) cat("line", i, "\n")`},
}

// streamPy times each code in a warm session through the Python client:
// from sending execute to having the result, every line received through
// on_stdout. It prints "ready", then for each line read from stdin one
// JSON object: {code name: seconds, code name_events: n}.
const streamPy = `
import json, sys, time
sys.path.insert(0, sys.argv[1])
from securer_client import Client
codes = json.loads(sys.argv[3])
with Client.connect(sys.argv[2]) as c:
    s = c.create_session()
    s.execute("1")
    print("ready", flush=True)
    for _ in sys.stdin:
        row = {}
        for name, code in codes:
            chunks = []
            t0 = time.perf_counter()
            r = s.execute(code, on_stdout=chunks.append)
            row[name] = time.perf_counter() - t0
            row[name + "_events"] = len(chunks)
            if r["verdict"] != "ok" or "".join(chunks).count("\n") != 10000:
                sys.exit("lost lines: %d events, verdict %s" % (len(chunks), r["verdict"]))
        print(json.dumps(row), flush=True)
`

// BenchmarkStreamPython: 10,000 lines to a Python client through serve
// (warm session), beside the engine alone (Session.ExecuteWith with an
// output writer) and bare Rscript writing them to /dev/null, and bare
// Rscript -e 1+1, all in one run. SECURER_BENCH_PYCLIENT points the
// script at another client (a directory holding securer_client) to
// compare.
func BenchmarkStreamPython(b *testing.B) {
	py, err := exec.LookPath("python3")
	if err != nil {
		b.Fatalf("python3: %v", err)
	}
	client, err := filepath.Abs("../clients/python")
	if err != nil {
		b.Fatal(err)
	}
	if p := os.Getenv("SECURER_BENCH_PYCLIENT"); p != "" {
		client = p
	}
	sock := filepath.Join(b.TempDir(), "s.sock")
	srv := startServe(b, "--listen", "unix:"+sock)
	// Drained, not killed: its sessions are closed before it exits.
	defer func() { _ = srv.cmd.Process.Signal(syscall.SIGTERM); _ = srv.wait() }()

	codes := make([][2]string, len(streamCodes))
	for i, c := range streamCodes {
		codes[i] = [2]string{c.name, c.code}
	}
	codesJSON, _ := json.Marshal(codes)
	cmd := exec.Command(py, "-c", streamPy, client, sock, string(codesJSON))
	cmd.Stderr = os.Stderr
	toPy, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	fromPy, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() { toPy.Close(); _ = cmd.Wait() }()
	lines := bufio.NewScanner(fromPy)
	if !lines.Scan() || lines.Text() != "ready" {
		b.Fatalf("python client: %q %v", lines.Text(), lines.Err())
	}

	s, err := testHost.NewSession(context.Background(), baseConfig())
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	// Interleaved, one round of each per iteration, so that a busy
	// moment of the machine falls on all of them alike.
	pyLat := map[string][]time.Duration{}
	events := map[string]float64{}
	engine := map[string][]time.Duration{}
	rscript := map[string][]time.Duration{}
	var bare []time.Duration
	for i := 0; i < b.N; i++ {
		if _, err := toPy.Write([]byte("go\n")); err != nil {
			b.Fatal(err)
		}
		if !lines.Scan() {
			b.Fatalf("python client: %v", lines.Err())
		}
		var row map[string]float64
		if err := json.Unmarshal(lines.Bytes(), &row); err != nil {
			b.Fatalf("python output %q: %v", lines.Text(), err)
		}
		for _, c := range streamCodes {
			pyLat[c.name] = append(pyLat[c.name], time.Duration(row[c.name]*float64(time.Second)))
			events[c.name] = row[c.name+"_events"]
		}
		for _, c := range streamCodes {
			var n atomic.Int64
			w := writerFunc(func(p []byte) (int, error) { n.Add(int64(strings.Count(string(p), "\n"))); return len(p), nil })
			start := time.Now()
			res, err := s.ExecuteWith(context.Background(), c.code, securer.ExecOptions{Stdout: w})
			if err != nil || res.Verdict != securer.VerdictOK || n.Load() != 10000 {
				b.Fatalf("engine %s: %v %d lines", c.name, err, n.Load())
			}
			engine[c.name] = append(engine[c.name], time.Since(start))

			start = time.Now()
			if err := exec.Command("Rscript", "-e", c.code).Run(); err != nil {
				b.Fatalf("Rscript: %v", err)
			}
			rscript[c.name] = append(rscript[c.name], time.Since(start))
		}
		start := time.Now()
		if err := exec.Command("Rscript", "-e", "1+1").Run(); err != nil {
			b.Fatalf("Rscript: %v", err)
		}
		bare = append(bare, time.Since(start))
	}
	b.ReportMetric(ms(median(bare)), "bare_Rscript_ms")
	for _, c := range streamCodes {
		// The overhead: the median of each round's difference.
		over := make([]time.Duration, len(pyLat[c.name]))
		for i := range over {
			over[i] = pyLat[c.name][i] - engine[c.name][i]
		}
		b.ReportMetric(ms(median(pyLat[c.name])), c.name+"_python_ms")
		b.ReportMetric(ms(median(engine[c.name])), c.name+"_engine_ms")
		b.ReportMetric(ms(median(over)), c.name+"_python_over_engine_ms")
		b.ReportMetric(ms(median(rscript[c.name])), c.name+"_Rscript_devnull_ms")
		b.ReportMetric(events[c.name], c.name+"_events")
	}
	b.ReportMetric(0, "ns/op")
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }
