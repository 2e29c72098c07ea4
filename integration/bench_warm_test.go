package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"os/exec"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/securer-runc/securer-runc/internal/oneshot"
	"github.com/securer-runc/securer-runc/service"
)

// latencyRecorder is an Observer keeping every acquire's duration by
// path, for percentiles.
type latencyRecorder struct {
	acquireRecorder
	mu   sync.Mutex
	took map[string][]time.Duration
}

func (r *latencyRecorder) Acquired(path string, took time.Duration) {
	r.mu.Lock()
	r.took[path] = append(r.took[path], took)
	r.mu.Unlock()
}

func (r *latencyRecorder) reset() {
	r.mu.Lock()
	r.took = map[string][]time.Duration{}
	r.mu.Unlock()
}

func (r *latencyRecorder) of(path string) []time.Duration {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.took[path])
}

// tookRecorder is a log handler keeping the server's own time of each
// one-shot ("execution ended" records naming neither session nor pool).
type tookRecorder struct {
	mu   sync.Mutex
	took []time.Duration
}

func (h *tookRecorder) Enabled(context.Context, slog.Level) bool { return true }
func (h *tookRecorder) WithAttrs([]slog.Attr) slog.Handler       { return h }
func (h *tookRecorder) WithGroup(string) slog.Handler            { return h }
func (h *tookRecorder) Handle(_ context.Context, r slog.Record) error {
	if r.Message != "execution ended" {
		return nil
	}
	var took time.Duration
	oneShot := true
	r.Attrs(func(a slog.Attr) bool {
		switch a.Key {
		case "took":
			took = a.Value.Duration()
		case "session", "pool":
			oneShot = false
		}
		return true
	})
	if oneShot {
		h.mu.Lock()
		h.took = append(h.took, took)
		h.mu.Unlock()
	}
	return nil
}

func (h *tookRecorder) since(n int) []time.Duration {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.took[n:])
}

func (h *tookRecorder) len() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.took)
}

// pctl is the p-th percentile (nearest rank) of ds.
func pctl(ds []time.Duration, p float64) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	i := int(float64(len(s))*p/100+0.999999) - 1
	return s[max(0, min(i, len(s)-1))]
}

// benchDaemon serves opts on a Unix socket in this process, its warm
// boxes started; stop drains it.
func benchDaemon(b *testing.B, opts service.Options) (path string, srv *service.Server, stop func()) {
	b.Helper()
	opts.Host, opts.Version = testHost, "bench"
	if opts.Base.Timeout == 0 {
		opts.Base = baseConfig()
	}
	srv = service.New(opts)
	path = filepath.Join(b.TempDir(), "d.sock")
	ln, err := service.ListenUnix(path, 0o600, -1)
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { srv.Serve(ctx, ln); close(done) }()
	if err := srv.StartWarm(ctx); err != nil {
		b.Fatal(err)
	}
	return path, srv, func() {
		sctx, scancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer scancel()
		srv.Shutdown(sctx)
		cancel()
		<-done
	}
}

// BenchmarkDaemonOneShot: one-shots through a daemon with --warm 2.
//   - a new process running 1+1 through it (securer-runc run --connect,
//     the whole process) against bare Rscript -e 1+1 in the same run
//     (target: <= 0.2x);
//   - the one-shot op on an open connection, as the client times it
//     (target: <= 10 ms), and the warm hit rate;
//   - acquire latency P50/P95/P99 by path: warm (a warm box taken), cold
//     (a box started for a one-shot with options of its own), restart
//     (restart_session);
//   - fresh one-shots per second with 1 and 4 concurrent clients (and 4
//     clients against --warm 4).
func BenchmarkDaemonOneShot(b *testing.B) {
	rec := &latencyRecorder{took: map[string][]time.Duration{}}
	logs := &tookRecorder{}
	path, srv, stop := benchDaemon(b, service.Options{Warm: 2, MaxSessions: 16, MaxSessionsPerClient: 8, Observer: rec,
		Logger: slog.New(logs)})
	defer stop()
	bin := cli(b)
	var bare, proc []time.Duration
	for i := 0; i < b.N; i++ {
		bare = append(bare, bareRscript(b))
		start := time.Now()
		cmd := exec.Command(bin, "run", "--connect", "unix:"+path, "-e", "1+1")
		out, err := cmd.CombinedOutput()
		if err != nil || string(out) != "[1] 2\n" {
			b.Fatalf("run --connect: %v %q", err, out)
		}
		proc = append(proc, time.Since(start))
	}
	ctx := context.Background()
	c, err := oneshot.Dial(ctx, "unix:"+path, "")
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	run := func(c *oneshot.Conn, req oneshot.Request) bool {
		res, warm, err := c.Execute(ctx, req)
		if err != nil || res.Verdict != "ok" {
			b.Fatalf("one-shot: %v %+v", err, res)
		}
		return warm
	}
	rec.reset()
	st0 := srv.Stats()
	var op []time.Duration
	n0 := logs.len()
	// Interleaved with the same execution on a fresh pool of one through
	// the service (the baseline: what a fresh execution through the
	// service costs a client that made and keeps a pool), so that both
	// see the same load.
	// And with the engine's own fresh execution in a warm session of this
	// process (no service, no socket).
	pool := openPool(b, path)
	eng, err := testHost.NewSession(ctx, baseConfig())
	if err != nil {
		b.Fatal(err)
	}
	var poolOp, engineOp []time.Duration
	for range 200 {
		start := time.Now()
		run(c, oneshot.Request{Code: "1+1"})
		op = append(op, time.Since(start))
		poolOp = append(poolOp, pool.execute())
		start = time.Now()
		if res, err := eng.ExecuteFresh(ctx, "1+1"); err != nil || res.Stdout != "[1] 2\n" {
			b.Fatalf("engine fresh: %v %+v", err, res)
		}
		engineOp = append(engineOp, time.Since(start))
	}
	eng.Close()
	pool.close()
	serverOp := logs.since(n0)
	st := srv.Stats()
	hits, misses := st.WarmHits-st0.WarmHits, st.WarmMisses-st0.WarmMisses
	for range 10 {
		run(c, oneshot.Request{Code: "1+1", Options: map[string]any{"pids": 48}})
	}
	restartSession(b, path, 10)
	warmAcq, coldAcq, restartAcq := rec.of("warm"), rec.of("cold"), rec.of("restart")

	rate := func(path string, clients, total int) (float64, float64) {
		var wg sync.WaitGroup
		st0 := srv.Stats()
		jobs := make(chan struct{}, total)
		for range total {
			jobs <- struct{}{}
		}
		close(jobs)
		start := time.Now()
		for range clients {
			c, err := oneshot.Dial(ctx, "unix:"+path, "")
			if err != nil {
				b.Fatal(err)
			}
			wg.Go(func() {
				defer c.Close()
				for range jobs {
					run(c, oneshot.Request{Code: "x <- 1+1"})
				}
			})
		}
		wg.Wait()
		took := time.Since(start)
		st := srv.Stats()
		h := st.WarmHits - st0.WarmHits
		return float64(total) / took.Seconds(), float64(h) / float64(total)
	}
	r1, h1 := rate(path, 1, 200)
	r4, h4 := rate(path, 4, 200)
	path4, srv4, stop4 := benchDaemon(b, service.Options{Warm: 4, MaxSessions: 16, MaxSessionsPerClient: 8})
	srv = srv4
	r44, h44 := rate(path4, 4, 200)
	stop4()

	b.ReportMetric(ms(median(bare)), "bare_Rscript_ms")
	b.ReportMetric(ms(median(proc)), "run_connect_process_ms")
	b.ReportMetric(float64(median(proc))/float64(median(bare)), "process/bare")
	b.ReportMetric(ms(median(op)), "oneshot_op_ms")
	b.ReportMetric(ms(median(serverOp)), "oneshot_op_server_ms")
	b.ReportMetric(ms(pctl(op, 95)), "oneshot_op_p95_ms")
	b.ReportMetric(ms(pctl(op, 99)), "oneshot_op_p99_ms")
	b.ReportMetric(float64(hits)/float64(hits+misses), "warm_hit_rate")
	b.ReportMetric(ms(median(poolOp)), "pool_fresh_op_ms")
	b.ReportMetric(ms(median(engineOp)), "engine_fresh_ms")
	b.ReportMetric(r1, "oneshots/s_1client")
	b.ReportMetric(r4, "oneshots/s_4clients")
	b.ReportMetric(r44, "oneshots/s_4clients_warm4")
	b.ReportMetric(0, "ns/op")
	line := func(name string, ds []time.Duration) string {
		return fmt.Sprintf("%-8s n=%-4d P50 %8.3f ms  P95 %8.3f ms  P99 %8.3f ms", name, len(ds), ms(pctl(ds, 50)), ms(pctl(ds, 95)), ms(pctl(ds, 99)))
	}
	b.Logf("bare Rscript -e 1+1: median %.1f ms; run --connect (whole process): median %.1f ms (%.3fx), P95 %.1f ms",
		ms(median(bare)), ms(median(proc)), float64(median(proc))/float64(median(bare)), ms(pctl(proc, 95)))
	b.Logf("one-shot op (client-timed, open connection): P50 %.2f ms  P95 %.2f ms  P99 %.2f ms; warm hit rate %.3f",
		ms(pctl(op, 50)), ms(pctl(op, 95)), ms(pctl(op, 99)), float64(hits)/float64(hits+misses))
	b.Logf("one-shot op as the server times it (admitted to result): P50 %.2f ms  P95 %.2f ms  P99 %.2f ms",
		ms(pctl(serverOp, 50)), ms(pctl(serverOp, 95)), ms(pctl(serverOp, 99)))
	b.Logf("baseline, a fresh execute on a pool of 1 through the service (client-timed): P50 %.2f ms  P95 %.2f ms  P99 %.2f ms",
		ms(pctl(poolOp, 50)), ms(pctl(poolOp, 95)), ms(pctl(poolOp, 99)))
	b.Logf("baseline, the engine's ExecuteFresh in a warm session of this process: P50 %.2f ms  P95 %.2f ms  P99 %.2f ms",
		ms(pctl(engineOp, 50)), ms(pctl(engineOp, 95)), ms(pctl(engineOp, 99)))
	b.Logf("acquire latency:\n  %s\n  %s\n  %s", line("warm", warmAcq), line("cold", coldAcq), line("restart", restartAcq))
	b.Logf("fresh one-shots/s: 1 client %.1f (hit rate %.2f); 4 clients, --warm 2: %.1f (hit rate %.2f); 4 clients, --warm 4: %.1f (hit rate %.2f)",
		r1, h1, r4, h4, r44, h44)
}

// restartSession makes a session on the daemon at path and restarts it n
// times (the restart acquire path).
func restartSession(b *testing.B, path string, n int) {
	b.Helper()
	nc, err := net.Dial("unix", path)
	if err != nil {
		b.Fatal(err)
	}
	defer nc.Close()
	dec := json.NewDecoder(nc)
	enc := json.NewEncoder(nc)
	read := func(want string) map[string]any {
		for {
			var ev map[string]any
			if err := dec.Decode(&ev); err != nil {
				b.Fatal(err)
			}
			if ev["type"] == want {
				return ev
			}
			if ev["type"] == "error" {
				b.Fatalf("daemon: %v", ev)
			}
		}
	}
	read("hello")
	enc.Encode(map[string]any{"op": "create_session", "id": "s", "options": map[string]any{"pids": 48}})
	s := read("session")["session"].(string)
	for i := range n {
		enc.Encode(map[string]any{"op": "restart_session", "id": fmt.Sprint("r", i), "session": s})
		read("restarted")
	}
	enc.Encode(map[string]any{"op": "close_session", "id": "c", "session": s})
	read("closed")
}

// rawPool is a fresh pool of one on its own connection to a daemon.
type rawPool struct {
	b    *testing.B
	nc   net.Conn
	dec  *json.Decoder
	enc  *json.Encoder
	name string
	n    int
}

func (p *rawPool) read(want string) map[string]any {
	for {
		var ev map[string]any
		if err := p.dec.Decode(&ev); err != nil {
			p.b.Fatal(err)
		}
		if ev["type"] == want {
			return ev
		}
		if ev["type"] == "error" {
			p.b.Fatalf("daemon: %v", ev)
		}
	}
}

func openPool(b *testing.B, path string) *rawPool {
	b.Helper()
	nc, err := net.Dial("unix", path)
	if err != nil {
		b.Fatal(err)
	}
	p := &rawPool{b: b, nc: nc, dec: json.NewDecoder(nc), enc: json.NewEncoder(nc)}
	p.read("hello")
	p.enc.Encode(map[string]any{"op": "create_pool", "id": "p", "size": 1})
	p.name = p.read("pool")["pool"].(string)
	return p
}

// execute times one execute of 1+1 on the pool.
func (p *rawPool) execute() time.Duration {
	p.n++
	start := time.Now()
	p.enc.Encode(map[string]any{"op": "execute", "id": fmt.Sprint("e", p.n), "pool": p.name, "code": "1+1"})
	p.read("result")
	return time.Since(start)
}

func (p *rawPool) close() {
	p.enc.Encode(map[string]any{"op": "close_pool", "id": "c", "pool": p.name})
	p.read("closed")
	p.nc.Close()
}
