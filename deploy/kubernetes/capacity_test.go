package kubernetes

import (
	"go/ast"
	"go/parser"
	"go/token"
	"regexp"
	"strconv"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"
)

// The capacity model's terms the manifests are checked against
// (CAPACITY.md): what the server holds at rest, and one idle session.
const (
	// serverBaseline is the server's own memory at rest: the first term
	// of its memory ceiling (PROTOCOL.md, "Memory").
	serverBaseline = 64 << 20
	// idleSessionBytes is an idle session's memory, rounded up
	// (BenchmarkIdleMemory: 51.4 MiB PSS, 51.2 MiB charged to its cgroup).
	idleSessionBytes = 52 << 20
)

// serverMemoryCeiling is PROTOCOL.md's "Memory" formula
// (service.Options.MemoryCeiling) for serve's flags, with serve's
// defaults where a flag is not given: the most the server itself can be
// made to hold, beside its sessions' own memory (--memory each).
func serverMemoryCeiling(t *testing.T, flags map[string]string, sessions int) int64 {
	t.Helper()
	num := func(name string, def int64) int64 {
		v, ok := flags[name]
		if !ok {
			return def
		}
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			t.Fatalf("--%s %q: %v", name, v, err)
		}
		return n
	}
	size := func(name, def string) int64 {
		v, ok := flags[name]
		if !ok {
			v = def
		}
		q := engineQuantity(t, v)
		return q.Value()
	}
	const (
		perConn    = 512 << 10                       // a connection's goroutines and buffers
		perSession = 3*(16<<20) + 4*(1<<20) + 16<<20 // a value from R thrice, output kept, a request's files
		perPreauth = 32 << 10                        // a connection still to authenticate
	)
	ceiling := int64(serverBaseline) +
		num("max-clients", 64)*(perConn+2*size("max-message-bytes", "16M")+size("max-queued-bytes", "8M")) +
		int64(sessions)*perSession
	if _, token := flags["token-file"]; token {
		ceiling += num("max-unauthenticated", 2048) * perPreauth
	}
	return ceiling
}

// TestServerMemoryCeiling: the formula gives PROTOCOL.md's own figure
// for serve's defaults with a token (about 6.9 GiB) and CAPACITY.md's
// for the shipped flags (660 MiB).
func TestServerMemoryCeiling(t *testing.T) {
	if got := float64(serverMemoryCeiling(t, map[string]string{"token-file": "/t"}, 64)) / (1 << 30); got < 6.85 || got > 6.95 {
		t.Errorf("defaults with a token: %.2f GiB, want about 6.9", got)
	}
	if got := serverMemoryCeiling(t, map[string]string{"max-clients": "8"}, 4); got != 660<<20 {
		t.Errorf("--max-clients=8, 4 sessions: %d MiB, want 660", got>>20)
	}
}

// capacityMetricName reads the autoscaling gauge's name from the
// server's source (internal/metrics), so that the manifests cannot name
// a metric the server does not export.
func capacityMetricName(t *testing.T) string {
	t.Helper()
	const file, name = "../../internal/metrics/metrics.go", "CapacityUsedName"
	f, err := parser.ParseFile(token.NewFileSet(), file, nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range f.Decls {
		gd, ok := d.(*ast.GenDecl)
		if !ok || gd.Tok != token.CONST {
			continue
		}
		for _, spec := range gd.Specs {
			vs := spec.(*ast.ValueSpec)
			for i, id := range vs.Names {
				if id.Name != name || i >= len(vs.Values) {
					continue
				}
				if lit, ok := vs.Values[i].(*ast.BasicLit); ok && lit.Kind == token.STRING {
					v, err := strconv.Unquote(lit.Value)
					if err != nil {
						t.Fatal(err)
					}
					return v
				}
			}
		}
	}
	t.Fatalf("%s: no string constant %s", file, name)
	return ""
}

// objectsOf returns the decoded objects of one shipped file.
func objectsOf(t *testing.T, file string) []Object {
	t.Helper()
	for _, m := range readManifests(t) {
		if m.file == file {
			return m.objs
		}
	}
	t.Fatalf("%s missing", file)
	return nil
}

// TestAutoscaler: hpa.yaml scales deployment.yaml's Deployment, which
// leaves the replica count to it, on the gauge the server exports,
// averaged over the pods, with a scale-down stabilization window.
func TestAutoscaler(t *testing.T) {
	metric := capacityMetricName(t)
	if !strings.HasPrefix(metric, "securer_") || !strings.HasSuffix(metric, "_ratio") {
		t.Errorf("the gauge %q: want a securer_ ratio", metric)
	}
	dep := objectsOf(t, "deployment.yaml")[0].Value.(*appsv1.Deployment)
	if dep.Spec.Replicas != nil {
		t.Errorf("deployment.yaml sets replicas (%d): the autoscaler sets them, and each apply would reset them", *dep.Spec.Replicas)
	}
	objs := objectsOf(t, "hpa.yaml")
	if len(objs) != 1 {
		t.Fatalf("hpa.yaml: %d documents, want 1", len(objs))
	}
	hpa, ok := objs[0].Value.(*autoscalingv2.HorizontalPodAutoscaler)
	if !ok {
		t.Fatalf("hpa.yaml holds a %s", objs[0].Kind)
	}
	ref := hpa.Spec.ScaleTargetRef
	if ref.APIVersion != "apps/v1" || ref.Kind != "Deployment" || ref.Name != dep.Name {
		t.Errorf("scaleTargetRef %+v, want apps/v1 Deployment %q (deployment.yaml)", ref, dep.Name)
	}
	if min := hpa.Spec.MinReplicas; min == nil || *min < 1 || hpa.Spec.MaxReplicas < *min {
		t.Errorf("replicas %v to %d: want 1 <= min <= max", deref(min), hpa.Spec.MaxReplicas)
	}
	if len(hpa.Spec.Metrics) != 1 {
		t.Fatalf("%d metrics, want the one gauge", len(hpa.Spec.Metrics))
	}
	m := hpa.Spec.Metrics[0]
	if m.Type != autoscalingv2.PodsMetricSourceType || m.Pods == nil {
		t.Fatalf("metric %+v: want type Pods", m)
	}
	if m.Pods.Metric.Name != metric || m.Pods.Metric.Selector != nil {
		t.Errorf("metric %q (selector %v), want %q as the server exports it", m.Pods.Metric.Name, m.Pods.Metric.Selector, metric)
	}
	target := m.Pods.Target
	if target.Type != autoscalingv2.AverageValueMetricType || target.AverageValue == nil ||
		target.AverageValue.Sign() <= 0 || target.AverageValue.MilliValue() > 1000 {
		t.Errorf("target %+v: want an average value in (0, 1] (the gauge is a share)", target)
	}
	b := hpa.Spec.Behavior
	if b == nil || b.ScaleDown == nil || b.ScaleDown.StabilizationWindowSeconds == nil ||
		*b.ScaleDown.StabilizationWindowSeconds < 300 {
		t.Errorf("behavior %+v: want a scale-down stabilization window of at least 5 minutes (a removed pod's sessions end)", b)
	}
	// The pods it scales serve the gauge (checkPod checks the port).
	sc, err := FindContainer(&dep.Spec.Template.Spec, sidecarName)
	if err != nil || flagValues(sc.Args)["admin-listen"] == "" {
		t.Errorf("the scaled Deployment's sidecar has no --admin-listen: no metrics to scale on")
	}
}

// adapterConfig is the part of prometheus-adapter's configuration the
// shipped rule uses, decoded strictly so that a misspelt field fails.
type adapterConfig struct {
	Rules []adapterRule `json:"rules"`
}

type adapterRule struct {
	SeriesQuery string `json:"seriesQuery"`
	Resources   struct {
		Overrides map[string]struct {
			Group    string `json:"group,omitempty"`
			Resource string `json:"resource"`
		} `json:"overrides"`
	} `json:"resources"`
	Name struct {
		Matches string `json:"matches"`
		As      string `json:"as"`
	} `json:"name"`
	MetricsQuery string `json:"metricsQuery"`
}

// TestAdapterRule: prometheus-adapter.yaml's rule serves the gauge under
// the name hpa.yaml asks for, per pod and namespace.
func TestAdapterRule(t *testing.T) {
	metric := capacityMetricName(t)
	objs := objectsOf(t, "prometheus-adapter.yaml")
	if len(objs) != 1 {
		t.Fatalf("prometheus-adapter.yaml: %d documents, want 1", len(objs))
	}
	cm, ok := objs[0].Value.(*corev1.ConfigMap)
	if !ok {
		t.Fatalf("prometheus-adapter.yaml holds a %s", objs[0].Kind)
	}
	var cfg adapterConfig
	if err := yaml.UnmarshalStrict([]byte(cm.Data["config.yaml"]), &cfg); err != nil {
		t.Fatalf("config.yaml: %v", err)
	}
	if len(cfg.Rules) != 1 {
		t.Fatalf("%d rules, want 1", len(cfg.Rules))
	}
	r := cfg.Rules[0]
	if !regexp.MustCompile(`^` + regexp.QuoteMeta(metric) + `\{.*namespace!="".*pod!="".*\}$`).MatchString(r.SeriesQuery) {
		t.Errorf("seriesQuery %q: want %s with namespace and pod labels", r.SeriesQuery, metric)
	}
	for label, res := range map[string]string{"namespace": "namespace", "pod": "pod"} {
		if o, ok := r.Resources.Overrides[label]; !ok || o.Resource != res || o.Group != "" {
			t.Errorf("override for label %q: %+v, want resource %q", label, o, res)
		}
	}
	matches, err := regexp.Compile(r.Name.Matches)
	if err != nil || !matches.MatchString(metric) {
		t.Errorf("name.matches %q does not match %s (%v)", r.Name.Matches, metric, err)
	}
	if r.Name.As != metric {
		t.Errorf("name.as %q: the autoscaler asks for %s", r.Name.As, metric)
	}
	hpa := objectsOf(t, "hpa.yaml")[0].Value.(*autoscalingv2.HorizontalPodAutoscaler)
	if got := hpa.Spec.Metrics[0].Pods.Metric.Name; got != r.Name.As {
		t.Errorf("hpa.yaml asks for %q, the adapter serves %q", got, r.Name.As)
	}
	for _, part := range []string{"<<.Series>>", "<<.LabelMatchers>>", "<<.GroupBy>>"} {
		if !strings.Contains(r.MetricsQuery, part) {
			t.Errorf("metricsQuery %q lacks %s: the adapter would not select the asked pods or group by them", r.MetricsQuery, part)
		}
	}
}
