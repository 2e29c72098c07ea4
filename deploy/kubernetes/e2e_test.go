//go:build sidecare2e

package kubernetes

// The sidecar end-to-end test (make sidecar-e2e): the image of `make
// image` run by a real OCI runtime (runc) the way a node runs the pod of
// the shipped manifests: the runtime config is translated from the
// manifest (RuntimeSpec), so the sidecar gets the documented privileges
// and no more; its own mount, PID, network and cgroup namespaces (and
// user namespace in mode (a)); the socket in a shared emptyDir; a
// second container, the agent, as a non-root user with no capability,
// runs R code that calls a tool answered in the agent; exec probes with
// `securer-runc health`; then SIGTERM while an execution runs: the
// execution finishes and the sidecar exits within the pod's grace.
//
// Run as root. Environment:
//
//	SIDECAR_E2E_IMAGE   the OCI layout of make image (required)
//	SIDECAR_E2E_CLIENT  the Python client's dir (default ../../clients/python)
//	SIDECAR_E2E_MODES   privileged,userns (default: both on cgroup v2;
//	                    privileged on v1, where a user namespace's root
//	                    cannot be handed cgroup v1 hierarchies)
//	SIDECAR_E2E_RUNTIME the OCI runtime for every mode (default: runc for
//	                    mode (b), containerd's default; crun for mode
//	                    (a), CRI-O's: Debian 12's runc 1.1 does not hand
//	                    a user-namespaced container its cgroup, crun does)

import (
	"bufio"
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	corev1 "k8s.io/api/core/v1"
)

// podIDBase is the host ID the test's user-namespaced pod starts at (a
// kubelet picks a multiple of 65536 above the host's own IDs).
const podIDBase = 2000 * PodIDs

type e2eMode struct {
	name     string
	manifest string
	userNS   bool
	runtime  string
}

var e2eModes = []e2eMode{
	{name: "privileged", manifest: "deployment-privileged.yaml", runtime: "runc"},
	{name: "userns", manifest: "pod.yaml", userNS: true, runtime: "crun"},
}

func TestSidecarEndToEnd(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("the sidecar end-to-end test runs containers: run it as root")
	}
	layout := os.Getenv("SIDECAR_E2E_IMAGE")
	if layout == "" {
		t.Fatal("SIDECAR_E2E_IMAGE: set it to the OCI layout of `make image` (make sidecar-e2e does)")
	}
	clientDir := os.Getenv("SIDECAR_E2E_CLIENT")
	if clientDir == "" {
		clientDir = "../../clients/python"
	}
	clientDir, _ = filepath.Abs(clientDir)
	if _, err := os.Stat(filepath.Join(clientDir, "securer_client", "__init__.py")); err != nil {
		t.Fatalf("SIDECAR_E2E_CLIENT: %v", err)
	}
	v2 := cgroupV2()
	modes := os.Getenv("SIDECAR_E2E_MODES")
	if modes == "" {
		modes = "privileged"
		if v2 {
			modes += ",userns"
		} else {
			t.Log("cgroup v1 host: mode (a), user namespaces, runs in the v2 guest (make v2-ci)")
		}
	}
	img, tag := readImage(t, layout)
	// One unpacked image for every mode (umoci takes a minute under
	// emulation): mode (b) first, then mode (a) shifts its owners.
	rootfs := unpackImage(t, layout, tag)
	for _, m := range e2eModes {
		if !slices.Contains(strings.Split(modes, ","), m.name) {
			continue
		}
		runtime := cmp.Or(os.Getenv("SIDECAR_E2E_RUNTIME"), m.runtime)
		if _, err := exec.LookPath(runtime); err != nil {
			t.Fatalf("the OCI runtime %q: %v (apt-get install %s)", runtime, err, runtime)
		}
		t.Run(m.name, func(t *testing.T) {
			h := newE2EHarness(t, m, runtime, v2, clientDir)
			h.run(t, rootfs, img)
		})
	}
}

// e2eHarness is one pod: its dirs, its runtime state and its cgroup.
type e2eHarness struct {
	mode      e2eMode
	runc      string
	v2        bool
	clientDir string
	dir       string // everything of this pod on the host
	runcRoot  string
	cgroup    string // the pod's cgroup, relative to the hierarchy roots
	pod       *corev1.PodSpec
	volumes   map[string]string
	idBase    uint32
}

func newE2EHarness(t *testing.T, m e2eMode, runc string, v2 bool, clientDir string) *e2eHarness {
	data, err := os.ReadFile(m.manifest)
	if err != nil {
		t.Fatal(err)
	}
	objs, err := Decode(data)
	if err != nil {
		t.Fatal(err)
	}
	h := &e2eHarness{mode: m, runc: runc, v2: v2, clientDir: clientDir, pod: objs[0].PodSpec()}
	if m.userNS {
		h.idBase = podIDBase
	}
	// The bundle's path must be searchable by the pod's root, an
	// unprivileged host ID in mode (a): not under a 0700 temp dir.
	h.dir, err = os.MkdirTemp("/var/tmp", "securer-e2e-"+m.name+"-")
	if err != nil {
		t.Fatal(err)
	}
	must(t, os.Chmod(h.dir, 0o755))
	h.runcRoot = filepath.Join(h.dir, "runc")
	h.cgroup = fmt.Sprintf("/securer-e2e-%d/%s", os.Getpid(), m.name)
	t.Cleanup(func() { h.cleanup(t) })
	return h
}

func (h *e2eHarness) run(t *testing.T, rootfs string, img Image) {
	h.makeVolumes(t)
	if h.mode.userNS {
		shiftOwners(t, rootfs, h.idBase)
	}

	name := "securer-runc"
	sidecarSpec := h.spec(t, name, img, rootfs)
	t.Logf("sidecar under %s: uid %d, capabilities %v, user namespace %v, seccomp %v, masked paths %d",
		h.runc, sidecarSpec.Process.User.UID, sidecarSpec.Process.Capabilities.Bounding,
		h.mode.userNS, sidecarSpec.Linux.Seccomp != nil, len(sidecarSpec.Linux.MaskedPaths))
	sidecarID := "sidecar-" + h.mode.name
	sidecar := h.start(t, sidecarID, sidecarSpec)
	go io.Copy(sidecar.cmd.Stderr, sidecar.stdout) // serve logs to stderr; keep stdout drained too

	// Probes as the kubelet runs them: exec in the sidecar's namespaces.
	ready := time.Now()
	if err := h.waitReady(sidecarID, sidecar, 3*time.Minute); err != nil {
		t.Fatalf("the sidecar: %v\nsidecar log:\n%s", err, sidecar.log())
	}
	t.Logf("startup probe passed after %s", time.Since(ready).Round(time.Millisecond))

	// The agent calls a tool from R through the socket.
	lines := h.agent(t, "agent-call-"+h.mode.name, "call", nil)
	for _, problem := range checkCall(lines) {
		t.Error(problem)
	}

	// SIGTERM while an execution runs: it finishes, the sidecar exits
	// within the pod's termination grace.
	grace := time.Duration(*h.pod.TerminationGracePeriodSeconds) * time.Second
	var termAt time.Time
	drainLines := h.agent(t, "agent-drain-"+h.mode.name, "drain", func(line map[string]any) {
		if line["what"] == "executing" {
			time.Sleep(time.Second) // the execution has reached R
			// The sandbox's cgroup is below the pod's, so the pod's
			// limits and the kubelet's accounting cover it (the
			// manifests' memory limit counts on it).
			if leaves := h.sessionCgroups(); len(leaves) == 0 {
				t.Errorf("no session cgroup below the pod's cgroup %s while an execution runs: the sandbox escapes the pod's limits", h.cgroup)
			} else {
				t.Logf("session cgroups below the pod: %v", leaves)
			}
			termAt = time.Now()
			if out, err := exec.Command(h.runc, "--root", h.runcRoot, "kill", sidecarID, "TERM").CombinedOutput(); err != nil {
				t.Errorf("runc kill TERM: %v: %s", err, out)
			}
		}
	})
	if r := find(t, drainLines, "drain"); r["verdict"] != "ok" || fmt.Sprint(r["value"]) != "42" {
		t.Errorf("the execution running at SIGTERM: %v, want ok 42", r)
	}
	if r := find(t, drainLines, "after_drain"); r["closed_by_server"] != true {
		t.Errorf("after the drain the server should have closed the agent's connection: %v", r)
	}
	code, err := sidecar.wait(grace)
	if err != nil {
		t.Fatalf("the sidecar after SIGTERM: %v\nsidecar log:\n%s", err, sidecar.log())
	}
	t.Logf("the sidecar exited %s after SIGTERM (grace %s), status %d", time.Since(termAt).Round(time.Millisecond), grace, code)
	if code != 0 {
		t.Errorf("the sidecar's exit status after a drain: %d, want 0\nsidecar log:\n%s", code, sidecar.log())
	}
	if !strings.Contains(sidecar.log(), "shutting down") {
		t.Errorf("the sidecar's log does not show the drain:\n%s", sidecar.log())
	}
	if os.Getenv("SIDECAR_E2E_TRIM") != "" && !t.Failed() {
		h.trim(t, rootfs, img, sidecarSpec.Process.Capabilities.Bounding)
	}
}

// checkCall lists what is wrong in the agent's "call" lines.
func checkCall(lines []map[string]any) []string {
	var problems []string
	line := func(what string) map[string]any {
		for _, l := range lines {
			if l["what"] == what {
				return l
			}
		}
		problems = append(problems, fmt.Sprintf("the agent printed no %q line", what))
		return map[string]any{}
	}
	want := func(what, verdict, value string) {
		if r := line(what); r["verdict"] != verdict || (value != "" && fmt.Sprint(r["value"]) != value) {
			problems = append(problems, fmt.Sprintf("%s: %v, want %s %s", what, r, verdict, value))
		}
	}
	if hello := line("hello"); hello["sandboxed"] != true || hello["uid"] != float64(1000) {
		problems = append(problems, fmt.Sprintf("hello: %v, want sandboxed, agent uid 1000 (the manifest's)", hello))
	}
	want("tool", "ok", "50")      // R called the agent's tool
	want("box_uid", "ok", "1000") // R's uid in its box
	if r := line("calls"); fmt.Sprint(r["calls"]) != "[[2 3]]" {
		problems = append(problems, fmt.Sprintf("tool calls answered by the agent: %v, want [[2 3]]", r["calls"]))
	}
	want("timeout", "timeout", "") // R interrupted: the sidecar signals the box
	want("after_timeout", "ok", "7")
	if r := line("after_timeout"); r["state_lost"] != false {
		problems = append(problems, fmt.Sprintf("after the timeout the session lost its state (R killed, not interrupted): %v", r))
	}
	want("fresh_clean", "ok", "true") // the sidecar swept the box after a fresh execution
	want("after_fresh", "ok", "7")    // and kept it: the sweep worked
	if r := line("after_fresh"); r["state_lost"] != false {
		problems = append(problems, fmt.Sprintf("after fresh executions the session lost its state (the box was replaced: its sweep failed?): %v", r))
	}
	return problems
}

// trim checks that the manifest asks for no capability it does not need:
// the sidecar without each one in turn must fail to run the agent's R
// code (SIDECAR_E2E_TRIM=1; mode (a), whose list is the least-privilege
// recipe).
func (h *e2eHarness) trim(t *testing.T, rootfs string, img Image, caps []string) {
	if !h.mode.userNS {
		return
	}
	for _, drop := range caps {
		s := h.spec(t, "securer-runc", img, rootfs)
		c := s.Process.Capabilities
		c.Bounding = slices.DeleteFunc(slices.Clone(c.Bounding), func(x string) bool { return x == drop })
		c.Effective, c.Permitted = c.Bounding, c.Bounding
		id := "trim-" + strings.ToLower(strings.TrimPrefix(drop, "CAP_"))
		sidecar := h.start(t, id, s)
		go io.Copy(sidecar.cmd.Stderr, sidecar.stdout)
		verdict := "needed"
		why := ""
		if err := h.waitReady(id, sidecar, time.Minute); err != nil {
			why = "serve does not start: " + lastLine(sidecar.log())
		} else if lines, err := h.tryAgent(t, "agent-"+id, "call", nil); err != nil {
			why = "no session: " + lastLine(err.Error())
		} else if problems := checkCall(lines); len(problems) > 0 {
			why = strings.Join(problems, "; ")
		} else {
			verdict = "NOT needed"
			t.Errorf("the sidecar runs R calling a tool without %s: drop it from the manifest", drop)
		}
		t.Logf("%s: %s (%s)", drop, verdict, why)
		exec.Command(h.runc, "--root", h.runcRoot, "kill", id, "KILL").Run()
		sidecar.wait(time.Minute)
		exec.Command(h.runc, "--root", h.runcRoot, "delete", "--force", id).Run()
	}
}

// waitReady runs the startup probe until it passes, the container ends,
// or d passes.
func (h *e2eHarness) waitReady(id string, c *container, d time.Duration) error {
	sc, _ := FindContainer(h.pod, "securer-runc")
	probe := sc.StartupProbe.Exec.Command
	deadline := time.Now().Add(d)
	for {
		out, err := exec.Command(h.runc, append([]string{"--root", h.runcRoot, "exec", id}, probe...)...).CombinedOutput()
		if err == nil {
			return nil
		}
		if c.exited() || time.Now().After(deadline) {
			return fmt.Errorf("never ready (last probe: %v: %s)", err, bytes.TrimSpace(out))
		}
		time.Sleep(time.Second)
	}
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}

// spec translates the manifest's container and fixes what the node
// decides: the rootfs, the pod's cgroup, its IDs, its volumes.
func (h *e2eHarness) spec(t *testing.T, name string, img Image, rootfs string) *specs.Spec {
	s, err := RuntimeSpec(h.pod, name, img, Node{
		RootFS:      rootfs,
		CgroupV2:    h.v2,
		CgroupsPath: h.cgroup + "/" + name,
		PodIDBase:   h.idBase,
		Volumes:     h.volumes,
		Hostname:    "r-agent",
		// The agent's RuntimeDefault profile is the node's and not what
		// this test checks; the sidecar's privileges are.
		UnfilteredRuntimeDefault: name == "agent",
		HostCaps:                 boundingCaps(t),
		// A node configured as runtimeclass.yaml says, for the pods
		// that name that class (mode (a)).
		CgroupWritable: h.pod.RuntimeClassName != nil && *h.pod.RuntimeClassName == "securer-runc",
	})
	if err != nil {
		t.Fatalf("runtime spec of %q: %v", name, err)
	}
	return s
}

// makeVolumes makes the pod's emptyDirs as the kubelet does: mode 0777,
// and with fsGroup the group set and setgid.
func (h *e2eHarness) makeVolumes(t *testing.T) {
	h.volumes = map[string]string{}
	var fsGroup int64 = -1
	if h.pod.SecurityContext != nil && h.pod.SecurityContext.FSGroup != nil {
		fsGroup = *h.pod.SecurityContext.FSGroup
	}
	for _, v := range h.pod.Volumes {
		if v.EmptyDir == nil {
			t.Fatalf("volume %q: only emptyDir volumes are modelled", v.Name)
		}
		d := filepath.Join(h.dir, "volumes", v.Name)
		must(t, os.MkdirAll(d, 0o755))
		mode := os.FileMode(0o777)
		gid := int(h.idBase)
		if fsGroup >= 0 {
			mode |= os.ModeSetgid
			gid += int(fsGroup)
		}
		must(t, os.Chown(d, int(h.idBase), gid))
		must(t, os.Chmod(d, mode))
		h.volumes[v.Name] = d
	}
}

// agent runs the agent container with the manifest's security context
// and mode's script, calling each JSON line to onLine as it comes, and
// returns the lines.
func (h *e2eHarness) agent(t *testing.T, id, mode string, onLine func(map[string]any)) []map[string]any {
	lines, err := h.tryAgent(t, id, mode, onLine)
	if err != nil {
		t.Fatal(err)
	}
	return lines
}

// tryAgent is agent, returning the agent's failure as an error.
func (h *e2eHarness) tryAgent(t *testing.T, id, mode string, onLine func(map[string]any)) ([]map[string]any, error) {
	rootfs := filepath.Join(h.dir, id)
	for _, d := range []string{"usr", "etc", "proc", "dev", "sys", "tmp", "run/securer", "client/lib"} {
		must(t, os.MkdirAll(filepath.Join(rootfs, d), 0o755))
	}
	// An agent image made of this host's Debian (Python), read-only.
	for _, l := range []string{"bin", "lib", "lib64", "sbin"} {
		if target, err := os.Readlink("/" + l); err == nil {
			must(t, os.Symlink(target, filepath.Join(rootfs, l)))
		}
	}
	img := Image{
		Entrypoint: []string{"python3", "-B", "/client/agent.py", mode},
		Env:        []string{"PATH=/usr/local/bin:/usr/bin:/bin", "PYTHONUNBUFFERED=1"},
	}
	s := h.spec(t, "agent", img, rootfs)
	s.Mounts = append(s.Mounts,
		specs.Mount{Destination: "/usr", Type: "bind", Source: "/usr", Options: []string{"rbind", "ro", "nosuid", "nodev"}},
		specs.Mount{Destination: "/etc", Type: "bind", Source: "/etc", Options: []string{"rbind", "ro", "nosuid", "nodev"}},
		specs.Mount{Destination: "/client/lib", Type: "bind", Source: h.clientDir, Options: []string{"rbind", "ro", "nosuid", "nodev"}},
		specs.Mount{Destination: "/client/agent.py", Type: "bind", Source: mustAbs(t, "e2e/agent.py"), Options: []string{"bind", "ro", "nosuid", "nodev"}},
		specs.Mount{Destination: "/tmp", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "nodev", "size=16m"}},
	)
	if err := os.WriteFile(filepath.Join(rootfs, "client", "agent.py"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	c := h.start(t, id, s)
	var lines []map[string]any
	sc := bufio.NewScanner(c.stdout)
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Errorf("agent %s: not JSON: %q", mode, sc.Text())
			continue
		}
		lines = append(lines, m)
		if onLine != nil {
			onLine(m)
		}
	}
	code, err := c.wait(2 * time.Minute)
	if err != nil || code != 0 {
		return lines, fmt.Errorf("agent %s: status %d, %v\nagent stderr:\n%s", mode, code, err, c.log())
	}
	return lines, nil
}

// container is a `runc run` in the foreground: its status is the
// container's.
type container struct {
	cmd    *exec.Cmd
	stdout io.Reader
	stderr *bytes.Buffer
	done   chan struct{}
	err    error
}

// start writes the bundle and starts the container.
func (h *e2eHarness) start(t *testing.T, id string, s *specs.Spec) *container {
	bundle := filepath.Join(h.dir, "bundle-"+id)
	must(t, os.MkdirAll(bundle, 0o755))
	data, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	must(t, os.WriteFile(filepath.Join(bundle, "config.json"), data, 0o644))
	cmd := exec.Command(h.runc, "--root", h.runcRoot, "run", "--bundle", bundle, id)
	c := &container{cmd: cmd, stderr: &bytes.Buffer{}, done: make(chan struct{})}
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, &lockedWriter{w: c.stderr}
	c.stdout = pr
	if err := cmd.Start(); err != nil {
		t.Fatalf("runc run %s: %v", id, err)
	}
	go func() {
		c.err = cmd.Wait()
		pw.Close()
		close(c.done)
	}()
	t.Cleanup(func() {
		exec.Command(h.runc, "--root", h.runcRoot, "delete", "--force", id).Run()
		select {
		case <-c.done:
		case <-time.After(30 * time.Second):
			cmd.Process.Kill()
		}
	})
	return c
}

func (c *container) exited() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// wait returns the container's exit status, or an error when it does
// not end within d.
func (c *container) wait(d time.Duration) (int, error) {
	select {
	case <-c.done:
	case <-time.After(d):
		return -1, fmt.Errorf("still running after %s", d)
	}
	var ee *exec.ExitError
	if errors.As(c.err, &ee) {
		return ee.ExitCode(), nil
	}
	return 0, c.err
}

func (c *container) log() string {
	if lw, ok := c.cmd.Stderr.(*lockedWriter); ok {
		return lw.String()
	}
	return ""
}

// cleanup removes the pod's dirs and its cgroups (ours: made by runc
// for this test), and fails when the sidecar's sessions left a cgroup.
// The containers are gone by then: each start registered its delete,
// and cleanups run last-registered first.
func (h *e2eHarness) cleanup(t *testing.T) {
	var left []string
	for _, root := range cgroupRoots(h.v2) {
		pod := filepath.Join(root, h.cgroup)
		_ = filepath.WalkDir(pod, func(p string, d fs.DirEntry, err error) error {
			if err == nil && d.IsDir() && p != pod {
				left = append(left, p)
			}
			return nil
		})
		rmdirTree(pod)
		parent := filepath.Dir(pod)
		if entries, err := os.ReadDir(parent); err == nil && len(dirsOnly(entries)) == 0 {
			os.Remove(parent)
		}
	}
	if len(left) > 0 && !t.Failed() {
		t.Errorf("cgroups left below the pod after its containers were deleted: %v", left)
	}
	if os.Getenv("SIDECAR_E2E_KEEP") == "" {
		os.RemoveAll(h.dir)
	}
}

// sessionCgroups are the session leaves (named by the session's id,
// "securer-" and hex) below the pod's cgroup, in any hierarchy.
func (h *e2eHarness) sessionCgroups() []string {
	var found []string
	for _, root := range cgroupRoots(h.v2) {
		pod := filepath.Join(root, h.cgroup)
		_ = filepath.WalkDir(pod, func(p string, d fs.DirEntry, err error) error {
			if err == nil && d.IsDir() && strings.HasPrefix(d.Name(), "securer-") && d.Name() != "securer-runc" {
				found = append(found, strings.TrimPrefix(p, root))
			}
			return nil
		})
	}
	return found
}

func dirsOnly(es []fs.DirEntry) []fs.DirEntry {
	return slices.DeleteFunc(es, func(e fs.DirEntry) bool { return !e.IsDir() })
}

// rmdirTree removes a cgroup dir and those below it, deepest first.
func rmdirTree(dir string) {
	var dirs []string
	_ = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			dirs = append(dirs, p)
		}
		return nil
	})
	for i := len(dirs) - 1; i >= 0; i-- {
		syscall.Rmdir(dirs[i])
	}
}

// boundingCaps are the capabilities in this process's bounding set (a
// VM or container may lack some): what runc can give a privileged
// container.
func boundingCaps(t *testing.T) []string {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if hex, ok := strings.CutPrefix(line, "CapBnd:"); ok {
			mask, err := strconv.ParseUint(strings.TrimSpace(hex), 16, 64)
			if err != nil {
				t.Fatal(err)
			}
			var caps []string
			for i, c := range allCaps {
				if mask&(1<<i) != 0 {
					caps = append(caps, c)
				}
			}
			return caps
		}
	}
	t.Fatal("no CapBnd in /proc/self/status")
	return nil
}

func cgroupV2() bool {
	var st syscall.Statfs_t
	return syscall.Statfs("/sys/fs/cgroup", &st) == nil && st.Type == 0x63677270 // CGROUP2_SUPER_MAGIC
}

// cgroupRoots are the hierarchies a container's cgroup dirs are in.
func cgroupRoots(v2 bool) []string {
	if v2 {
		return []string{"/sys/fs/cgroup"}
	}
	entries, _ := os.ReadDir("/sys/fs/cgroup")
	var roots []string
	for _, e := range entries {
		p := filepath.Join("/sys/fs/cgroup", e.Name())
		if fi, err := os.Lstat(p); err == nil && fi.IsDir() {
			roots = append(roots, p)
		}
	}
	return roots
}

// unpackImage unpacks the layout's image into a dir the pod's root can
// reach, removed at the end.
func unpackImage(t *testing.T, layout, tag string) string {
	dir, err := os.MkdirTemp("/var/tmp", "securer-e2e-image-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	must(t, os.Chmod(dir, 0o755))
	rootfs := filepath.Join(dir, "rootfs")
	start := time.Now()
	if out, err := exec.Command("umoci", "raw", "unpack", "--image", layout+":"+tag, rootfs).CombinedOutput(); err != nil {
		t.Fatalf("umoci raw unpack: %v\n%s", err, out)
	}
	t.Logf("image unpacked in %s", time.Since(start).Round(time.Millisecond))
	return rootfs
}

// shiftOwners makes the unpacked image owned by the pod's IDs, as a
// runtime's ID-mapped (or chowned) rootfs is in a user-namespaced pod.
func shiftOwners(t *testing.T, root string, base uint32) {
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		st := fi.Sys().(*syscall.Stat_t)
		mode := fi.Mode()
		if err := os.Lchown(p, int(base+st.Uid), int(base+st.Gid)); err != nil {
			return err
		}
		// chown clears set-ID bits; put them back.
		if mode&(os.ModeSetuid|os.ModeSetgid) != 0 && mode&os.ModeSymlink == 0 {
			return os.Chmod(p, mode)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("shift the image's owners: %v", err)
	}
}

// readImage reads the layout's image config and its tag.
func readImage(t *testing.T, layout string) (Image, string) {
	var index struct {
		Manifests []struct {
			Digest      string            `json:"digest"`
			Annotations map[string]string `json:"annotations"`
		} `json:"manifests"`
	}
	readJSON(t, filepath.Join(layout, "index.json"), &index)
	if len(index.Manifests) != 1 {
		t.Fatalf("%s: want one image, found %d", layout, len(index.Manifests))
	}
	var manifest struct {
		Config struct {
			Digest string `json:"digest"`
		} `json:"config"`
	}
	readJSON(t, blobPath(layout, index.Manifests[0].Digest), &manifest)
	var config struct {
		Config struct {
			Entrypoint, Cmd, Env []string
			WorkingDir           string
		} `json:"config"`
	}
	readJSON(t, blobPath(layout, manifest.Config.Digest), &config)
	tag := index.Manifests[0].Annotations["org.opencontainers.image.ref.name"]
	if tag == "" {
		t.Fatalf("%s: the image has no tag", layout)
	}
	c := config.Config
	return Image{Entrypoint: c.Entrypoint, Cmd: c.Cmd, Env: c.Env, WorkingDir: c.WorkingDir}, tag
}

func blobPath(layout, digest string) string {
	algo, hex, _ := strings.Cut(digest, ":")
	return filepath.Join(layout, "blobs", algo, hex)
}

func readJSON(t *testing.T, path string, v any) {
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

func find(t *testing.T, lines []map[string]any, what string) map[string]any {
	t.Helper()
	for _, l := range lines {
		if l["what"] == what {
			return l
		}
	}
	t.Fatalf("the agent printed no %q line: %v", what, lines)
	return nil
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func mustAbs(t *testing.T, p string) string {
	a, err := filepath.Abs(p)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// lockedWriter collects a container's stderr, written by exec's copier
// while the test reads it.
type lockedWriter struct {
	mu sync.Mutex
	w  *bytes.Buffer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func (l *lockedWriter) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.String()
}
