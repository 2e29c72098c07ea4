package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	securer "github.com/securer-runc/securer-runc"
)

// plotFlags are run's plot flags: how plots come back and where they go.
type plotFlags struct {
	dir, format, size string
	dpi               int
}

func addPlotFlags(fs *flag.FlagSet) *plotFlags {
	p := &plotFlags{}
	fs.StringVar(&p.dir, "plots-dir", "", "write the plots the code draws to this existing directory (plot-001.png, ...; never overwrites)")
	fs.StringVar(&p.format, "plot-format", "png", "plot format: png, svg or none")
	fs.StringVar(&p.size, "plot-size", "768x576", "plot size in pixels, WIDTHxHEIGHT (16..4096 each)")
	fs.IntVar(&p.dpi, "plot-dpi", 96, "plot resolution in dots per inch (36..600)")
	return p
}

// plots checks the flags and the directory before anything runs.
func (p *plotFlags) plots() (securer.Plots, error) {
	w, h, ok := strings.Cut(p.size, "x")
	width, werr := strconv.Atoi(w)
	height, herr := strconv.Atoi(h)
	if !ok || werr != nil || herr != nil || width <= 0 || height <= 0 {
		return securer.Plots{}, fmt.Errorf("--plot-size %q: want WIDTHxHEIGHT in pixels, e.g. 768x576", p.size)
	}
	if p.dpi <= 0 {
		return securer.Plots{}, fmt.Errorf("--plot-dpi %d: must be positive", p.dpi)
	}
	if p.dir != "" {
		st, err := os.Stat(p.dir)
		if err != nil {
			return securer.Plots{}, fmt.Errorf("--plots-dir: %w (it must be an existing directory)", err)
		}
		if !st.IsDir() {
			return securer.Plots{}, fmt.Errorf("--plots-dir %s: not a directory", p.dir)
		}
	}
	return securer.Plots{Format: p.format, Width: width, Height: height, DPI: p.dpi}, nil
}

var plotExt = map[string]string{"image/png": ".png", "image/svg+xml": ".svg"}

// writePlots writes each display to dir as plot-NNN.EXT and returns the
// paths. A file is only ever created: an existing name (a file, or a
// link, which is never followed) is an error, not overwritten.
func writePlots(dir string, ds []securer.Display) ([]string, error) {
	d, err := os.Open(dir)
	if err != nil {
		return nil, err
	}
	defer d.Close()
	var paths []string
	for i, disp := range ds {
		for mime, data := range disp.Data {
			ext, ok := plotExt[mime]
			if !ok {
				continue
			}
			name := fmt.Sprintf("plot-%03d%s", i+1, ext)
			if err := writeNew(int(d.Fd()), name, data); err != nil {
				return paths, fmt.Errorf("%s: %w", filepath.Join(dir, name), err)
			}
			paths = append(paths, filepath.Join(dir, name))
		}
	}
	return paths, nil
}

func writeNew(dirfd int, name string, data []byte) error {
	fd, err := unix.Openat(dirfd, name, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o644)
	if err != nil {
		if errors.Is(err, unix.EEXIST) {
			return fmt.Errorf("already exists; not overwritten (choose an empty --plots-dir)")
		}
		return err
	}
	f := os.NewFile(uintptr(fd), name)
	_, werr := f.Write(data)
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	return werr
}
