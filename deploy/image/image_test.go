package main

import (
	"archive/tar"
	"bytes"
	"context"
	"debug/elf"
	"encoding/binary"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// fakeELF is a minimal x86-64 ELF executable header; with interp it
// asks for a dynamic loader like a cgo binary built without -static.
func fakeELF(t *testing.T, interp bool) []byte {
	t.Helper()
	var b bytes.Buffer
	h := elf.Header64{
		Type: uint16(elf.ET_EXEC), Machine: uint16(elf.EM_X86_64), Version: uint32(elf.EV_CURRENT),
		Phoff: 64, Ehsize: 64, Phentsize: 56, Phnum: 1,
	}
	copy(h.Ident[:], elf.ELFMAG)
	h.Ident[elf.EI_CLASS], h.Ident[elf.EI_DATA], h.Ident[elf.EI_VERSION] = byte(elf.ELFCLASS64), byte(elf.ELFDATA2LSB), byte(elf.EV_CURRENT)
	p := elf.Prog64{Type: uint32(elf.PT_LOAD), Flags: uint32(elf.PF_R | elf.PF_X), Align: 0x1000}
	if interp {
		p.Type = uint32(elf.PT_INTERP)
	}
	for _, v := range []any{h, p} {
		if err := binary.Write(&b, binary.LittleEndian, v); err != nil {
			t.Fatal(err)
		}
	}
	b.Write(make([]byte, 256))
	return b.Bytes()
}

func writeFile(t *testing.T, name string, body []byte, mode os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(name), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(name, body, mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(name, mode); err != nil { // the umask may have cut it
		t.Fatal(err)
	}
}

// fixture lays out a fake binary and a small R rootfs with a hard link
// and a symlink, as scripts/build-rootfs.sh leaves them.
func fixture(t *testing.T) (bin, rootfs string) {
	t.Helper()
	dir := t.TempDir()
	bin = filepath.Join(dir, "securer-runc")
	writeFile(t, bin, fakeELF(t, false), 0o755)
	rootfs = filepath.Join(dir, "rootfs-dir")
	writeFile(t, filepath.Join(rootfs, "manifest.json"), []byte(`{"format": 1, "r_version": "4.2.2"}`), 0o644)
	writeFile(t, filepath.Join(rootfs, "rootfs/usr/bin/Rscript"), []byte("#!/bin/sh\n"), 0o755)
	writeFile(t, filepath.Join(rootfs, "rootfs/usr/lib/R/bin/R"), []byte("R\n"), 0o755)
	if err := os.Link(filepath.Join(rootfs, "rootfs/usr/lib/R/bin/R"), filepath.Join(rootfs, "rootfs/usr/bin/R")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("usr/bin", filepath.Join(rootfs, "rootfs/bin")); err != nil {
		t.Fatal(err)
	}
	return bin, rootfs
}

// entries lists the flattened image's files by name.
func entries(t *testing.T, img v1.Image) map[string]*tar.Header {
	t.Helper()
	rc := mutate.Extract(img)
	defer rc.Close()
	tr := tar.NewReader(rc)
	got := map[string]*tar.Header{}
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return got
		}
		if err != nil {
			t.Fatal(err)
		}
		got[strings.TrimSuffix(h.Name, "/")] = h
	}
}

func TestBuildThenVerify(t *testing.T) {
	ctx := context.Background()
	bin, rootfs := fixture(t)
	out := filepath.Join(t.TempDir(), "image")
	desc, err := Build(ctx, BuildOptions{Binary: bin, RootFS: rootfs, Out: out, Name: "example.org/securer-runc:v1", Arch: "amd64"})
	if err != nil {
		t.Fatal(err)
	}
	rep, err := Verify(ctx, out, false)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Name != "example.org/securer-runc:v1" || rep.Layers != 2 || rep.RVersion != "4.2.2" || rep.BinarySize != int64(len(fakeELF(t, false))) {
		t.Errorf("report %+v", rep)
	}
	if want := []string{BinaryPath, "serve", "--listen", "unix:" + SocketPath}; strings.Join(rep.Command, " ") != strings.Join(want, " ") {
		t.Errorf("command %q, want %q", rep.Command, want)
	}

	if err := filepath.WalkDir(out, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		if want := fs.FileMode(0o644); !d.IsDir() && info.Mode().Perm() != want {
			t.Errorf("%s: mode %v, want %v", p, info.Mode().Perm(), want)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}

	idx, err := layout.ImageIndexFromPath(out)
	if err != nil {
		t.Fatal(err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	if len(im.Manifests) != 1 || im.Manifests[0].Digest != desc.Digest || im.Manifests[0].Annotations["org.opencontainers.image.ref.name"] != "v1" {
		t.Fatalf("index %+v, want the one manifest %s tagged v1", im.Manifests, desc.Digest)
	}
	img, err := idx.Image(desc.Digest)
	if err != nil {
		t.Fatal(err)
	}
	files := entries(t, img)
	for name, want := range map[string]byte{
		"usr/local/bin/securer-runc":                  tar.TypeReg,
		"var/lib/securer-runc/manifest.json":          tar.TypeReg,
		"var/lib/securer-runc/rootfs/bin":             tar.TypeSymlink,
		"var/lib/securer-runc/rootfs/usr/lib/R/bin/R": tar.TypeLink,
		"tmp": tar.TypeDir,
		"var/lib/securer-runc/rootfs/usr/bin/Rscript": tar.TypeReg,
		"var/lib/securer-runc/rootfs/usr/lib/R/bin":   tar.TypeDir,
		"var/lib/securer-runc/rootfs/usr/bin/R":       tar.TypeReg, // first in lexical order
		"var/lib":                                     tar.TypeDir,
		"etc/passwd":                                  tar.TypeReg,
	} {
		h, ok := files[name]
		if !ok {
			t.Errorf("%s missing from the image", name)
			continue
		}
		if h.Typeflag != want {
			t.Errorf("%s: type %c, want %c", name, h.Typeflag, want)
		}
	}
	if h := files["var/lib/securer-runc/rootfs/usr/lib/R/bin/R"]; h != nil && h.Linkname != "var/lib/securer-runc/rootfs/usr/bin/R" {
		t.Errorf("hard link to %q, want to usr/bin/R", h.Linkname)
	}
	if h := files["tmp"]; h != nil && h.Mode&0o7777 != 0o1777 {
		t.Errorf("/tmp mode %o, want 1777", h.Mode)
	}

	// A second build replaces the layout and, from the same inputs, gives
	// the same image.
	again, err := Build(ctx, BuildOptions{Binary: bin, RootFS: rootfs, Out: out, Name: "example.org/securer-runc:v1", Arch: "amd64"})
	if err != nil {
		t.Fatal(err)
	}
	if again.Digest != desc.Digest {
		t.Errorf("rebuild gave %s, first build %s: not reproducible", again.Digest, desc.Digest)
	}
}

func TestFullName(t *testing.T) {
	for in, want := range map[string]string{
		"securer-runc":                   "docker.io/library/securer-runc",
		"team/securer-runc":              "docker.io/team/securer-runc",
		"example.org/team/securer-runc":  "example.org/team/securer-runc",
		"registry:5000/securer-runc":     "registry:5000/securer-runc",
		"localhost/securer-runc":         "localhost/securer-runc",
		"docker.io/library/securer-runc": "docker.io/library/securer-runc",
	} {
		if got := fullName(in); got != want {
			t.Errorf("fullName(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestBuildRefuses(t *testing.T) {
	ctx := context.Background()
	bin, rootfs := fixture(t)
	dir := t.TempDir()
	dynamic := filepath.Join(dir, "dynamic")
	writeFile(t, dynamic, fakeELF(t, true), 0o755)
	script := filepath.Join(dir, "script")
	writeFile(t, script, []byte("#!/bin/sh\n"), 0o755)
	notExec := filepath.Join(dir, "not-exec")
	writeFile(t, notExec, fakeELF(t, false), 0o644)
	occupied := filepath.Join(dir, "occupied")
	writeFile(t, filepath.Join(occupied, "precious"), []byte("keep"), 0o644)

	for _, tc := range []struct {
		name string
		o    BuildOptions
		want string
	}{
		{"dynamic binary", BuildOptions{Binary: dynamic, RootFS: rootfs}, "dynamically linked"},
		{"not ELF", BuildOptions{Binary: script, RootFS: rootfs}, "not an ELF"},
		{"not executable", BuildOptions{Binary: notExec, RootFS: rootfs}, "not an executable"},
		{"no rootfs manifest", BuildOptions{Binary: bin, RootFS: dir}, "R rootfs"},
		{"out is not a layout", BuildOptions{Binary: bin, RootFS: rootfs, Out: occupied}, "not an OCI image layout"},
		{"no tag", BuildOptions{Binary: bin, RootFS: rootfs, Name: "registry:5000/securer-runc"}, "NAME:TAG"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := tc.o
			if o.Out == "" {
				o.Out = filepath.Join(t.TempDir(), "image")
			}
			if o.Name == "" {
				o.Name = "securer-runc:test"
			}
			o.Arch = "amd64"
			_, err := Build(ctx, o)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Build: %v, want an error saying %q", err, tc.want)
			}
		})
	}
	if b, err := os.ReadFile(filepath.Join(occupied, "precious")); err != nil || string(b) != "keep" {
		t.Errorf("a refused --out was touched: %q, %v", b, err)
	}
}

type file struct {
	name string
	body []byte
	mode int64
}

// writeLayout writes an image made of cfg and one layer of files, the
// way another tool might have.
func writeLayout(t *testing.T, cfg v1.Config, files []file) string {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, f := range files {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: f.name, Mode: f.mode, Size: int64(len(f.body))}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(f.body); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	layer, err := tarball.LayerFromReader(bytes.NewReader(buf.Bytes()), tarball.WithMediaType(types.OCILayer))
	if err != nil {
		t.Fatal(err)
	}
	img := mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), types.OCIConfigJSON)
	if img, err = mutate.AppendLayers(img, layer); err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture, cf.Config = "linux", "amd64", cfg
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "layout")
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.AppendImage(img, layout.WithAnnotations(map[string]string{
		"org.opencontainers.image.ref.name": "t", "io.containerd.image.name": "securer-runc:t",
	})); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestVerifyRefuses(t *testing.T) {
	good := v1.Config{Entrypoint: Entrypoint, Cmd: Cmd}
	static := fakeELF(t, false)
	manifest := []byte(`{"format": 1, "r_version": "4.2.2"}`)
	complete := []file{
		{"usr/local/bin/securer-runc", static, 0o755},
		{"var/lib/securer-runc/manifest.json", manifest, 0o644},
		{"var/lib/securer-runc/rootfs/usr/bin/Rscript", []byte("#!/bin/sh\n"), 0o755},
	}
	without := func(i int) []file { return append(complete[:i:i], complete[i+1:]...) }
	with := func(i int, f file) []file {
		fs := append([]file(nil), complete...)
		fs[i] = f
		return fs
	}
	for _, tc := range []struct {
		name  string
		cfg   v1.Config
		files []file
		want  string // "" for a good image
	}{
		{"complete", good, complete, ""},
		{"other entrypoint", v1.Config{Entrypoint: []string{"/bin/sh"}, Cmd: Cmd}, complete, "entrypoint"},
		{"no --listen", v1.Config{Entrypoint: Entrypoint, Cmd: []string{"--stdio"}}, complete, "--listen"},
		{"no binary", good, without(0), "no " + BinaryPath},
		{"binary not executable", good, with(0, file{"usr/local/bin/securer-runc", static, 0o644}), "not an executable"},
		{"binary dynamic", good, with(0, file{"usr/local/bin/securer-runc", fakeELF(t, true), 0o755}), "dynamically linked"},
		{"no rootfs manifest", good, without(1), "rootfs manifest"},
		{"rootfs manifest not JSON", good, with(1, file{"var/lib/securer-runc/manifest.json", []byte("nope"), 0o644}), "not a rootfs manifest"},
		{"no Rscript", good, without(2), "Rscript"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := writeLayout(t, tc.cfg, tc.files)
			_, err := Verify(context.Background(), dir, false)
			if tc.want == "" {
				if err != nil {
					t.Fatalf("Verify: %v", err)
				}
				return
			}
			var v *VerifyError
			if !errors.As(err, &v) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Verify: %v, want a VerifyError saying %q", err, tc.want)
			}
		})
	}
	if _, err := Verify(context.Background(), t.TempDir(), false); err == nil || !strings.Contains(err.Error(), "not an OCI image layout") {
		t.Errorf("Verify of an empty directory: %v", err)
	}
}
