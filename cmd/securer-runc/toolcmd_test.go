package main

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// survivors lists processes whose command line holds marker.
func survivors(marker string) []int {
	var pids []int
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline")); err == nil && strings.Contains(string(b), marker) {
			pids = append(pids, pid)
		}
	}
	return pids
}

func TestRunToolCommand(t *testing.T) {
	const marker = "317.3"
	t.Cleanup(func() {
		for _, pid := range survivors(marker) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	})
	flag := filepath.Join(t.TempDir(), "escaped") // the escaped process is out of the group
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	tests := []struct {
		name    string
		ctx     context.Context
		script  string
		want    string // stdout, when no error
		wantErr string
	}{
		{"plain", context.Background(), "cat", `{"a":1}`, ""},
		{"background child", context.Background(), "(sleep " + marker + " &); echo 1", "1\n", ""},
		{"stdout over the bound", context.Background(), "head -c 20000000 /dev/zero", "", "tool output over"},
		{"stderr kept short", context.Background(), "head -c 1000000 /dev/zero | tr '\\0' e >&2; exit 3", "", "eeee"},
		{"exit without stderr", context.Background(), "exit 3", "", "exit status 3"},
		{"cancelled", cancelled, "sleep " + marker, "", "cancelled"},
		// A process that leaves the group cannot be killed with it; the
		// call still ends, with an error, once the grace period is over.
		{"escaped the group", context.Background(), "setsid sh -c 'touch \"$0\"; exec sleep " + marker + "' " + flag +
			" & while [ ! -e " + flag + " ]; do sleep 0.01; done; echo 1", "", "still held its output"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := runToolCommand(tt.ctx, []string{"sh", "-c", tt.script}, []byte(`{"a":1}`))
			if tt.wantErr == "" {
				if err != nil || string(out) != tt.want {
					t.Errorf("got %q, %v; want %q", out, err, tt.want)
				}
			} else if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("got %d bytes, %v; want an error saying %q", len(out), err, tt.wantErr)
			}
			if err != nil && len(err.Error()) > maxToolStderr {
				t.Errorf("error of %d bytes, over %d", len(err.Error()), maxToolStderr)
			}
			if tt.name == "stdout over the bound" && !errors.Is(err, errToolOutput) {
				t.Errorf("%v is not errToolOutput", err)
			}
			if tt.name != "escaped the group" {
				deadline := time.Now().Add(5 * time.Second)
				for len(survivors(marker)) > 0 && time.Now().Before(deadline) {
					time.Sleep(20 * time.Millisecond)
				}
				if left := survivors(marker); len(left) > 0 {
					t.Errorf("left running: %v", left)
				}
			}
			for _, pid := range survivors(marker) {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		})
	}
}
