package main

import (
	"archive/tar"
	"bufio"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Where things live in the image. The rootfs keeps the engine's default
// directory so that serve needs no --rootfs flag.
const (
	DefaultRootFS = "/var/lib/securer-runc"
	BinaryPath    = "/usr/local/bin/securer-runc"
	SocketPath    = "/run/securer/securer.sock"
)

// Entrypoint and Cmd of the image: Kubernetes' args replace Cmd only, so
// a manifest can change serve's flags and still runs serve.
var (
	Entrypoint = []string{BinaryPath, "serve"}
	Cmd        = []string{"--listen", "unix:" + SocketPath}
)

// BuildOptions says what goes into the image and where it is written.
type BuildOptions struct {
	Binary string // the static securer-runc binary
	RootFS string // the R rootfs directory (rootfs/ and manifest.json)
	Out    string // the OCI layout directory
	Name   string // name:tag recorded in the index
	Arch   string
}

// Build writes the image as an OCI image layout at o.Out and returns the
// manifest's descriptor. The rootfs is one layer and the binary another,
// so a new binary pushes a small layer only.
func Build(ctx context.Context, o BuildOptions) (v1.Descriptor, error) {
	var none v1.Descriptor
	repo, tag, err := splitName(o.Name)
	if err != nil {
		return none, err
	}
	bin, err := os.Stat(o.Binary)
	if err != nil {
		return none, fmt.Errorf("binary: %w", err)
	}
	if !bin.Mode().IsRegular() || bin.Mode()&0o111 == 0 {
		return none, fmt.Errorf("binary %s: not an executable file", o.Binary)
	}
	if err := checkStatic(o.Binary); err != nil {
		return none, err
	}
	if _, err := os.Stat(filepath.Join(o.RootFS, "manifest.json")); err != nil {
		return none, fmt.Errorf("R rootfs: %w (build it with securer-runc rootfs build)", err)
	}
	if err := prepareOut(o.Out); err != nil {
		return none, err
	}
	tmp, err := os.MkdirTemp(filepath.Dir(filepath.Clean(o.Out)), ".image-build-")
	if err != nil {
		return none, err
	}
	defer os.RemoveAll(tmp)

	rootfsTar := filepath.Join(tmp, "rootfs.tar.gz")
	if err := writeLayer(ctx, rootfsTar, func(w *tarWriter) error {
		return w.addTree(o.RootFS, strings.TrimPrefix(DefaultRootFS, "/"))
	}); err != nil {
		return none, fmt.Errorf("rootfs layer: %w", err)
	}
	binTar := filepath.Join(tmp, "binary.tar.gz")
	if err := writeLayer(ctx, binTar, func(w *tarWriter) error { return w.addSkeleton(o.Binary) }); err != nil {
		return none, fmt.Errorf("binary layer: %w", err)
	}

	img := mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), types.OCIConfigJSON)
	created := v1.Time{Time: bin.ModTime().UTC().Truncate(time.Second)}
	for _, l := range []struct{ file, by string }{
		{rootfsTar, "R rootfs " + DefaultRootFS},
		{binTar, "securer-runc " + BinaryPath},
	} {
		layer, err := tarball.LayerFromFile(l.file, tarball.WithMediaType(types.OCILayer))
		if err != nil {
			return none, err
		}
		img, err = mutate.Append(img, mutate.Addendum{
			Layer:     layer,
			MediaType: types.OCILayer,
			History:   v1.History{Created: created, CreatedBy: l.by, Comment: "securer-runc image build"},
		})
		if err != nil {
			return none, err
		}
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return none, err
	}
	cf = cf.DeepCopy()
	cf.Architecture, cf.OS, cf.Created = o.Arch, "linux", created
	cf.Config = v1.Config{
		Entrypoint: Entrypoint,
		Cmd:        Cmd,
		Env:        []string{"PATH=/usr/local/bin:/usr/bin:/bin"},
		WorkingDir: "/",
		StopSignal: "SIGTERM",
		Labels: map[string]string{
			"org.opencontainers.image.title":       "securer-runc",
			"org.opencontainers.image.description": "securer-runc serve: runs untrusted R code in a sandbox, for a sidecar",
			"org.opencontainers.image.version":     tag,
		},
	}
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		return none, err
	}

	p, err := layout.Write(o.Out, empty.Index)
	if err != nil {
		return none, err
	}
	if err := p.AppendImage(img,
		layout.WithPlatform(v1.Platform{OS: "linux", Architecture: o.Arch}),
		layout.WithAnnotations(map[string]string{
			// skopeo's oci:DIR:TAG looks up the tag; containerd's
			// import takes the full name.
			"org.opencontainers.image.ref.name": tag,
			"io.containerd.image.name":          fullName(repo) + ":" + tag,
		})); err != nil {
		return none, err
	}
	// go-containerregistry leaves blobs 0600 and index.json 0777: make
	// the layout readable by a non-root skopeo or ctr, and not writable.
	if err := normalizeModes(o.Out); err != nil {
		return none, err
	}
	d, err := img.Digest()
	if err != nil {
		return none, err
	}
	size, err := img.Size()
	if err != nil {
		return none, err
	}
	return v1.Descriptor{MediaType: types.OCIManifestSchema1, Digest: d, Size: size}, nil
}

func normalizeModes(dir string) error {
	return filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		mode := fs.FileMode(0o644)
		if d.IsDir() {
			mode = 0o755
		}
		return os.Chmod(p, mode)
	})
}

// splitName splits name:tag (the tag is required; a registry port is not
// taken for a tag).
func splitName(name string) (repo, tag string, err error) {
	i := strings.LastIndex(name, ":")
	if i <= 0 || strings.Contains(name[i+1:], "/") || name[i+1:] == "" {
		return "", "", fmt.Errorf("--name %q: want NAME:TAG", name)
	}
	return name[:i], name[i+1:], nil
}

// fullName is repo the way the kubelet looks it up in containerd: with
// no registry host it is on docker.io, and a one-part name is in
// library/. Imported as just "securer-runc:dev", a pod's
// image: securer-runc:dev would not find it.
func fullName(repo string) string {
	first, _, ok := strings.Cut(repo, "/")
	if ok && (strings.ContainsAny(first, ".:") || first == "localhost") {
		return repo
	}
	if !ok {
		return "docker.io/library/" + repo
	}
	return "docker.io/" + repo
}

// prepareOut makes sure out may be written: it must not exist, or be an
// empty directory or an OCI layout written before (then it is replaced);
// anything else is refused rather than deleted.
func prepareOut(out string) error {
	entries, err := os.ReadDir(out)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil
	case err != nil:
		return fmt.Errorf("--out: %w", err)
	case len(entries) == 0:
		return nil
	}
	if _, err := os.Stat(filepath.Join(out, "oci-layout")); err != nil {
		return fmt.Errorf("--out %s: exists and is not an OCI image layout; not replacing it", out)
	}
	return os.RemoveAll(out)
}

// writeLayer writes a gzip-compressed tar made by fill to file.
func writeLayer(ctx context.Context, file string, fill func(*tarWriter) error) (err error) {
	f, err := os.OpenFile(file, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}()
	bw := bufio.NewWriterSize(f, 1<<20)
	zw := gzip.NewWriter(bw)
	w := &tarWriter{ctx: ctx, tw: tar.NewWriter(zw), links: map[[2]uint64]string{}, dirs: map[string]bool{}}
	if err := fill(w); err != nil {
		return err
	}
	if err := w.tw.Close(); err != nil {
		return err
	}
	if err := zw.Close(); err != nil {
		return err
	}
	return bw.Flush()
}

// tarWriter writes layer entries with reproducible metadata: no
// user/group names, no access or change times, mtimes in seconds.
type tarWriter struct {
	ctx   context.Context
	tw    *tar.Writer
	links map[[2]uint64]string // (dev, inode) of a file with links -> its first name
	dirs  map[string]bool      // directories written
}

func (w *tarWriter) write(h *tar.Header, body io.Reader) error {
	h.Uname, h.Gname = "", ""
	h.AccessTime, h.ChangeTime = time.Time{}, time.Time{}
	h.ModTime = h.ModTime.UTC().Truncate(time.Second)
	h.Format = tar.FormatPAX
	if err := w.tw.WriteHeader(h); err != nil {
		return fmt.Errorf("%s: %w", h.Name, err)
	}
	if body != nil {
		if _, err := io.Copy(w.tw, body); err != nil {
			return fmt.Errorf("%s: %w", h.Name, err)
		}
	}
	if h.Typeflag == tar.TypeDir {
		w.dirs[strings.TrimSuffix(h.Name, "/")] = true
	}
	return nil
}

// parents writes the directories leading to name (root-owned, 0755)
// that were not written yet.
func (w *tarWriter) parents(name string, mtime time.Time) error {
	dir := path.Dir(name)
	if dir == "." || w.dirs[dir] {
		return nil
	}
	if err := w.parents(dir, mtime); err != nil {
		return err
	}
	return w.write(&tar.Header{Typeflag: tar.TypeDir, Name: dir + "/", Mode: 0o755, ModTime: mtime}, nil)
}

// addTree writes the tree at src under the name dst, keeping owners,
// modes, symlinks and hard links, in lexical order.
func (w *tarWriter) addTree(src, dst string) error {
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := w.ctx.Err(); err != nil {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		name := path.Join(dst, filepath.ToSlash(rel))
		info, err := d.Info()
		if err != nil {
			return err
		}
		if err := w.parents(name, info.ModTime()); err != nil {
			return err
		}
		return w.addFile(p, name, info)
	})
}

func (w *tarWriter) addFile(p, name string, info fs.FileInfo) error {
	if info.Mode()&fs.ModeSocket != 0 {
		return nil // a socket left in the tree means nothing in an image
	}
	link := ""
	if info.Mode()&fs.ModeSymlink != 0 {
		var err error
		if link, err = os.Readlink(p); err != nil {
			return err
		}
	}
	h, err := tar.FileInfoHeader(info, link)
	if err != nil {
		return fmt.Errorf("%s: %w", p, err)
	}
	h.Name = name
	if info.IsDir() {
		h.Name += "/"
		return w.write(h, nil)
	}
	if !info.Mode().IsRegular() {
		return w.write(h, nil)
	}
	if st, ok := info.Sys().(*syscall.Stat_t); ok && st.Nlink > 1 {
		key := [2]uint64{uint64(st.Dev), st.Ino}
		if first, seen := w.links[key]; seen {
			h.Typeflag, h.Linkname, h.Size = tar.TypeLink, first, 0
			return w.write(h, nil)
		}
		w.links[key] = name
	}
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	defer f.Close()
	return w.write(h, f)
}

// addSkeleton writes what a static binary needs around it: the binary,
// /tmp, /run and root's passwd and group entries (--socket-group and
// the Go runtime look names up there).
func (w *tarWriter) addSkeleton(binary string) error {
	info, err := os.Stat(binary)
	if err != nil {
		return err
	}
	mtime := info.ModTime()
	files := []struct {
		name, body string
		mode       int64
	}{
		{"etc/passwd", "root:x:0:0:root:/root:/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\n", 0o644},
		{"etc/group", "root:x:0:\nnogroup:x:65534:\n", 0o644},
	}
	for _, d := range []struct {
		name string
		mode int64
	}{{"etc", 0o755}, {"root", 0o700}, {"run", 0o755}, {"tmp", 0o1777}, {"usr", 0o755}, {"usr/local", 0o755}, {"usr/local/bin", 0o755}} {
		if err := w.write(&tar.Header{Typeflag: tar.TypeDir, Name: d.name + "/", Mode: d.mode, ModTime: mtime}, nil); err != nil {
			return err
		}
	}
	for _, f := range files {
		h := &tar.Header{Typeflag: tar.TypeReg, Name: f.name, Mode: f.mode, Size: int64(len(f.body)), ModTime: mtime}
		if err := w.write(h, strings.NewReader(f.body)); err != nil {
			return err
		}
	}
	bf, err := os.Open(binary)
	if err != nil {
		return err
	}
	defer bf.Close()
	h := &tar.Header{Typeflag: tar.TypeReg, Name: strings.TrimPrefix(BinaryPath, "/"), Mode: 0o755, Size: info.Size(), ModTime: mtime}
	return w.write(h, bf)
}
