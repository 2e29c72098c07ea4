package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	securer "github.com/securer-runc/securer-runc"
)

func TestPlotFlags(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "f")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		p    plotFlags
		want securer.Plots
		err  string
	}{
		{"defaults", plotFlags{format: "png", size: "768x576", dpi: 96}, securer.Plots{Format: "png", Width: 768, Height: 576, DPI: 96}, ""},
		{"svg with a dir", plotFlags{dir: dir, format: "svg", size: "100x50", dpi: 72}, securer.Plots{Format: "svg", Width: 100, Height: 50, DPI: 72}, ""},
		{"size without x", plotFlags{format: "png", size: "768", dpi: 96}, securer.Plots{}, "WIDTHxHEIGHT"},
		{"size not numbers", plotFlags{format: "png", size: "axb", dpi: 96}, securer.Plots{}, "WIDTHxHEIGHT"},
		{"zero size", plotFlags{format: "png", size: "0x10", dpi: 96}, securer.Plots{}, "WIDTHxHEIGHT"},
		{"dpi", plotFlags{format: "png", size: "10x10", dpi: 0}, securer.Plots{}, "--plot-dpi"},
		{"dir missing", plotFlags{dir: filepath.Join(dir, "nope"), format: "png", size: "768x576", dpi: 96}, securer.Plots{}, "must be an existing directory"},
		{"dir a file", plotFlags{dir: file, format: "png", size: "768x576", dpi: 96}, securer.Plots{}, "not a directory"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.p.plots()
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err %v, want one saying %q", err, tc.err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("plots() = %+v, %v; want %+v", got, err, tc.want)
			}
		})
	}
}

func TestWritePlots(t *testing.T) {
	ds := []securer.Display{
		{Data: map[string][]byte{"image/png": []byte("png1")}},
		{Data: map[string][]byte{"image/svg+xml": []byte("<svg/>")}},
	}
	t.Run("written", func(t *testing.T) {
		dir := t.TempDir()
		paths, err := writePlots(dir, ds)
		if err != nil || len(paths) != 2 {
			t.Fatalf("writePlots: %v, %v", paths, err)
		}
		for name, want := range map[string]string{"plot-001.png": "png1", "plot-002.svg": "<svg/>"} {
			b, err := os.ReadFile(filepath.Join(dir, name))
			st, serr := os.Stat(filepath.Join(dir, name))
			if err != nil || string(b) != want || serr != nil || st.Mode().Perm()&^0o644 != 0 {
				t.Errorf("%s: %q, %v (mode %v)", name, b, err, st)
			}
		}
	})
	t.Run("existing file not overwritten", func(t *testing.T) {
		dir := t.TempDir()
		old := filepath.Join(dir, "plot-002.svg")
		if err := os.WriteFile(old, []byte("mine"), 0o600); err != nil {
			t.Fatal(err)
		}
		paths, err := writePlots(dir, ds)
		if err == nil || !strings.Contains(err.Error(), "not overwritten") || len(paths) != 1 {
			t.Fatalf("writePlots over an existing file: %v, %v", paths, err)
		}
		if b, _ := os.ReadFile(old); string(b) != "mine" {
			t.Errorf("existing file now %q", b)
		}
	})
	t.Run("link not followed", func(t *testing.T) {
		dir, elsewhere := t.TempDir(), t.TempDir()
		target := filepath.Join(elsewhere, "target")
		if err := os.Symlink(target, filepath.Join(dir, "plot-001.png")); err != nil {
			t.Fatal(err)
		}
		if _, err := writePlots(dir, ds); err == nil {
			t.Fatal("wrote through a dangling link")
		}
		if _, err := os.Lstat(target); !os.IsNotExist(err) {
			t.Errorf("the link's target was created: %v", err)
		}
	})
	t.Run("dir gone", func(t *testing.T) {
		if _, err := writePlots(filepath.Join(t.TempDir(), "gone"), ds); err == nil {
			t.Fatal("no error for a missing directory")
		}
	})
}
