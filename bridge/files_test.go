package bridge

import (
	"bytes"
	"errors"
	"testing"
)

func TestDecodeFileFrames(t *testing.T) {
	cases := []struct {
		frame string
		ok    bool
		check func(t *testing.T, msg any)
	}{
		{`{"type":"file_reply","id":3,"error":"","name":"a/b.csv","data":"AAH/","size":3}`, true, func(t *testing.T, msg any) {
			r := msg.(*FileReply)
			if r.ID != 3 || r.Name != "a/b.csv" || !bytes.Equal(r.Data, []byte{0, 1, 255}) || r.Size != 3 {
				t.Errorf("file_reply decoded as %+v", r)
			}
		}},
		{`{"type":"file_reply","id":4,"error":"","files":[{"name":"x","size":2}]}`, true, func(t *testing.T, msg any) {
			if r := msg.(*FileReply); len(r.Files) != 1 || r.Files[0] != (FileInfo{Name: "x", Size: 2}) {
				t.Errorf("file_reply decoded as %+v", r)
			}
		}},
		{`{"type":"file_reply","id":5,"error":"refused"}`, true, func(t *testing.T, msg any) {
			if r := msg.(*FileReply); r.Error != "refused" {
				t.Errorf("file_reply decoded as %+v", r)
			}
		}},
		{`{"type":"file_reply","id":5,"error":"","path":"/etc/passwd"}`, false, nil},
		{`{"type":"file_reply","id":5,"error":"","data":"not base64!"}`, false, nil},
		{`{"type":"result","id":1,"value":{"type":"NULL"},"visible":false,"printed":"","warnings":[],"messages":[],"error":null,"interrupted":false,"files":[{"name":"o.txt","data":"aGk=","size":2}],"files_dropped":1}`, true, func(t *testing.T, msg any) {
			r := msg.(*Result)
			if len(r.Files) != 1 || r.Files[0].Name != "o.txt" || string(r.Files[0].Data) != "hi" || r.FilesDropped != 1 {
				t.Errorf("result files decoded as %+v, dropped %d", r.Files, r.FilesDropped)
			}
		}},
		{`{"type":"result","id":1,"value":{"type":"NULL"},"visible":false,"printed":"","warnings":[],"messages":[],"error":null,"interrupted":false,"files":[],"files_dropped":-1}`, false, nil},
		{`{"type":"result","id":1,"value":{"type":"NULL"},"visible":false,"printed":"","warnings":[],"messages":[],"error":null,"interrupted":false,"files":[{"name":"o","data":"","mode":7}]}`, false, nil},
	}
	for _, c := range cases {
		msg, err := Decode([]byte(c.frame))
		if c.ok != (err == nil) || (err != nil && !errors.Is(err, ErrProtocol)) {
			t.Errorf("Decode(%.60s): %v, want ok %v", c.frame, err, c.ok)
			continue
		}
		if c.check != nil && err == nil {
			c.check(t, msg)
		}
	}
}

func TestEncodeFileMessages(t *testing.T) {
	cases := []struct {
		msg  any
		want string
	}{
		{PutFile{Type: "put_file", ID: 1, Name: "a", Data: []byte("hi")}, `{"type":"put_file","id":1,"name":"a","data":"aGk="}`},
		{PutFile{Type: "put_file", ID: 1, Name: "a", Data: []byte{}}, `{"type":"put_file","id":1,"name":"a","data":""}`},
		{GetFile{Type: "get_file", ID: 2, Name: "d/x"}, `{"type":"get_file","id":2,"name":"d/x"}`},
		{ListFiles{Type: "list_files", ID: 3}, `{"type":"list_files","id":3}`},
		{Execute{Type: "execute", ID: 4, Code: "1", Inputs: []File{{Name: "i", Data: []byte("x")}}, Collect: true},
			`{"type":"execute","id":4,"code":"1","stale_interrupt":false,"fresh":false,"inputs":[{"name":"i","data":"eA=="}],"collect":true}`},
		{Execute{Type: "execute", ID: 5, Code: "1"}, `{"type":"execute","id":5,"code":"1","stale_interrupt":false,"fresh":false}`},
	}
	for _, c := range cases {
		b, err := Encode(c.msg)
		if err != nil || string(b) != c.want+"\n" {
			t.Errorf("Encode(%T) = %s, %v; want %s", c.msg, b, err, c.want)
		}
	}
}
