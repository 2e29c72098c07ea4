package securer

import "time"

// Verdict says how an execution ended.
type Verdict string

const (
	VerdictOK            Verdict = "ok"
	VerdictError         Verdict = "error"           // R signalled an error
	VerdictTimeout       Verdict = "timeout"         // wall timeout
	VerdictCanceled      Verdict = "canceled"        // the caller's context ended
	VerdictOutOfMemory   Verdict = "oom"             // the kernel OOM-killed R
	VerdictKilled        Verdict = "killed"          // R died otherwise (signal, quit())
	VerdictProtocolError Verdict = "protocol_error"  // R broke the protocol
	VerdictToolCallLimit Verdict = "tool_call_limit" // Config.MaxToolCalls reached
	VerdictOutputLimit   Verdict = "output_limit"    // Config.Output.LimitBytes reached
)

// Accounting is what an execution cost.
type Accounting struct {
	Wall time.Duration `json:"wall_ns"`
	// CPU used by the whole container during the execution.
	CPUUser   time.Duration `json:"cpu_user_ns"`
	CPUSystem time.Duration `json:"cpu_system_ns"`
	// PeakMemoryBytes and PeakPids are the container's peaks since its R
	// started (cgroup counters cannot be reset without writing to the
	// cgroup, which belongs to libcontainer). PeakPids is 0 on kernels
	// without pids.peak.
	PeakMemoryBytes uint64 `json:"peak_memory_bytes"`
	PeakPids        uint64 `json:"peak_pids"`
	OOMKills        uint64 `json:"oom_kills"` // during this execution
	ToolCalls       int    `json:"tool_calls"`
	StdoutBytes     int64  `json:"stdout_bytes"`
	StderrBytes     int64  `json:"stderr_bytes"`
}

// Result is everything an execution produced.
type Result struct {
	Verdict Verdict `json:"verdict"`
	// Value is the last top-level value (NULL after an error).
	Value   Value  `json:"value"`
	Visible bool   `json:"visible"`
	Printed string `json:"printed"` // print() of Value when visible
	Stdout  string `json:"stdout"`
	Stderr  string `json:"stderr"`
	// StdoutElided and StderrElided count bytes dropped by
	// Config.Output.KeepBytes. Output past Output.LimitBytes is neither
	// streamed nor kept here (the Accounting counts it): Stdout and Stderr
	// hold what was streamed.
	StdoutElided int64    `json:"stdout_elided,omitempty"`
	StderrElided int64    `json:"stderr_elided,omitempty"`
	Warnings     []string `json:"warnings"`
	Messages     []string `json:"messages"`
	Error        *RError  `json:"error,omitempty"`
	// Exit describes R's death when the container ended (oom, killed).
	Exit   string `json:"exit,omitempty"`
	Detail string `json:"detail,omitempty"`
	// StateLost says that this execution ran in a new R: the one earlier
	// executions left their state in died or was replaced (OOM kill,
	// crash, kill after an unanswered interrupt, protocol error), and
	// StateLostReason says why. An explicit Restart is not reported.
	// Fresh executions never report it; the next plain one does.
	StateLost       bool       `json:"state_lost"`
	StateLostReason string     `json:"state_lost_reason,omitempty"`
	Accounting      Accounting `json:"accounting"`

	// WarningsDropped counts the warnings beyond the first 100, which
	// Warnings holds.
	WarningsDropped int64 `json:"warnings_dropped,omitempty"`

	// PrintedBytes is how many bytes the auto-print of Value wrote at the
	// end of Stdout (0 when nothing was printed); Printed is clipped to
	// 65,536 characters, this count is not.
	PrintedBytes int64 `json:"printed_bytes"`
	// Displays are the plot pages the code drew, in order (see Plots);
	// DisplaysDropped counts those over the limits.
	Displays        []Display `json:"displays,omitempty"`
	DisplaysDropped int       `json:"displays_dropped,omitempty"`
	// Files are the regular files the code made or changed in the work
	// dir (ExecOptions.CollectOutputs), within the limits of one request;
	// FilesDropped counts those left out.
	Files        []File `json:"files,omitempty"`
	FilesDropped int    `json:"files_dropped,omitempty"`
}
