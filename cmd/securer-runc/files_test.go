package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	securer "github.com/securer-runc/securer-runc"
)

func TestWriteOutputs(t *testing.T) {
	dir := t.TempDir()
	outside := t.TempDir()
	if err := os.Symlink(outside, filepath.Join(dir, "linkdir")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(outside, "t"), filepath.Join(dir, "linkfile")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "exists"), []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		err  string // "" when written
	}{
		{"a.txt", ""},
		{"d/e/f.txt", ""},
		{"linkdir/x", "symbolic link"},
		{"linkdir/y/z", "symbolic link"},
		{"linkfile", "exists"},
		{"exists", "exists"},
		{"exists/x", "not a directory"},
		{"../up", "not . or .."},
	}
	for _, c := range cases {
		err := writeOutputs(dir, []securer.File{{Name: c.name, Data: []byte(c.name)}})
		if c.err == "" {
			b, rerr := os.ReadFile(filepath.Join(dir, c.name))
			if err != nil || rerr != nil || string(b) != c.name {
				t.Errorf("%s: %v, %v, %q", c.name, err, rerr, b)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), c.err) {
			t.Errorf("%s: %v, want an error with %q", c.name, err, c.err)
		}
	}
	if ents, _ := os.ReadDir(outside); len(ents) != 0 {
		t.Errorf("written outside DIR: %v", ents)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "exists")); string(b) != "old" {
		t.Errorf("an existing file was replaced: %q", b)
	}
}

func TestReadInputs(t *testing.T) {
	dir := t.TempDir()
	f := filepath.Join(dir, "data.csv")
	if err := os.WriteFile(f, []byte("x\n1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	big := filepath.Join(dir, "big")
	if err := os.WriteFile(big, make([]byte, securer.MaxFileBytes+1), 0o644); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		specs []string
		names []string
		err   string
	}{
		{[]string{f}, []string{"data.csv"}, ""},
		{[]string{f + "=in/d.csv", f + "=e.csv"}, []string{"in/d.csv", "e.csv"}, ""},
		{[]string{f + "=../d.csv"}, nil, "not . or .."},
		{[]string{f + "=/abs"}, nil, "relative"},
		{[]string{big}, nil, "limit"},
		{[]string{filepath.Join(dir, "missing")}, nil, "no such file"},
		{[]string{f, f}, nil, "twice"},
	}
	for _, c := range cases {
		files, err := readInputs(c.specs)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("%v: %v, want an error with %q", c.specs, err, c.err)
			}
			continue
		}
		if err != nil || len(files) != len(c.names) {
			t.Errorf("%v: %v, %d files", c.specs, err, len(files))
			continue
		}
		for i, n := range c.names {
			if files[i].Name != n || string(files[i].Data) != "x\n1\n" {
				t.Errorf("%v: file %d is %q %q", c.specs, i, files[i].Name, files[i].Data)
			}
		}
	}
}
