// Command image builds and checks the securer-runc sidecar image: an OCI
// image layout (no Docker daemon, no base image) holding the static
// binary and the R rootfs, with `securer-runc serve` as its entrypoint.
// It is its own module so that go-containerregistry stays out of the
// engine's dependencies.
//
//	go run . build --binary BIN --rootfs DIR --out LAYOUT [--name securer-runc:TAG]
//	go run . verify --layout LAYOUT [--fast]
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprintln(stderr, "usage: image build|verify [flags]")
		return 2
	}
	switch args[0] {
	case "build":
		return runBuild(ctx, args[1:], stdout, stderr)
	case "verify":
		return runVerify(ctx, args[1:], stdout, stderr)
	}
	fmt.Fprintf(stderr, "image: unknown command %q (build or verify)\n", args[0])
	return 2
}

func runBuild(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("build", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o BuildOptions
	fs.StringVar(&o.Binary, "binary", "bin/securer-runc", "the static securer-runc binary")
	fs.StringVar(&o.RootFS, "rootfs", DefaultRootFS, "the R rootfs directory (holds rootfs/ and manifest.json), read only")
	fs.StringVar(&o.Out, "out", "bin/image", "the OCI image layout directory to write (replaced if it is one already)")
	fs.StringVar(&o.Name, "name", "securer-runc:dev", "image name and tag, recorded in the layout's index")
	fs.StringVar(&o.Arch, "arch", runtime.GOARCH, "the binary's architecture")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	desc, err := Build(ctx, o)
	if err != nil {
		fmt.Fprintln(stderr, "image build:", err)
		return 1
	}
	fmt.Fprintf(stdout, "wrote %s: %s %s (%d bytes manifest)\n", o.Out, o.Name, desc.Digest, desc.Size)
	return 0
}

func runVerify(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("verify", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dir := fs.String("layout", "bin/image", "the OCI image layout directory")
	fast := fs.Bool("fast", false, "skip recomputing the layers' digests")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	rep, err := Verify(ctx, *dir, *fast)
	if err != nil {
		var v *VerifyError
		if errors.As(err, &v) {
			fmt.Fprintln(stderr, "image verify: the layout is not a usable sidecar image:", err)
		} else {
			fmt.Fprintln(stderr, "image verify:", err)
		}
		return 1
	}
	fmt.Fprintf(stdout, "ok %s: %s, entrypoint %q, %d layers, binary %d bytes, R rootfs %s\n",
		*dir, rep.Name, rep.Command, rep.Layers, rep.BinarySize, rep.RVersion)
	return 0
}
