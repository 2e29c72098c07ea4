package kubernetes

import (
	"errors"
	"maps"
	"net"
	"os"
	"path"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	nodev1 "k8s.io/api/node/v1"
	"k8s.io/apimachinery/pkg/api/resource"
)

const (
	sidecarName = "securer-runc"
	socketPath  = "/run/securer/securer.sock"
	// crioCgroupRW is CRI-O's pod annotation for a writable cgroup2 mount.
	crioCgroupRW = "io.kubernetes.cri-o.cgroup2-mount-hierarchy-rw"
)

// manifests are the shipped manifest files, read and decoded.
type manifest struct {
	file string
	raw  []byte
	objs []Object
}

func readManifests(t *testing.T) []manifest {
	t.Helper()
	files, err := filepath.Glob("*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var ms []manifest
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		objs, err := Decode(raw)
		if err != nil {
			t.Errorf("%s: %v", f, err)
			continue
		}
		ms = append(ms, manifest{file: f, raw: raw, objs: objs})
	}
	return ms
}

func TestManifestsDecodeStrictly(t *testing.T) {
	ms := readManifests(t)
	kinds := map[string]int{}
	var names []string
	for _, m := range ms {
		names = append(names, m.file)
		if len(m.objs) == 0 {
			t.Errorf("%s: no documents", m.file)
		}
		for _, o := range m.objs {
			kinds[o.Kind]++
		}
	}
	for _, want := range []string{"deployment.yaml", "deployment-privileged.yaml", "pod.yaml", "hpa.yaml", "prometheus-adapter.yaml"} {
		if !slices.Contains(names, want) {
			t.Errorf("%s missing (decoded: %v)", want, names)
		}
	}
	if kinds["Pod"] == 0 || kinds["Deployment"] == 0 || kinds["HorizontalPodAutoscaler"] == 0 || kinds["ConfigMap"] == 0 {
		t.Errorf("kinds %v: want a Pod, a Deployment, a HorizontalPodAutoscaler and a ConfigMap", kinds)
	}
}

// Each bad manifest in testdata must be refused, for its own reason.
func TestDecodeRefuses(t *testing.T) {
	cases := map[string]string{
		"bad-unknown-field.yaml":   `unknown field "securityContxt"`,
		"bad-second-document.yaml": `document 1 (Deployment): error unmarshaling JSON: while decoding JSON: json: unknown field "hostUser"`,
		"bad-duplicate-field.yaml": `"terminationGracePeriodSeconds" already set`,
		"bad-kind.yaml":            `unknown apiVersion/kind "v1" "Service"`,
		"bad-type.yaml":            "cannot unmarshal string",
	}
	files, err := filepath.Glob("testdata/bad-*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != len(cases) {
		t.Errorf("testdata has %d bad manifests, the table %d: give each its case", len(files), len(cases))
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			want, ok := cases[filepath.Base(f)]
			if !ok {
				t.Fatal("no case for this file")
			}
			raw, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			_, err = Decode(raw)
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Fatalf("Decode: %v, want an error with %q", err, want)
			}
		})
	}
	raw, err := os.ReadFile("testdata/bad-kind.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Decode(raw); !errors.Is(err, ErrUnknownKind) {
		t.Errorf("Decode(a Service): %v, want ErrUnknownKind", err)
	}
}

func TestSplitDocuments(t *testing.T) {
	raw, err := os.ReadFile("testdata/good-multi.yaml")
	if err != nil {
		t.Fatal(err)
	}
	objs, err := Decode(raw)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, o := range objs {
		got = append(got, o.Value.(*corev1.Pod).Name)
	}
	if want := []string{"one", "two"}; !slices.Equal(got, want) {
		t.Errorf("pods %v, want %v", got, want)
	}
	if n := len(SplitDocuments([]byte("# only a comment\n---\n\n"))); n != 0 {
		t.Errorf("%d documents in comments and blanks, want 0", n)
	}
}

// pod.yaml is the Deployment's pod on its own: they must not drift.
func TestPodMatchesDeployment(t *testing.T) {
	var pod *corev1.Pod
	var dep *appsv1.Deployment
	for _, m := range readManifests(t) {
		switch m.file {
		case "pod.yaml":
			pod = m.objs[0].Value.(*corev1.Pod)
		case "deployment.yaml":
			dep = m.objs[0].Value.(*appsv1.Deployment)
		}
	}
	if pod == nil || dep == nil {
		t.Fatal("pod.yaml or deployment.yaml missing")
	}
	if !reflect.DeepEqual(pod.Spec, dep.Spec.Template.Spec) {
		t.Error("pod.yaml's spec differs from deployment.yaml's pod template")
	}
	if !reflect.DeepEqual(pod.Labels, dep.Spec.Template.Labels) {
		t.Errorf("labels %v, template's %v", pod.Labels, dep.Spec.Template.Labels)
	}
}

func TestSidecarRecipe(t *testing.T) {
	n := 0
	for _, m := range readManifests(t) {
		for _, o := range m.objs {
			if o.PodSpec() == nil {
				continue // the RuntimeClass, the autoscaler, the adapter's rule
			}
			n++
			t.Run(m.file+"/"+strconv.Itoa(o.Index), func(t *testing.T) { checkPod(t, o.PodSpec(), o.PodAnnotations(), m.raw) })
		}
	}
	if n < 3 {
		t.Errorf("%d pods checked, want the 3 shipped", n)
	}
}

// Mode (a) needs a writable cgroup filesystem: its pods name the shipped
// RuntimeClass and carry CRI-O's annotation on the pod itself.
func TestModeARuntimeClass(t *testing.T) {
	classes := map[string]*nodev1.RuntimeClass{}
	type podOf struct {
		file        string
		spec        *corev1.PodSpec
		annotations map[string]string
	}
	var pods []podOf
	for _, m := range readManifests(t) {
		for _, o := range m.objs {
			switch v := o.Value.(type) {
			case *nodev1.RuntimeClass:
				classes[v.Name] = v
			case *corev1.Pod:
				pods = append(pods, podOf{m.file, &v.Spec, v.Annotations})
			case *appsv1.Deployment:
				pods = append(pods, podOf{m.file, &v.Spec.Template.Spec, v.Spec.Template.Annotations})
			}
		}
	}
	modeA := 0
	for _, p := range pods {
		if p.spec.HostUsers == nil || *p.spec.HostUsers {
			if p.spec.RuntimeClassName != nil {
				t.Errorf("%s: mode (b) is privileged and needs no RuntimeClass", p.file)
			}
			continue
		}
		modeA++
		name := p.spec.RuntimeClassName
		if name == nil || classes[*name] == nil {
			t.Errorf("%s: runtimeClassName %v, want one of the shipped RuntimeClasses %v", p.file, deref(name), slices.Collect(maps.Keys(classes)))
		} else if classes[*name].Handler != *name {
			t.Errorf("RuntimeClass %s: handler %q, want the name the node config in runtimeclass.yaml defines", *name, classes[*name].Handler)
		}
		if p.annotations[crioCgroupRW] != "true" {
			t.Errorf("%s: the pod lacks the annotation %s: \"true\" (CRI-O reads the pod's)", p.file, crioCgroupRW)
		}
	}
	if modeA != 2 {
		t.Errorf("%d mode (a) pods, want 2 (deployment.yaml, pod.yaml)", modeA)
	}
}

// deref shows a pointer field's value.
func deref[T any](p *T) any {
	if p == nil {
		return "unset"
	}
	return *p
}

// flagValues reads --name=value and --name value arguments.
func flagValues(args []string) map[string]string {
	vals := map[string]string{}
	for i := 0; i < len(args); i++ {
		name, val, ok := strings.Cut(strings.TrimPrefix(args[i], "--"), "=")
		if !ok && i+1 < len(args) {
			val = args[i+1]
			i++
		}
		vals[name] = val
	}
	return vals
}

// engineQuantity turns securer-runc's sizes (binary K/M/G) into a
// Kubernetes quantity.
func engineQuantity(t *testing.T, s string) resource.Quantity {
	t.Helper()
	if strings.HasSuffix(s, "K") || strings.HasSuffix(s, "M") || strings.HasSuffix(s, "G") {
		s += "i"
	}
	q, err := resource.ParseQuantity(s)
	if err != nil {
		t.Fatalf("size %q: %v", s, err)
	}
	return q
}

func checkPod(t *testing.T, spec *corev1.PodSpec, annotations map[string]string, raw []byte) {
	if spec == nil {
		t.Fatal("no pod spec")
	}
	i := slices.IndexFunc(spec.InitContainers, func(c corev1.Container) bool { return c.Name == sidecarName })
	if i < 0 {
		t.Fatalf("no %s sidecar among the init containers", sidecarName)
	}
	sc := spec.InitContainers[i]
	if sc.RestartPolicy == nil || *sc.RestartPolicy != corev1.ContainerRestartPolicyAlways {
		t.Error("the sidecar is not a native sidecar (restartPolicy: Always)")
	}

	flags := flagValues(sc.Args)
	if flags["listen"] != "unix:"+socketPath {
		t.Errorf("--listen %q, want unix:%s", flags["listen"], socketPath)
	}
	grace, err := time.ParseDuration(flags["term-grace"])
	if err != nil {
		t.Errorf("--term-grace must be given (its default is serve's, not checked here): %v", err)
	}
	// The agent stops first (native sidecar), then the sidecar drains.
	const agentMargin = 10 * time.Second
	if tg := spec.TerminationGracePeriodSeconds; tg == nil || time.Duration(*tg)*time.Second < grace+agentMargin {
		t.Errorf("terminationGracePeriodSeconds %v, want at least --term-grace %v + %v", deref(tg), grace, agentMargin)
	}
	if spec.SecurityContext == nil || spec.SecurityContext.FSGroup == nil ||
		flags["socket-group"] != strconv.FormatInt(*spec.SecurityContext.FSGroup, 10) {
		t.Errorf("--socket-group %q is not the pod's fsGroup", flags["socket-group"])
	}

	wantProbe := []string{"securer-runc", "health", "--socket", socketPath}
	for name, p := range map[string]*corev1.Probe{"startup": sc.StartupProbe, "readiness": sc.ReadinessProbe, "liveness": sc.LivenessProbe} {
		if p == nil || p.Exec == nil || !slices.Equal(p.Exec.Command, wantProbe) {
			t.Errorf("%s probe %+v, want exec %q", name, p, wantProbe)
		}
	}

	req, lim := sc.Resources.Requests, sc.Resources.Limits
	if req.Cpu().IsZero() || req.Memory().IsZero() || lim.Memory().IsZero() {
		t.Errorf("sidecar resources %+v: want cpu and memory requests and a memory limit", sc.Resources)
	}
	if sessions, err := strconv.Atoi(flags["max-sessions"]); err != nil {
		t.Errorf("--max-sessions must be given: %v", err)
	} else {
		// CAPACITY.md: the limit covers every session at its --memory
		// plus what the server itself may hold; the request, the server
		// and every session idle.
		need := engineQuantity(t, flags["memory"])
		need.Mul(int64(sessions))
		if lim.Memory().Cmp(need) < 0 {
			t.Errorf("memory limit %v is below --max-sessions x --memory = %v", lim.Memory(), &need)
		}
		need.Add(*resource.NewQuantity(serverMemoryCeiling(t, flags, sessions), resource.BinarySI))
		if lim.Memory().Cmp(need) < 0 {
			t.Errorf("memory limit %v is below the server's memory ceiling + --max-sessions x --memory = %v (CAPACITY.md)", lim.Memory(), &need)
		}
		idle := resource.NewQuantity(serverBaseline+int64(sessions)*idleSessionBytes, resource.BinarySI)
		if req.Memory().Cmp(*idle) < 0 {
			t.Errorf("memory request %v is below the server and %d idle sessions = %v (CAPACITY.md)", req.Memory(), sessions, idle)
		}
		if req.Memory().Cmp(*lim.Memory()) > 0 {
			t.Errorf("memory request %v above the limit %v", req.Memory(), lim.Memory())
		}
	}

	// The admin endpoints, for the metrics the autoscaler reads: on a
	// port of the pod's network, named "metrics", and the one the
	// prometheus.io/port annotation names where there is one.
	_, port, err := net.SplitHostPort(flags["admin-listen"])
	if err != nil || port == "" || port == "0" {
		t.Errorf("--admin-listen %q: want HOST:PORT on the pod's network, for Prometheus (CAPACITY.md)", flags["admin-listen"])
	}
	if pi := slices.IndexFunc(sc.Ports, func(p corev1.ContainerPort) bool { return p.Name == "metrics" }); pi < 0 {
		t.Errorf("the sidecar names no port \"metrics\" (--admin-listen's)")
	} else if got := strconv.Itoa(int(sc.Ports[pi].ContainerPort)); got != port {
		t.Errorf("port \"metrics\" is %s, --admin-listen's is %s", got, port)
	}
	if a, ok := annotations["prometheus.io/port"]; ok && a != port {
		t.Errorf("annotation prometheus.io/port %q, --admin-listen's port is %s", a, port)
	}

	// The socket's directory is an emptyDir the agent mounts too.
	sockDir := path.Dir(socketPath)
	mi := slices.IndexFunc(sc.VolumeMounts, func(m corev1.VolumeMount) bool { return m.MountPath == sockDir })
	if mi < 0 {
		t.Fatalf("the sidecar mounts nothing at %s", sockDir)
	}
	vol := sc.VolumeMounts[mi].Name
	vi := slices.IndexFunc(spec.Volumes, func(v corev1.Volume) bool { return v.Name == vol })
	if vi < 0 || spec.Volumes[vi].EmptyDir == nil {
		t.Errorf("socket volume %q is not an emptyDir", vol)
	}
	if len(spec.Containers) == 0 {
		t.Error("no agent container")
	}
	for _, c := range spec.Containers {
		if !slices.ContainsFunc(c.VolumeMounts, func(m corev1.VolumeMount) bool { return m.Name == vol && m.MountPath == sockDir }) {
			t.Errorf("container %s does not mount %s at %s", c.Name, vol, sockDir)
		}
		if s := c.SecurityContext; s == nil || (s.Privileged != nil && *s.Privileged) ||
			s.AllowPrivilegeEscalation == nil || *s.AllowPrivilegeEscalation ||
			s.Capabilities == nil || len(s.Capabilities.Add) > 0 || !slices.Contains(s.Capabilities.Drop, "ALL") {
			t.Errorf("container %s: the agent needs no privilege and must get none", c.Name)
		}
	}

	s := sc.SecurityContext
	if s == nil {
		t.Fatal("the sidecar has no securityContext")
	}
	if s.ReadOnlyRootFilesystem == nil || !*s.ReadOnlyRootFilesystem {
		t.Error("the sidecar's image should be read-only")
	}
	for _, dir := range []string{"/run", "/tmp"} {
		if !slices.ContainsFunc(sc.VolumeMounts, func(m corev1.VolumeMount) bool { return m.MountPath == dir && !m.ReadOnly }) {
			t.Errorf("the sidecar has no writable volume at %s (its image is read-only)", dir)
		}
	}
	if s.Privileged != nil && *s.Privileged {
		// Mode (b).
		if spec.HostUsers != nil && !*spec.HostUsers {
			t.Error("privileged with hostUsers: false fails mounting sysfs (opencontainers/runc#5309)")
		}
		return
	}
	// Mode (a): user namespaces, the least privilege.
	if spec.HostUsers == nil || *spec.HostUsers {
		t.Error("unprivileged sidecar without hostUsers: false: its capabilities would be the node's")
	}
	if s.Capabilities == nil || !slices.Contains(s.Capabilities.Drop, "ALL") || !slices.Contains(s.Capabilities.Add, "SYS_ADMIN") {
		t.Errorf("capabilities %+v: want drop ALL, add SYS_ADMIN and the few others", s.Capabilities)
	} else {
		for _, c := range s.Capabilities.Add {
			// Every capability says why on its line.
			if !regexp.MustCompile(`(?m)^\s*- ` + string(c) + ` # \S`).Match(raw) {
				t.Errorf("capability %s has no comment saying why it is needed", c)
			}
		}
	}
	if s.AllowPrivilegeEscalation == nil || !*s.AllowPrivilegeEscalation {
		t.Error("Kubernetes refuses CAP_SYS_ADMIN with allowPrivilegeEscalation: false")
	}
	if s.SeccompProfile == nil || s.SeccompProfile.Type != corev1.SeccompProfileTypeUnconfined {
		t.Errorf("seccomp %+v, want Unconfined", s.SeccompProfile)
	}
	if s.AppArmorProfile == nil || s.AppArmorProfile.Type != corev1.AppArmorProfileTypeUnconfined {
		t.Errorf("AppArmor %+v, want Unconfined", s.AppArmorProfile)
	}
	if s.ProcMount == nil || *s.ProcMount != corev1.UnmaskedProcMount {
		t.Errorf("procMount %v, want Unmasked", deref(s.ProcMount))
	}
	if s.RunAsUser == nil || *s.RunAsUser != 0 {
		t.Error("the sidecar must run as root of the pod's user namespace")
	}
}
