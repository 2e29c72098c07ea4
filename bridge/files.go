package bridge

// Files between executions (host -> R: put_file, get_file, list_files;
// R -> host: file_reply) and around one (Execute.Inputs, Execute.Collect,
// Result.Files). Data travels base64-encoded ([]byte in JSON).

// File is a file of the box's work dir: put before an execution, or
// collected after it. Size repeats len(Data) in R's frames.
type File struct {
	Name string `json:"name"`
	Data []byte `json:"data"`
	Size int64  `json:"size,omitzero"`
}

// FileInfo names a file of the work dir and its size (list_files).
type FileInfo struct {
	Name string `json:"name"`
	Size int64  `json:"size"`
}

// PutFile asks R to write Data to the work dir under Name.
type PutFile struct {
	Type string `json:"type"`
	ID   uint64 `json:"id"`
	Name string `json:"name"`
	Data []byte `json:"data"`
}

// GetFile asks R for the regular file Name of the work dir.
type GetFile struct {
	Type string `json:"type"`
	ID   uint64 `json:"id"`
	Name string `json:"name"`
}

// ListFiles asks R for the regular files of the work dir.
type ListFiles struct {
	Type string `json:"type"`
	ID   uint64 `json:"id"`
}

// FileReply answers PutFile, GetFile or ListFiles: Error is empty on
// success; GetFile's answer carries Name, Data and Size, ListFiles's
// Files.
type FileReply struct {
	Type  string     `json:"type"`
	ID    uint64     `json:"id"`
	Error string     `json:"error"`
	Name  string     `json:"name,omitempty"`
	Data  []byte     `json:"data,omitempty"`
	Size  int64      `json:"size,omitempty"`
	Files []FileInfo `json:"files,omitempty"`
}
