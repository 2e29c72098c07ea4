package metrics

import (
	"errors"
	"io"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
)

// value finds a metric's value in the registry: a counter's or gauge's
// value, a histogram's sample count; labels as name=value pairs.
func value(t *testing.T, m *Metrics, name string, labels ...string) float64 {
	t.Helper()
	fams, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fams {
		if f.GetName() != name {
			continue
		}
	metrics:
		for _, x := range f.GetMetric() {
			for i := 0; i+1 < len(labels); i += 2 {
				if !hasLabel(x.GetLabel(), labels[i], labels[i+1]) {
					continue metrics
				}
			}
			switch {
			case x.Counter != nil:
				return x.Counter.GetValue()
			case x.Gauge != nil:
				return x.Gauge.GetValue()
			case x.Histogram != nil:
				return float64(x.Histogram.GetSampleCount())
			}
		}
	}
	t.Fatalf("no metric %s %v", name, labels)
	return 0
}

func hasLabel(ls []*dto.LabelPair, name, v string) bool {
	for _, l := range ls {
		if l.GetName() == name && l.GetValue() == v {
			return true
		}
	}
	return false
}

func TestMetricsMove(t *testing.T) {
	st := State{Clients: 2, Sessions: 3, Pools: 1, Executions: 1, MaxSessions: 64, MaxClients: 8, Ready: true}
	m := New("v1.2.3", func() State { return st })
	m.ExecutionEnded("ok", 20*time.Millisecond, 0)
	m.ExecutionEnded("ok", 30*time.Millisecond, 0)
	m.ExecutionEnded("oom", time.Second, 2)
	m.ToolCallEnded(time.Millisecond, false)
	m.ToolCallEnded(time.Second, true)
	m.SandboxStarted(time.Second, nil)
	m.SandboxStarted(5*time.Second, errors.New("no"))
	m.Reaped(1, 2)
	m.ErrorSent("limit")
	m.ErrorSent("limit")
	m.ErrorSent("draining")
	for _, tt := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"securer_executions_total", []string{"verdict", "ok"}, 2},
		{"securer_executions_total", []string{"verdict", "oom"}, 1},
		{"securer_execution_duration_seconds", nil, 3},
		{"securer_oom_kills_total", nil, 2},
		{"securer_tool_calls_total", []string{"outcome", "ok"}, 1},
		{"securer_tool_calls_total", []string{"outcome", "error"}, 1},
		{"securer_tool_call_duration_seconds", nil, 2},
		{"securer_sandbox_starts_total", []string{"outcome", "ok"}, 1},
		{"securer_sandbox_starts_total", []string{"outcome", "error"}, 1},
		{"securer_sandbox_start_duration_seconds", nil, 1}, // successes only
		{"securer_reaped_leftovers_total", []string{"kind", "session"}, 1},
		{"securer_reaped_leftovers_total", []string{"kind", "cgroup"}, 2},
		{"securer_errors_total", []string{"code", "limit"}, 2},
		{"securer_errors_total", []string{"code", "draining"}, 1},
		{"securer_clients", nil, 2},
		{"securer_sessions", nil, 3},
		{"securer_pools", nil, 1},
		{"securer_executions_running", nil, 1},
		{"securer_sessions_max", nil, 64},
		{"securer_clients_max", nil, 8},
		{"securer_ready", nil, 1},
		{"securer_build_info", []string{"version", "v1.2.3"}, 1},
	} {
		if got := value(t, m, tt.name, tt.labels...); got != tt.want {
			t.Errorf("%s %v = %g, want %g", tt.name, tt.labels, got, tt.want)
		}
	}
	// Gauges are read at each scrape.
	st.Sessions, st.Ready = 0, false
	if got := value(t, m, "securer_sessions"); got != 0 {
		t.Errorf("securer_sessions after the state changed = %g, want 0", got)
	}
	if got := value(t, m, "securer_ready"); got != 0 {
		t.Errorf("securer_ready after the state changed = %g, want 0", got)
	}
}

// TestMetricsText: the handler speaks the Prometheus text format, with
// help and type lines, the duration histograms in seconds, and the
// process's own metrics.
func TestMetricsText(t *testing.T) {
	m := New("dev", func() State { return State{} })
	m.ExecutionEnded("timeout", 2*time.Second, 0)
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	body, _ := io.ReadAll(rec.Body)
	text := string(body)
	for _, want := range []string{
		"# TYPE securer_executions_total counter",
		`securer_executions_total{verdict="timeout"} 1`,
		"# TYPE securer_execution_duration_seconds histogram",
		`securer_execution_duration_seconds_bucket{le="2.5"} 1`,
		`securer_execution_duration_seconds_bucket{le="1"} 0`,
		"# TYPE securer_sessions gauge",
		"# TYPE securer_capacity_used_ratio gauge",
		"securer_capacity_used_ratio 0\n",
		`securer_tool_calls_total{outcome="ok"} 0`, // exists before its first event
		"process_resident_memory_bytes",
		"go_goroutines",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("metrics text lacks %q", want)
		}
	}
	if ct := rec.Header().Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		t.Errorf("Content-Type %q, want text/plain", ct)
	}
}

// Two servers in one process have registries of their own.
func TestMetricsNoGlobalRegistry(t *testing.T) {
	a := New("a", func() State { return State{} })
	b := New("b", func() State { return State{} })
	a.ErrorSent("busy")
	if got := value(t, a, "securer_errors_total", "code", "busy"); got != 1 {
		t.Errorf("a: %g", got)
	}
	fams, _ := b.Registry().Gather()
	for _, f := range fams {
		if f.GetName() == "securer_errors_total" {
			t.Errorf("b has a's error counter: %v", f)
		}
	}
}

// TestCapacityUsed: the autoscaling gauge is the larger share of the two
// hard limits, idle warm boxes counting as room, within [0, 1], and it is
// read at each scrape.
func TestCapacityUsed(t *testing.T) {
	for _, tt := range []struct {
		name string
		st   State
		want float64
	}{
		{"before serving: no limits known", State{}, 0},
		{"empty", State{MaxSessions: 4, MaxClients: 8}, 0},
		{"sessions", State{Sessions: 3, MaxSessions: 4, Clients: 1, MaxClients: 8}, 0.75},
		{"idle warm boxes are room", State{Sessions: 4, WarmIdle: 2, WarmTotal: 2, MaxSessions: 4, Clients: 1, MaxClients: 8}, 0.5},
		{"busy warm boxes are not", State{Sessions: 4, WarmIdle: 0, WarmTotal: 2, MaxSessions: 8, Clients: 1, MaxClients: 8}, 0.5},
		{"every slot taken", State{Sessions: 4, MaxSessions: 4, Clients: 1, MaxClients: 8}, 1},
		{"clients the busier", State{Sessions: 1, MaxSessions: 4, Clients: 6, MaxClients: 8}, 0.75},
		{"clients full", State{Sessions: 0, MaxSessions: 4, Clients: 8, MaxClients: 8}, 1},
		{"over a limit: at most 1", State{Sessions: 5, MaxSessions: 4, Clients: 1, MaxClients: 8}, 1},
		{"authenticating connections are not clients", State{MaxSessions: 4, Authenticating: 100, MaxClients: 8}, 0},
	} {
		t.Run(tt.name, func(t *testing.T) {
			m := New("dev", func() State { return tt.st })
			if got := value(t, m, CapacityUsedName); got != tt.want {
				t.Errorf("%s = %g, want %g", CapacityUsedName, got, tt.want)
			}
		})
	}
	st := State{Sessions: 1, MaxSessions: 4, MaxClients: 8}
	m := New("dev", func() State { return st })
	if got := value(t, m, CapacityUsedName); got != 0.25 {
		t.Errorf("%s = %g, want 0.25", CapacityUsedName, got)
	}
	st.Sessions = 2
	if got := value(t, m, CapacityUsedName); got != 0.5 {
		t.Errorf("%s after the state changed = %g, want 0.5", CapacityUsedName, got)
	}
}
