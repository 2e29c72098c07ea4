package main

import (
	"archive/tar"
	"bytes"
	"context"
	"debug/elf"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"slices"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/google/go-containerregistry/pkg/v1/validate"
)

// VerifyError is a layout that was read but does not hold a usable
// sidecar image.
type VerifyError struct{ Problem string }

func (e *VerifyError) Error() string { return e.Problem }

func bad(format string, a ...any) error { return &VerifyError{Problem: fmt.Sprintf(format, a...)} }

// Report is what Verify found.
type Report struct {
	Name       string   // the index's name annotation
	Command    []string // entrypoint + cmd
	Layers     int
	BinarySize int64
	RVersion   string // from the rootfs manifest
}

// Verify reads the OCI layout at dir the way a runtime would and checks
// that it holds one linux image whose entrypoint is securer-runc serve,
// with the binary (static, executable) and the R rootfs with its
// manifest. Unless fast, every layer's digest is recomputed too.
func Verify(ctx context.Context, dir string, fast bool) (Report, error) {
	var rep Report
	if _, err := os.Stat(path.Join(dir, "oci-layout")); err != nil {
		return rep, fmt.Errorf("%s: not an OCI image layout: %w", dir, err)
	}
	idx, err := layout.ImageIndexFromPath(dir)
	if err != nil {
		return rep, err
	}
	im, err := idx.IndexManifest()
	if err != nil {
		return rep, err
	}
	if len(im.Manifests) != 1 {
		return rep, bad("index lists %d manifests, want 1", len(im.Manifests))
	}
	desc := im.Manifests[0]
	if desc.MediaType != types.OCIManifestSchema1 {
		return rep, bad("manifest media type %s, want %s", desc.MediaType, types.OCIManifestSchema1)
	}
	rep.Name = desc.Annotations["io.containerd.image.name"]
	if desc.Annotations["org.opencontainers.image.ref.name"] == "" || rep.Name == "" {
		return rep, bad("the index names no image (ref.name and io.containerd.image.name annotations)")
	}
	img, err := idx.Image(desc.Digest)
	if err != nil {
		return rep, err
	}
	var opts []validate.Option
	if fast {
		opts = append(opts, validate.Fast)
	}
	if err := validate.Image(img, opts...); err != nil {
		return rep, bad("image does not validate: %v", err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return rep, err
	}
	if cf.OS != "linux" || cf.Architecture == "" {
		return rep, bad("platform %s/%s, want linux", cf.OS, cf.Architecture)
	}
	rep.Command = append(slices.Clone(cf.Config.Entrypoint), cf.Config.Cmd...)
	if !slices.Equal(cf.Config.Entrypoint, Entrypoint) {
		return rep, bad("entrypoint %q, want %q", cf.Config.Entrypoint, Entrypoint)
	}
	if !slices.Contains(rep.Command, "--listen") {
		return rep, bad("command %q has no --listen", rep.Command)
	}
	layers, err := img.Layers()
	if err != nil {
		return rep, err
	}
	rep.Layers = len(layers)
	if err := ctx.Err(); err != nil {
		return rep, err
	}
	return rep, checkFiles(ctx, img, &rep)
}

// checkFiles reads the image's flattened filesystem for the binary and
// the rootfs manifest.
func checkFiles(ctx context.Context, img v1.Image, rep *Report) error {
	rc := mutate.Extract(img)
	defer rc.Close()
	tr := tar.NewReader(rc)
	binName := strings.TrimPrefix(BinaryPath, "/")
	manName := path.Join(strings.TrimPrefix(DefaultRootFS, "/"), "manifest.json")
	rscript := path.Join(strings.TrimPrefix(DefaultRootFS, "/"), "rootfs/usr/bin/Rscript")
	var sawBin, sawMan, sawR bool
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("reading the image's files: %w", err)
		}
		switch path.Clean(h.Name) {
		case binName:
			sawBin = true
			if h.Typeflag != tar.TypeReg || h.Mode&0o111 == 0 || h.Size == 0 {
				return bad("%s is not an executable file (type %c, mode %o, %d bytes)", BinaryPath, h.Typeflag, h.Mode, h.Size)
			}
			body, err := io.ReadAll(tr)
			if err != nil {
				return err
			}
			if err := checkStaticELF(bytes.NewReader(body)); err != nil {
				return bad("%s: %v", BinaryPath, err)
			}
			rep.BinarySize = h.Size
		case manName:
			sawMan = true
			var m struct {
				Format   int    `json:"format"`
				RVersion string `json:"r_version"`
			}
			if err := json.NewDecoder(tr).Decode(&m); err != nil || m.Format == 0 {
				return bad("%s is not a rootfs manifest (%v)", "/"+manName, err)
			}
			rep.RVersion = m.RVersion
		case rscript:
			sawR = true
		}
	}
	switch {
	case !sawBin:
		return bad("no %s in the image", BinaryPath)
	case !sawMan:
		return bad("no R rootfs manifest /%s in the image", manName)
	case !sawR:
		return bad("no /%s in the image", rscript)
	}
	return nil
}

// checkStatic refuses a binary that needs a dynamic loader: the image
// has no libc.
func checkStatic(file string) error {
	f, err := os.Open(file)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := checkStaticELF(f); err != nil {
		return fmt.Errorf("binary %s: %w", file, err)
	}
	return nil
}

func checkStaticELF(r io.ReaderAt) error {
	ef, err := elf.NewFile(r)
	if err != nil {
		return fmt.Errorf("not an ELF executable: %w", err)
	}
	defer ef.Close()
	for _, p := range ef.Progs {
		if p.Type == elf.PT_INTERP {
			return errors.New("dynamically linked (the image has no libc): build it with make build")
		}
	}
	return nil
}
