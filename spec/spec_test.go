package spec

import (
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

func validOptions() Options {
	return Options{
		RootFS: "/var/lib/securer-runc/rootfs", Args: []string{"/usr/bin/Rscript", "x.R"},
		Env: []string{"HOME=/tmp"}, UID: 1000, GID: 1000,
		UserNS:      &IDMap{HostBase: 100000, Size: 65536},
		CgroupsPath: "/securer-runc/s1", MemoryBytes: 512 << 20, Pids: 64, CPUs: 1.5,
		TmpBytes: 64 << 20, TmpInodes: 1024, ShmBytes: 1 << 20, NoFile: 256, FileSizeBytes: 1 << 20,
		Binds: []BindMount{{Source: "/run/x/sock", Destination: SocketDir, ReadOnly: true}},
	}
}

func TestBuildWalls(t *testing.T) {
	s, err := Build(validOptions())
	if err != nil {
		t.Fatal(err)
	}
	var ns []specs.LinuxNamespaceType
	for _, n := range s.Linux.Namespaces {
		if n.Path != "" {
			t.Errorf("namespace %s joins an existing one (%s)", n.Type, n.Path)
		}
		ns = append(ns, n.Type)
	}
	for _, want := range []specs.LinuxNamespaceType{specs.PIDNamespace, specs.NetworkNamespace, specs.IPCNamespace,
		specs.UTSNamespace, specs.MountNamespace, specs.CgroupNamespace, specs.UserNamespace} {
		if !slices.Contains(ns, want) {
			t.Errorf("missing %s namespace", want)
		}
	}
	if !s.Root.Readonly {
		t.Error("root is not read-only")
	}
	if !s.Process.NoNewPrivileges {
		t.Error("no_new_privs not set")
	}
	c := s.Process.Capabilities
	if n := len(c.Bounding) + len(c.Effective) + len(c.Permitted) + len(c.Inheritable) + len(c.Ambient); n != 0 {
		t.Errorf("%d capabilities granted", n)
	}
	if s.Process.User.UID == 0 || s.Process.User.GID == 0 {
		t.Error("runs as root inside")
	}
	if s.Linux.UIDMappings[0].HostID == 0 {
		t.Error("user namespace maps to host root")
	}
	if s.Linux.Seccomp == nil || s.Linux.Seccomp.DefaultAction == specs.ActAllow {
		t.Error("no seccomp allowlist")
	}
	r := s.Linux.Resources
	if *r.Memory.Limit != 512<<20 || *r.Memory.Swap != *r.Memory.Limit {
		t.Errorf("memory %d swap %d: want no swap", *r.Memory.Limit, *r.Memory.Swap)
	}
	if *r.Pids.Limit != 64 || *r.CPU.Quota != 150000 || *r.CPU.Period != 100000 {
		t.Errorf("pids %d cpu %d/%d", *r.Pids.Limit, *r.CPU.Quota, *r.CPU.Period)
	}
	rl := map[string]uint64{}
	for _, l := range s.Process.Rlimits {
		rl[l.Type] = l.Hard
	}
	if rl["RLIMIT_CORE"] != 0 || rl["RLIMIT_NOFILE"] != 256 || rl["RLIMIT_FSIZE"] != 1<<20 {
		t.Errorf("rlimits %v", rl)
	}
	for _, p := range []string{"/proc/keys", "/proc/kcore", "/proc/timer_list", "/proc/sched_debug"} {
		if !slices.Contains(s.Linux.MaskedPaths, p) {
			t.Errorf("%s not masked", p)
		}
	}
	if !slices.Contains(s.Linux.ReadonlyPaths, "/proc/sys") {
		t.Error("/proc/sys not read-only")
	}
	mounts := map[string]specs.Mount{}
	for _, m := range s.Mounts {
		mounts[m.Destination] = m
	}
	if _, ok := mounts["/sys"]; ok {
		t.Error("/sys is mounted")
	}
	tmp := mounts["/tmp"]
	for _, o := range []string{"nosuid", "nodev", "noexec", "size=67108864", "nr_inodes=1024"} {
		if !slices.Contains(tmp.Options, o) {
			t.Errorf("/tmp lacks %s: %v", o, tmp.Options)
		}
	}
	// The host sweeps /dev/shm after fresh executions: its entries are
	// bounded like /tmp's.
	if shm := mounts["/dev/shm"]; !slices.Contains(shm.Options, "nr_inodes=1024") || !slices.Contains(shm.Options, "size=1048576") {
		t.Errorf("/dev/shm lacks its bounds: %v", shm.Options)
	}
	sock := mounts[SocketDir]
	if sock.Type != "bind" || !slices.Contains(sock.Options, "ro") || !slices.Contains(sock.Options, "noexec") {
		t.Errorf("socket bind mount %+v", sock)
	}
}

func TestBuildWithoutUserNamespace(t *testing.T) {
	o := validOptions()
	o.UserNS = nil
	s, err := Build(o)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range s.Linux.Namespaces {
		if n.Type == specs.UserNamespace {
			t.Error("user namespace present")
		}
	}
	if len(s.Linux.UIDMappings) != 0 {
		t.Error("uid mappings without a user namespace")
	}
}

func TestBuildRejects(t *testing.T) {
	cases := []struct {
		name string
		edit func(*Options)
		want string
	}{
		{"relative rootfs", func(o *Options) { o.RootFS = "rootfs" }, "absolute"},
		{"no command", func(o *Options) { o.Args = nil }, "no command"},
		{"root uid", func(o *Options) { o.UID = 0 }, "uid/gid 0"},
		{"root gid", func(o *Options) { o.GID = 0 }, "uid/gid 0"},
		{"no memory limit", func(o *Options) { o.MemoryBytes = 0 }, "memory"},
		{"no pids limit", func(o *Options) { o.Pids = 0 }, "pids"},
		{"no cpu limit", func(o *Options) { o.CPUs = 0 }, "cpu"},
		{"no tmp size", func(o *Options) { o.TmpBytes = 0 }, "/tmp"},
		{"no nofile", func(o *Options) { o.NoFile = 0 }, "rlimit"},
		{"relative cgroup", func(o *Options) { o.CgroupsPath = "x" }, "cgroups path"},
		{"userns maps root", func(o *Options) { o.UserNS = &IDMap{HostBase: 0, Size: 65536} }, "user namespace"},
		{"userns too small", func(o *Options) { o.UserNS = &IDMap{HostBase: 100000, Size: 10} }, "user namespace"},
		{"relative bind", func(o *Options) { o.Binds = []BindMount{{Source: "x", Destination: "/y"}} }, "bind"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			o := validOptions()
			c.edit(&o)
			_, err := Build(o)
			if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err %v, want ErrInvalid mentioning %q", err, c.want)
			}
		})
	}
}

func TestProfileDeniesEscapeSyscalls(t *testing.T) {
	s, err := Build(validOptions())
	if err != nil {
		t.Fatal(err)
	}
	allowed := map[string]bool{}
	for _, r := range s.Linux.Seccomp.Syscalls {
		if r.Action == specs.ActAllow {
			for _, n := range r.Names {
				allowed[n] = true
			}
		}
	}
	for _, n := range DeniedSyscalls() {
		if allowed[n] {
			t.Errorf("%s is allowed", n)
		}
	}
	for _, n := range []string{"read", "write", "openat", "mmap", "clone", "execve", "connect"} {
		if !allowed[n] {
			t.Errorf("%s is not allowed: R could not run", n)
		}
	}
}

func TestProfileNativeArchOnly(t *testing.T) {
	s, err := Build(validOptions())
	if err != nil {
		t.Fatal(err)
	}
	if got := s.Linux.Seccomp.Architectures; len(got) != 1 {
		t.Errorf("architectures %v: want only the native one", got)
	}
}

func TestProfileShape(t *testing.T) {
	s, err := Build(validOptions())
	if err != nil {
		t.Fatal(err)
	}
	p := s.Linux.Seccomp
	if p.DefaultAction != specs.ActErrno || p.DefaultErrnoRet == nil || *p.DefaultErrnoRet != uint(unix.ENOSYS) {
		t.Errorf("default action %s errno %v: want ENOSYS for syscalls the profile does not know", p.DefaultAction, p.DefaultErrnoRet)
	}
	var denyRule *specs.LinuxSyscall
	var socketDomains []uint64
	cloneDenied := map[uint64]bool{}
	for i, r := range p.Syscalls {
		switch {
		case r.Action == specs.ActErrno && slices.Contains(r.Names, "ptrace"):
			denyRule = &p.Syscalls[i]
		case slices.Contains(r.Names, "socket"):
			if r.Action != specs.ActAllow || len(r.Names) != 1 || len(r.Args) != 1 || r.Args[0].Op != specs.OpEqualTo {
				t.Errorf("socket rule %+v: want one equality per allowed domain", r)
				continue
			}
			socketDomains = append(socketDomains, r.Args[0].Value)
		case r.Action == specs.ActErrno && slices.Equal(r.Names, []string{"clone"}):
			if len(r.Args) == 1 && r.Args[0].Op == specs.OpMaskedEqual && r.Args[0].Value == r.Args[0].ValueTwo {
				cloneDenied[r.Args[0].Value] = true
			}
		}
	}
	if denyRule == nil || denyRule.ErrnoRet == nil || *denyRule.ErrnoRet != uint(unix.EPERM) {
		t.Fatalf("no EPERM rule for the denied syscalls: %+v", denyRule)
	}
	if !slices.Equal(denyRule.Names, DeniedSyscalls()) {
		t.Errorf("EPERM rule names %v, want DeniedSyscalls", denyRule.Names)
	}
	slices.Sort(socketDomains)
	if !slices.Equal(socketDomains, []uint64{unix.AF_UNIX, unix.AF_INET, unix.AF_INET6}) {
		t.Errorf("socket domains %v, want only AF_UNIX, AF_INET, AF_INET6", socketDomains)
	}
	for _, f := range []uint64{unix.CLONE_NEWUSER, unix.CLONE_NEWNS, unix.CLONE_NEWPID, unix.CLONE_NEWNET, unix.CLONE_NEWIPC, unix.CLONE_NEWUTS, unix.CLONE_NEWCGROUP} {
		if !cloneDenied[f] {
			t.Errorf("clone with namespace flag %#x is not refused with its own rule", f)
		}
	}
	// personality(2): the query alone is allowed, every other value is
	// EPERM, and moby's own personality rules are gone.
	var persona []specs.LinuxSyscall
	for _, r := range p.Syscalls {
		if slices.Contains(r.Names, "personality") {
			persona = append(persona, r)
		}
	}
	wantPersona := []specs.LinuxSyscall{
		{Names: []string{"personality"}, Action: specs.ActAllow, Args: []specs.LinuxSeccompArg{{Index: 0, Value: 0xffffffff, Op: specs.OpEqualTo}}},
		{Names: []string{"personality"}, Action: specs.ActErrno, ErrnoRet: denyRule.ErrnoRet, Args: []specs.LinuxSeccompArg{{Index: 0, Value: 0xffffffff, Op: specs.OpNotEqual}}},
	}
	if !reflect.DeepEqual(persona, wantPersona) {
		t.Errorf("personality rules %+v, want only the query allowed and the rest EPERM", persona)
	}
	// The plain clone that fork() needs stays allowed.
	plainClone := false
	for _, r := range p.Syscalls {
		if r.Action == specs.ActAllow && slices.Contains(r.Names, "clone") {
			plainClone = true
		}
	}
	if !plainClone {
		t.Error("clone without namespace flags is not allowed: R could not fork")
	}
}

// Issue 10 #15: flock is refused with ENOLCK, host boot details are masked
// and the synthetic /proc files cover the host's.
func TestHostDetailsHidden(t *testing.T) {
	o := validOptions()
	o.ProcDir = "/state/sessions/x/proc"
	s, err := Build(o)
	if err != nil {
		t.Fatal(err)
	}
	flock := false
	for _, r := range s.Linux.Seccomp.Syscalls {
		if slices.Contains(r.Names, "flock") {
			if r.Action == specs.ActAllow {
				t.Errorf("flock allowed by %+v", r)
			}
			flock = r.Action == specs.ActErrno && r.ErrnoRet != nil && *r.ErrnoRet == uint(unix.ENOLCK)
		}
	}
	if !flock {
		t.Error("no ENOLCK rule for flock")
	}
	for _, p := range []string{"/proc/cmdline", "/proc/sys/kernel/random/boot_id"} {
		if !slices.Contains(s.Linux.MaskedPaths, p) {
			t.Errorf("%s not masked", p)
		}
	}
	covered := map[string]string{}
	for _, m := range s.Mounts {
		covered[m.Destination] = m.Source
		if strings.HasPrefix(m.Destination, "/proc/") && !slices.Contains(m.Options, "ro") {
			t.Errorf("%s is writable", m.Destination)
		}
	}
	files := SyntheticProc(256<<20, 2)
	for _, name := range []string{"meminfo", "loadavg", "stat", "uptime"} {
		if covered["/proc/"+name] != o.ProcDir+"/"+name {
			t.Errorf("/proc/%s from %q", name, covered["/proc/"+name])
		}
		if files[name] == "" {
			t.Errorf("no synthetic %s", name)
		}
	}
	if !strings.Contains(files["meminfo"], "MemTotal:         262144 kB\n") || !strings.Contains(files["stat"], "cpu1 ") || strings.Contains(files["stat"], "cpu2 ") {
		t.Errorf("synthetic files:\n%s\n%s", files["meminfo"], files["stat"])
	}
	// Without ProcDir nothing covers /proc files.
	s, _ = Build(validOptions())
	for _, m := range s.Mounts {
		if strings.HasPrefix(m.Destination, "/proc/") {
			t.Errorf("%s covered without ProcDir", m.Destination)
		}
	}
}

// Host-wide counters in /proc form channels between boxes (one box's
// allocations and files move another's view): they are masked.
func TestHostCountersMasked(t *testing.T) {
	s, err := Build(validOptions())
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{
		"/proc/zoneinfo", "/proc/buddyinfo", "/proc/pagetypeinfo", "/proc/softirqs", "/proc/interrupts",
		"/proc/pressure", "/proc/cgroups", "/proc/diskstats", "/proc/partitions", "/proc/swaps",
		"/proc/kallsyms", "/proc/vmstat", "/proc/slabinfo", "/proc/vmallocinfo", "/proc/iomem",
		"/proc/ioports", "/proc/schedstat", "/proc/locks",
		"/proc/sys/fs/inode-nr", "/proc/sys/fs/inode-state", "/proc/sys/fs/file-nr",
		"/proc/sys/fs/dentry-state", "/proc/sys/fs/aio-nr", "/proc/sys/fs/quota", "/proc/fs",
	} {
		if !slices.Contains(s.Linux.MaskedPaths, p) {
			t.Errorf("%s not masked", p)
		}
	}
}

// seccompAction is what p does with syscall name called with arg at
// index idx (other arguments 0), as the kernel filter would decide: the
// action of a matching rule, else the default (rules with arguments only
// are compared; they are exact here, so at most one action matches).
func seccompAction(t *testing.T, p *specs.LinuxSeccomp, name string, idx uint, arg uint64) string {
	t.Helper()
	var actions []string
	for _, r := range p.Syscalls {
		if !slices.Contains(r.Names, name) {
			continue
		}
		match := true
		for _, a := range r.Args {
			v := uint64(0)
			if a.Index == idx {
				v = arg
			}
			switch a.Op {
			case specs.OpEqualTo:
				match = match && v == a.Value
			case specs.OpNotEqual:
				match = match && v != a.Value
			case specs.OpLessThan:
				match = match && v < a.Value
			case specs.OpMaskedEqual:
				match = match && v&a.Value == a.ValueTwo
			default:
				t.Fatalf("rule %+v: op %s not simulated", r, a.Op)
			}
		}
		if match {
			act := string(r.Action)
			if r.ErrnoRet != nil {
				act += fmt.Sprint(*r.ErrnoRet)
			}
			actions = append(actions, act)
		}
	}
	switch {
	case len(actions) == 0:
		return "default"
	case len(actions) > 1 && slices.Contains(actions, string(specs.ActAllow)) && slices.ContainsFunc(actions, func(a string) bool { return a != string(specs.ActAllow) }):
		t.Fatalf("%s(%#x): rules disagree: %v", name, arg, actions)
	}
	return actions[0]
}

func TestProfilePageMerging(t *testing.T) {
	allow, eperm := string(specs.ActAllow), string(specs.ActErrno)+fmt.Sprint(uint(unix.EPERM))
	const high = 1 << 32
	for _, merge := range []bool{false, true} {
		o := validOptions()
		o.NoASLR = merge
		s, err := Build(o)
		if err != nil {
			t.Fatal(err)
		}
		mergeable := eperm
		if merge {
			mergeable = allow
		}
		tests := []struct {
			name string
			idx  uint
			arg  uint64
			want string
		}{
			{"madvise", 2, unix.MADV_MERGEABLE, mergeable},
			{"madvise", 2, unix.MADV_MERGEABLE | high, "default"}, // the kernel would read 12
			{"madvise", 2, unix.MADV_UNMERGEABLE, allow},
			{"madvise", 2, unix.MADV_DONTNEED, allow},
			{"madvise", 2, unix.MADV_NORMAL, allow},
			{"madvise", 2, unix.MADV_HUGEPAGE, allow},
			{"madvise", 2, unix.MADV_DONTDUMP, allow},
			{"madvise", 2, unix.MADV_COLLAPSE, allow},
			{"madvise", 2, unix.MADV_HWPOISON, allow},
			{"madvise", 2, 103, allow}, // MADV_GUARD_REMOVE
			{"madvise", 2, 104, "default"},
			{"madvise", 2, unix.MADV_DONTNEED | high, "default"},
			{"prctl", 0, unix.PR_SET_MEMORY_MERGE, eperm},
			{"prctl", 0, unix.PR_SET_MEMORY_MERGE | high, "default"},
			{"prctl", 0, unix.PR_GET_MEMORY_MERGE, allow},
			{"prctl", 0, unix.PR_SET_NAME, allow},
			{"prctl", 0, unix.PR_SET_NO_NEW_PRIVS, allow},
			{"prctl", 0, unix.PR_SET_PTRACER, allow},
			{"prctl", 0, unix.PR_SET_VMA, allow},
			{"prctl", 0, 127, allow},
			{"prctl", 0, 128, "default"},
			{"personality", 0, 0xffffffff, allow},
			{"personality", 0, 0x0040000, eperm},
			{"personality", 0, 0xffffffff | high, eperm},
		}
		for _, tc := range tests {
			if got := seccompAction(t, s.Linux.Seccomp, tc.name, tc.idx, tc.arg); got != tc.want {
				t.Errorf("merge %v: %s(%#x) is %s, want %s", merge, tc.name, tc.arg, got, tc.want)
			}
		}
		if got := s.Linux.Personality != nil; got != merge {
			t.Errorf("merge %v: personality set %v", merge, got)
		}
	}
}
