package kubernetes

import (
	"errors"
	"fmt"
	"path"
	"slices"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	corev1 "k8s.io/api/core/v1"
)

// This file turns one container of a pod manifest into the OCI runtime
// config a node's container runtime would hand to runc, so that the
// end-to-end test runs the sidecar with the privileges the manifest
// documents and no more. It follows what containerd's CRI plugin does
// for the fields our manifests use; any other field that changes a
// container's privileges is refused rather than silently dropped.

// Image is what a container's image config contributes.
type Image struct {
	Entrypoint, Cmd, Env []string
	WorkingDir           string
}

// Node is what the kubelet and the runtime decide outside the manifest.
type Node struct {
	// RootFS is the unpacked image (the bundle's root).
	RootFS string
	// CgroupV2 says whether /sys/fs/cgroup is the unified hierarchy.
	CgroupV2 bool
	// CgroupsPath is the container's cgroup (the kubelet's pod cgroup
	// plus the container).
	CgroupsPath string
	// PodIDBase is the first host ID of the pod's user namespace
	// (hostUsers: false), which maps pod IDs [0, PodIDs) to it.
	PodIDBase uint32
	// Volumes maps each volume's name to the host dir backing it.
	Volumes map[string]string
	// Hostname is the pod's.
	Hostname string
	// UnfilteredRuntimeDefault runs a container whose seccomp profile is
	// RuntimeDefault without a filter; else such a container is refused
	// (the runtime's default profile is not modelled).
	UnfilteredRuntimeDefault bool
	// CgroupWritable mounts the container's /sys/fs/cgroup read-write
	// though it is not privileged: a node whose runtime handler for the
	// pod's RuntimeClass is configured as runtimeclass.yaml says
	// (containerd's cgroup_writable, CRI-O's
	// cgroup2-mount-hierarchy-rw annotation). runc then hands a
	// user-namespaced container's cgroup to its root.
	CgroupWritable bool
	// HostCaps are the capabilities the runtime itself holds: what a
	// privileged container gets (nil: every capability Linux has).
	HostCaps []string
}

// PodIDs is how many IDs the kubelet gives a pod's user namespace (its
// default userNamespaces.idsPerPod).
const PodIDs = 65536

// ErrUnsupported is a manifest field this translation does not model.
var ErrUnsupported = errors.New("not modelled by the runtime spec translation")

// runtimeDefaultCaps are the capabilities a container runtime gives a
// non-privileged container before the manifest's drop and add.
var runtimeDefaultCaps = []string{
	"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD",
	"CAP_NET_RAW", "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP",
	"CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE",
}

// allCaps is every capability of Linux 6.x, by number: what privileged
// gets.
var allCaps = []string{
	"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER",
	"CAP_FSETID", "CAP_KILL", "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP",
	"CAP_LINUX_IMMUTABLE", "CAP_NET_BIND_SERVICE", "CAP_NET_BROADCAST",
	"CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_IPC_LOCK", "CAP_IPC_OWNER",
	"CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT", "CAP_SYS_PTRACE",
	"CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE",
	"CAP_SYS_RESOURCE", "CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD",
	"CAP_LEASE", "CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL", "CAP_SETFCAP",
	"CAP_MAC_OVERRIDE", "CAP_MAC_ADMIN", "CAP_SYSLOG", "CAP_WAKE_ALARM",
	"CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ", "CAP_PERFMON", "CAP_BPF",
	"CAP_CHECKPOINT_RESTORE",
}

// Paths a runtime hides (maskedPaths) or makes read-only in a
// non-privileged container whose procMount is Default.
var (
	defaultMaskedPaths = []string{
		"/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys",
		"/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats",
		"/proc/sched_debug", "/proc/scsi", "/sys/firmware",
		"/sys/devices/virtual/powercap",
	}
	defaultReadonlyPaths = []string{
		"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger",
	}
)

// FindContainer returns the pod's container (or init container) named
// name.
func FindContainer(pod *corev1.PodSpec, name string) (*corev1.Container, error) {
	for _, list := range [][]corev1.Container{pod.InitContainers, pod.Containers} {
		for i := range list {
			if list[i].Name == name {
				return &list[i], nil
			}
		}
	}
	return nil, fmt.Errorf("pod has no container %q", name)
}

// RuntimeSpec is the OCI runtime config for the pod's container name.
func RuntimeSpec(pod *corev1.PodSpec, name string, img Image, node Node) (*specs.Spec, error) {
	c, err := FindContainer(pod, name)
	if err != nil {
		return nil, err
	}
	sc := c.SecurityContext
	if sc == nil {
		sc = &corev1.SecurityContext{}
	}
	if err := refuseUnmodelled(pod, c, sc); err != nil {
		return nil, err
	}
	privileged := sc.Privileged != nil && *sc.Privileged
	userNS := pod.HostUsers != nil && !*pod.HostUsers

	user, err := processUser(pod, sc)
	if err != nil {
		return nil, err
	}
	caps := capabilitySet(sc, privileged, node.HostCaps)
	process := &specs.Process{
		Args: containerArgs(c, img),
		Env:  containerEnv(c, img, node.Hostname),
		Cwd:  firstNonEmpty(c.WorkingDir, img.WorkingDir, "/"),
		User: user,
		Capabilities: &specs.LinuxCapabilities{
			Bounding: caps, Effective: caps, Permitted: caps,
		},
		// The kubelet sets no_new_privs only when asked to (false).
		NoNewPrivileges: sc.AllowPrivilegeEscalation != nil && !*sc.AllowPrivilegeEscalation,
	}
	if user.UID != 0 {
		// A non-root process keeps no capability (the kubelet's
		// runtimes give it no ambient set).
		process.Capabilities.Effective = []string{}
		process.Capabilities.Permitted = []string{}
	}

	mounts, err := containerMounts(c, node, privileged)
	if err != nil {
		return nil, err
	}
	readOnlyRoot := sc.ReadOnlyRootFilesystem != nil && *sc.ReadOnlyRootFilesystem
	s := &specs.Spec{
		// 1.0.2: the version every runtime tested here accepts (crun 1.8
		// refuses newer ones); no field used is newer.
		Version:  "1.0.2",
		Root:     &specs.Root{Path: node.RootFS, Readonly: readOnlyRoot},
		Hostname: node.Hostname,
		Process:  process,
		Mounts:   mounts,
		Linux: &specs.Linux{
			CgroupsPath: node.CgroupsPath,
			Namespaces: []specs.LinuxNamespace{
				{Type: specs.PIDNamespace}, {Type: specs.IPCNamespace},
				{Type: specs.UTSNamespace}, {Type: specs.MountNamespace},
				{Type: specs.NetworkNamespace},
			},
			Resources: containerResources(c, privileged),
		},
	}
	// containerd's CRI and CRI-O give a container its own cgroup
	// namespace only on cgroup v2 nodes, and never a privileged one: a
	// privileged container sees the node's whole hierarchy from its
	// root (containerd/cri#1371, #1415; CRI-O likewise).
	if node.CgroupV2 && !privileged {
		s.Linux.Namespaces = append(s.Linux.Namespaces, specs.LinuxNamespace{Type: specs.CgroupNamespace})
	}
	unmasked := sc.ProcMount != nil && *sc.ProcMount == corev1.UnmaskedProcMount
	if !privileged && !unmasked {
		s.Linux.MaskedPaths = slices.Clone(defaultMaskedPaths)
		s.Linux.ReadonlyPaths = slices.Clone(defaultReadonlyPaths)
	}
	if unmasked && !userNS {
		// The API server refuses Unmasked without a user namespace.
		return nil, fmt.Errorf("container %q: procMount Unmasked needs hostUsers: false", name)
	}
	if userNS {
		if privileged {
			return nil, fmt.Errorf("container %q: privileged with hostUsers: false (mounting sysfs fails, opencontainers/runc#5309)", name)
		}
		s.Linux.Namespaces = append(s.Linux.Namespaces, specs.LinuxNamespace{Type: specs.UserNamespace})
		m := []specs.LinuxIDMapping{{ContainerID: 0, HostID: node.PodIDBase, Size: PodIDs}}
		s.Linux.UIDMappings = m
		s.Linux.GIDMappings = slices.Clone(m)
	}
	// Seccomp: Unconfined is no filter; the runtime's default profile is
	// the node's to give and is not modelled, so it is refused for the
	// containers whose privileges the test checks.
	switch p := seccompType(pod, sc); {
	case privileged, p == corev1.SeccompProfileTypeUnconfined:
	case p == corev1.SeccompProfileTypeRuntimeDefault && node.UnfilteredRuntimeDefault:
	default:
		return nil, fmt.Errorf("container %q: seccomp profile %q: %w", name, p, ErrUnsupported)
	}
	return s, nil
}

// refuseUnmodelled refuses fields that would change privileges in ways
// this translation does not reproduce.
func refuseUnmodelled(pod *corev1.PodSpec, c *corev1.Container, sc *corev1.SecurityContext) error {
	switch {
	case pod.HostNetwork, pod.HostPID, pod.HostIPC:
		return fmt.Errorf("host namespaces: %w", ErrUnsupported)
	case sc.SELinuxOptions != nil, sc.WindowsOptions != nil:
		return fmt.Errorf("container %q: SELinux/Windows options: %w", c.Name, ErrUnsupported)
	case sc.AppArmorProfile != nil && sc.AppArmorProfile.Type != corev1.AppArmorProfileTypeUnconfined:
		// Hosts without AppArmor (like the test's) run every profile as
		// unconfined; only Unconfined means the same everywhere.
		return fmt.Errorf("container %q: AppArmor profile %q: %w", c.Name, sc.AppArmorProfile.Type, ErrUnsupported)
	}
	return nil
}

func seccompType(pod *corev1.PodSpec, sc *corev1.SecurityContext) corev1.SeccompProfileType {
	if sc.SeccompProfile != nil {
		return sc.SeccompProfile.Type
	}
	if pod.SecurityContext != nil && pod.SecurityContext.SeccompProfile != nil {
		return pod.SecurityContext.SeccompProfile.Type
	}
	return corev1.SeccompProfileTypeUnconfined // the kubelet's default when none is set
}

func processUser(pod *corev1.PodSpec, sc *corev1.SecurityContext) (specs.User, error) {
	psc := pod.SecurityContext
	if psc == nil {
		psc = &corev1.PodSecurityContext{}
	}
	uid := firstSet(sc.RunAsUser, psc.RunAsUser)
	gid := firstSet(sc.RunAsGroup, psc.RunAsGroup)
	if uid == nil {
		return specs.User{}, fmt.Errorf("runAsUser unset (the image's user is not modelled): %w", ErrUnsupported)
	}
	u := specs.User{UID: uint32(*uid), AdditionalGids: []uint32{}}
	if gid != nil {
		u.GID = uint32(*gid)
	}
	if psc.FSGroup != nil {
		u.AdditionalGids = append(u.AdditionalGids, uint32(*psc.FSGroup))
	}
	for _, g := range psc.SupplementalGroups {
		u.AdditionalGids = append(u.AdditionalGids, uint32(g))
	}
	return u, nil
}

func firstSet(ps ...*int64) *int64 {
	for _, p := range ps {
		if p != nil {
			return p
		}
	}
	return nil
}

func firstNonEmpty(ss ...string) string {
	for _, s := range ss {
		if s != "" {
			return s
		}
	}
	return ""
}

// capabilitySet is the container's bounding set: everything when
// privileged, else the runtime's defaults minus drop plus add.
func capabilitySet(sc *corev1.SecurityContext, privileged bool, hostCaps []string) []string {
	if privileged {
		if hostCaps == nil {
			return slices.Clone(allCaps)
		}
		return slices.DeleteFunc(slices.Clone(allCaps), func(c string) bool { return !slices.Contains(hostCaps, c) })
	}
	set := slices.Clone(runtimeDefaultCaps)
	if sc.Capabilities != nil {
		for _, d := range sc.Capabilities.Drop {
			if d == "ALL" {
				set = set[:0]
				break
			}
			set = slices.DeleteFunc(set, func(c string) bool { return c == "CAP_"+string(d) })
		}
		for _, a := range sc.Capabilities.Add {
			if c := "CAP_" + string(a); !slices.Contains(set, c) {
				set = append(set, c)
			}
		}
	}
	return set
}

// containerArgs follows Kubernetes: command replaces the entrypoint,
// args replace the image's cmd.
func containerArgs(c *corev1.Container, img Image) []string {
	entry, cmd := img.Entrypoint, img.Cmd
	if len(c.Command) > 0 {
		entry, cmd = c.Command, nil
	}
	if len(c.Args) > 0 {
		cmd = c.Args
	}
	return append(slices.Clone(entry), cmd...)
}

func containerEnv(c *corev1.Container, img Image, hostname string) []string {
	env := slices.Clone(img.Env)
	env = append(env, "HOSTNAME="+hostname)
	for _, e := range c.Env {
		env = append(env, e.Name+"="+e.Value)
	}
	return env
}

// containerMounts is the runtime's standard set plus the volumes.
func containerMounts(c *corev1.Container, node Node, privileged bool) ([]specs.Mount, error) {
	ro, cgroupRO := "ro", "ro"
	if privileged {
		ro, cgroupRO = "rw", "rw"
	}
	if node.CgroupWritable {
		cgroupRO = "rw"
	}
	cgroup := specs.Mount{Destination: "/sys/fs/cgroup", Type: "cgroup", Source: "cgroup", Options: []string{"nosuid", "noexec", "nodev", "relatime", cgroupRO}}
	if node.CgroupV2 {
		cgroup.Type, cgroup.Source = "cgroup2", "cgroup2"
	}
	ms := []specs.Mount{
		{Destination: "/proc", Type: "proc", Source: "proc", Options: []string{"nosuid", "noexec", "nodev"}},
		{Destination: "/dev", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "strictatime", "mode=755", "size=65536k"}},
		{Destination: "/dev/pts", Type: "devpts", Source: "devpts", Options: []string{"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"}},
		{Destination: "/dev/mqueue", Type: "mqueue", Source: "mqueue", Options: []string{"nosuid", "noexec", "nodev"}},
		{Destination: "/dev/shm", Type: "tmpfs", Source: "shm", Options: []string{"nosuid", "noexec", "nodev", "mode=1777", "size=65536k"}},
		{Destination: "/sys", Type: "sysfs", Source: "sysfs", Options: []string{"nosuid", "noexec", "nodev", ro}},
		cgroup,
	}
	// Shallower mount points first, so that a volume inside another
	// (the socket's emptyDir inside /run) lands on top of it.
	vms := slices.Clone(c.VolumeMounts)
	slices.SortStableFunc(vms, func(a, b corev1.VolumeMount) int { return depth(a.MountPath) - depth(b.MountPath) })
	for _, vm := range vms {
		src, ok := node.Volumes[vm.Name]
		if !ok {
			return nil, fmt.Errorf("container %q mounts volume %q, which the node has no dir for", c.Name, vm.Name)
		}
		if vm.SubPath != "" || vm.MountPropagation != nil {
			return nil, fmt.Errorf("volume mount %q: subPath/propagation: %w", vm.Name, ErrUnsupported)
		}
		opts := []string{"rbind", "rprivate", "rw"}
		if vm.ReadOnly {
			opts[2] = "ro"
		}
		ms = append(ms, specs.Mount{Destination: vm.MountPath, Type: "bind", Source: src, Options: opts})
	}
	return ms, nil
}

func depth(p string) int {
	n := 0
	for p = path.Clean(p); p != "/"; p = path.Dir(p) {
		n++
	}
	return n
}

// containerResources: the memory limit, CPU weight from the request,
// and the device rules a runtime gives.
func containerResources(c *corev1.Container, privileged bool) *specs.LinuxResources {
	r := &specs.LinuxResources{}
	if privileged {
		r.Devices = []specs.LinuxDeviceCgroup{{Allow: true, Access: "rwm"}}
	} else {
		r.Devices = []specs.LinuxDeviceCgroup{{Allow: false, Access: "rwm"}}
	}
	if q, ok := c.Resources.Limits[corev1.ResourceMemory]; ok {
		v := q.Value()
		r.Memory = &specs.LinuxMemory{Limit: &v}
	}
	if q, ok := c.Resources.Requests[corev1.ResourceCPU]; ok {
		shares := uint64(q.MilliValue() * 1024 / 1000)
		r.CPU = &specs.LinuxCPU{Shares: &shares}
	}
	return r
}
