package main

import (
	"bytes"
	"flag"
	"log/slog"
	"strings"
	"testing"
)

// Every command and subcommand answers -h, --help and help with its usage
// on stdout and status 0 (rootfs -h once said "unknown subcommand"). The
// word help after doctor, reap or a rootfs subcommand is left to
// TestParseFlags: should it regress, those would run for real.
func TestHelp(t *testing.T) {
	tests := []struct {
		args []string
		want string // in stdout
	}{
		{[]string{"help"}, "usage: securer-runc COMMAND"},
		{[]string{"-h"}, "usage: securer-runc COMMAND"},
		{[]string{"--help"}, "usage: securer-runc COMMAND"},
		{[]string{"help", "help"}, "usage: securer-runc COMMAND"},
		{[]string{"run", "-h"}, "usage: securer-runc run"},
		{[]string{"run", "--help"}, "usage: securer-runc run"},
		{[]string{"run", "help"}, "usage: securer-runc run"},
		{[]string{"run", "--timeout", "5s", "-h"}, "usage: securer-runc run"},
		{[]string{"help", "run"}, "-max-tool-calls"},
		{[]string{"serve", "-h"}, "usage: securer-runc serve"},
		{[]string{"serve", "--help"}, "usage: securer-runc serve"},
		{[]string{"serve", "help"}, "usage: securer-runc serve"},
		{[]string{"help", "serve"}, "-max-sessions"},
		{[]string{"doctor", "-h"}, "usage: securer-runc doctor"},
		{[]string{"help", "doctor"}, "-probe"},
		{[]string{"reap", "--help"}, "usage: securer-runc reap"},
		{[]string{"help", "reap"}, "-cgroup-parent"},
		{[]string{"version", "-h"}, "usage: securer-runc version"},
		{[]string{"version", "help"}, "usage: securer-runc version"},
		{[]string{"rootfs", "-h"}, "usage: securer-runc rootfs SUBCOMMAND"},
		{[]string{"rootfs", "--help"}, "usage: securer-runc rootfs SUBCOMMAND"},
		{[]string{"rootfs", "help"}, "seal"},
		{[]string{"help", "rootfs"}, "verify"},
		{[]string{"rootfs", "build", "-h"}, "-packages"},
		{[]string{"help", "rootfs", "build"}, "-mirror"},
		{[]string{"rootfs", "verify", "--help"}, "usage: securer-runc rootfs verify"},
		{[]string{"rootfs", "seal", "-h"}, "usage: securer-runc rootfs seal"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := dispatch(tt.args, strings.NewReader(""), &stdout, &stderr)
			if code != exitOK || !strings.Contains(stdout.String(), tt.want) || stderr.Len() != 0 {
				t.Errorf("exit %d, stdout %q, stderr %q; want exit 0 and %q on stdout only", code, stdout.String(), stderr.String(), tt.want)
			}
		})
	}
}

// Usage errors still fail, with the usage on stderr.
func TestUsageErrors(t *testing.T) {
	tests := []struct {
		args []string
		want string // in stderr
	}{
		{nil, "usage: securer-runc COMMAND"},
		{[]string{"frobnicate"}, "unknown command"},
		{[]string{"help", "frobnicate"}, "unknown command"},
		{[]string{"run", "--no-such-flag"}, "usage: securer-runc run"},
		{[]string{"doctor", "--no-such-flag"}, "usage: securer-runc doctor"},
		{[]string{"reap", "--no-such-flag"}, "usage: securer-runc reap"},
		{[]string{"version", "--no-such-flag"}, "usage: securer-runc version"},
		{[]string{"rootfs"}, "usage: securer-runc rootfs SUBCOMMAND"},
		{[]string{"rootfs", "frobnicate"}, "unknown subcommand"},
		{[]string{"rootfs", "frobnicate", "-h"}, "unknown subcommand"},
		{[]string{"rootfs", "verify", "--packages", "x"}, "usage: securer-runc rootfs verify"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := dispatch(tt.args, strings.NewReader(""), &stdout, &stderr)
			if code != exitUsage || !strings.Contains(stderr.String(), tt.want) || stdout.Len() != 0 {
				t.Errorf("exit %d, stdout %q, stderr %q; want exit 2 and %q on stderr only", code, stdout.String(), stderr.String(), tt.want)
			}
		})
	}
}

// SECURER_DEBUG is documented where a user looks for it.
func TestDebugDocumented(t *testing.T) {
	var stdout, stderr bytes.Buffer
	dispatch([]string{"-h"}, strings.NewReader(""), &stdout, &stderr)
	if !strings.Contains(stdout.String(), "SECURER_DEBUG") {
		t.Errorf("securer-runc -h does not mention SECURER_DEBUG:\n%s", stdout.String())
	}
	logLevel := func() slog.Level {
		l, err := (&logFlags{def: slog.LevelWarn}).levelOf()
		if err != nil {
			t.Fatal(err)
		}
		return l
	}
	t.Setenv("SECURER_DEBUG", "1")
	if logLevel() != slog.LevelDebug {
		t.Errorf("SECURER_DEBUG=1: log level %v, want debug", logLevel())
	}
	t.Setenv("SECURER_DEBUG", "")
	if logLevel() != slog.LevelWarn {
		t.Errorf("SECURER_DEBUG unset: log level %v, want warnings only", logLevel())
	}
}

func TestParseFlags(t *testing.T) {
	tests := []struct {
		args           []string
		code           int
		ok             bool
		stdout, stderr string // contained
	}{
		{[]string{"-n", "3"}, exitOK, true, "", ""},
		{[]string{"-h"}, exitOK, false, "usage: test", ""},
		{[]string{"--help"}, exitOK, false, "usage: test", ""},
		{[]string{"-help"}, exitOK, false, "usage: test", ""},
		{[]string{"help"}, exitOK, false, "usage: test", ""},
		{[]string{"-n", "3", "-h"}, exitOK, false, "usage: test", ""},
		{[]string{"-n", "three"}, exitUsage, false, "", "usage: test"},
		{[]string{"--bogus"}, exitUsage, false, "", "usage: test"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			fs := flag.NewFlagSet("test", flag.ContinueOnError)
			fs.Int("n", 0, "a number")
			setUsage(fs, "test [flags]")
			var stdout, stderr bytes.Buffer
			code, ok := parseFlags(fs, tt.args, &stdout, &stderr)
			if code != tt.code || ok != tt.ok || !strings.Contains(stdout.String(), tt.stdout) || !strings.Contains(stderr.String(), tt.stderr) ||
				(tt.stdout == "") != (stdout.Len() == 0) || (tt.stderr == "") != (stderr.Len() == 0) {
				t.Errorf("got %d, %v, stdout %q, stderr %q; want %d, %v, stdout with %q, stderr with %q",
					code, ok, stdout.String(), stderr.String(), tt.code, tt.ok, tt.stdout, tt.stderr)
			}
		})
	}
}
