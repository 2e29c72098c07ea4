// Package spec turns a session's settings into an OCI runtime spec. It is
// pure: no file, process or kernel is touched, so every wall of the sandbox
// can be unit-tested without root.
package spec

import (
	"errors"
	"fmt"
	"path"
	"slices"
	"strconv"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// Mountpoints the rootfs must provide (the rootfs is read-only, so the
// runtime cannot create them).
const (
	RuntimeDir = "/run/securer/runtime"
	SocketDir  = "/run/securer/sock"
)

// Per-user kernel counters' caps in a box (see Build's rlimits), small
// enough that the sum over many boxes leaves the executor's user its own:
// 64 boxes queue at most 8,192 signals; no box may create a POSIX message
// queue (R has no use for one).
const (
	boxSigPending    = 128
	boxMsgQueueBytes = 0
	boxMemlockBytes  = 64 << 10
)

// IDMap maps container IDs [0, Size) to host IDs [HostBase, HostBase+Size).
type IDMap struct {
	HostBase uint32
	Size     uint32
}

// BindMount is a host path made visible inside the box.
type BindMount struct {
	Source      string
	Destination string
	ReadOnly    bool
	// Exec allows running programs from the mount; binds are noexec
	// otherwise.
	Exec bool
}

// Options is everything the spec depends on.
type Options struct {
	RootFS   string
	Args     []string
	Env      []string
	Hostname string
	// UID and GID the process runs as inside the box; never 0.
	UID, GID uint32
	// UserNS maps the container's IDs to unprivileged host IDs; nil runs
	// without a user namespace.
	UserNS      *IDMap
	CgroupsPath string

	MemoryBytes   int64
	Pids          int64
	CPUs          float64
	TmpBytes      int64
	TmpInodes     int64
	ShmBytes      int64
	NoFile        uint64
	FileSizeBytes uint64

	Binds []BindMount
	// ProcDir, when set, is a host directory holding SyntheticProc's
	// files, shown in place of the host's /proc/<name>.
	ProcDir string
	// Seccomp replaces the default filter (Profile); there is no way to
	// run without one.
	Seccomp *specs.LinuxSeccomp
	// NoASLR starts the box without address-space randomization
	// (personality ADDR_NO_RANDOMIZE, set before seccomp, which refuses
	// personality(2) inside): identical boxes then lay out identical
	// pages, which the kernel's page merging can share. Weaker: an
	// exploit of R's native code needs no address leak. Only for the
	// operator's Host.UnsafeMergePages.
	NoASLR bool
}

// NoASLRFlag is the personality flag NoASLR sets, as runtime-spec names
// flags (it defines none; container.Start applies this one itself).
const NoASLRFlag specs.LinuxPersonalityFlag = "ADDR_NO_RANDOMIZE"

// ErrInvalid marks options that cannot produce a safe spec.
var ErrInvalid = errors.New("invalid sandbox options")

func invalid(format string, a ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalid, fmt.Sprintf(format, a...))
}

func (o *Options) validate() error {
	switch {
	case o.RootFS == "" || !path.IsAbs(o.RootFS):
		return invalid("rootfs must be an absolute path, got %q", o.RootFS)
	case len(o.Args) == 0:
		return invalid("no command to run")
	case o.UID == 0 || o.GID == 0:
		return invalid("the sandboxed process must not run as uid/gid 0")
	case o.MemoryBytes <= 0:
		return invalid("memory limit must be positive, got %d", o.MemoryBytes)
	case o.Pids <= 0:
		return invalid("pids limit must be positive, got %d", o.Pids)
	case o.CPUs <= 0:
		return invalid("cpu limit must be positive, got %g", o.CPUs)
	case o.TmpBytes <= 0 || o.TmpInodes <= 0:
		return invalid("/tmp size and inode limits must be positive")
	case o.NoFile == 0 || o.FileSizeBytes == 0:
		return invalid("nofile and fsize rlimits must be positive")
	case o.CgroupsPath == "" || !path.IsAbs(o.CgroupsPath):
		return invalid("cgroups path must be absolute, got %q", o.CgroupsPath)
	}
	if o.UserNS != nil {
		if o.UserNS.HostBase == 0 || o.UserNS.Size <= o.UID || o.UserNS.Size <= o.GID {
			return invalid("user namespace map must start above host id 0 and cover uid %d", o.UID)
		}
	}
	for _, b := range o.Binds {
		if !path.IsAbs(b.Source) || !path.IsAbs(b.Destination) {
			return invalid("bind mount paths must be absolute: %q -> %q", b.Source, b.Destination)
		}
	}
	return nil
}

// Paths hidden from the box (runc's defaults: they leak host state or
// kernel memory).
var maskedPaths = []string{
	"/proc/acpi", "/proc/asound", "/proc/interrupts", "/proc/kcore",
	"/proc/keys", "/proc/latency_stats", "/proc/timer_list",
	"/proc/timer_stats", "/proc/sched_debug", "/proc/scsi",
	"/proc/sysrq-trigger",
	// The host's boot options and boot id: R needs neither.
	"/proc/cmdline", "/proc/sys/kernel/random/boot_id",
	// Host-wide counters and layout (issue 10 review): one box's files,
	// allocations and I/O move them, so they are channels between boxes,
	// and they describe the host's memory, disks and kernel. R reads none
	// of them (its memory and CPU figures come from the synthesised
	// meminfo/stat and its own process). runc skips a path the running
	// kernel lacks (e.g. /proc/schedstat without CONFIG_SCHEDSTATS).
	"/proc/zoneinfo", "/proc/buddyinfo", "/proc/pagetypeinfo", "/proc/softirqs",
	"/proc/pressure", "/proc/cgroups", "/proc/diskstats", "/proc/partitions",
	"/proc/swaps", "/proc/kallsyms", "/proc/vmstat", "/proc/slabinfo",
	"/proc/vmallocinfo", "/proc/iomem", "/proc/ioports", "/proc/schedstat",
	"/proc/locks",
	"/proc/sys/fs/inode-nr", "/proc/sys/fs/inode-state", "/proc/sys/fs/file-nr",
	"/proc/sys/fs/dentry-state", "/proc/sys/fs/aio-nr", "/proc/sys/fs/quota",
	// Per-filesystem state of the host's disks (ext4 block groups, xfs
	// counters); runc only makes it read-only.
	"/proc/fs",
}

// Paths kept visible but read-only (runc's defaults).
var readonlyPaths = []string{
	"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys",
}

// Build returns the spec for one sandboxed R process.
func Build(o Options) (*specs.Spec, error) {
	if err := o.validate(); err != nil {
		return nil, err
	}
	hostname := o.Hostname
	if hostname == "" {
		hostname = "sandbox"
	}
	noCaps := []string{}
	s := &specs.Spec{
		Version: specs.Version,
		Root:    &specs.Root{Path: o.RootFS, Readonly: true},
		Process: &specs.Process{
			Args: slices.Clone(o.Args),
			Env:  slices.Clone(o.Env),
			Cwd:  "/tmp",
			User: specs.User{UID: o.UID, GID: o.GID, AdditionalGids: []uint32{}},
			Capabilities: &specs.LinuxCapabilities{
				Bounding: noCaps, Effective: noCaps, Permitted: noCaps,
				Inheritable: noCaps, Ambient: noCaps,
			},
			NoNewPrivileges: true,
			Rlimits: []specs.POSIXRlimit{
				{Type: "RLIMIT_CORE", Hard: 0, Soft: 0},
				{Type: "RLIMIT_NOFILE", Hard: o.NoFile, Soft: o.NoFile},
				{Type: "RLIMIT_FSIZE", Hard: o.FileSizeBytes, Soft: o.FileSizeBytes},
				// Queued signals, POSIX message queue bytes and locked
				// memory are counted per user up the user-namespace chain:
				// above the box, against the executor's own user. Small caps
				// keep one box from using up the host's share.
				{Type: "RLIMIT_SIGPENDING", Hard: boxSigPending, Soft: boxSigPending},
				{Type: "RLIMIT_MSGQUEUE", Hard: boxMsgQueueBytes, Soft: boxMsgQueueBytes},
				{Type: "RLIMIT_MEMLOCK", Hard: boxMemlockBytes, Soft: boxMemlockBytes},
			},
			// The box is the first thing the kernel should kill under
			// memory pressure, never the host.
			OOMScoreAdj: ptr(1000),
		},
		Hostname: hostname,
		Mounts:   mounts(o),
		Linux: &specs.Linux{
			Namespaces: []specs.LinuxNamespace{
				{Type: specs.PIDNamespace},
				{Type: specs.NetworkNamespace},
				{Type: specs.IPCNamespace},
				{Type: specs.UTSNamespace},
				{Type: specs.MountNamespace},
				{Type: specs.CgroupNamespace},
			},
			CgroupsPath:       o.CgroupsPath,
			Resources:         resources(o),
			MaskedPaths:       slices.Clone(maskedPaths),
			ReadonlyPaths:     slices.Clone(readonlyPaths),
			Seccomp:           o.Seccomp,
			RootfsPropagation: "private",
		},
	}
	if o.NoASLR {
		s.Linux.Personality = &specs.LinuxPersonality{Domain: specs.PerLinux, Flags: []specs.LinuxPersonalityFlag{NoASLRFlag}}
	}
	if s.Linux.Seccomp == nil {
		p, err := Profile(s)
		if err != nil {
			return nil, err
		}
		s.Linux.Seccomp = p
	}
	if o.UserNS != nil {
		s.Linux.Namespaces = append(s.Linux.Namespaces, specs.LinuxNamespace{Type: specs.UserNamespace})
		m := []specs.LinuxIDMapping{{ContainerID: 0, HostID: o.UserNS.HostBase, Size: o.UserNS.Size}}
		s.Linux.UIDMappings = m
		s.Linux.GIDMappings = slices.Clone(m)
	}
	return s, nil
}

func mounts(o Options) []specs.Mount {
	ms := []specs.Mount{
		{Destination: "/proc", Type: "proc", Source: "proc", Options: []string{"nosuid", "noexec", "nodev"}},
		{Destination: "/dev", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "strictatime", "mode=755", "size=65536k"}},
		{Destination: "/dev/pts", Type: "devpts", Source: "devpts", Options: []string{"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"}},
		{Destination: "/dev/shm", Type: "tmpfs", Source: "shm", Options: []string{"nosuid", "noexec", "nodev", "mode=1777", "size=" + strconv.FormatInt(o.ShmBytes, 10),
			"nr_inodes=" + strconv.FormatInt(o.TmpInodes, 10)}}, // as many entries as /tmp: bounds the sweep's work
		{Destination: "/dev/mqueue", Type: "mqueue", Source: "mqueue", Options: []string{"nosuid", "noexec", "nodev"}},
		// No /sys: R needs none of it and sysfs describes the host.
		{Destination: "/tmp", Type: "tmpfs", Source: "tmpfs", Options: []string{
			"nosuid", "nodev", "noexec", "mode=1777",
			"size=" + strconv.FormatInt(o.TmpBytes, 10),
			"nr_inodes=" + strconv.FormatInt(o.TmpInodes, 10),
		}},
	}
	if o.ProcDir != "" {
		for _, name := range syntheticProcNames {
			ms = append(ms, specs.Mount{Destination: "/proc/" + name, Type: "bind", Source: path.Join(o.ProcDir, name),
				Options: []string{"bind", "ro", "nosuid", "nodev", "noexec"}})
		}
	}
	for _, b := range o.Binds {
		opts := []string{"rbind", "nosuid", "nodev"}
		if !b.Exec {
			opts = append(opts, "noexec")
		}
		if b.ReadOnly {
			opts = append(opts, "ro")
		}
		ms = append(ms, specs.Mount{Destination: b.Destination, Type: "bind", Source: b.Source, Options: opts})
	}
	return ms
}

// syntheticProcNames are the /proc files the box sees synthesised: the
// host's would tell its memory, load, uptime and CPU times, and change
// visibly with what other boxes do (a channel between sessions). runc lets
// exactly these be covered (the lxcfs set).
var syntheticProcNames = []string{"meminfo", "loadavg", "stat", "uptime"}

// SyntheticProc returns the files for Options.ProcDir, by name: memory as
// the box's own limit (nothing used), no load, no uptime, ncpu idle CPUs
// (as /proc/cpuinfo shows them) and a boot time of 0. They are fixed, so
// nothing another box does shows through them.
func SyntheticProc(memoryBytes int64, ncpu int) map[string]string {
	kb := memoryBytes >> 10
	var mem strings.Builder
	for _, l := range []struct {
		k string
		v int64
	}{
		{"MemTotal", kb}, {"MemFree", kb}, {"MemAvailable", kb}, {"Buffers", 0}, {"Cached", 0},
		{"SwapCached", 0}, {"Active", 0}, {"Inactive", 0}, {"SwapTotal", 0}, {"SwapFree", 0},
		{"Dirty", 0}, {"Writeback", 0}, {"AnonPages", 0}, {"Mapped", 0}, {"Shmem", 0},
	} {
		fmt.Fprintf(&mem, "%-16s%8d kB\n", l.k+":", l.v)
	}
	var st strings.Builder
	st.WriteString("cpu  0 0 0 0 0 0 0 0 0 0\n")
	for i := range max(ncpu, 1) {
		fmt.Fprintf(&st, "cpu%d 0 0 0 0 0 0 0 0 0 0\n", i)
	}
	st.WriteString("intr 0\nctxt 0\nbtime 0\nprocesses 0\nprocs_running 1\nprocs_blocked 0\nsoftirq 0 0 0 0 0 0 0 0 0 0 0\n")
	return map[string]string{
		"meminfo": mem.String(),
		"loadavg": "0.00 0.00 0.00 1/1 1\n",
		"stat":    st.String(),
		"uptime":  "0.00 0.00\n",
	}
}

func resources(o Options) *specs.LinuxResources {
	const period = 100000
	quota := int64(o.CPUs * period)
	mem := o.MemoryBytes
	return &specs.LinuxResources{
		// Deny every device; specconv adds back runc's allowed set
		// (null, zero, full, tty, random, urandom, ptmx, pts).
		Devices: []specs.LinuxDeviceCgroup{{Allow: false, Access: "rwm"}},
		Memory: &specs.LinuxMemory{
			Limit: &mem,
			// memory+swap equal to memory: no swap.
			Swap: ptr(mem),
		},
		Pids: &specs.LinuxPids{Limit: ptr(o.Pids)},
		CPU:  &specs.LinuxCPU{Quota: &quota, Period: ptr(uint64(period))},
	}
}

func ptr[T any](v T) *T { return &v }
