// Package metrics keeps the session service's Prometheus metrics in a
// registry of its own (never the global default one): counters and
// histograms fed by the service's observer calls, and gauges read from a
// snapshot of the server at each scrape. No label carries a client's or a
// session's id: label values come from small fixed sets (verdicts, error
// codes, kinds of leftovers).
package metrics

import (
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// CapacityUsedName is the name of the gauge an autoscaler reads
// (deploy/kubernetes/hpa.yaml; CAPACITY.md there says why this figure).
const CapacityUsedName = "securer_capacity_used_ratio"

// State is what the server holds at a scrape.
type State struct {
	Clients        int
	Authenticating int
	Sessions       int
	Pools          int
	Executions     int
	MaxSessions    int
	MaxClients     int
	Ready          bool
	WarmIdle       int // warm boxes idle
	WarmTotal      int // warm boxes idle, busy or starting
}

// Metrics is the service's metrics and their registry. Its methods are
// the service's Observer.
type Metrics struct {
	reg *prometheus.Registry

	executions  *prometheus.CounterVec
	execSeconds prometheus.Histogram
	toolCalls   *prometheus.CounterVec
	toolSeconds prometheus.Histogram
	starts      *prometheus.CounterVec
	startSecs   prometheus.Histogram
	oomKills    prometheus.Counter
	reaped      *prometheus.CounterVec
	errors      *prometheus.CounterVec
	oneShots    *prometheus.CounterVec
	acquireSecs *prometheus.HistogramVec
}

// Latency buckets, in seconds. Executions run from milliseconds (1+1 in
// a warm R) to the timeout (an hour at most by default); tool calls are
// usually quick but wait on a client; a sandbox start is 0.2-2 s on an
// idle host and much more on a loaded or emulated one.
var (
	execBuckets  = []float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800}
	toolBuckets  = []float64{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60}
	startBuckets = []float64{0.1, 0.25, 0.5, 0.75, 1, 1.5, 2, 3, 5, 10, 20, 30, 60}
	// Getting a box: microseconds for a warm one, a sandbox start for a
	// cold one or a restart.
	acquireBuckets = []float64{0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30}
)

// New makes the metrics; state is read at each scrape for the gauges.
// version goes into securer_build_info.
func New(version string, state func() State) *Metrics {
	reg := prometheus.NewRegistry()
	m := &Metrics{
		reg: reg,
		executions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "securer_executions_total",
			Help: "Executions that ran, by verdict (ok, error, timeout, canceled, oom, killed, protocol_error, tool_call_limit, output_limit).",
		}, []string{"verdict"}),
		execSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "securer_execution_duration_seconds",
			Help:    "Wall time of executions that ran.",
			Buckets: execBuckets,
		}),
		toolCalls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "securer_tool_calls_total",
			Help: "Calls of tools the clients answer, by outcome (ok, or error: failed, unanswered, timed out).",
		}, []string{"outcome"}),
		toolSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "securer_tool_call_duration_seconds",
			Help:    "Time from a tool call sent to a client to its answer (or its end without one).",
			Buckets: toolBuckets,
		}),
		starts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "securer_sandbox_starts_total",
			Help: "Starts of an R (a container when sandboxed): sessions, pool members, restarts, replacements; by outcome (ok, error).",
		}, []string{"outcome"}),
		startSecs: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "securer_sandbox_start_duration_seconds",
			Help:    "Time to start an R and its container, up to R's hello (successful starts).",
			Buckets: startBuckets,
		}),
		oomKills: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "securer_oom_kills_total",
			Help: "Kernel OOM kills in the containers of executions.",
		}),
		reaped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "securer_reaped_leftovers_total",
			Help: "Leftovers of crashed sessions removed, by kind (session: container, cgroup and state; cgroup: an orphaned cgroup).",
		}, []string{"kind"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "securer_errors_total",
			Help: "Error events sent to clients (refusals and failures), by code (PROTOCOL.md, error codes).",
		}, []string{"code"}),
		oneShots: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "securer_oneshots_total",
			Help: "One-shot executions by how they got a box: warm (an idle warm box: a hit), miss (the default profile, but no warm box idle), other (tools or options of their own).",
		}, []string{"path"}),
		acquireSecs: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "securer_acquire_duration_seconds",
			Help:    "Time to get a box for a one-shot or a session, by path: warm (taken from the warm boxes), cold (started), restart (restart_session).",
			Buckets: acquireBuckets,
		}, []string{"path"}),
	}
	build := prometheus.NewGauge(prometheus.GaugeOpts{
		Name:        "securer_build_info",
		Help:        "Always 1; the version label is this build's.",
		ConstLabels: prometheus.Labels{"version": version},
	})
	build.Set(1)
	// Label values known in advance are made at once, so that a series
	// exists (at 0) before its first event and rates work from the start.
	for _, o := range []string{"ok", "error"} {
		m.toolCalls.WithLabelValues(o)
		m.starts.WithLabelValues(o)
	}
	for _, k := range []string{"session", "cgroup"} {
		m.reaped.WithLabelValues(k)
	}
	for _, p := range []string{"warm", "miss", "other"} {
		m.oneShots.WithLabelValues(p)
	}
	for _, p := range []string{"warm", "cold", "restart"} {
		m.acquireSecs.WithLabelValues(p)
	}
	reg.MustRegister(m.executions, m.execSeconds, m.toolCalls, m.toolSeconds, m.starts, m.startSecs,
		m.oomKills, m.reaped, m.errors, m.oneShots, m.acquireSecs, build, &stateCollector{state: state},
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Registry is the metrics' own registry.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// Handler serves the metrics in the Prometheus text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}

// ExecutionEnded counts an execution that ran.
func (m *Metrics) ExecutionEnded(verdict string, wall time.Duration, oomKills uint64) {
	m.executions.WithLabelValues(verdict).Inc()
	m.execSeconds.Observe(wall.Seconds())
	if oomKills > 0 {
		m.oomKills.Add(float64(oomKills))
	}
}

// ToolCallEnded counts a client tool's call.
func (m *Metrics) ToolCallEnded(took time.Duration, failed bool) {
	m.toolCalls.WithLabelValues(outcome(failed)).Inc()
	m.toolSeconds.Observe(took.Seconds())
}

// SandboxStarted counts a start of an R; only successful ones go into
// the latency histogram (a failure's time says little about starts).
func (m *Metrics) SandboxStarted(took time.Duration, err error) {
	m.starts.WithLabelValues(outcome(err != nil)).Inc()
	if err == nil {
		m.startSecs.Observe(took.Seconds())
	}
}

// Reaped counts leftovers removed.
func (m *Metrics) Reaped(sessions, cgroups int) {
	m.reaped.WithLabelValues("session").Add(float64(sessions))
	m.reaped.WithLabelValues("cgroup").Add(float64(cgroups))
}

// ErrorSent counts an error event by its code.
func (m *Metrics) ErrorSent(code string) {
	m.errors.WithLabelValues(code).Inc()
}

// OneShot counts a one-shot by how it got its box.
func (m *Metrics) OneShot(path string) {
	m.oneShots.WithLabelValues(path).Inc()
}

// Acquired records the time getting a box took, by path.
func (m *Metrics) Acquired(path string, took time.Duration) {
	m.acquireSecs.WithLabelValues(path).Observe(took.Seconds())
}

func outcome(failed bool) string {
	if failed {
		return "error"
	}
	return "ok"
}

// stateCollector reads the server's state once per scrape.
type stateCollector struct {
	state func() State
}

var (
	clientsDesc    = prometheus.NewDesc("securer_clients", "Clients connected and admitted.", nil, nil)
	authDesc       = prometheus.NewDesc("securer_clients_authenticating", "Connections still to authenticate.", nil, nil)
	sessionsDesc   = prometheus.NewDesc("securer_sessions", "Live sessions, pool members and starting ones included.", nil, nil)
	poolsDesc      = prometheus.NewDesc("securer_pools", "Live pools.", nil, nil)
	executionsDesc = prometheus.NewDesc("securer_executions_running", "Executions running now.", nil, nil)
	maxSessDesc    = prometheus.NewDesc("securer_sessions_max", "Most live sessions the server takes (--max-sessions).", nil, nil)
	maxClientsDesc = prometheus.NewDesc("securer_clients_max", "Most clients the server takes (--max-clients).", nil, nil)
	readyDesc      = prometheus.NewDesc("securer_ready", "1 when /readyz says ready, else 0.", nil, nil)
	warmIdleDesc   = prometheus.NewDesc("securer_warm_idle", "Warm boxes idle, ready for a one-shot (serve --warm).", nil, nil)
	warmTotalDesc  = prometheus.NewDesc("securer_warm_boxes", "Warm boxes in all: idle, busy or starting (serve --warm).", nil, nil)
	capacityDesc   = prometheus.NewDesc(CapacityUsedName,
		"Share of the server's capacity in use, 0 to 1: the larger of session slots taken (sessions less idle warm boxes, of --max-sessions) and clients (of --max-clients); 1 when /readyz says at capacity.", nil, nil)
)

// capacityUsed is the share of the server's capacity in use, in [0, 1]:
// the larger of its two hard limits' shares. Session slots: live
// sessions (pool members, starting ones and warm boxes included) less
// the idle warm boxes, which are room (a one-shot or a plain session
// takes one), of MaxSessions. Clients: those admitted, of MaxClients.
// These are the comparisons service.Server.Ready makes, so the figure is
// 1 exactly when /readyz says "at capacity". Running executions are no
// third term: each runs in a session's box, one at a time, so session
// slots bound them (those waiting for a member of a client's pool wait
// on that pool, not on the server). 0 while no limits are known (before
// the server serves).
func capacityUsed(st State) float64 {
	used := 0.0
	if st.MaxSessions > 0 {
		used = float64(st.Sessions-st.WarmIdle) / float64(st.MaxSessions)
	}
	if st.MaxClients > 0 {
		used = max(used, float64(st.Clients)/float64(st.MaxClients))
	}
	return min(max(used, 0), 1)
}

func (c *stateCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{clientsDesc, authDesc, sessionsDesc, poolsDesc, executionsDesc, maxSessDesc, maxClientsDesc, readyDesc, warmIdleDesc, warmTotalDesc, capacityDesc} {
		ch <- d
	}
}

func (c *stateCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.state()
	ready := 0.0
	if st.Ready {
		ready = 1
	}
	for _, g := range []struct {
		d *prometheus.Desc
		v float64
	}{
		{clientsDesc, float64(st.Clients)},
		{authDesc, float64(st.Authenticating)},
		{sessionsDesc, float64(st.Sessions)},
		{poolsDesc, float64(st.Pools)},
		{executionsDesc, float64(st.Executions)},
		{maxSessDesc, float64(st.MaxSessions)},
		{maxClientsDesc, float64(st.MaxClients)},
		{readyDesc, ready},
		{warmIdleDesc, float64(st.WarmIdle)},
		{warmTotalDesc, float64(st.WarmTotal)},
		{capacityDesc, capacityUsed(st)},
	} {
		ch <- prometheus.MustNewConstMetric(g.d, prometheus.GaugeValue, g.v)
	}
}
