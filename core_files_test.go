package securer

import (
	"context"
	"encoding/json"
	"errors"
	"testing"

	"github.com/securer-runc/securer-runc/bridge"
)

// fileMsg is a host message as a fake R reads it, file members included.
type fileMsg struct {
	Type    string        `json:"type"`
	ID      uint64        `json:"id"`
	Name    string        `json:"name"`
	Data    []byte        `json:"data"`
	Inputs  []bridge.File `json:"inputs"`
	Collect bool          `json:"collect"`
}

// serveFiles plays an R that answers file operations with reply and
// executions with a NULL result carrying files.
func serveFiles(reply func(m fileMsg) any, files []bridge.File, dropped int64) func(r *fakeR) {
	return func(r *fakeR) {
		if !r.handshake() {
			return
		}
		for {
			line, err := r.in.ReadBytes('\n')
			if err != nil {
				return
			}
			var m fileMsg
			if json.Unmarshal(line, &m) != nil {
				return
			}
			if m.Type == "execute" {
				res := result(m.ID, nil)
				if m.Collect {
					res.Files, res.FilesDropped = files, dropped
				}
				r.send(res)
				continue
			}
			r.send(reply(m))
		}
	}
}

// TestCoreFileOps: R's answers to file operations are checked: a refusal
// is ErrFileRefused and keeps R; a wrong answer is a protocol error and
// replaces it.
func TestCoreFileOps(t *testing.T) {
	good := func(m fileMsg) any {
		switch m.Type {
		case "get_file":
			return bridge.FileReply{Type: "file_reply", ID: m.ID, Name: m.Name, Data: []byte("hi"), Size: 2}
		case "list_files":
			return bridge.FileReply{Type: "file_reply", ID: m.ID, Files: []bridge.FileInfo{{Name: "a", Size: 1}}}
		}
		return bridge.FileReply{Type: "file_reply", ID: m.ID}
	}
	cases := []struct {
		name     string
		reply    func(m fileMsg) any
		op       func(s *Session) error
		want     error
		replaced bool
	}{
		{"get", good, func(s *Session) error {
			b, err := s.GetFile(context.Background(), "d/x.txt")
			if err == nil && string(b) != "hi" {
				return errors.New("wrong data " + string(b))
			}
			return err
		}, nil, false},
		{"put", good, func(s *Session) error { return s.PutFile(context.Background(), "x", []byte("1")) }, nil, false},
		{"refused", func(m fileMsg) any {
			return bridge.FileReply{Type: "file_reply", ID: m.ID, Error: "\"x\" is refused: it is not a regular file"}
		}, func(s *Session) error { _, err := s.GetFile(context.Background(), "x"); return err }, ErrFileRefused, false},
		{"wrong id", func(m fileMsg) any { return bridge.FileReply{Type: "file_reply", ID: m.ID + 1} },
			func(s *Session) error { return s.PutFile(context.Background(), "x", nil) }, ErrProtocol, true},
		{"wrong frame", func(m fileMsg) any { return result(m.ID, 1.0) },
			func(s *Session) error { _, err := s.ListFiles(context.Background()); return err }, ErrProtocol, true},
		{"other file", func(m fileMsg) any {
			return bridge.FileReply{Type: "file_reply", ID: m.ID, Name: "other", Data: []byte("hi"), Size: 2}
		}, func(s *Session) error { _, err := s.GetFile(context.Background(), "x"); return err }, ErrProtocol, true},
		{"bad size", func(m fileMsg) any {
			return bridge.FileReply{Type: "file_reply", ID: m.ID, Name: m.Name, Data: []byte("hi"), Size: 3}
		}, func(s *Session) error { _, err := s.GetFile(context.Background(), "x"); return err }, ErrProtocol, true},
		{"bad listed name", func(m fileMsg) any {
			return bridge.FileReply{Type: "file_reply", ID: m.ID, Files: []bridge.FileInfo{{Name: "../etc", Size: 1}}}
		}, func(s *Session) error { _, err := s.ListFiles(context.Background()); return err }, ErrProtocol, true},
		{"bad name, never sent", good, func(s *Session) error { _, err := s.GetFile(context.Background(), "../x"); return err }, ErrFileRefused, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			replies := 0
			s, eng := fakeSession(t, Config{}, serveFiles(func(m fileMsg) any {
				replies++
				if replies == 1 {
					return c.reply(m)
				}
				return good(m)
			}, nil, 0))
			err := c.op(s)
			if (c.want == nil) != (err == nil) || (c.want != nil && !errors.Is(err, c.want)) {
				t.Fatalf("%v, want %v", err, c.want)
			}
			// The session goes on, in a new R after a wrong answer.
			if _, err := s.ListFiles(context.Background()); err != nil {
				t.Fatalf("ListFiles afterwards: %v", err)
			}
			if got := eng.launches() == 2; got != c.replaced {
				t.Errorf("R replaced %v, want %v", got, c.replaced)
			}
		})
	}
}

// TestCoreCollectedFiles: collected files whose names or sizes break the
// rules are dropped on the host too, and counted.
func TestCoreCollectedFiles(t *testing.T) {
	files := []bridge.File{{Name: "ok.csv", Data: []byte("a")}, {Name: "../up", Data: []byte("b")},
		{Name: "big", Data: make([]byte, MaxFileBytes+1)}, {Name: "empty"}}
	s, _ := fakeSession(t, Config{}, serveFiles(nil, files, 1))
	res, err := s.ExecuteWith(context.Background(), "1", ExecOptions{CollectOutputs: true})
	if err != nil || len(res.Files) != 2 || res.Files[0].Name != "ok.csv" || res.Files[1].Name != "empty" ||
		res.Files[1].Data == nil || res.FilesDropped != 3 {
		t.Fatalf("collected %+v, dropped %d, %v", res.Files, res.FilesDropped, err)
	}
	res, err = s.ExecuteWith(context.Background(), "1", ExecOptions{})
	if err != nil || res.Files != nil || res.FilesDropped != 0 {
		t.Errorf("without collect: %+v, %d, %v", res.Files, res.FilesDropped, err)
	}
	_, err = s.ExecuteWith(context.Background(), "1", ExecOptions{Inputs: []File{{Name: "a/../b"}}})
	if !errors.Is(err, ErrFileRefused) || !errors.Is(err, ErrRejected) {
		t.Errorf("a bad input: %v", err)
	}
}
