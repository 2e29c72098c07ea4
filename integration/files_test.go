package integration

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	securer "github.com/securer-runc/securer-runc"
)

func fileCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// TestFilesPutGet: a CSV put into the work dir is read by the code, which
// writes one back; the host fetches the same bytes the code wrote, lists
// it, and is refused links, escaping names and files over the limits.
func TestFilesPutGet(t *testing.T) {
	s := newSession(t, baseConfig())
	ctx := fileCtx(t)
	csv := []byte("x,y\n1,2\n3,4\n")
	if err := s.PutFile(ctx, "in/data.csv", csv); err != nil {
		t.Fatalf("PutFile: %v", err)
	}
	res := mustOK(t, s, `d <- read.csv("in/data.csv"); d$z <- d$x + d$y
		write.csv(d, "out.csv", row.names = FALSE)
		c(getwd(), Sys.getenv("HOME"), as.character(sum(d$z)))`)
	if got := res.Value.Go(); !equalStrings(got, []string{"/tmp/work", "/tmp", "10"}) {
		t.Errorf("the code saw %v, want the work dir, HOME /tmp and 10", got)
	}
	want := mustOK(t, s, `paste(readLines("out.csv"), collapse = "\n")`).Value.Go().(string) + "\n"
	got, err := s.GetFile(ctx, "out.csv")
	if err != nil || string(got) != want {
		t.Fatalf("GetFile: %q, %v; want %q", got, err, want)
	}
	back, err := s.GetFile(ctx, "in/data.csv")
	if err != nil || !bytes.Equal(back, csv) {
		t.Errorf("GetFile of the input: %q, %v", back, err)
	}
	// Binary data of every byte value, big enough for many base64 lines,
	// crosses unchanged both ways, and R sees the same bytes.
	bin := make([]byte, 3<<20)
	for i := range bin {
		bin[i] = byte(i*7 + i/256)
	}
	if err := s.PutFile(ctx, "bin/blob", bin); err != nil {
		t.Fatalf("PutFile of 3 MiB: %v", err)
	}
	res = mustOK(t, s, `x <- readBin("bin/blob", "raw", 4e6); file.remove("bin/blob"); dir.create("bin2")
		writeBin(rev(x), "bin2/blob"); c(length(x), sum(as.integer(x[1:1000])))`)
	var sum int
	for _, b := range bin[:1000] {
		sum += int(b)
	}
	if got, want := fmt.Sprint(res.Value.Go()), fmt.Sprint([]int{len(bin), sum}); got != want {
		t.Errorf("R read the put blob as %v, want [%d %v]", res.Value.Go(), len(bin), sum)
	}
	rev, err := s.GetFile(ctx, "bin2/blob")
	if err != nil || len(rev) != len(bin) || rev[0] != bin[len(bin)-1] || rev[len(rev)-1] != bin[0] {
		t.Fatalf("GetFile of 3 MiB: %d bytes, %v", len(rev), err)
	}
	if err := s.PutFile(ctx, "bin2/blob", nil); err != nil {
		t.Fatal(err)
	}
	if empty, err := s.GetFile(ctx, "bin2/blob"); err != nil || len(empty) != 0 {
		t.Errorf("an empty file: %d bytes, %v", len(empty), err)
	}
	mustOK(t, s, `unlink(c("bin", "bin2"), recursive = TRUE)`)
	list, err := s.ListFiles(ctx)
	if err != nil {
		t.Fatalf("ListFiles: %v", err)
	}
	wantList := []securer.FileInfo{{Name: "in/data.csv", Size: int64(len(csv))}, {Name: "out.csv", Size: int64(len(want))}}
	if len(list) != 2 || list[0] != wantList[0] || list[1] != wantList[1] {
		t.Errorf("ListFiles = %+v, want %+v", list, wantList)
	}

	mustOK(t, s, `file.symlink("/etc/passwd", "x"); dir.create("d"); file.symlink("/etc", "d/etc"); file.symlink("/etc", "up"); invisible(NULL)`)
	refused := []struct {
		what string
		do   func() error
		msg  string
	}{
		{"get a link", func() error { _, err := s.GetFile(ctx, "x"); return err }, "not a regular file"},
		{"get through a linked dir", func() error { _, err := s.GetFile(ctx, "up/passwd"); return err }, "not a directory"},
		{"get a dir", func() error { _, err := s.GetFile(ctx, "d"); return err }, "not a regular file"},
		{"put over a link", func() error { return s.PutFile(ctx, "x", []byte("no")) }, "not a regular file"},
		{"put through a linked dir", func() error { return s.PutFile(ctx, "up/evil", []byte("no")) }, "not a directory"},
		{"get ../x", func() error { _, err := s.GetFile(ctx, "../x"); return err }, "not . or .."},
		{"put ../x", func() error { return s.PutFile(ctx, "../x", []byte("no")) }, "not . or .."},
		{"absolute", func() error { _, err := s.GetFile(ctx, "/etc/passwd"); return err }, "components"},
		{"missing", func() error { _, err := s.GetFile(ctx, "nope.txt"); return err }, "no such file"},
		{"oversize", func() error { return s.PutFile(ctx, "big", make([]byte, securer.MaxFileBytes+1)) }, "limit per file"},
		{"oversize in R", func() error {
			mustOK(t, s, `writeBin(raw(4 * 1024^2 + 1), "big.bin")`)
			_, err := s.GetFile(ctx, "big.bin")
			return err
		}, "limit per file"},
	}
	for _, c := range refused {
		err := c.do()
		if !errors.Is(err, securer.ErrFileRefused) || !strings.Contains(err.Error(), c.msg) {
			t.Errorf("%s: %v, want ErrFileRefused saying %q", c.what, err, c.msg)
		}
	}
	// Nothing was written through the links, and the session still works.
	if res := mustOK(t, s, `c(file.exists("/etc/evil"), Sys.readlink("x"))`); !equalStrings(res.Value.Go(), []string{"FALSE", "/etc/passwd"}) {
		t.Errorf("after the refusals: %v", res.Value.Go())
	}

	// Inputs over the count limit are refused before anything runs.
	var many []securer.File
	for i := range securer.MaxRequestFiles + 1 {
		many = append(many, securer.File{Name: "f" + string(rune('a'+i)), Data: []byte("1")})
	}
	_, err = s.ExecuteWith(ctx, `1`, securer.ExecOptions{Inputs: many})
	if !errors.Is(err, securer.ErrFileRefused) || !strings.Contains(err.Error(), "at most 16") {
		t.Errorf("17 inputs: %v", err)
	}
}

// equalStrings compares a character vector's Go form with want.
func equalStrings(got any, want []string) bool {
	var g []string
	switch v := got.(type) {
	case []string:
		g = v
	case []any:
		for _, e := range v {
			s, _ := e.(string)
			g = append(g, s)
		}
	default:
		return false
	}
	if len(g) != len(want) {
		return false
	}
	for i := range g {
		if g[i] != want[i] {
			return false
		}
	}
	return true
}

// TestFilesFresh: a fresh execution gets its inputs and gives back what it
// wrote; the sweep after it empties the work dir and makes it again.
func TestFilesFresh(t *testing.T) {
	s := newSession(t, baseConfig())
	ctx := fileCtx(t)
	if err := s.PutFile(ctx, "kept.txt", []byte("warm\n")); err != nil {
		t.Fatalf("PutFile: %v", err)
	}
	res, err := s.ExecuteWith(ctx, `x <- readLines("in.txt"); dir.create("sub"); writeLines(toupper(x), "sub/out.txt")
		writeLines("a", "a.txt"); file.symlink("/etc/passwd", "link"); getwd()`, securer.ExecOptions{
		Fresh: true, CollectOutputs: true,
		Inputs: []securer.File{{Name: "in.txt", Data: []byte("hello\n")}},
	})
	if err != nil || res.Value.Go() != "/tmp/work" {
		t.Fatalf("fresh execution: %v, %v", err, res.Value.Go())
	}
	got := map[string]string{}
	for _, f := range res.Files {
		got[f.Name] = string(f.Data)
	}
	if len(got) != 2 || got["sub/out.txt"] != "HELLO\n" || got["a.txt"] != "a\n" || res.FilesDropped != 0 {
		t.Errorf("collected %v (dropped %d), want sub/out.txt and a.txt only", got, res.FilesDropped)
	}
	// The sweep removed the work dir's files (the put one too) and made
	// the dir again.
	res = mustOK(t, s, `c(getwd(), dir.exists("/tmp/work"), length(list.files("/tmp/work", all.files = TRUE, no.. = TRUE)))`)
	if !equalStrings(res.Value.Go(), []string{"/tmp/work", "TRUE", "0"}) {
		t.Errorf("after the sweep: %v", res.Value.Go())
	}
	list, err := s.ListFiles(ctx)
	if err != nil || len(list) != 0 {
		t.Errorf("ListFiles after the sweep: %v, %v", list, err)
	}
	// A plain execution collects only what it changed.
	if err := s.PutFile(ctx, "same.txt", []byte("s")); err != nil {
		t.Fatal(err)
	}
	res, err = s.ExecuteWith(ctx, `writeLines("n", "new.txt"); invisible(readLines("same.txt"))`,
		securer.ExecOptions{CollectOutputs: true, Inputs: []securer.File{{Name: "in2.txt", Data: []byte("i")}}})
	if err != nil || len(res.Files) != 1 || res.Files[0].Name != "new.txt" {
		t.Errorf("plain collect: %v, %+v", err, res.Files)
	}
	// Over the limits: 16 files at most, none over 4 MiB, and links are
	// not collected; the rest are counted.
	res, err = s.ExecuteWith(ctx, `for (i in 1:17) writeLines("x", sprintf("m%02d.txt", i))
		writeBin(raw(4 * 1024^2 + 1), "big.bin"); file.symlink("/etc/passwd", "zlink"); writeLines("s", "with space.txt")`,
		securer.ExecOptions{Fresh: true, CollectOutputs: true})
	if err != nil || len(res.Files) != 16 || res.FilesDropped != 3 || res.Files[0].Name != "m01.txt" {
		names := []string{}
		for _, f := range res.Files {
			names = append(names, f.Name)
		}
		t.Errorf("collect over the limits: %v, %v, dropped %d; want m01..m16 and 3 dropped", err, names, res.FilesDropped)
	}
}
