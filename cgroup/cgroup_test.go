package cgroup

import (
	"os"
	"path/filepath"
	"testing"
)

func writeFiles(t *testing.T, dir string, files map[string]string) string {
	t.Helper()
	for name, body := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// ReadUsage must pick the right files for each host layout: v1, hybrid
// (v1 controllers plus an empty v2 mount) and v2.
func TestReadUsageLayouts(t *testing.T) {
	v1 := func(t *testing.T) map[string]string {
		d := t.TempDir()
		writeFiles(t, d, map[string]string{
			"cpuacct/cpuacct.usage_user":       "1500\n",
			"cpuacct/cpuacct.usage_sys":        "500\n",
			"memory/memory.max_usage_in_bytes": "4096\n",
			"memory/memory.oom_control":        "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n",
		})
		return map[string]string{"cpuacct": filepath.Join(d, "cpuacct"), "memory": filepath.Join(d, "memory")}
	}
	cases := []struct {
		name  string
		paths func(t *testing.T) map[string]string
		want  Usage
	}{
		{"v1", v1, Usage{1500, 500, 4096, 0, 2}},
		{"hybrid", func(t *testing.T) map[string]string {
			p := v1(t)
			p[""] = t.TempDir() // the empty unified hierarchy: no files
			return p
		}, Usage{1500, 500, 4096, 0, 2}},
		{"v2", func(t *testing.T) map[string]string {
			d := writeFiles(t, t.TempDir(), map[string]string{
				"cpu.stat":      "usage_usec 7\nuser_usec 3\nsystem_usec 4\n",
				"memory.peak":   "8192\n",
				"pids.peak":     "7\n",
				"memory.events": "low 0\nhigh 0\nmax 5\noom 1\noom_kill 1\n",
			})
			return map[string]string{"": d}
		}, Usage{3000, 4000, 8192, 7, 1}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := ReadUsage(c.paths(t))
			if err != nil || got != c.want {
				t.Fatalf("ReadUsage = %+v, %v; want %+v", got, err, c.want)
			}
		})
	}
	if _, err := ReadUsage(map[string]string{}); err == nil {
		t.Error("no paths: want an error")
	}
}

func TestLimitsResources(t *testing.T) {
	r := Limits{MemoryBytes: 1 << 30, Pids: 100, CPUs: 1.5}.resources()
	if *r.Memory.Limit != 1<<30 || *r.Pids.Limit != 100 || *r.CPU.Quota != 150000 || *r.CPU.Period != 100000 {
		t.Errorf("resources %+v", r)
	}
	if r := (Limits{}).resources(); r.Memory != nil || r.Pids != nil || r.CPU != nil {
		t.Errorf("zero limits should set nothing: %+v", r)
	}
}

func TestEnsureParentRejectsBadPaths(t *testing.T) {
	for _, p := range []string{"relative", "/a/../b", ""} {
		if _, err := EnsureParent(p, Limits{}); err == nil {
			t.Errorf("EnsureParent(%q) accepted", p)
		}
	}
}

func TestReadLimits(t *testing.T) {
	v2 := t.TempDir()
	writeFiles(t, v2, map[string]string{"memory.max": "268435456\n", "pids.max": "32\n", "cpu.max": "50000 100000\n"})
	v2max := t.TempDir()
	writeFiles(t, v2max, map[string]string{"memory.max": "max\n", "pids.max": "max\n", "cpu.max": "max 100000\n"})
	mem, pids, cpu := t.TempDir(), t.TempDir(), t.TempDir()
	writeFiles(t, mem, map[string]string{"memory.limit_in_bytes": "268435456\n"})
	writeFiles(t, pids, map[string]string{"pids.max": "32\n"})
	writeFiles(t, cpu, map[string]string{"cpu.cfs_quota_us": "50000\n", "cpu.cfs_period_us": "100000\n"})
	memNone, cpuNone := t.TempDir(), t.TempDir()
	writeFiles(t, memNone, map[string]string{"memory.limit_in_bytes": "9223372036854771712\n"})
	writeFiles(t, cpuNone, map[string]string{"cpu.cfs_quota_us": "-1\n", "cpu.cfs_period_us": "100000\n"})

	tests := []struct {
		name  string
		paths map[string]string
		want  Limits
		bad   bool
	}{
		{"v2", map[string]string{"": v2}, Limits{MemoryBytes: 256 << 20, Pids: 32, CPUs: 0.5}, false},
		{"v2 unlimited", map[string]string{"": v2max}, Limits{}, false},
		{"v1", map[string]string{"memory": mem, "pids": pids, "cpu": cpu, "": v2max}, Limits{MemoryBytes: 256 << 20, Pids: 32, CPUs: 0.5}, false},
		{"v1 unlimited", map[string]string{"memory": memNone, "pids": pids, "cpu": cpuNone}, Limits{Pids: 32}, false},
		{"v1 missing files", map[string]string{"memory": t.TempDir(), "pids": pids, "cpu": cpu}, Limits{}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ReadLimits(tt.paths)
			if (err != nil) != tt.bad || (!tt.bad && got != tt.want) {
				t.Fatalf("ReadLimits = %+v, %v; want %+v (error: %v)", got, err, tt.want, tt.bad)
			}
		})
	}
}

func TestControllersNeedACgroupFilesystem(t *testing.T) {
	// A plain directory is not a controller, whatever it is called.
	if isFS(t.TempDir(), 0x27e0eb) {
		t.Error("a temp dir passed for a cgroup v1 filesystem")
	}
}
