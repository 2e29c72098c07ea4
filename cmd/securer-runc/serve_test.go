package main

import (
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestSocketModeWarning: serve's listener set-up warns (on the log, which
// goes to stderr) when the socket's mode lets every local user connect.
func TestSocketModeWarning(t *testing.T) {
	tests := []struct {
		mode  string
		token bool
		warn  bool
	}{
		{"0660", false, false},
		{"0600", false, false},
		{"0666", false, true},
		{"0777", false, true},
		{"0662", false, true},
		{"0701", false, true},
		{"0666", true, true},
		{"0660", true, false},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%s/token=%v", tt.mode, tt.token), func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "s.sock")
			args := []string{"--listen", "unix:" + path, "--socket-mode", tt.mode}
			if tt.token {
				args = append(args, "--token-file", "unused-here")
			}
			f := newServeFlags(io.Discard)
			if err := f.fs.Parse(args); err != nil {
				t.Fatal(err)
			}
			var logs bytes.Buffer
			logger := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelWarn}))
			ln, cleanup, err := f.listener(io.Discard, logger)
			if err != nil {
				t.Fatal(err)
			}
			defer cleanup()
			defer ln.Close()
			fi, err := os.Stat(path)
			if err != nil {
				t.Fatal(err)
			}
			if got := fmt.Sprintf("%04o", fi.Mode().Perm()); got != tt.mode {
				t.Errorf("socket mode %s, want %s", got, tt.mode)
			}
			warned := strings.Contains(logs.String(), "level=WARN") && strings.Contains(logs.String(), "every local user")
			if warned != tt.warn {
				t.Errorf("mode %s (token %v): warned %v, want %v; log: %q", tt.mode, tt.token, warned, tt.warn, logs.String())
			}
			if tt.warn && !strings.Contains(logs.String(), "mode="+tt.mode) {
				t.Errorf("the warning does not name the mode: %q", logs.String())
			}
		})
	}
}

func TestServeSizes(t *testing.T) {
	tests := []struct {
		args    []string
		ok      bool
		message int
		output  int64
	}{
		{nil, true, 16 << 20, 0},
		{[]string{"--max-message-bytes", "1M", "--max-output", "2K"}, true, 1 << 20, 2 << 10},
		{[]string{"--max-message-bytes", "0"}, false, 0, 0},
		{[]string{"--max-queued-bytes", "lots"}, false, 0, 0},
		{[]string{"--max-output", "2T"}, false, 0, 0},
	}
	for _, tt := range tests {
		f := newServeFlags(io.Discard)
		if err := f.fs.Parse(tt.args); err != nil {
			t.Fatal(err)
		}
		opts := f.opts
		err := f.sizes(&opts)
		if (err == nil) != tt.ok {
			t.Errorf("%v: err %v, want ok %v", tt.args, err, tt.ok)
			continue
		}
		if tt.ok && (opts.MaxMessageBytes != tt.message || opts.Ceilings.OutputLimit != tt.output) {
			t.Errorf("%v: message %d output %d, want %d %d", tt.args, opts.MaxMessageBytes, opts.Ceilings.OutputLimit, tt.message, tt.output)
		}
	}
}
