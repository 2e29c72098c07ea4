package securer

import (
	"bytes"
	"io"
	"log/slog"
	"os"
	"strings"
	"testing"

	"github.com/securer-runc/securer-runc/bridge"
)

// The box writes the result frame: collected files it forges (a name
// twice, a file that is also a directory, bad names, over the limits)
// are dropped and counted, never handed on.
func TestCheckCollectedForged(t *testing.T) {
	f := func(name string, n int) bridge.File { return bridge.File{Name: name, Data: make([]byte, n)} }
	var many []bridge.File
	var first []string
	for i := range MaxRequestFiles + 2 {
		name := strings.Repeat("x", i+1)
		many = append(many, f(name, 1))
		if i < MaxRequestFiles {
			first = append(first, name)
		}
	}
	for _, tc := range []struct {
		name        string
		in          []bridge.File
		boxDropped  int64
		want        []string
		wantDropped int64
	}{
		{"plain", []bridge.File{f("a", 1), f("d/b", 1)}, 0, []string{"a", "d/b"}, 0},
		{"same name twice", []bridge.File{f("a", 1), f("a", 2)}, 0, []string{"a"}, 1},
		{"file then dir of that name", []bridge.File{f("a", 1), f("a/b", 1)}, 0, []string{"a"}, 1},
		{"dir then file of that name", []bridge.File{f("a/b/c", 1), f("a/b", 1), f("a", 1)}, 0, []string{"a/b/c"}, 2},
		{"bad names", []bridge.File{f("../x", 1), f("/etc/x", 1), f("a/./b", 1), f("é", 1)}, 0, nil, 4},
		{"over the size per file", []bridge.File{f("big", MaxFileBytes+1)}, 0, nil, 1},
		{"over the count", many, 0, first, 2},
		{"the box's own count is added to", []bridge.File{f("a", 1), f("a", 1)}, 5, []string{"a"}, 6},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, dropped := checkCollected(tc.in, tc.boxDropped)
			if dropped != tc.wantDropped {
				t.Errorf("dropped %d, want %d", dropped, tc.wantDropped)
			}
			var names []string
			for _, g := range got {
				names = append(names, g.Name)
			}
			if strings.Join(names, ",") != strings.Join(tc.want, ",") {
				t.Errorf("kept %v, want %v", names, tc.want)
			}
		})
	}
}

// Standard input past the limit reaches the code cut at the limit: the
// cut is logged, not silent; input within it is not.
func TestFeedStdinCut(t *testing.T) {
	for _, tc := range []struct {
		name   string
		size   int
		logged bool
	}{
		{"small", 10, false},
		{"at the limit", MaxFileBytes, false},
		{"over the limit", MaxFileBytes + 1, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, w, err := os.Pipe()
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			var logs bytes.Buffer
			done := make(chan struct{})
			go func() {
				feedStdin(w, bytes.NewReader(make([]byte, tc.size)), slog.New(slog.NewTextHandler(&logs, nil)))
				close(done)
			}()
			got, err := io.ReadAll(r)
			<-done
			if err != nil || len(got) != min(tc.size, MaxFileBytes) {
				t.Fatalf("read %d bytes (%v), want %d", len(got), err, min(tc.size, MaxFileBytes))
			}
			if logged := strings.Contains(logs.String(), "standard input cut"); logged != tc.logged {
				t.Errorf("logged %v, want %v: %q", logged, tc.logged, logs.String())
			}
		})
	}
}
