// Package cgroup owns the parent cgroup that caps all sessions together and
// reads the counters libcontainer's stats do not carry (OOM kills). Each
// session's leaf belongs to libcontainer alone; this package only reads it,
// and removes one only when it is empty and abandoned (RemoveEmptyLeaf).
package cgroup

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	cgroups "github.com/containerd/cgroups/v3"
	"github.com/containerd/cgroups/v3/cgroup1"
	"github.com/containerd/cgroups/v3/cgroup2"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// Mode is the host's cgroup layout.
type Mode int

const (
	Unavailable Mode = iota
	Legacy           // v1 only
	Hybrid           // v1 controllers, an empty v2 mount beside them
	Unified          // v2 only
)

func (m Mode) String() string {
	switch m {
	case Legacy:
		return "v1 (legacy)"
	case Hybrid:
		return "v1 (hybrid)"
	case Unified:
		return "v2 (unified)"
	}
	return "unavailable"
}

// DetectMode reports the host's cgroup layout.
func DetectMode() Mode {
	switch cgroups.Mode() {
	case cgroups.Legacy:
		return Legacy
	case cgroups.Hybrid:
		return Hybrid
	case cgroups.Unified:
		return Unified
	}
	return Unavailable
}

// Root is where cgroup filesystems are mounted on every mainstream host.
const Root = "/sys/fs/cgroup"

// RequiredControllers are the controllers a session's limits need.
var RequiredControllers = []string{"memory", "pids", "cpu"}

// Controllers lists the controllers usable for new cgroups. A controller
// counts only where a real cgroup filesystem is mounted: a plain directory
// (or a tmpfs laid over the hierarchy) would take limits without enforcing
// them.
func Controllers(m Mode) ([]string, error) {
	switch m {
	case Unified:
		if !isFS(Root, unix.CGROUP2_SUPER_MAGIC) {
			return nil, errors.New("no cgroup2 filesystem at " + Root)
		}
		b, err := os.ReadFile(filepath.Join(Root, "cgroup.controllers"))
		if err != nil {
			return nil, fmt.Errorf("read cgroup v2 controllers: %w", err)
		}
		return strings.Fields(string(b)), nil
	case Legacy, Hybrid:
		var out []string
		for _, c := range []string{"memory", "pids", "cpu", "cpuacct", "devices", "freezer", "cpuset", "blkio"} {
			if isFS(filepath.Join(Root, c), unix.CGROUP_SUPER_MAGIC) {
				out = append(out, c)
			}
		}
		return out, nil
	}
	return nil, errors.New("no cgroup filesystem mounted at " + Root)
}

func isFS(path string, magic int64) bool {
	var st unix.Statfs_t
	return unix.Statfs(path, &st) == nil && int64(st.Type) == magic
}

// Limits caps all sessions together; zero fields are unlimited.
type Limits struct {
	MemoryBytes int64
	Pids        int64
	CPUs        float64
}

func (l Limits) resources() *specs.LinuxResources {
	r := &specs.LinuxResources{}
	if l.MemoryBytes > 0 {
		r.Memory = &specs.LinuxMemory{Limit: &l.MemoryBytes}
	}
	if l.Pids > 0 {
		r.Pids = &specs.LinuxPids{Limit: &l.Pids}
	}
	if l.CPUs > 0 {
		quota, period := int64(l.CPUs*100000), uint64(100000)
		r.CPU = &specs.LinuxCPU{Quota: &quota, Period: &period}
	}
	return r
}

// Parent is the cgroup all session leaves live under.
type Parent struct {
	Path string // e.g. "/securer-runc", relative to each hierarchy's root
	mode Mode
}

// EnsureParent creates (or updates) the parent cgroup at path with limits.
func EnsureParent(path string, l Limits) (*Parent, error) {
	if !strings.HasPrefix(path, "/") || strings.Contains(path, "..") {
		return nil, fmt.Errorf("cgroup parent %q: must be an absolute path without ..", path)
	}
	p := &Parent{Path: path, mode: DetectMode()}
	switch p.mode {
	case Unified:
		// Inside a container's or pod's cgroup namespace the top holds
		// the container's processes: they go into a leaf first.
		self, err := SelfCgroup()
		if err != nil {
			return nil, fmt.Errorf("create cgroup v2 parent %s: %w", path, err)
		}
		if _, err := makeRoom(Root, self, path); err != nil {
			return nil, fmt.Errorf("create cgroup v2 parent %s: %w", path, err)
		}
		m, err := cgroup2.NewManager(Root, path, cgroup2.ToResources(l.resources()))
		if err != nil {
			return nil, fmt.Errorf("create cgroup v2 parent %s: %w", path, explain(err, Root))
		}
		// The parent's own limits need its controllers enabled from the
		// root down (ToggleControllers writes the ancestors'
		// subtree_control); libcontainer enables them in the parent's own
		// subtree_control when it creates a leaf.
		if err := m.ToggleControllers(RequiredControllers, cgroup2.Enable); err != nil {
			return nil, fmt.Errorf("enable controllers in %s: %w", path, explain(err, Root))
		}
	case Legacy, Hybrid:
		if _, err := cgroup1.New(cgroup1.StaticPath(path), l.resources(), cgroup1.WithHierarchy(limitHierarchy)); err != nil {
			return nil, fmt.Errorf("create cgroup v1 parent %s: %w", path, err)
		}
	default:
		return nil, errors.New("cgroups are unavailable on this host: mount cgroup2 at " + Root)
	}
	return p, nil
}

// Remove deletes the parent cgroup when no session leaf is left in it. It
// fails, changing nothing, while any process or leaf is inside.
func (p *Parent) Remove() error {
	if p.mode == Unified {
		m, err := cgroup2.Load(p.Path)
		if err != nil {
			return err
		}
		return m.Delete()
	}
	// libcontainer creates the parent in every v1 hierarchy (and the empty
	// v2 one of a hybrid host), not just the limited ones: remove it from
	// each. rmdir only ever succeeds on an empty cgroup.
	hierarchies, err := os.ReadDir(Root)
	if err != nil {
		return err
	}
	var errs []error
	for _, h := range hierarchies {
		dir := filepath.Join(Root, h.Name(), p.Path)
		if err := os.Remove(dir); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// limitHierarchy is the v1 controllers the parent sets limits in. Fixed
// paths under Root: containerd's autodetection reads /proc/self/mountinfo,
// which stops describing the host once libcontainer has run in the process.
func limitHierarchy() ([]cgroup1.Subsystem, error) {
	var subs []cgroup1.Subsystem
	for _, s := range []cgroup1.Subsystem{
		cgroup1.NewMemory(Root), cgroup1.NewPids(Root), cgroup1.NewCpu(Root), cgroup1.NewCpuacct(Root),
	} {
		if _, err := os.Stat(filepath.Join(Root, string(s.Name()))); err == nil {
			subs = append(subs, s)
		}
	}
	if len(subs) == 0 {
		return nil, errors.New("no cgroup v1 controllers under " + Root)
	}
	return subs, nil
}

// OpenParent names an existing parent cgroup without creating or
// changing it (for cleaning up under it).
func OpenParent(path string) (*Parent, error) {
	if !strings.HasPrefix(path, "/") || strings.Contains(path, "..") {
		return nil, fmt.Errorf("cgroup parent %q: must be an absolute path without ..", path)
	}
	return &Parent{Path: path, mode: DetectMode()}, nil
}

// dirs lists the parent's directory in every hierarchy that has one
// (v1: libcontainer creates it in each, not only the limited ones).
func (p *Parent) dirs() []string {
	if p.mode == Unified {
		return []string{filepath.Join(Root, p.Path)}
	}
	hierarchies, _ := os.ReadDir(Root)
	var out []string
	for _, h := range hierarchies {
		dir := filepath.Join(Root, h.Name(), p.Path)
		if fi, err := os.Stat(dir); err == nil && fi.IsDir() {
			out = append(out, dir)
		}
	}
	return out
}

// Leaves lists the names of the session cgroups under the parent, in any
// hierarchy (a crash can leave a leaf in some hierarchies only).
func (p *Parent) Leaves() ([]string, error) {
	seen := map[string]bool{}
	var out []string
	for _, dir := range p.dirs() {
		ents, err := os.ReadDir(dir)
		if errors.Is(err, os.ErrNotExist) {
			continue
		} else if err != nil {
			return nil, err
		}
		for _, e := range ents {
			if e.IsDir() && !seen[e.Name()] {
				seen[e.Name()] = true
				out = append(out, e.Name())
			}
		}
	}
	return out, nil
}

// ErrLeafInUse: the leaf has processes, or is too new to be abandoned.
var ErrLeafInUse = errors.New("cgroup leaf in use")

// RemoveEmptyLeaf removes the leaf called name from every hierarchy when
// it has no process and none of its directories changed for minAge: a
// leaf a crash left behind (between creating a container's cgroup and
// recording its state), never one another executor is about to use. It
// kills nothing: a live container always has its init inside.
func (p *Parent) RemoveEmptyLeaf(name string, minAge time.Duration) error {
	if name == "" || name == "." || name == ".." || strings.Contains(name, "/") {
		return fmt.Errorf("cgroup leaf %q: not a leaf name", name)
	}
	var dirs []string
	for _, d := range p.dirs() {
		dir := filepath.Join(d, name)
		fi, err := os.Stat(dir)
		if errors.Is(err, os.ErrNotExist) {
			continue
		} else if err != nil {
			return err
		}
		if time.Since(fi.ModTime()) < minAge {
			return fmt.Errorf("%w: %s changed %s ago", ErrLeafInUse, dir, time.Since(fi.ModTime()).Round(time.Second))
		}
		if b, err := os.ReadFile(filepath.Join(dir, "cgroup.procs")); err != nil || len(strings.TrimSpace(string(b))) > 0 {
			return fmt.Errorf("%w: %s has processes (or cannot be read: %v)", ErrLeafInUse, dir, err)
		}
		dirs = append(dirs, dir)
	}
	var errs []error
	for _, d := range dirs {
		// rmdir succeeds only on an empty cgroup: a process that entered
		// meanwhile keeps it.
		if err := os.Remove(d); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func readKey(file, key string) (uint64, error) {
	f, err := os.Open(file)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), " ")
		if ok && k == key {
			return strconv.ParseUint(strings.TrimSpace(v), 10, 64)
		}
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	return 0, fmt.Errorf("%s: no %q line", file, key)
}

// Usage is a leaf's accounting, read straight from its files (cheaper than
// a full stats walk: an execution reads it twice).
type Usage struct {
	CPUUserNanos, CPUSystemNanos uint64
	PeakMemoryBytes              uint64
	PeakPids                     uint64 // 0 where the kernel has no pids.peak
	OOMKills                     uint64
}

// ReadUsage reads a leaf's CPU time, peak memory and OOM kills, given
// libcontainer's controller -> path map for it. Missing files (old
// kernels) leave their fields zero.
func ReadUsage(paths map[string]string) (Usage, error) {
	var u Usage
	// A hybrid host lists an (empty) v2 path too: v1 controllers win.
	if p, ok := paths[""]; ok && paths["memory"] == "" { // v2
		user, err1 := readKey(filepath.Join(p, "cpu.stat"), "user_usec")
		sys, err2 := readKey(filepath.Join(p, "cpu.stat"), "system_usec")
		if err := errors.Join(err1, err2); err != nil {
			return u, err
		}
		u.CPUUserNanos, u.CPUSystemNanos = user*1000, sys*1000
		u.PeakMemoryBytes, _ = readUint(filepath.Join(p, "memory.peak"))
		u.PeakPids, _ = readUint(filepath.Join(p, "pids.peak"))
		u.OOMKills, _ = readKey(filepath.Join(p, "memory.events"), "oom_kill")
		return u, nil
	}
	cpu, ok := paths["cpuacct"]
	mem, ok2 := paths["memory"]
	if !ok || !ok2 {
		return u, errors.New("no cpuacct or memory cgroup path")
	}
	var err error
	if u.CPUUserNanos, err = readUint(filepath.Join(cpu, "cpuacct.usage_user")); err != nil {
		return u, err
	}
	if u.CPUSystemNanos, err = readUint(filepath.Join(cpu, "cpuacct.usage_sys")); err != nil {
		return u, err
	}
	u.PeakMemoryBytes, _ = readUint(filepath.Join(mem, "memory.max_usage_in_bytes"))
	if pids, ok := paths["pids"]; ok {
		u.PeakPids, _ = readUint(filepath.Join(pids, "pids.peak"))
	}
	u.OOMKills, _ = readKey(filepath.Join(mem, "memory.oom_control"), "oom_kill")
	return u, nil
}

func readUint(file string) (uint64, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return 0, err
	}
	return strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
}

// Procs lists the processes (host pids) in a leaf, given libcontainer's
// controller -> path map for it.
func Procs(paths map[string]string) ([]int, error) {
	dir, ok := paths["pids"]
	if !ok {
		if dir, ok = paths[""]; !ok {
			return nil, errors.New("no pids cgroup path")
		}
	}
	return readProcs(filepath.Join(dir, "cgroup.procs"))
}

// ReadLimits reads the limits the kernel enforces on a leaf, given
// libcontainer's controller -> path map: what doctor shows is what holds,
// not what was asked for. Unlimited fields are zero.
func ReadLimits(paths map[string]string) (Limits, error) {
	var l Limits
	if p, ok := paths[""]; ok && paths["memory"] == "" { // v2
		mem, err1 := readMax(filepath.Join(p, "memory.max"))
		pids, err2 := readMax(filepath.Join(p, "pids.max"))
		b, err3 := os.ReadFile(filepath.Join(p, "cpu.max"))
		if err := errors.Join(err1, err2, err3); err != nil {
			return l, err
		}
		l.MemoryBytes, l.Pids = int64(mem), int64(pids)
		if q, per, ok := strings.Cut(strings.TrimSpace(string(b)), " "); ok && q != "max" {
			qn, _ := strconv.ParseFloat(q, 64)
			pn, _ := strconv.ParseFloat(per, 64)
			if pn > 0 {
				l.CPUs = qn / pn
			}
		}
		return l, nil
	}
	mem, err1 := readMax(filepath.Join(paths["memory"], "memory.limit_in_bytes"))
	pids, err2 := readMax(filepath.Join(paths["pids"], "pids.max"))
	quota, err3 := os.ReadFile(filepath.Join(paths["cpu"], "cpu.cfs_quota_us"))
	period, err4 := readUint(filepath.Join(paths["cpu"], "cpu.cfs_period_us"))
	if err := errors.Join(err1, err2, err3, err4); err != nil {
		return l, err
	}
	// v1 reports "no limit" as a huge page-rounded number.
	if mem < 1<<62 {
		l.MemoryBytes = int64(mem)
	}
	l.Pids = int64(pids)
	if q, err := strconv.ParseInt(strings.TrimSpace(string(quota)), 10, 64); err == nil && q > 0 && period > 0 {
		l.CPUs = float64(q) / float64(period)
	}
	return l, nil
}

// readMax reads a number or "max" (as 0).
func readMax(file string) (uint64, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return 0, err
	}
	if s := strings.TrimSpace(string(b)); s != "max" {
		return strconv.ParseUint(s, 10, 64)
	}
	return 0, nil
}
