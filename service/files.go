package service

import (
	"errors"
	"fmt"

	securer "github.com/securer-runc/securer-runc"
)

// Files: put_file, get_file and list_files on a session between its
// executions, and an execute's inputs and collected outputs.

// wireFile is a file on the wire: an input, a collected output, or
// get_file's answer. Data is base64 in JSON.
type wireFile struct {
	Name string `json:"name"`
	Data []byte `json:"data"`
	Size int    `json:"size"`
}

// wireFileInfo is one entry of list_files's answer.
type wireFileInfo struct {
	Name string `json:"name"`
	Size int64  `json:"size"`
}

// outputsRequest is execute's outputs member.
type outputsRequest struct {
	Collect bool `json:"collect"`
}

type (
	fileEvent struct {
		Type string `json:"type"` // file
		ID   string `json:"id"`
		Name string `json:"name"`
		Data []byte `json:"data"`
		Size int    `json:"size"`
	}
	filesEvent struct {
		Type  string         `json:"type"` // files
		ID    string         `json:"id"`
		Files []wireFileInfo `json:"files"`
	}
)

// memFilesHeld is what one session's files add to the memory ceiling: a
// request's files decoded (6 MiB at most) and their base64 in the frame to
// R (8 MiB), held while the execution they came with runs. Files coming
// back travel in R's frames and events, already counted per session.
const memFilesHeld = 16 << 20

// CodeFileRefused: a file operation or an execute's inputs were refused
// (a bad name, a link, a non-regular or missing file, over a limit).
const CodeFileRefused = "file_refused"

// checkFileRequest refuses a file op or an execute's inputs before they
// are queued: what the engine would refuse anyway need not wait.
func checkFileRequest(req *request) error {
	switch req.Op {
	case "put_file", "get_file", "list_files":
		if req.Session == "" {
			return fmt.Errorf("%w: %s needs a session", errBadRequest, req.Op)
		}
	}
	switch req.Op {
	case "put_file":
		if req.Data == nil {
			return fmt.Errorf("%w: put_file needs data (base64, may be empty)", errBadRequest)
		}
		return securer.CheckFiles([]securer.File{{Name: req.Name, Data: req.Data}})
	case "get_file":
		return securer.CheckFileName(req.Name)
	case "execute":
		return securer.CheckFiles(inputFiles(req.Inputs))
	}
	return nil
}

func inputFiles(in []wireFile) []securer.File {
	var out []securer.File
	for _, f := range in {
		out = append(out, securer.File{Name: f.Name, Data: f.Data})
	}
	return out
}

func (c *conn) putFile(j *job) (any, error) {
	if err := j.sess.PutFile(c.ctx, j.req.Name, j.req.Data); err != nil {
		return nil, err
	}
	return newReply("file_put", j.req.ID), nil
}

func (c *conn) getFile(j *job) (any, error) {
	data, err := j.sess.GetFile(c.ctx, j.req.Name)
	if err != nil {
		return nil, err
	}
	return fileEvent{Type: "file", ID: j.req.ID, Name: j.req.Name, Data: data, Size: len(data)}, nil
}

func (c *conn) listFiles(j *job) (any, error) {
	list, err := j.sess.ListFiles(c.ctx)
	if err != nil {
		return nil, err
	}
	files := make([]wireFileInfo, 0, len(list))
	for _, f := range list {
		files = append(files, wireFileInfo{Name: f.Name, Size: f.Size})
	}
	return filesEvent{Type: "files", ID: j.req.ID, Files: files}, nil
}

// toWireFiles converts collected outputs.
func toWireFiles(files []securer.File) []wireFile {
	var out []wireFile
	for _, f := range files {
		out = append(out, wireFile{Name: f.Name, Data: f.Data, Size: len(f.Data)})
	}
	return out
}

func isFileRefused(err error) bool { return errors.Is(err, securer.ErrFileRefused) }
