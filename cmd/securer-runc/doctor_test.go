package main

import (
	"bytes"
	"errors"
	"log/slog"
	"slices"
	"strings"
	"testing"

	securer "github.com/securer-runc/securer-runc"
)

func TestParseKernel(t *testing.T) {
	tests := []struct {
		in   string
		want kernelVersion
		bad  bool
	}{
		{in: "6.1.0-18-amd64", want: kernelVersion{6, 1, 0}},
		{in: "5.15.153.1-microsoft-standard-WSL2", want: kernelVersion{5, 15, 153}},
		{in: "6.18.44-fc-v669", want: kernelVersion{6, 18, 44}},
		{in: "4.18.0-513.el8.x86_64", want: kernelVersion{4, 18, 0}},
		{in: "6.8-rc1", want: kernelVersion{6, 8, 0}},
		{in: "linux", bad: true},
		{in: "", bad: true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := parseKernel(tt.in)
			if (err != nil) != tt.bad || (!tt.bad && got != tt.want) {
				t.Fatalf("parseKernel(%q) = %v, %v", tt.in, got, err)
			}
		})
	}
}

func TestKernelChecks(t *testing.T) {
	tests := []struct {
		release  string
		allowOld bool
		ok       bool
		notes    int
	}{
		{"6.18.44", false, true, 0},
		{"6.5.0", false, true, 1},    // before the CVE-2024-1086 fix
		{"5.10.200", false, true, 6}, // supported series, six newer fixes
		{"4.18.0-513.el8", false, false, 6},
		{"4.18.0-513.el8", true, true, 6},
		{"nonsense", false, false, 0},
	}
	for _, tt := range tests {
		t.Run(tt.release, func(t *testing.T) {
			cs := kernelChecks(tt.release, tt.allowOld)
			if cs[0].ok != tt.ok {
				t.Errorf("kernel check ok = %v (%s), want %v", cs[0].ok, cs[0].detail, tt.ok)
			}
			notes := 0
			for _, c := range cs[1:] {
				if !c.note || !strings.Contains(c.detail, "CVE-") {
					t.Errorf("unexpected line %+v", c)
				}
				notes++
			}
			if notes != tt.notes {
				t.Errorf("%d escape-class notes, want %d", notes, tt.notes)
			}
			if failed(cs) == tt.ok {
				t.Errorf("failed() = %v with kernel ok = %v", failed(cs), tt.ok)
			}
		})
	}
}

func TestSubIDOverlaps(t *testing.T) {
	const lo, hi = 100000, 100000 + 1024*65536
	for _, tc := range []struct {
		name, content string
		want          []string
	}{
		{"none", "", nil},
		{"below", "a:10000:65536\n", nil},
		{"touching below", "a:34464:65536\n", nil},
		{"inside", "alice:100000:65536\nbob:165536:65536\n", []string{"alice", "bob"}},
		{"straddling the end", "c:67100000:100000\n", []string{"c"}},
		{"above", "d:67208864:65536\n", nil},
		{"malformed lines", "junk\ne:x:1\nf:100000:0\n", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := subIDOverlaps(tc.content, lo, hi)
			if !slices.Equal(got, tc.want) {
				t.Errorf("subIDOverlaps = %v, want %v", got, tc.want)
			}
		})
	}
}

// The box id line: silent on a host, a note in a namespace with few IDs,
// a failure when no box fits (unless boxes need no IDs).
func TestBoxIDCheck(t *testing.T) {
	tooFew := errors.New("too few user and group IDs: 4096 IDs")
	pod := securer.BoxIDs{First: 8192, Size: 2048, Boxes: 27, Available: 65536, Small: true}
	for _, tc := range []struct {
		name     string
		ids      securer.BoxIDs
		err      error
		noUserNS bool
		shown    bool
		fails    bool
		note     bool
		says     []string
	}{
		{name: "host layout", ids: securer.BoxIDs{First: 100000, Size: 65536, Boxes: 1024, Available: 1<<32 - 1}},
		{name: "pod", ids: pod, shown: true, note: true, says: []string{"65536 IDs", "at most 27 boxes", "2048 IDs each", "8192-63487"}},
		{name: "too few", err: tooFew, shown: true, fails: true, says: []string{"4096 IDs"}},
		{name: "too few, no user namespaces", err: tooFew, noUserNS: true, shown: true, note: true, says: []string{"need none", "4096 IDs"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, shown := boxIDCheck(tc.ids, tc.err, tc.noUserNS)
			if shown != tc.shown {
				t.Fatalf("shown = %v, want %v (%+v)", shown, tc.shown, c)
			}
			if !shown {
				return
			}
			if got := failed([]check{c}); got != tc.fails {
				t.Errorf("fails = %v, want %v (%+v)", got, tc.fails, c)
			}
			if c.note != tc.note {
				t.Errorf("note = %v, want %v", c.note, tc.note)
			}
			if tc.fails && !strings.Contains(c.fix, "unsafe-no-userns") {
				t.Errorf("fix %q names no way out", c.fix)
			}
			for _, s := range tc.says {
				if !strings.Contains(c.detail, s) {
					t.Errorf("detail %q does not say %q", c.detail, s)
				}
			}
		})
	}
}

// A failed probe names its likeliest cause from R's stderr.
func TestProbeFailure(t *testing.T) {
	const sockErr = "R exited before connecting (exit status 1); R's stderr: Error in `processx::conn_connect_unix_socket(rt$sock)`:\n" +
		"! Cannot connect to socket (system error 13, Permission denied)\nExecution halted"
	tests := []struct {
		name       string
		err        string
		wantFix    string
		wantDetail string
	}{
		{"socket denied", sockErr, "could not connect to the bridge socket", "R's stderr:\n  Error in `processx::conn_connect_unix_socket(rt$sock)`:\n  ! Cannot connect"},
		{"runtime denied", "R exited during start-up (exit status 2); R's stderr: Fatal error: cannot open file '/run/securer/runtime/boot.R': Permission denied",
			"could not read its runtime", "cannot open file"},
		{"other denied", "R exited during start-up (exit status 1); R's stderr: cannot open file '/proc/stat': Permission denied",
			"denied access to a file it needs", "/proc/stat"},
		{"runc denied", "sandbox unavailable: start container x: remount-propagation dst=/x/rootfs: permission denied",
			"denied access to a file it needs", "remount-propagation"},
		{"not a permission", "R did not start within 30s: context deadline exceeded", "SECURER_DEBUG=1", "did not start"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := probeFailure(errors.New(tc.err))
			if c.ok || c.name != "probe container" || !strings.Contains(c.fix, tc.wantFix) || !strings.Contains(c.detail, tc.wantDetail) {
				t.Errorf("probeFailure = %+v; want fix with %q, detail with %q", c, tc.wantFix, tc.wantDetail)
			}
		})
	}
}

// serve takes no more sessions than boxes fit in its user namespace's
// IDs, and refuses to start when not one does.
func TestBoxCapacity(t *testing.T) {
	pod := securer.BoxIDs{First: 8192, Size: 2048, Boxes: 27, Available: 65536, Small: true}
	host := securer.BoxIDs{First: 100000, Size: 65536, Boxes: 1024, Available: 1<<32 - 1}
	for _, tc := range []struct {
		name  string
		max   int
		ids   securer.BoxIDs
		err   error
		want  int
		warns bool
		fails bool
	}{
		{name: "host", max: 64, ids: host, want: 64},
		{name: "pod, fewer asked", max: 4, ids: pod, want: 4},
		{name: "pod, as many", max: 27, ids: pod, want: 27},
		{name: "pod, more asked", max: 64, ids: pod, want: 27, warns: true},
		{name: "too few IDs", max: 64, err: errors.New("too few user and group IDs"), fails: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var logs bytes.Buffer
			got, err := boxCapacity(tc.max, tc.ids, tc.err, slog.New(slog.NewTextHandler(&logs, nil)))
			if (err != nil) != tc.fails {
				t.Fatalf("err = %v, want failure %v", err, tc.fails)
			}
			if tc.fails {
				if !strings.Contains(err.Error(), "too few user and group IDs") {
					t.Errorf("err %q hides the cause", err)
				}
				return
			}
			if got != tc.want {
				t.Errorf("boxCapacity = %d, want %d", got, tc.want)
			}
			if warned := strings.Contains(logs.String(), "level=WARN"); warned != tc.warns {
				t.Errorf("warned = %v, want %v: %s", warned, tc.warns, logs.String())
			}
		})
	}
}
