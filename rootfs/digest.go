package rootfs

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

// digestMagic starts the hashed stream so a future record format can never
// produce the same digest as this one.
const digestMagic = "securer-runc rootfs digest v1\x00"

const (
	maxHashWorkers = 8         // bounded: hashing is CPU- or disk-bound, not latency-bound
	hashBufSize    = 256 << 10 // per worker
)

// entry is one file system object found by the walk.
type entry struct {
	rel    string // slash-separated, relative to the root; "." is the root
	abs    string
	mode   uint32 // raw st_mode: type and all 12 permission bits
	uid    uint32
	gid    uint32
	rdev   uint64
	dev    uint64
	ino    uint64
	target string   // symlink target
	xattrs []xattr  // sorted by name
	sum    [32]byte // sha256 of a regular file's content, set by a worker
}

type xattr struct {
	name  string
	value []byte
}

// Digest returns "sha256:<hex>" over the tree at rootfsPath, which must be
// a real directory (not a symlink). Symlinks inside are recorded, never
// followed. Timestamps are ignored so a copy of the tree has the same digest.
//
// The hashed stream is digestMagic followed by one record per entry, in
// filepath.WalkDir order (depth first, names in byte order), root first as
// ".". A record is NUL-terminated fields then '\n':
//
//	type (d f l c b p s), mode&07777 in octal, uid, gid, relative path,
//	detail (f: hex sha256 of content; l: target; c, b: "major:minor"; else ""),
//	xattr count, then per xattr (by name): name, hex value
//
// Paths, targets and xattr names cannot contain NUL, so records are
// unambiguous. xattrs are included because security.capability and POSIX
// ACLs grant privileges; security.selinux is left out because it is a host
// labelling artefact, not part of the build.
//
// Regular files are hashed in parallel by a bounded worker pool while the
// walk goes on. Cancelling ctx stops the walk and the workers promptly.
func Digest(ctx context.Context, rootfsPath string) (string, error) {
	var st unix.Stat_t
	if err := unix.Lstat(rootfsPath, &st); err != nil {
		return "", fmt.Errorf("digest: %w", &os.PathError{Op: "lstat", Path: rootfsPath, Err: err})
	}
	if st.Mode&unix.S_IFMT != unix.S_IFDIR {
		return "", fmt.Errorf("digest: %s is not a directory (symlinks are refused)", rootfsPath)
	}

	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)

	jobs := make(chan *entry, 512)
	var wg sync.WaitGroup
	for range min(max(runtime.GOMAXPROCS(0), 1), maxHashWorkers) {
		wg.Go(func() {
			buf := make([]byte, hashBufSize)
			for e := range jobs {
				if ctx.Err() != nil {
					continue // drain so the walker never blocks
				}
				if err := hashFile(ctx, e, buf); err != nil {
					cancel(err)
				}
			}
		})
	}

	w := walker{ctx: ctx, jobs: jobs}
	err := w.walk(rootfsPath, ".")
	if err != nil {
		cancel(err)
	}
	close(jobs)
	wg.Wait()
	// Cause is the first failure: a worker's, the walk's or the caller's
	// cancellation.
	if err := context.Cause(ctx); err != nil {
		return "", fmt.Errorf("digest %s: %w", rootfsPath, err)
	}

	h := sha256.New()
	bw := bufio.NewWriterSize(h, 64<<10)
	bw.WriteString(digestMagic)
	var rec []byte
	for _, e := range w.entries {
		rec = appendRecord(rec[:0], e)
		bw.Write(rec)
	}
	if err := bw.Flush(); err != nil { // cannot fail on a hash, but be honest
		return "", fmt.Errorf("digest %s: %w", rootfsPath, err)
	}
	return "sha256:" + hex.EncodeToString(h.Sum(nil)), nil
}

type walker struct {
	ctx     context.Context
	jobs    chan<- *entry
	entries []*entry // pointers: workers fill sum while the slice grows
}

func (w *walker) walk(abs, rel string) error {
	if err := w.ctx.Err(); err != nil {
		return err
	}
	e, err := stat(abs, rel)
	if err != nil {
		return err
	}
	w.entries = append(w.entries, e)
	switch e.mode & unix.S_IFMT {
	case unix.S_IFREG:
		select {
		case w.jobs <- e:
		case <-w.ctx.Done():
			return w.ctx.Err()
		}
	case unix.S_IFDIR:
		names, err := readDirNames(abs)
		if err != nil {
			return err
		}
		for _, name := range names {
			if err := w.walk(filepath.Join(abs, name), path.Join(rel, name)); err != nil {
				return err
			}
		}
	}
	return nil
}

// readDirNames returns the names in a directory in byte order.
func readDirNames(dir string) ([]string, error) {
	f, err := os.Open(dir)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	names, err := f.Readdirnames(-1)
	if err != nil {
		return nil, fmt.Errorf("read directory %s: %w", dir, err)
	}
	slices.Sort(names)
	return names, nil
}

func stat(abs, rel string) (*entry, error) {
	var st unix.Stat_t
	if err := unix.Lstat(abs, &st); err != nil {
		return nil, &os.PathError{Op: "lstat", Path: abs, Err: err}
	}
	e := &entry{
		rel: rel, abs: abs, mode: st.Mode, uid: st.Uid, gid: st.Gid,
		rdev: st.Rdev, dev: st.Dev, ino: st.Ino,
	}
	if st.Mode&unix.S_IFMT == unix.S_IFLNK {
		t, err := os.Readlink(abs)
		if err != nil {
			return nil, err
		}
		e.target = t
	}
	xs, err := readXattrs(abs)
	if err != nil {
		return nil, err
	}
	e.xattrs = xs
	return e, nil
}

// readXattrs lists a path's extended attributes without following a
// symlink. A file system without xattr support simply has none.
func readXattrs(p string) ([]xattr, error) {
	var list []byte
	for {
		n, err := unix.Llistxattr(p, nil)
		if errors.Is(err, unix.ENOTSUP) || errors.Is(err, unix.EOPNOTSUPP) {
			return nil, nil
		}
		if err != nil {
			return nil, &os.PathError{Op: "llistxattr", Path: p, Err: err}
		}
		if n == 0 {
			return nil, nil // the common case: one syscall
		}
		list = make([]byte, n)
		n, err = unix.Llistxattr(p, list)
		if errors.Is(err, unix.ERANGE) {
			continue // grew between the two calls
		}
		if err != nil {
			return nil, &os.PathError{Op: "llistxattr", Path: p, Err: err}
		}
		list = list[:n]
		break
	}
	var xs []xattr
	for name := range strings.SplitSeq(strings.TrimRight(string(list), "\x00"), "\x00") {
		if name == "" || name == "security.selinux" {
			continue
		}
		v, err := getXattr(p, name)
		if err != nil {
			return nil, err
		}
		xs = append(xs, xattr{name: name, value: v})
	}
	slices.SortFunc(xs, func(a, b xattr) int { return strings.Compare(a.name, b.name) })
	return xs, nil
}

func getXattr(p, name string) ([]byte, error) {
	for {
		n, err := unix.Lgetxattr(p, name, nil)
		if err != nil {
			return nil, &os.PathError{Op: "lgetxattr " + name, Path: p, Err: err}
		}
		v := make([]byte, n)
		n, err = unix.Lgetxattr(p, name, v)
		if errors.Is(err, unix.ERANGE) {
			continue
		}
		if err != nil {
			return nil, &os.PathError{Op: "lgetxattr " + name, Path: p, Err: err}
		}
		return v[:n], nil
	}
}

// hashFile hashes a regular file's content into e.sum. It refuses to follow
// a symlink or block on a FIFO swapped in since the walk saw the entry, and
// checks it read the same inode.
func hashFile(ctx context.Context, e *entry, buf []byte) error {
	fd, err := unix.Open(e.abs, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		return &os.PathError{Op: "open", Path: e.abs, Err: err}
	}
	f := os.NewFile(uintptr(fd), e.abs)
	defer f.Close()
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return &os.PathError{Op: "fstat", Path: e.abs, Err: err}
	}
	if st.Dev != e.dev || st.Ino != e.ino || st.Mode&unix.S_IFMT != unix.S_IFREG {
		return fmt.Errorf("%s changed while the digest was computed", e.abs)
	}
	h := sha256.New()
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		n, err := f.Read(buf)
		h.Write(buf[:n])
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("read %s: %w", e.abs, err)
		}
	}
	h.Sum(e.sum[:0])
	return nil
}

func appendRecord(b []byte, e *entry) []byte {
	var typ byte
	switch e.mode & unix.S_IFMT {
	case unix.S_IFDIR:
		typ = 'd'
	case unix.S_IFREG:
		typ = 'f'
	case unix.S_IFLNK:
		typ = 'l'
	case unix.S_IFCHR:
		typ = 'c'
	case unix.S_IFBLK:
		typ = 'b'
	case unix.S_IFIFO:
		typ = 'p'
	case unix.S_IFSOCK:
		typ = 's'
	default:
		typ = '?' // still hashed with its raw mode below, so never silently equal
	}
	b = append(b, typ, 0)
	if typ == '?' {
		b = strconv.AppendUint(b, uint64(e.mode), 8)
	} else {
		b = strconv.AppendUint(b, uint64(e.mode&07777), 8)
	}
	b = append(b, 0)
	b = strconv.AppendUint(b, uint64(e.uid), 10)
	b = append(b, 0)
	b = strconv.AppendUint(b, uint64(e.gid), 10)
	b = append(b, 0)
	b = append(b, e.rel...)
	b = append(b, 0)
	switch typ {
	case 'f':
		b = hex.AppendEncode(b, e.sum[:])
	case 'l':
		b = append(b, e.target...)
	case 'c', 'b':
		b = strconv.AppendUint(b, uint64(unix.Major(e.rdev)), 10)
		b = append(b, ':')
		b = strconv.AppendUint(b, uint64(unix.Minor(e.rdev)), 10)
	}
	b = append(b, 0)
	b = strconv.AppendInt(b, int64(len(e.xattrs)), 10)
	b = append(b, 0)
	for _, x := range e.xattrs {
		b = append(b, x.name...)
		b = append(b, 0)
		b = hex.AppendEncode(b, x.value)
		b = append(b, 0)
	}
	return append(b, '\n')
}
