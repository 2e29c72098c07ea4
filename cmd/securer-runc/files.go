package main

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"

	securer "github.com/securer-runc/securer-runc"
)

// inputFlags collects run's repeatable --input FILE[=NAME].
type inputFlags []string

func (f *inputFlags) String() string { return strings.Join(*f, ",") }
func (f *inputFlags) Set(s string) error {
	if s == "" {
		return errors.New("--input needs FILE or FILE=NAME")
	}
	*f = append(*f, s)
	return nil
}

// readInputs reads each --input: FILE is put in the work dir as NAME,
// or under its base name. The last "=" splits FILE from NAME.
func readInputs(specs []string) ([]securer.File, error) {
	var files []securer.File
	for _, s := range specs {
		file, name := s, filepath.Base(s)
		if i := strings.LastIndex(s, "="); i >= 0 {
			file, name = s[:i], s[i+1:]
		}
		if err := securer.CheckFileName(name); err != nil {
			return nil, fmt.Errorf("--input %s: %w", s, err)
		}
		data, err := readBounded(file)
		if err != nil {
			return nil, fmt.Errorf("--input %s: %w", s, err)
		}
		files = append(files, securer.File{Name: name, Data: data})
	}
	if err := securer.CheckFiles(files); err != nil {
		return nil, fmt.Errorf("--input: %w", err)
	}
	return files, nil
}

// readBounded reads a file of at most securer.MaxFileBytes.
func readBounded(name string) ([]byte, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return readAllBounded(f, "the file")
}

func readAllBounded(r io.Reader, what string) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r, securer.MaxFileBytes+1))
	if err != nil {
		return nil, err
	}
	if len(b) > securer.MaxFileBytes {
		return nil, fmt.Errorf("%s is over the %d-byte limit", what, securer.MaxFileBytes)
	}
	return b, nil
}

// codeStdin is what R's standard input reads when the code does not come
// from stdin: run's stdin unless it is a terminal, fed through a pipe as
// R reads it (a terminal's fd in the box would allow input injection).
// Nil: R reads /dev/null.
func codeStdin(stdin io.Reader) io.Reader {
	if f, ok := stdin.(*os.File); ok {
		if _, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS); err == nil {
			return nil // a terminal
		}
	}
	return stdin
}

// writeOutputs writes the collected files under dir, which must exist.
// Nothing is followed or replaced: the walk stays inside dir (os.Root),
// a link in the way is refused, and each file is new (O_EXCL,
// O_NOFOLLOW). It writes what it can and reports the rest.
func writeOutputs(dir string, files []securer.File) error {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return fmt.Errorf("--output-dir: %w", err)
	}
	defer root.Close()
	var errs []error
	for _, f := range files {
		if err := writeOutput(root, f); err != nil {
			errs = append(errs, fmt.Errorf("--output-dir: %s: %w", f.Name, err))
		}
	}
	return errors.Join(errs...)
}

func writeOutput(root *os.Root, f securer.File) error {
	if err := securer.CheckFileName(f.Name); err != nil {
		return err
	}
	parts := strings.Split(f.Name, "/")
	for i := 1; i < len(parts); i++ {
		d := path.Join(parts[:i]...)
		st, err := root.Lstat(d)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			if err := root.Mkdir(d, 0o755); err != nil {
				return err
			}
		case err != nil:
			return err
		case st.Mode()&fs.ModeSymlink != 0:
			return fmt.Errorf("%s is a symbolic link: not followed", d)
		case !st.IsDir():
			return fmt.Errorf("%s is not a directory", d)
		}
	}
	out, err := root.OpenFile(f.Name, os.O_WRONLY|os.O_CREATE|os.O_EXCL|unix.O_NOFOLLOW, 0o644)
	if err != nil {
		return err
	}
	if _, err := out.Write(f.Data); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
