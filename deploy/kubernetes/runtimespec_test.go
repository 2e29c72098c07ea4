package kubernetes

import (
	"errors"
	"os"
	"slices"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	corev1 "k8s.io/api/core/v1"
)

func decodePod(t *testing.T, file string) *corev1.PodSpec {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	objs, err := Decode(data)
	if err != nil {
		t.Fatal(err)
	}
	return objs[0].PodSpec()
}

func mountOf(s *specs.Spec, dest string) *specs.Mount {
	for i := range s.Mounts {
		if s.Mounts[i].Destination == dest {
			return &s.Mounts[i]
		}
	}
	return nil
}

// The translation the end-to-end test runs the sidecar with: the
// manifest's privileges, no more.
func TestRuntimeSpecOfManifests(t *testing.T) {
	vols := map[string]string{"securer-socket": "/v/sock", "securer-run": "/v/run", "securer-tmp": "/v/tmp"}
	img := Image{Entrypoint: []string{"/usr/local/bin/securer-runc", "serve"}, Cmd: []string{"--listen", "unix:/x"}, Env: []string{"PATH=/bin"}}
	cases := []struct {
		file           string
		cgroupWritable bool
		wantCaps       []string
		wantUserNS     bool
		wantCgroup     string // the cgroup mount's ro/rw
		wantMasked     bool
		wantCgroupNS   bool // on this v2 node
	}{
		{"pod.yaml", true, []string{"CAP_SYS_ADMIN", "CAP_SETUID", "CAP_SETGID", "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_SYS_PTRACE", "CAP_SYS_CHROOT"}, true, "rw", false, true},
		{"pod.yaml", false, nil, true, "ro", false, true},
		{"deployment-privileged.yaml", false, allCaps, false, "rw", false, false},
	}
	for _, c := range cases {
		pod := decodePod(t, c.file)
		s, err := RuntimeSpec(pod, "securer-runc", img, Node{RootFS: "/r", CgroupV2: true, CgroupsPath: "/pod/sidecar", PodIDBase: 1 << 20, Volumes: vols, Hostname: "h", CgroupWritable: c.cgroupWritable})
		if err != nil {
			t.Fatalf("%s: %v", c.file, err)
		}
		if c.wantCaps != nil && !slices.Equal(s.Process.Capabilities.Bounding, c.wantCaps) {
			t.Errorf("%s: capabilities %v, want %v", c.file, s.Process.Capabilities.Bounding, c.wantCaps)
		}
		if s.Process.User.UID != 0 || s.Process.NoNewPrivileges {
			t.Errorf("%s: user %+v, no_new_privs %v: want root, privilege escalation allowed", c.file, s.Process.User, s.Process.NoNewPrivileges)
		}
		hasUserNS := slices.ContainsFunc(s.Linux.Namespaces, func(n specs.LinuxNamespace) bool { return n.Type == specs.UserNamespace })
		if hasUserNS != c.wantUserNS || (c.wantUserNS && (len(s.Linux.UIDMappings) != 1 || s.Linux.UIDMappings[0].Size != PodIDs)) {
			t.Errorf("%s: user namespace %v %+v, want %v with %d IDs", c.file, hasUserNS, s.Linux.UIDMappings, c.wantUserNS, PodIDs)
		}
		hasCgroupNS := slices.ContainsFunc(s.Linux.Namespaces, func(n specs.LinuxNamespace) bool { return n.Type == specs.CgroupNamespace })
		if hasCgroupNS != c.wantCgroupNS {
			t.Errorf("%s: cgroup namespace %v, want %v (runtimes give none to privileged containers)", c.file, hasCgroupNS, c.wantCgroupNS)
		}
		if m := mountOf(s, "/sys/fs/cgroup"); m == nil || m.Type != "cgroup2" || !slices.Contains(m.Options, c.wantCgroup) {
			t.Errorf("%s (cgroup writable %v): cgroup mount %+v, want cgroup2 %s", c.file, c.cgroupWritable, m, c.wantCgroup)
		}
		if (len(s.Linux.MaskedPaths) > 0) != c.wantMasked || s.Linux.Seccomp != nil {
			t.Errorf("%s: masked paths %v, seccomp %v", c.file, s.Linux.MaskedPaths, s.Linux.Seccomp)
		}
		if !s.Root.Readonly || !slices.Equal(s.Process.Args[:2], img.Entrypoint) || slices.Contains(s.Process.Args, "unix:/x") {
			t.Errorf("%s: root read-only %v, args %q: want the manifest's args replacing the image's cmd", c.file, s.Root.Readonly, s.Process.Args)
		}
		// The socket's emptyDir lands inside /run's, not under it.
		run, sock := slices.IndexFunc(s.Mounts, func(m specs.Mount) bool { return m.Destination == "/run" }), slices.IndexFunc(s.Mounts, func(m specs.Mount) bool { return m.Destination == "/run/securer" })
		if run < 0 || sock < run {
			t.Errorf("%s: /run mounted at %d, /run/securer at %d: the socket's volume must come after", c.file, run, sock)
		}
	}

	// The agent: its manifest's user, no capability, no privilege
	// escalation; its RuntimeDefault profile is refused unless the
	// caller opts out of modelling it.
	pod := decodePod(t, "pod.yaml")
	node := Node{RootFS: "/r", Volumes: vols}
	if _, err := RuntimeSpec(pod, "agent", img, node); !errors.Is(err, ErrUnsupported) {
		t.Errorf("agent with RuntimeDefault seccomp: %v, want ErrUnsupported", err)
	}
	node.UnfilteredRuntimeDefault = true
	s, err := RuntimeSpec(pod, "agent", img, node)
	if err != nil {
		t.Fatal(err)
	}
	if u := s.Process.User; u.UID != 1000 || u.GID != 1000 || !slices.Contains(u.AdditionalGids, 2000) {
		t.Errorf("agent user %+v, want 1000:1000 with fsGroup 2000", u)
	}
	if len(s.Process.Capabilities.Bounding) != 0 || len(s.Process.Capabilities.Effective) != 0 || !s.Process.NoNewPrivileges {
		t.Errorf("agent capabilities %+v, no_new_privs %v: want none, true", s.Process.Capabilities, s.Process.NoNewPrivileges)
	}
	if len(s.Linux.MaskedPaths) == 0 {
		t.Error("the agent's /proc should be masked (procMount Default)")
	}
	if _, err := RuntimeSpec(pod, "nope", img, node); err == nil {
		t.Error("an unknown container was translated")
	}
}

// Fields that change privileges and are not modelled are refused, never
// dropped.
func TestRuntimeSpecRefuses(t *testing.T) {
	base := func() *corev1.PodSpec { return decodePod(t, "pod.yaml") }
	node := Node{RootFS: "/r", Volumes: map[string]string{"securer-socket": "/a", "securer-run": "/b", "securer-tmp": "/c"}}
	cases := map[string]func(*corev1.PodSpec){
		"host network": func(p *corev1.PodSpec) { p.HostNetwork = true },
		"AppArmor profile": func(p *corev1.PodSpec) {
			p.InitContainers[0].SecurityContext.AppArmorProfile = &corev1.AppArmorProfile{Type: corev1.AppArmorProfileTypeRuntimeDefault}
		},
		"privileged in a user namespace": func(p *corev1.PodSpec) {
			yes := true
			p.InitContainers[0].SecurityContext.Privileged = &yes
		},
		"unmasked /proc without a user namespace": func(p *corev1.PodSpec) {
			yes := true
			p.HostUsers = &yes
		},
		"a volume the node lacks": func(p *corev1.PodSpec) {
			p.InitContainers[0].VolumeMounts = append(p.InitContainers[0].VolumeMounts, corev1.VolumeMount{Name: "other", MountPath: "/x"})
		},
		"no runAsUser": func(p *corev1.PodSpec) { p.InitContainers[0].SecurityContext.RunAsUser = nil },
	}
	for name, mutate := range cases {
		p := base()
		mutate(p)
		if _, err := RuntimeSpec(p, "securer-runc", Image{}, node); err == nil {
			t.Errorf("%s: translated, want an error", name)
		}
	}
}

// On a cgroup v1 node no container gets a cgroup namespace of its own.
func TestRuntimeSpecNoCgroupNamespaceOnV1(t *testing.T) {
	vols := map[string]string{"securer-socket": "/v/sock", "securer-run": "/v/run", "securer-tmp": "/v/tmp"}
	for _, file := range []string{"pod.yaml", "deployment-privileged.yaml"} {
		s, err := RuntimeSpec(decodePod(t, file), "securer-runc", Image{}, Node{RootFS: "/r", Volumes: vols, PodIDBase: 1 << 20})
		if err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		if slices.ContainsFunc(s.Linux.Namespaces, func(n specs.LinuxNamespace) bool { return n.Type == specs.CgroupNamespace }) {
			t.Errorf("%s on cgroup v1: a cgroup namespace, want none", file)
		}
	}
}
