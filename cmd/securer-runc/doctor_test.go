package main

import (
	"slices"
	"strings"
	"testing"
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
