package service

import (
	"context"
	"encoding/base64"
	"fmt"
	"strings"
	"testing"

	securer "github.com/securer-runc/securer-runc"
	"github.com/securer-runc/securer-runc/rvalue"
)

// TestFileOpValidation: file ops and an execute's files are refused with
// the right code before any session is looked up; valid ones get as far
// as the (missing) session.
func TestFileOpValidation(t *testing.T) {
	b64 := func(n int) string { return base64.StdEncoding.EncodeToString(make([]byte, n)) }
	inputs := func(n, size int) string {
		var parts []string
		for i := range n {
			parts = append(parts, fmt.Sprintf(`{"name":"f%d","data":%q}`, i, b64(size)))
		}
		return "[" + strings.Join(parts, ",") + "]"
	}
	cases := []struct {
		line string
		code string
		msg  string
	}{
		{`{"op":"put_file","id":"1","session":"s","name":"a.csv","data":"eA=="}`, CodeNotFound, "no session"},
		{`{"op":"get_file","id":"1","session":"s","name":"a/b.csv"}`, CodeNotFound, "no session"},
		{`{"op":"list_files","id":"1","session":"s"}`, CodeNotFound, "no session"},
		{`{"op":"put_file","id":"1","session":"s","name":"a.csv","data":""}`, CodeNotFound, "no session"},
		{`{"op":"put_file","id":"1","session":"s","name":"a.csv"}`, CodeBadRequest, "needs data"},
		{`{"op":"put_file","id":"1","name":"a.csv","data":"eA=="}`, CodeBadRequest, "needs a session"},
		{`{"op":"list_files","id":"1"}`, CodeBadRequest, "needs a session"},
		{`{"op":"put_file","id":"1","session":"s","name":"../x","data":"eA=="}`, CodeFileRefused, "not . or .."},
		{`{"op":"get_file","id":"1","session":"s","name":"/etc/passwd"}`, CodeFileRefused, "relative"},
		{`{"op":"get_file","id":"1","session":"s","name":"a/b/c/d/e"}`, CodeFileRefused, "at most 4"},
		{`{"op":"get_file","id":"1","session":"s","name":""}`, CodeFileRefused, "empty"},
		{`{"op":"put_file","id":"1","session":"s","name":"big","data":"` + b64(securer.MaxFileBytes+1) + `"}`, CodeFileRefused, "limit per file"},
		{`{"op":"put_file","id":"1","session":"s","name":"a","data":"%%%"}`, CodeBadRequest, ""},
		{`{"op":"get_file","id":"1","session":"s","name":"a","data":"eA=="}`, CodeBadRequest, `does not take "data"`},
		{`{"op":"list_files","id":"1","session":"s","name":"a"}`, CodeBadRequest, `does not take "name"`},
		{`{"op":"put_file","id":"1","pool":"p","name":"a","data":"eA=="}`, CodeBadRequest, `does not take "pool"`},
		{`{"op":"execute","id":"1","session":"s","code":"1","inputs":` + inputs(17, 1) + `}`, CodeFileRefused, "at most 16"},
		{`{"op":"execute","id":"1","session":"s","code":"1","inputs":` + inputs(2, 3<<20+1) + `}`, CodeFileRefused, "limit per request"},
		{`{"op":"execute","id":"1","session":"s","code":"1","inputs":[{"name":"..","data":""}]}`, CodeFileRefused, "not . or .."},
		{`{"op":"execute","id":"1","session":"s","code":"1","inputs":[{"name":"a","data":""},{"name":"a","data":""}]}`, CodeFileRefused, "twice"},
		{`{"op":"execute","id":"1","session":"s","code":"1","inputs":` + inputs(16, 1) + `,"outputs":{"collect":true}}`, CodeNotFound, "no session"},
		{`{"op":"execute","id":"1","session":"s","code":"1","outputs":{"collect":true,"x":1}}`, CodeBadRequest, ""},
	}
	for _, c := range cases {
		rw := &bufConn{}
		conn := newConn(context.Background(), New(Options{MaxQueuedBytes: 64 << 20}), rw)
		conn.handle([]byte(c.line))
		evs := rw.events(t)
		if len(evs) != 1 || evs[0]["type"] != "error" {
			t.Errorf("%.80s: events %v, want one error", c.line, evs)
			continue
		}
		body := evs[0]["error"].(map[string]any)
		if body["code"] != c.code || !strings.Contains(body["message"].(string), c.msg) {
			t.Errorf("%.80s: %v %q, want %s saying %q", c.line, body["code"], body["message"], c.code, c.msg)
		}
	}
}

// TestFileWireGolden pins the file events' bytes, and a result's files
// (go test -run TestFileWireGolden -update rewrites them).
func TestFileWireGolden(t *testing.T) {
	res := &securer.Result{Verdict: securer.VerdictOK, Value: rvalue.Null(),
		Files: []securer.File{{Name: "out.csv", Data: []byte("a,b\n1,2\n")}, {Name: "empty", Data: []byte{}}}, FilesDropped: 2}
	tests := []struct {
		name string
		ev   any
	}{
		{"file_put", newReply("file_put", "1")},
		{"file", fileEvent{Type: "file", ID: "2", Name: "d/x.bin", Data: []byte{0, 1, 255}, Size: 3}},
		{"files", filesEvent{Type: "files", ID: "3", Files: []wireFileInfo{{Name: "a.csv", Size: 10}, {Name: "d/x.bin", Size: 3}}}},
		{"files_empty", filesEvent{Type: "files", ID: "4", Files: []wireFileInfo{}}},
		{"result_files", newResultEvent("5", res)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { checkGolden(t, tt.name, tt.ev) })
	}
}
