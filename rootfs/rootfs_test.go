package rootfs

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// scriptManifest is a manifest exactly as scripts/build-rootfs.sh writes it.
const scriptManifest = `{
  "format": 1,
  "suite": "bookworm",
  "r_version": "4.2.2.20221110-2",
  "packages": [
    {"name": "r-base-core", "version": "4.2.2.20221110-2"},
    {"name": "r-cran-jsonlite", "version": "1.8.4+dfsg-1"}
  ],
  "requested": "r-base-core r-cran-jsonlite r-cran-processx",
  "build_date": "2026-11-27T06:30:42Z",
  "build_key": "02e493052249ab4858cb17737d24d590778b025d9842fe86676c11daf5484557",
  "size_bytes": 220086272,
  "digest": ""
}
`

func me() uint32 { return uint32(os.Getuid()) }

// makeTree builds a small rootfs that passes check for the current user and
// returns its DIR.
func makeTree(t testing.TB) string {
	t.Helper()
	dir := t.TempDir()
	root := RootfsPath(dir)
	must(t, os.Mkdir(root, 0o755))
	for _, mp := range Mountpoints() {
		must(t, os.MkdirAll(filepath.Join(root, mp), 0o755))
	}
	for _, exe := range Executables() {
		p := filepath.Join(root, exe)
		must(t, os.MkdirAll(filepath.Dir(p), 0o755))
		must(t, os.WriteFile(p, []byte("#!/bin/sh\n"+exe+"\n"), 0o755))
	}
	must(t, os.MkdirAll(filepath.Join(root, "etc"), 0o755))
	must(t, os.WriteFile(filepath.Join(root, "etc/hostname"), nil, 0o644))
	must(t, os.WriteFile(filepath.Join(root, "etc/passwd"), []byte("root:x:0:0::/root:/bin/sh\n"), 0o644))
	must(t, os.Symlink("usr/bin", filepath.Join(root, "bin")))
	must(t, os.WriteFile(ManifestPath(dir), []byte(scriptManifest), 0o644))
	return dir
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func TestLayout(t *testing.T) {
	if got := RootfsPath(""); got != "/var/lib/securer-runc/rootfs" {
		t.Errorf("RootfsPath(\"\") = %q", got)
	}
	if got := ManifestPath("/x"); got != "/x/manifest.json" {
		t.Errorf("ManifestPath(/x) = %q", got)
	}
}

func TestLoadManifest(t *testing.T) {
	good := strings.Replace(scriptManifest, `"digest": ""`, `"digest": "sha256:`+strings.Repeat("ab", 32)+`"`, 1)
	tests := []struct {
		name    string
		content string // "" means no file
		wantErr error
		wantMsg string
	}{
		{name: "script output", content: scriptManifest},
		{name: "sealed", content: good},
		{name: "missing", wantErr: ErrNotBuilt, wantMsg: "manifest.json is missing"},
		{name: "unknown field", content: strings.Replace(scriptManifest, `"format": 1,`, `"format": 1, "extra": true,`, 1),
			wantErr: ErrInvalid, wantMsg: `unknown field "extra"`},
		{name: "unknown nested field", content: strings.Replace(scriptManifest, `"name": "r-base-core"`, `"name": "r-base-core", "arch": "amd64"`, 1),
			wantErr: ErrInvalid, wantMsg: `unknown field "packages[].arch"`},
		{name: "duplicate field", content: strings.Replace(scriptManifest, `"format": 1,`, `"format": 1, "format": 1,`, 1),
			wantErr: ErrInvalid, wantMsg: `duplicate field "format"`},
		{name: "field case differs", content: strings.Replace(scriptManifest, `"suite"`, `"Suite"`, 1),
			wantErr: ErrInvalid, wantMsg: `unknown field "Suite"`},
		{name: "trailing data", content: scriptManifest + "{}", wantErr: ErrInvalid, wantMsg: "trailing data"},
		{name: "wrong type", content: strings.Replace(scriptManifest, `"size_bytes": 220086272`, `"size_bytes": "big"`, 1),
			wantErr: ErrInvalid, wantMsg: "size_bytes"},
		{name: "unknown format", content: strings.Replace(scriptManifest, `"format": 1`, `"format": 2`, 1),
			wantErr: ErrInvalid, wantMsg: "format 2 is not supported"},
		{name: "empty r_version", content: strings.Replace(scriptManifest, `"4.2.2.20221110-2",`, `"",`, 1),
			wantErr: ErrInvalid, wantMsg: "r_version is empty"},
		{name: "bad digest", content: strings.Replace(scriptManifest, `"digest": ""`, `"digest": "md5:abc"`, 1),
			wantErr: ErrInvalid, wantMsg: "not sha256"},
		{name: "bad date", content: strings.Replace(scriptManifest, `2026-11-27T06:30:42Z`, `yesterday`, 1),
			wantErr: ErrInvalid, wantMsg: "yesterday"},
		{name: "not json", content: "digest=", wantErr: ErrInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			if tt.content != "" {
				must(t, os.WriteFile(ManifestPath(dir), []byte(tt.content), 0o644))
			}
			m, err := LoadManifest(dir)
			if tt.wantErr == nil {
				if err != nil {
					t.Fatalf("LoadManifest: %v", err)
				}
				if m.RVersion != "4.2.2.20221110-2" || len(m.Packages) != 2 || m.Packages[1].Version != "1.8.4+dfsg-1" ||
					m.SizeBytes != 220086272 || !m.BuildDate.Equal(time.Date(2026, 11, 27, 6, 30, 42, 0, time.UTC)) {
					t.Errorf("decoded %+v", m)
				}
				return
			}
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if !strings.Contains(err.Error(), tt.wantMsg) {
				t.Errorf("err = %q, want it to mention %q", err, tt.wantMsg)
			}
		})
	}
}

func TestEncodeManifestKeepsScriptContract(t *testing.T) {
	m, err := parseManifest([]byte(scriptManifest))
	must(t, err)
	m.Digest = "sha256:" + strings.Repeat("0", 64)
	out, err := encodeManifest(m)
	must(t, err)
	// The script decides "up to date" by grepping for this exact text.
	if !strings.Contains(string(out), `"build_key": "02e493052249ab4858cb17737d24d590778b025d9842fe86676c11daf5484557"`) {
		t.Errorf("encoded manifest lost the script's build_key layout:\n%s", out)
	}
	if !strings.Contains(string(out), `"build_date": "2026-11-27T06:30:42Z"`) || !strings.Contains(string(out), `"1.8.4+dfsg-1"`) {
		t.Errorf("encoded manifest changed a field's text:\n%s", out)
	}
	back, err := parseManifest(out)
	must(t, err)
	if fmt.Sprint(back) != fmt.Sprint(m) {
		t.Errorf("round trip: got %+v, want %+v", back, m)
	}
}

func TestDigestChanges(t *testing.T) {
	isRoot := os.Getuid() == 0
	tests := []struct {
		name     string
		root     bool // needs root
		mutate   func(t *testing.T, root string) error
		unchange bool // the digest must NOT change
	}{
		{name: "content", mutate: func(t *testing.T, r string) error {
			return os.WriteFile(filepath.Join(r, "etc/passwd"), []byte("root:x:0:0::/root:/bin/bash\n"), 0o644)
		}},
		{name: "mode", mutate: func(t *testing.T, r string) error { return os.Chmod(filepath.Join(r, "etc/passwd"), 0o600) }},
		{name: "setuid", mutate: func(t *testing.T, r string) error {
			return os.Chmod(filepath.Join(r, "usr/bin/Rscript"), 0o755|os.ModeSetuid)
		}},
		{name: "sticky dir", mutate: func(t *testing.T, r string) error { return os.Chmod(filepath.Join(r, "tmp"), 0o755|os.ModeSticky) }},
		{name: "symlink target", mutate: func(t *testing.T, r string) error {
			p := filepath.Join(r, "bin")
			if err := os.Remove(p); err != nil {
				return err
			}
			return os.Symlink("/usr/bin", p)
		}},
		{name: "rename", mutate: func(t *testing.T, r string) error {
			return os.Rename(filepath.Join(r, "etc/hostname"), filepath.Join(r, "etc/hostnamf"))
		}},
		{name: "new empty file", mutate: func(t *testing.T, r string) error { return os.WriteFile(filepath.Join(r, "etc/x"), nil, 0o644) }},
		{name: "new empty dir", mutate: func(t *testing.T, r string) error { return os.Mkdir(filepath.Join(r, "etc/x"), 0o755) }},
		{name: "file becomes fifo", mutate: func(t *testing.T, r string) error {
			p := filepath.Join(r, "etc/hostname")
			if err := os.Remove(p); err != nil {
				return err
			}
			return unix.Mkfifo(p, 0o644)
		}},
		{name: "content moved between files", mutate: func(t *testing.T, r string) error {
			// Same bytes overall, different split: must differ.
			if err := os.WriteFile(filepath.Join(r, "etc/hostname"), []byte("r"), 0o644); err != nil {
				return err
			}
			return os.WriteFile(filepath.Join(r, "etc/passwd"), []byte("oot:x:0:0::/root:/bin/sh\n"), 0o644)
		}},
		{name: "xattr", mutate: func(t *testing.T, r string) error {
			err := unix.Lsetxattr(filepath.Join(r, "etc/passwd"), "user.securer", []byte("1"), 0)
			if errors.Is(err, unix.ENOTSUP) || errors.Is(err, unix.EOPNOTSUPP) {
				t.Skip("no user xattrs on this file system")
			}
			return err
		}},
		{name: "owner", root: true, mutate: func(t *testing.T, r string) error {
			return os.Lchown(filepath.Join(r, "etc/passwd"), 1000, 1000)
		}},
		{name: "device numbers", root: true, mutate: func(t *testing.T, r string) error {
			p := filepath.Join(r, "etc/hostname")
			if err := os.Remove(p); err != nil {
				return err
			}
			return unix.Mknod(p, unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3)))
		}},
		{name: "mtime only", unchange: true, mutate: func(t *testing.T, r string) error {
			old := time.Unix(1e9, 0)
			return os.Chtimes(filepath.Join(r, "etc/passwd"), old, old)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.root && !isRoot {
				t.Skip("needs root")
			}
			root := RootfsPath(makeTree(t))
			ctx := context.Background()
			before, err := Digest(ctx, root)
			must(t, err)
			again, err := Digest(ctx, root)
			must(t, err)
			if before != again {
				t.Fatalf("digest not stable: %s then %s", before, again)
			}
			must(t, tt.mutate(t, root))
			after, err := Digest(ctx, root)
			must(t, err)
			if changed := after != before; changed == tt.unchange {
				t.Errorf("digest before %s, after %s; want changed=%v", before, after, !tt.unchange)
			}
		})
	}
}

func TestDigestDeviceNodes(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("needs root")
	}
	root := t.TempDir()
	must(t, unix.Mknod(filepath.Join(root, "null"), unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3))))
	a, err := Digest(context.Background(), root)
	must(t, err)
	must(t, os.Remove(filepath.Join(root, "null")))
	must(t, unix.Mknod(filepath.Join(root, "null"), unix.S_IFCHR|0o666, int(unix.Mkdev(1, 5))))
	b, err := Digest(context.Background(), root)
	must(t, err)
	if a == b {
		t.Errorf("changing a device's minor number left the digest at %s", a)
	}
}

// TestDigestFormat pins the documented stream format, so an accidental
// change (which would invalidate every sealed rootfs) fails here.
func TestDigestFormat(t *testing.T) {
	root := t.TempDir()
	must(t, os.Chmod(root, 0o755))
	must(t, os.Mkdir(filepath.Join(root, "d"), 0o750))
	must(t, os.WriteFile(filepath.Join(root, "d/f"), []byte("hello"), 0o755))
	must(t, os.Chmod(filepath.Join(root, "d/f"), os.ModeSetuid|0o755)) // 4755, umask-proof
	must(t, os.Symlink("/etc/x", filepath.Join(root, "l")))

	var st unix.Stat_t
	rec := func(typ, perm, rel, detail string) string {
		must(t, unix.Lstat(filepath.Join(root, rel), &st))
		return fmt.Sprintf("%s\x00%s\x00%d\x00%d\x00%s\x00%s\x000\x00\n", typ, perm, st.Uid, st.Gid, rel, detail)
	}
	sum := sha256.Sum256([]byte("hello"))
	stream := digestMagic +
		rec("d", "755", ".", "") +
		rec("d", "750", "d", "") +
		rec("f", "4755", "d/f", hex.EncodeToString(sum[:])) +
		rec("l", "777", "l", "/etc/x")
	want := sha256.Sum256([]byte(stream))

	got, err := Digest(context.Background(), root)
	must(t, err)
	if got != "sha256:"+hex.EncodeToString(want[:]) {
		t.Errorf("Digest = %s, want sha256:%x", got, want)
	}
}

func TestDigestErrors(t *testing.T) {
	dir := makeTree(t)
	root := RootfsPath(dir)

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Digest(ctx, root); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: err = %v, want context.Canceled", err)
	}

	link := filepath.Join(dir, "link")
	must(t, os.Symlink(root, link))
	if _, err := Digest(context.Background(), link); err == nil || !strings.Contains(err.Error(), "not a directory") {
		t.Errorf("symlinked root: err = %v, want refusal", err)
	}

	if _, err := Digest(context.Background(), filepath.Join(dir, "nope")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing root: err = %v, want ErrNotExist", err)
	}

	if os.Getuid() != 0 { // root reads anything
		p := filepath.Join(root, "etc/passwd")
		must(t, os.Chmod(p, 0))
		if _, err := Digest(context.Background(), root); err == nil || !strings.Contains(err.Error(), "etc/passwd") {
			t.Errorf("unreadable file: err = %v, want it named", err)
		}
	}
}

func TestCheck(t *testing.T) {
	tests := []struct {
		name    string
		mutate  func(t *testing.T, dir string)
		owner   func() uint32 // default: the current user
		wantErr error
		wantMsg string
	}{
		{name: "ok"},
		{name: "no rootfs", mutate: func(t *testing.T, d string) { must(t, os.RemoveAll(RootfsPath(d))) },
			wantErr: ErrNotBuilt, wantMsg: "rootfs does not exist"},
		{name: "no dir", mutate: func(t *testing.T, d string) { must(t, os.RemoveAll(d)) },
			wantErr: ErrNotBuilt, wantMsg: "does not exist"},
		{name: "no manifest", mutate: func(t *testing.T, d string) { must(t, os.Remove(ManifestPath(d))) },
			wantErr: ErrNotBuilt, wantMsg: "securer-runc rootfs build"},
		{name: "bad manifest", mutate: func(t *testing.T, d string) { must(t, os.WriteFile(ManifestPath(d), []byte("{}"), 0o644)) },
			wantErr: ErrInvalid, wantMsg: "format 0"},
		{name: "rootfs is a symlink", mutate: func(t *testing.T, d string) {
			must(t, os.Rename(RootfsPath(d), filepath.Join(d, "real")))
			must(t, os.Symlink(filepath.Join(d, "real"), RootfsPath(d)))
		}, wantErr: ErrInvalid, wantMsg: "is a symlink"},
		{name: "rootfs is a file", mutate: func(t *testing.T, d string) {
			must(t, os.RemoveAll(RootfsPath(d)))
			must(t, os.WriteFile(RootfsPath(d), nil, 0o644))
		}, wantErr: ErrInvalid, wantMsg: "not a directory"},
		{name: "rootfs world-writable", mutate: func(t *testing.T, d string) { must(t, os.Chmod(RootfsPath(d), 0o757)) },
			wantErr: ErrInvalid, wantMsg: "chmod go-w"},
		{name: "rootfs group-writable", mutate: func(t *testing.T, d string) { must(t, os.Chmod(RootfsPath(d), 0o775)) },
			wantErr: ErrInvalid, wantMsg: "group- or world-writable"},
		{name: "dir world-writable", mutate: func(t *testing.T, d string) { must(t, os.Chmod(d, 0o777)) },
			wantErr: ErrInvalid, wantMsg: "group- or world-writable"},
		{name: "wrong owner", owner: func() uint32 { return me() + 1 }, wantErr: ErrInvalid, wantMsg: "chown"},
		{name: "no R", mutate: func(t *testing.T, d string) { must(t, os.Remove(filepath.Join(RootfsPath(d), "usr/lib/R/bin/exec/R"))) },
			wantErr: ErrInvalid, wantMsg: "usr/lib/R/bin/exec/R is missing"},
		{name: "no Rscript", mutate: func(t *testing.T, d string) { must(t, os.Remove(filepath.Join(RootfsPath(d), "usr/bin/Rscript"))) },
			wantErr: ErrInvalid, wantMsg: "usr/bin/Rscript is missing"},
		{name: "R not executable", mutate: func(t *testing.T, d string) {
			must(t, os.Chmod(filepath.Join(RootfsPath(d), "usr/lib/R/bin/exec/R"), 0o644))
		}, wantErr: ErrInvalid, wantMsg: "not an executable regular file"},
		{name: "Rscript is a symlink", mutate: func(t *testing.T, d string) {
			p := filepath.Join(RootfsPath(d), "usr/bin/Rscript")
			must(t, os.Remove(p))
			must(t, os.Symlink("/usr/bin/true", p))
		}, wantErr: ErrInvalid, wantMsg: "not an executable regular file"},
		{name: "symlinked component", mutate: func(t *testing.T, d string) {
			// usr/lib/R -> a host directory: must not be followed.
			p := filepath.Join(RootfsPath(d), "usr/lib/R")
			must(t, os.Rename(p, filepath.Join(d, "hostR")))
			must(t, os.Symlink(filepath.Join(d, "hostR"), p))
		}, wantErr: ErrInvalid, wantMsg: "usr/lib/R is not a real directory"},
		{name: "missing mountpoint", mutate: func(t *testing.T, d string) { must(t, os.Remove(filepath.Join(RootfsPath(d), "dev/mqueue"))) },
			wantErr: ErrInvalid, wantMsg: "dev/mqueue is missing"},
		{name: "missing nested mountpoint", mutate: func(t *testing.T, d string) {
			must(t, os.RemoveAll(filepath.Join(RootfsPath(d), "run/securer")))
		}, wantErr: ErrInvalid, wantMsg: "run/securer is missing"},
		{name: "mountpoint is a file", mutate: func(t *testing.T, d string) {
			p := filepath.Join(RootfsPath(d), "tmp")
			must(t, os.Remove(p))
			must(t, os.WriteFile(p, nil, 0o644))
		}, wantErr: ErrInvalid, wantMsg: "mountpoint"},
		{name: "mountpoint is a symlink", mutate: func(t *testing.T, d string) {
			p := filepath.Join(RootfsPath(d), "proc")
			must(t, os.Remove(p))
			must(t, os.Symlink("/proc", p))
		}, wantErr: ErrInvalid, wantMsg: "proc is not a directory"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := makeTree(t)
			if tt.mutate != nil {
				tt.mutate(t, dir)
			}
			owner := me()
			if tt.owner != nil {
				owner = tt.owner()
			}
			m, err := check(dir, owner)
			if tt.wantErr == nil {
				if err != nil {
					t.Fatalf("check: %v", err)
				}
				if m.Suite != "bookworm" {
					t.Errorf("manifest %+v", m)
				}
				return
			}
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if !strings.Contains(err.Error(), tt.wantMsg) {
				t.Errorf("err = %q, want it to mention %q", err, tt.wantMsg)
			}
		})
	}
}

func TestSealVerify(t *testing.T) {
	ctx := context.Background()
	dir := makeTree(t)

	if _, err := verify(ctx, dir, me()); !errors.Is(err, ErrNotSealed) {
		t.Fatalf("verify before seal: err = %v, want ErrNotSealed", err)
	}

	m, err := seal(ctx, dir, me())
	must(t, err)
	want, err := Digest(ctx, RootfsPath(dir))
	must(t, err)
	if m.Digest != want {
		t.Errorf("sealed digest %s, tree %s", m.Digest, want)
	}
	fi, err := os.Stat(ManifestPath(dir))
	must(t, err)
	if fi.Mode().Perm() != 0o644 {
		t.Errorf("manifest mode %v, want 0644", fi.Mode().Perm())
	}
	loaded, err := LoadManifest(dir)
	must(t, err)
	orig, err := parseManifest([]byte(scriptManifest))
	must(t, err)
	orig.Digest = want
	if fmt.Sprint(loaded) != fmt.Sprint(orig) {
		t.Errorf("seal changed other fields:\n got %+v\nwant %+v", loaded, orig)
	}
	if leftovers, _ := filepath.Glob(filepath.Join(dir, ".manifest.json.*")); len(leftovers) != 0 {
		t.Errorf("temp files left: %v", leftovers)
	}

	if _, err := verify(ctx, dir, me()); err != nil {
		t.Fatalf("verify after seal: %v", err)
	}
	if _, err := seal(ctx, dir, me()); err != nil {
		t.Fatalf("re-sealing an unchanged tree: %v", err)
	}

	must(t, os.WriteFile(filepath.Join(RootfsPath(dir), "etc/hostname"), []byte("evil"), 0o644))
	_, err = verify(ctx, dir, me())
	var mm *DigestMismatchError
	if !errors.Is(err, ErrDigestMismatch) || !errors.As(err, &mm) {
		t.Fatalf("verify after change: err = %v, want ErrDigestMismatch", err)
	}
	if mm.Manifest != want || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), mm.Actual) {
		t.Errorf("mismatch error does not show both digests: %v", err)
	}
	if _, err := seal(ctx, dir, me()); !errors.Is(err, ErrDigestMismatch) {
		t.Errorf("sealing over a changed tree: err = %v, want ErrDigestMismatch", err)
	}

	ctx2, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := verify(ctx2, dir, me()); !errors.Is(err, context.Canceled) {
		t.Errorf("verify with cancelled ctx: err = %v", err)
	}

	must(t, os.RemoveAll(RootfsPath(dir)))
	if _, err := verify(ctx, dir, me()); !errors.Is(err, ErrNotBuilt) {
		t.Errorf("verify without rootfs: err = %v, want ErrNotBuilt", err)
	}
	if _, err := seal(ctx, dir, me()); !errors.Is(err, ErrNotBuilt) {
		t.Errorf("seal without rootfs: err = %v, want ErrNotBuilt", err)
	}
}

func TestReplaceFileRefusesConcurrentChange(t *testing.T) {
	p := filepath.Join(t.TempDir(), "manifest.json")
	must(t, os.WriteFile(p, []byte("new build"), 0o644))
	err := replaceFile(p, []byte("sealed"), []byte("old build"))
	if err == nil || !strings.Contains(err.Error(), "changed while") {
		t.Fatalf("err = %v, want a concurrent-change refusal", err)
	}
	if b, _ := os.ReadFile(p); string(b) != "new build" {
		t.Errorf("file overwritten: %q", b)
	}
}

// TestRealRootfs exercises the rootfs built on this host, read-only, if
// there is one. Unit tests above never need it.
func TestRealRootfs(t *testing.T) {
	if testing.Short() {
		t.Skip("reads ~200 MB")
	}
	if os.Getuid() != 0 {
		t.Skip("the real rootfs is root-owned and partly unreadable to others")
	}
	if _, err := os.Stat(ManifestPath(DefaultDir)); err != nil {
		t.Skip("no rootfs built in", DefaultDir)
	}
	start := time.Now()
	m, err := check(DefaultDir, 0)
	if err != nil {
		t.Fatalf("Check: %v", err)
	}
	t.Logf("Check: %v, R %s, %d packages", time.Since(start), m.RVersion, len(m.Packages))
	start = time.Now()
	d, err := Digest(context.Background(), RootfsPath(DefaultDir))
	if err != nil {
		t.Fatalf("Digest: %v", err)
	}
	t.Logf("Digest: %v, %s (manifest: %q)", time.Since(start), d, m.Digest)
	if m.Digest != "" && m.Digest != d {
		t.Errorf("real rootfs digest %s does not match its manifest %s", d, m.Digest)
	}
}

func BenchmarkCheck(b *testing.B) {
	dir := makeTree(b)
	for b.Loop() {
		if _, err := check(dir, me()); err != nil {
			b.Fatal(err)
		}
	}
}

// Issue 10 item 14: the image shipped 11 setuid/setgid binaries (su,
// mount, passwd...). Seal strips the bits from a tree not yet sealed;
// Verify and Seal refuse a sealed tree that has any.
func TestSetID(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name string
		rel  string
		mode os.FileMode // extra bits over 0755
	}{
		{"setuid file", "usr/bin/su", os.ModeSetuid},
		{"setgid file", "usr/bin/chage", os.ModeSetgid},
		{"setgid directory", "var/mail", os.ModeSetgid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := makeTree(t)
			p := filepath.Join(RootfsPath(dir), tt.rel)
			must(t, os.MkdirAll(filepath.Dir(p), 0o755))
			if strings.HasPrefix(tt.rel, "var/") {
				must(t, os.Mkdir(p, 0o755))
			} else {
				must(t, os.WriteFile(p, []byte("#!/bin/sh\n"), 0o755))
			}
			must(t, os.Chmod(p, 0o755|tt.mode))
			found, err := setIDEntries(ctx, RootfsPath(dir))
			if err != nil || len(found) != 1 || found[0] != tt.rel {
				t.Fatalf("setIDEntries = %v, %v; want [%s]", found, err, tt.rel)
			}

			// A sealed tree carrying the bit (sealed by an older build) is
			// refused by Verify and by Seal, which must not bless it.
			sealed := strings.Replace(scriptManifest, `"digest": ""`, `"digest": "sha256:`+strings.Repeat("ab", 32)+`"`, 1)
			must(t, os.WriteFile(ManifestPath(dir), []byte(sealed), 0o644))
			for name, f := range map[string]func(context.Context, string, uint32) (*Manifest, error){"verify": verify, "seal": seal} {
				_, err := f(ctx, dir, me())
				if !errors.Is(err, ErrSetID) || !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tt.rel) {
					t.Errorf("%s of a sealed tree with %s: err = %v, want ErrSetID naming it", name, tt.rel, err)
				}
			}

			// Sealing a fresh build strips the bit, keeps the rest, and
			// the result verifies.
			must(t, os.WriteFile(ManifestPath(dir), []byte(scriptManifest), 0o644))
			if _, err := seal(ctx, dir, me()); err != nil {
				t.Fatalf("seal: %v", err)
			}
			fi, err := os.Lstat(p)
			must(t, err)
			if fi.Mode()&(os.ModeSetuid|os.ModeSetgid) != 0 || fi.Mode().Perm() != 0o755 {
				t.Errorf("after seal %s has mode %v, want the bits gone and 0755 kept", tt.rel, fi.Mode())
			}
			if _, err := verify(ctx, dir, me()); err != nil {
				t.Errorf("verify after seal: %v", err)
			}
			// A bit set after sealing is refused by name, before hashing.
			must(t, os.Chmod(p, 0o755|tt.mode))
			if _, err := verify(ctx, dir, me()); !errors.Is(err, ErrSetID) {
				t.Errorf("verify after the bit came back: err = %v, want ErrSetID", err)
			}
		})
	}
}
