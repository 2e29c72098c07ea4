package securer

import (
	"errors"
	"io/fs"
	"strings"
	"syscall"
	"testing"
)

// TestUserNSCheckTooManyFiles: failing to open max_user_namespaces for
// want of file descriptors is reported as transient, without the sysctl
// fix that a host lacking user namespaces gets.
func TestUserNSCheckTooManyFiles(t *testing.T) {
	path := "/proc/sys/user/max_user_namespaces"
	tests := []struct {
		name      string
		b         []byte
		err       error
		ok        bool
		transient bool
	}{
		{"emfile", nil, &fs.PathError{Op: "open", Path: path, Err: syscall.EMFILE}, false, true},
		{"enfile", nil, &fs.PathError{Op: "open", Path: path, Err: syscall.ENFILE}, false, true},
		{"missing", nil, &fs.PathError{Op: "open", Path: path, Err: syscall.ENOENT}, false, false},
		{"zero", []byte("0\n"), nil, false, false},
		{"enabled", []byte("15000\n"), nil, true, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := userNSCheck(tc.b, tc.err)
			if c.OK != tc.ok {
				t.Fatalf("OK = %v, want %v (%+v)", c.OK, tc.ok, c)
			}
			if c.OK {
				return
			}
			err := hostProblems([]HostCheck{c})
			if !errors.Is(err, ErrSandboxUnavailable) {
				t.Errorf("%v does not wrap ErrSandboxUnavailable", err)
			}
			msg := err.Error()
			if got := strings.Contains(msg, "too many open files (transient)"); got != tc.transient {
				t.Errorf("transient said %v, want %v: %s", got, tc.transient, msg)
			}
			if got := strings.Contains(msg, "sysctl"); got == tc.transient {
				t.Errorf("sysctl fix given %v, want %v: %s", got, !tc.transient, msg)
			}
			if tc.transient && strings.Contains(msg, "host lacks") {
				t.Errorf("a transient failure blames the host: %s", msg)
			}
		})
	}
}
