package chaos

import (
	"encoding/json"
	"os"
	"sort"
	"sync"
	"time"
)

// Kind is what a recorded operation did.
type Kind string

// Operation kinds of the workload.
const (
	Read  Kind = "read"
	Write Kind = "write"
	CAS   Kind = "cas"
)

// Outcome is what a client learned about its operation.
type Outcome string

// The three outcomes, as Jepsen distinguishes them.
const (
	// OK: the operation took effect (or, for a read, returned this value).
	OK Outcome = "ok"
	// Failed: the operation definitely did not take effect (a 4xx, a
	// "not-applied" refusal, or an error before the request was sent).
	Failed Outcome = "failed"
	// Unknown: the request may or may not have taken effect (a timeout, a
	// reset connection or a 5xx after sending).
	Unknown Outcome = "unknown"
)

// Op is one operation of the history.
type Op struct {
	// Process is the logical client: a client whose operation ends Unknown
	// continues as a new process, since it can no longer know the order of
	// its own operations.
	Process int    `json:"process"`
	Kind    Kind   `json:"kind"`
	Key     string `json:"key"`
	// Value is what a write wrote or a read returned ("" = no such key).
	Value string `json:"value,omitempty"`
	// From and To: a CAS replaces From (as last read) with To.
	From string `json:"from,omitempty"`
	To   string `json:"to,omitempty"`
	// Swapped reports whether an OK CAS took effect (false: the key had
	// moved on, and nothing changed).
	Swapped bool    `json:"swapped,omitempty"`
	Outcome Outcome `json:"outcome"`
	// Call and Return are nanoseconds since the run started. An Unknown
	// operation has no meaningful Return: it may take effect at any time.
	Call   int64  `json:"call"`
	Return int64  `json:"return"`
	Node   string `json:"node"`
	Error  string `json:"error,omitempty"`
	// Final marks the reads made after the faults healed, to check
	// convergence.
	Final bool `json:"final,omitempty"`
}

// Latency is the operation's duration.
func (o Op) Latency() time.Duration { return time.Duration(o.Return - o.Call) }

// Recorder collects operations from concurrent clients.
type Recorder struct {
	start time.Time
	mu    sync.Mutex
	ops   []Op
}

// NewRecorder starts the clock of a history.
func NewRecorder() *Recorder { return &Recorder{start: time.Now()} }

// Now is the history's clock: nanoseconds since the recorder started.
func (r *Recorder) Now() int64 { return int64(time.Since(r.start)) }

// Start is when the history's clock read zero.
func (r *Recorder) Start() time.Time { return r.start }

// Add records a completed operation.
func (r *Recorder) Add(op Op) {
	r.mu.Lock()
	r.ops = append(r.ops, op)
	r.mu.Unlock()
}

// Ops returns the history so far, ordered by invocation.
func (r *Recorder) Ops() []Op {
	r.mu.Lock()
	out := append([]Op(nil), r.ops...)
	r.mu.Unlock()
	sort.SliceStable(out, func(i, j int) bool { return out[i].Call < out[j].Call })
	return out
}

// FaultWindow is one nemesis action: when it started and healed.
type FaultWindow struct {
	Nemesis string `json:"nemesis"`
	Detail  string `json:"detail"`
	Start   int64  `json:"start"`
	End     int64  `json:"end"` // 0 while still active
	// Steps are what the nemesis did and saw along the way (the corrupt
	// nemesis: the damage, the node's answer, the recovery).
	Steps []string `json:"steps,omitempty"`
}

// History is what a run writes to history.json: everything needed to check
// it again offline.
type History struct {
	Ops    []Op          `json:"ops"`
	Faults []FaultWindow `json:"faults"`
	// Lock is the lock workload's history (lockload.go), when it ran.
	Lock []LockOp `json:"lock,omitempty"`
}

// WriteJSON saves the history.
func (h History) WriteJSON(path string) error {
	b, err := json.MarshalIndent(h, "", " ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, b, 0o644)
}

// ReadHistory loads a history.json.
func ReadHistory(path string) (History, error) {
	var h History
	b, err := os.ReadFile(path)
	if err != nil {
		return h, err
	}
	return h, json.Unmarshal(b, &h)
}
