package securer

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"regexp"
	"strings"
	"time"

	"github.com/securer-runc/securer-runc/bridge"
)

// Files move between the host and the box's work dir (/tmp/work, where
// each execution starts) through the R runtime, never through the box's
// root seen from the host, whose links the host would follow. They move
// between executions (PutFile, GetFile, ListFiles) or around one
// (ExecOptions.Inputs, ExecOptions.CollectOutputs). Like Execute, a file
// operation returns ErrBusy while another Execute or file operation runs;
// an R that answers wrongly, or not within 30 s, is replaced (its state
// is lost, as after a crash).

// Limits on files. A file of MaxFileBytes is about 5.6 MB of JSON once
// base64-encoded, which fits a service request under the default queued
// bytes with room for another.
const (
	MaxFileBytes     = 4 << 20 // one file
	MaxRequestFiles  = 16      // files of one request (inputs, collected outputs)
	MaxRequestBytes  = 6 << 20 // bytes of one request's files together
	MaxListedFiles   = 1000    // names ListFiles returns
	maxFileNameBytes = 1024
	maxFileNameParts = 4
	maxFilePartBytes = 255
)

// File is a file of the work dir: an input, or an output collected after
// an execution. Name is relative to the work dir (see CheckFileName).
type File struct {
	Name string `json:"name"`
	Data []byte `json:"data"`
}

// FileInfo names a regular file of the work dir and gives its size.
type FileInfo struct {
	Name string `json:"name"`
	Size int64  `json:"size"`
}

var filePart = regexp.MustCompile(`^[A-Za-z0-9._-]+$`)

// CheckFileName refuses a name that is not a relative path of at most 4
// components of [A-Za-z0-9._-], none "." or "..", each at most 255 bytes
// and all at most 1024. The R runtime checks names the same way.
func CheckFileName(name string) error {
	if name == "" {
		return fmt.Errorf("%w: a file name must not be empty", ErrFileRefused)
	}
	if len(name) > maxFileNameBytes {
		return fmt.Errorf("%w: a file name is at most %d bytes, not %d", ErrFileRefused, maxFileNameBytes, len(name))
	}
	parts := strings.Split(name, "/")
	if len(parts) > maxFileNameParts {
		return fmt.Errorf("%w: file name %q has %d components, at most %d", ErrFileRefused, truncate(name, 64), len(parts), maxFileNameParts)
	}
	for _, p := range parts {
		if p == "." || p == ".." || len(p) > maxFilePartBytes || !filePart.MatchString(p) {
			return fmt.Errorf("%w: file name %q: components are 1-%d bytes of [A-Za-z0-9._-], not . or .. (relative paths only)",
				ErrFileRefused, truncate(name, 64), maxFilePartBytes)
		}
	}
	return nil
}

// CheckFiles refuses a request's files: bad names, a name twice, over
// the limits per file and per request.
func CheckFiles(files []File) error {
	if len(files) > MaxRequestFiles {
		return fmt.Errorf("%w: %d files, at most %d per request", ErrFileRefused, len(files), MaxRequestFiles)
	}
	total := 0
	seen := map[string]bool{}
	for _, f := range files {
		if err := CheckFileName(f.Name); err != nil {
			return err
		}
		if seen[f.Name] {
			return fmt.Errorf("%w: file %q given twice", ErrFileRefused, f.Name)
		}
		seen[f.Name] = true
		if len(f.Data) > MaxFileBytes {
			return fmt.Errorf("%w: file %q is %d bytes, over the %d-byte limit per file", ErrFileRefused, f.Name, len(f.Data), MaxFileBytes)
		}
		total += len(f.Data)
	}
	if total > MaxRequestBytes {
		return fmt.Errorf("%w: the files are %d bytes together, over the %d-byte limit per request", ErrFileRefused, total, MaxRequestBytes)
	}
	return nil
}

// PutFile writes data to the work dir under name (parent dirs are made),
// between executions. A link or non-regular file in the way is refused.
func (s *Session) PutFile(ctx context.Context, name string, data []byte) error {
	if err := CheckFiles([]File{{Name: name, Data: data}}); err != nil {
		return err
	}
	_, err := s.fileOp(ctx, func(id uint64) any {
		return bridge.PutFile{Type: "put_file", ID: id, Name: name, Data: data}
	})
	return err
}

// GetFile reads the regular file name of the work dir, between
// executions. Links are refused, not followed.
func (s *Session) GetFile(ctx context.Context, name string) ([]byte, error) {
	if err := CheckFileName(name); err != nil {
		return nil, err
	}
	r, err := s.fileOp(ctx, func(id uint64) any {
		return bridge.GetFile{Type: "get_file", ID: id, Name: name}
	})
	if err != nil {
		return nil, err
	}
	if r.Name != name || int64(len(r.Data)) != r.Size || len(r.Data) > MaxFileBytes {
		return nil, s.fileViolation(fmt.Errorf("%w: R answered get_file %q with file %q of %d bytes (size %d)", ErrProtocol, truncate(name, 64), truncate(r.Name, 64), len(r.Data), r.Size))
	}
	if r.Data == nil {
		r.Data = []byte{}
	}
	return r.Data, nil
}

// ListFiles lists the regular files of the work dir (at most
// MaxListedFiles, by name), between executions.
func (s *Session) ListFiles(ctx context.Context) ([]FileInfo, error) {
	r, err := s.fileOp(ctx, func(id uint64) any {
		return bridge.ListFiles{Type: "list_files", ID: id}
	})
	if err != nil {
		return nil, err
	}
	if len(r.Files) > MaxListedFiles {
		return nil, s.fileViolation(fmt.Errorf("%w: R listed %d files, more than %d", ErrProtocol, len(r.Files), MaxListedFiles))
	}
	out := make([]FileInfo, 0, len(r.Files))
	for _, f := range r.Files {
		if CheckFileName(f.Name) != nil || f.Size < 0 {
			return nil, s.fileViolation(fmt.Errorf("%w: R listed a file named %q", ErrProtocol, truncate(f.Name, 64)))
		}
		out = append(out, FileInfo{Name: f.Name, Size: f.Size})
	}
	return out, nil
}

// fileOpTimeout bounds R's answer to one file operation.
const fileOpTimeout = 30 * time.Second

// fileViolation replaces the session's R after it broke the protocol
// answering a file operation; the next use starts a new one.
func (s *Session) fileViolation(err error) error {
	s.mu.Lock()
	inst := s.inst
	s.mu.Unlock()
	if inst == nil {
		return err
	}
	return s.instViolation(inst, err)
}

// fileOp sends the message mk makes (with a new id) to an idle R and
// waits for its file_reply. An error R reports is ErrFileRefused.
func (s *Session) fileOp(ctx context.Context, mk func(id uint64) any) (*bridge.FileReply, error) {
	if !s.busy.enter() {
		return nil, ErrBusy
	}
	defer s.busy.leave()
	if err := ctx.Err(); err != nil {
		return nil, endedContextError(err, "before the file operation")
	}
	inst, err := s.current(ctx)
	if err != nil {
		return nil, err
	}
	// As before an execution, nothing may be waiting from R.
	select {
	case f := <-inst.frames:
		return nil, s.instViolation(inst, fmt.Errorf("%w: R sent a frame between executions (%T); the session restarts", ErrProtocol, f.msg))
	default:
	}
	s.nextID++
	id := s.nextID
	if err := s.send(inst, mk(id)); err != nil {
		return nil, s.instViolation(inst, fmt.Errorf("%w: %w", ErrKilled, err))
	}
	timer := time.NewTimer(fileOpTimeout)
	defer timer.Stop()
	select {
	case f, ok := <-inst.frames:
		if !ok || f.err != nil {
			return nil, s.instViolation(inst, fmt.Errorf("%w: R ended during a file operation (%v)", ErrKilled, f.err))
		}
		r, isReply := f.msg.(*bridge.FileReply)
		if !isReply || r.ID != id {
			return nil, s.instViolation(inst, fmt.Errorf("%w: unexpected %T answering file operation %d", ErrProtocol, f.msg, id))
		}
		if r.Error != "" {
			return nil, fmt.Errorf("%w: %s", ErrFileRefused, truncate(r.Error, 1024))
		}
		return r, nil
	case <-inst.run.Done():
		return nil, s.instViolation(inst, fmt.Errorf("%w: R ended during a file operation", ErrKilled))
	case <-timer.C:
		return nil, s.instViolation(inst, fmt.Errorf("%w: R did not answer a file operation within %s", ErrProtocol, fileOpTimeout))
	case <-ctx.Done():
		// The answer may still come: this R cannot be trusted to be idle.
		return nil, s.instViolation(inst, endedContextError(ctx.Err(), "during a file operation; the session restarts"))
	}
}

// instViolation marks inst dead and removes it; the next use replaces it.
func (s *Session) instViolation(inst *instance, err error) error {
	inst.markDead("R was replaced: " + err.Error())
	s.destroy(inst)
	return err
}

// checkCollected keeps the collected files whose names and sizes hold
// (R checked them too) and counts the rest as dropped. A name given twice,
// or one that is also another file's directory ("a" and "a/b"), cannot
// come from a real work dir: the later one is dropped, so that clients
// writing the files out or keying them by name get each once.
func checkCollected(files []bridge.File, dropped int64) ([]File, int64) {
	var out []File
	total := 0
	names, dirs := map[string]bool{}, map[string]bool{}
	for _, f := range files {
		if CheckFileName(f.Name) != nil || len(f.Data) > MaxFileBytes || total+len(f.Data) > MaxRequestBytes || len(out) == MaxRequestFiles ||
			names[f.Name] || dirs[f.Name] || collides(f.Name, names) {
			dropped++
			continue
		}
		names[f.Name] = true
		for i := range len(f.Name) {
			if f.Name[i] == '/' {
				dirs[f.Name[:i]] = true
			}
		}
		total += len(f.Data)
		if f.Data == nil {
			f.Data = []byte{}
		}
		out = append(out, File{Name: f.Name, Data: f.Data})
	}
	return out, dropped
}

// collides reports whether a parent directory of name is a file in names.
func collides(name string, names map[string]bool) bool {
	for i := range len(name) {
		if name[i] == '/' && names[name[:i]] {
			return true
		}
	}
	return false
}

// bridgeFiles converts inputs for the execute message.
func bridgeFiles(files []File) []bridge.File {
	var out []bridge.File
	for _, f := range files {
		out = append(out, bridge.File{Name: f.Name, Data: f.Data})
	}
	return out
}

// feedStdin copies src (at most MaxFileBytes) into w, the write end of
// R's standard input, then closes it. It ends when src does, at the
// limit, or once R is gone (EPIPE); a src that never yields keeps this
// goroutine waiting, never R nor the session's end. Input past the limit
// is not silently cut: the code sees its end of input at the limit, so
// log says so.
func feedStdin(w *os.File, src io.Reader, log *slog.Logger) {
	n, _ := io.Copy(w, io.LimitReader(src, MaxFileBytes))
	w.Close()
	if n == MaxFileBytes {
		var one [1]byte
		if k, _ := io.ReadFull(src, one[:]); k > 0 {
			log.Warn("standard input cut: the code read only its first bytes", "limit_bytes", MaxFileBytes)
		}
	}
}
