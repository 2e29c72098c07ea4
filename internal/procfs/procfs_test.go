package procfs

import (
	"os"
	"os/signal"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

func TestRecord(t *testing.T) {
	rec, err := Record(os.Getpid())
	if err != nil || !RecordAlive(rec) {
		t.Fatalf("own record %q not alive: %v", rec, err)
	}
	for _, bad := range []string{"", "1", "x y", "999999999 1", "1 0"} {
		if RecordAlive(bad) {
			t.Errorf("RecordAlive(%q)", bad)
		}
	}
}

func TestIgnores(t *testing.T) {
	if Ignores(os.Getpid(), unix.SIGUSR2) {
		t.Fatal("SIGUSR2 reads as ignored before it is")
	}
	signal.Ignore(unix.SIGUSR2)
	defer signal.Reset(unix.SIGUSR2)
	if !Ignores(os.Getpid(), unix.SIGUSR2) {
		t.Error("an ignored SIGUSR2 reads as not ignored")
	}
}

func TestFingerprint(t *testing.T) {
	fp, err := Fingerprint(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(fp, "state=running") || Stopped(fp) || !strings.Contains(fp, "Max open files") {
		t.Errorf("fingerprint %q", fp)
	}
	if _, err := Fingerprint(1 << 30); err == nil {
		t.Error("fingerprint of a pid that cannot exist")
	}
}

func TestGroup(t *testing.T) {
	pids, err := Group(unix.Getpgrp())
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, p := range pids {
		found = found || p == os.Getpid()
	}
	if !found {
		t.Errorf("own group %v lacks own pid %d", pids, os.Getpid())
	}
}
