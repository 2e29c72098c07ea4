// Package cgroup owns the parent cgroup that caps all sessions together and
// reads the counters libcontainer's stats do not carry (OOM kills). Each
// session's leaf belongs to libcontainer alone; this package only reads it.
package cgroup

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	cgroups "github.com/containerd/cgroups/v3"
	"github.com/containerd/cgroups/v3/cgroup1"
	"github.com/containerd/cgroups/v3/cgroup2"
	specs "github.com/opencontainers/runtime-spec/specs-go"
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

// Controllers lists the controllers usable for new cgroups.
func Controllers(m Mode) ([]string, error) {
	switch m {
	case Unified:
		b, err := os.ReadFile(filepath.Join(Root, "cgroup.controllers"))
		if err != nil {
			return nil, fmt.Errorf("read cgroup v2 controllers: %w", err)
		}
		return strings.Fields(string(b)), nil
	case Legacy, Hybrid:
		var out []string
		for _, c := range []string{"memory", "pids", "cpu", "cpuacct", "devices", "freezer", "cpuset", "blkio"} {
			if fi, err := os.Stat(filepath.Join(Root, c)); err == nil && fi.IsDir() {
				out = append(out, c)
			}
		}
		return out, nil
	}
	return nil, errors.New("no cgroup filesystem mounted at " + Root)
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
		m, err := cgroup2.NewManager(Root, path, cgroup2.ToResources(l.resources()))
		if err != nil {
			return nil, fmt.Errorf("create cgroup v2 parent %s: %w", path, err)
		}
		// Leaves need these controllers delegated from the parent.
		if err := m.ToggleControllers(RequiredControllers, cgroup2.Enable); err != nil {
			return nil, fmt.Errorf("enable controllers in %s: %w", path, err)
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

// Leaves lists the names of the session cgroups under the parent.
func (p *Parent) Leaves() ([]string, error) {
	dir := filepath.Join(Root, p.Path)
	if p.mode != Unified {
		dir = filepath.Join(Root, "memory", p.Path)
	}
	ents, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	} else if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range ents {
		if e.IsDir() {
			out = append(out, e.Name())
		}
	}
	return out, nil
}

// OOMKills reads the kernel's OOM-kill counter of a leaf, given
// libcontainer's controller -> path map for it.
func OOMKills(paths map[string]string) (uint64, error) {
	if p, ok := paths["memory"]; ok { // v1
		return readKey(filepath.Join(p, "memory.oom_control"), "oom_kill")
	}
	if p, ok := paths[""]; ok { // v2
		return readKey(filepath.Join(p, "memory.events"), "oom_kill")
	}
	return 0, errors.New("no memory cgroup path")
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
