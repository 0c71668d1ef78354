package cluster

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptrace"
	"time"

	"github.com/troupe-kv/troupe/cluster/faultnet"
	"github.com/troupe-kv/troupe/storage"
)

// The internal endpoints a follower uses to reach the leader. A request that
// carries ForwardedHeader is answered by the receiving node itself, never
// forwarded again, so forwarding is exactly one hop and cannot loop.
const (
	ForwardedHeader = "X-Troupe-Forwarded-By"
	ApplyPath       = "/v1/internal/apply"
	ApplyBatchPath  = "/v1/internal/apply-batch"
	ReadIndexPath   = "/v1/internal/read-index"
	PingPath        = "/v1/internal/ping"
	JoinPath        = "/v1/cluster/join"
	MembersPath     = "/v1/cluster/members/"
)

// JoinRequest is the body of POST /v1/cluster/join.
type JoinRequest struct {
	ID       string `json:"id"`
	RaftAddr string `json:"raft_addr"`
	HTTPAddr string `json:"http_addr"`
}

// ForwardedError is the JSON body of a failed internal request.
type ForwardedError struct {
	Code  string `json:"code,omitempty"`
	Error string `json:"error"`
}

// ApplyReply is the JSON body of a successful internal apply.
type ApplyReply struct {
	Index uint64 `json:"index"`
	OK    bool   `json:"ok"`
}

// ReadIndexReply is the JSON body of a successful internal read-index.
type ReadIndexReply struct {
	Index uint64 `json:"index"`
}

// Error codes carried between nodes, one per sentinel error.
const (
	codeNotLeader = "not-leader"
	codeNoLeader  = "no-leader"
	codeUnknown   = "unknown-outcome"
	codeBusy      = "busy"
)

// ErrorCode names err for the wire; "" for errors without a code.
func ErrorCode(err error) string {
	switch {
	case errors.Is(err, ErrNotLeader):
		return codeNotLeader
	case errors.Is(err, ErrNoLeader):
		return codeNoLeader
	case errors.Is(err, ErrUnknownOutcome):
		return codeUnknown
	case errors.Is(err, ErrBusy):
		return codeBusy
	}
	return ""
}

// ErrorFromCode turns a wire error code back into the sentinel error.
func ErrorFromCode(code, msg string) error {
	switch code {
	case codeNotLeader:
		return ErrNotLeader
	case codeNoLeader:
		return ErrNoLeader
	case codeUnknown:
		return fmt.Errorf("%w (at the leader: %s)", ErrUnknownOutcome, msg)
	case codeBusy:
		return ErrBusy
	}
	return errors.New(msg)
}

// RemoteError is a refusal from the leader that carries no error code,
// e.g. a 413 because the leader's value limit is smaller than this node's.
// A 4xx from the leader means it did not apply anything.
type RemoteError struct {
	Status  int
	Message string
}

// Error names the leader's status and message.
func (e *RemoteError) Error() string {
	return fmt.Sprintf("the leader answered %d: %s", e.Status, e.Message)
}

// LeaderError turns a non-200 answer from the leader into an error: one of
// the sentinel errors when the body carries a code, a *RemoteError
// otherwise.
func LeaderError(status int, body []byte) error {
	var fe ForwardedError
	if json.Unmarshal(body, &fe) == nil && fe.Error != "" {
		switch fe.Code {
		case codeNotLeader, codeNoLeader, codeUnknown, codeBusy:
			return ErrorFromCode(fe.Code, fe.Error)
		}
		return &RemoteError{Status: status, Message: fe.Error}
	}
	return &RemoteError{Status: status, Message: string(bytes.TrimSpace(body))}
}

// Forwarder sends a follower's writes and read-index requests to the leader
// over HTTP, reusing keep-alive connections.
type Forwarder struct {
	self   string
	client *http.Client
}

// NewForwarder returns a Forwarder that marks its requests as coming from
// the network's node and dials through it, so forwarding obeys the same
// fault rules as Raft.
func NewForwarder(network *faultnet.Network) *Forwarder {
	tr := &http.Transport{
		DialContext:         network.DialContext,
		MaxIdleConns:        256,
		MaxIdleConnsPerHost: 256,
		IdleConnTimeout:     90 * time.Second,
	}
	return &Forwarder{self: network.Self(), client: &http.Client{Transport: tr}}
}

// Close drops idle connections.
func (f *Forwarder) Close() { f.client.CloseIdleConnections() }

// Apply asks the leader at leaderHTTP to apply an encoded command. An error
// before the request was fully sent means nothing was applied (ErrNoLeader);
// a failure after that leaves the outcome unknown.
func (f *Forwarder) Apply(ctx context.Context, leaderHTTP string, cmd []byte) (storage.Result, error) {
	var reply ApplyReply
	if err := f.call(ctx, leaderHTTP, ApplyPath, cmd, &reply); err != nil {
		return storage.Result{}, err
	}
	return storage.Result{Index: reply.Index, OK: reply.OK}, nil
}

// MaxBatch is the most commands one forwarded batch may carry, and
// MaxBatchBytes the most bytes a follower puts in one (a single command
// may exceed it and then travels alone).
const (
	MaxBatch      = 1024
	MaxBatchBytes = 4 << 20
)

// EncodeBatch frames encoded commands for ApplyBatchPath: each is a
// uvarint length followed by the command.
func EncodeBatch(cmds [][]byte) []byte {
	n := 0
	for _, c := range cmds {
		n += binary.MaxVarintLen64 + len(c)
	}
	b := make([]byte, 0, n)
	for _, c := range cmds {
		b = binary.AppendUvarint(b, uint64(len(c)))
		b = append(b, c...)
	}
	return b
}

// DecodeBatch splits an EncodeBatch body. The commands alias b.
func DecodeBatch(b []byte) ([][]byte, error) {
	var cmds [][]byte
	for len(b) > 0 {
		if len(cmds) == MaxBatch {
			return nil, fmt.Errorf("batch holds more than %d commands", MaxBatch)
		}
		n, k := binary.Uvarint(b)
		if k <= 0 || n > uint64(len(b)-k) {
			return nil, errors.New("malformed batch framing")
		}
		cmds = append(cmds, b[k:k+int(n)])
		b = b[k+int(n):]
	}
	return cmds, nil
}

// BatchItemReply is the leader's answer for one command of a batch.
type BatchItemReply struct {
	Index uint64 `json:"index,omitempty"`
	OK    bool   `json:"ok,omitempty"`
	Code  string `json:"code,omitempty"`
	Error string `json:"error,omitempty"`
}

// Result turns the reply back into the command's result or error.
func (r BatchItemReply) Result() (storage.Result, error) {
	if r.Error != "" {
		if r.Code == "" {
			return storage.Result{}, &RemoteError{Status: http.StatusBadRequest, Message: r.Error}
		}
		return storage.Result{}, ErrorFromCode(r.Code, r.Error)
	}
	return storage.Result{Index: r.Index, OK: r.OK}, nil
}

// ApplyBatch sends several encoded commands to the leader in one request;
// it answers each separately. Transport failures apply to the whole batch:
// before the batch was sent nothing was applied (ErrNoLeader), after it
// every command's outcome is unknown.
func (f *Forwarder) ApplyBatch(ctx context.Context, leaderHTTP string, cmds [][]byte) ([]BatchItemReply, error) {
	var reply []BatchItemReply
	if err := f.call(ctx, leaderHTTP, ApplyBatchPath, EncodeBatch(cmds), &reply); err != nil {
		return nil, err
	}
	if len(reply) != len(cmds) {
		return nil, fmt.Errorf("%w (the leader answered %d results for %d commands)", ErrUnknownOutcome, len(reply), len(cmds))
	}
	return reply, nil
}

// ReadIndex asks the leader for a read index (see Node.ReadIndex).
func (f *Forwarder) ReadIndex(ctx context.Context, leaderHTTP string) (uint64, error) {
	var reply ReadIndexReply
	if err := f.call(ctx, leaderHTTP, ReadIndexPath, nil, &reply); err != nil {
		return 0, err
	}
	return reply.Index, nil
}

// PingReply is the JSON body of a successful ping.
type PingReply struct {
	ID string `json:"id"`
}

// Ping asks the node at host for its id: the failure detector's probe. It
// goes through the fault layer like every other inter-node message. It is
// a POST so Go's HTTP client never quietly resends a lost ping on a fresh
// connection: a lost ping must count as lost.
func (f *Forwarder) Ping(ctx context.Context, host string) (string, error) {
	resp, _, err := f.send(ctx, host, http.MethodPost, PingPath, nil, true)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", LeaderError(resp.StatusCode, b)
	}
	var reply PingReply
	if err := json.Unmarshal(b, &reply); err != nil {
		return "", fmt.Errorf("bad ping answer: %v", err)
	}
	return reply.ID, nil
}

// Do sends an arbitrary request (membership changes) to host and returns its
// status and body. forwarded marks it as a forward to the leader, which the
// receiver must handle itself; an unmarked request (a new node asking a seed
// to let it join) may be forwarded once more by the receiver.
func (f *Forwarder) Do(ctx context.Context, host, method, path string, body []byte, forwarded bool) (int, []byte, error) {
	resp, sent, err := f.send(ctx, host, method, path, body, forwarded)
	if err != nil {
		return 0, nil, sendError(sent, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return 0, nil, fmt.Errorf("%w (reading the leader's answer: %v)", ErrUnknownOutcome, err)
	}
	return resp.StatusCode, b, nil
}

func (f *Forwarder) call(ctx context.Context, leaderHTTP, path string, body []byte, out any) error {
	resp, sent, err := f.send(ctx, leaderHTTP, http.MethodPost, path, body, true)
	if err != nil {
		return sendError(sent, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return fmt.Errorf("%w (reading the leader's answer: %v)", ErrUnknownOutcome, err)
	}
	if resp.StatusCode != http.StatusOK {
		return LeaderError(resp.StatusCode, b)
	}
	if err := json.Unmarshal(b, out); err != nil {
		return fmt.Errorf("%w (bad answer from the leader: %v)", ErrUnknownOutcome, err)
	}
	return nil
}

// send performs the request and reports whether it was written completely:
// a request the leader never fully received cannot have been applied.
func (f *Forwarder) send(ctx context.Context, host, method, path string, body []byte, forwarded bool) (*http.Response, bool, error) {
	sent := false
	trace := &httptrace.ClientTrace{WroteRequest: func(i httptrace.WroteRequestInfo) { sent = i.Err == nil }}
	req, err := http.NewRequestWithContext(httptrace.WithClientTrace(ctx, trace), method, "http://"+host+path, bytes.NewReader(body))
	if err != nil {
		return nil, false, err
	}
	if forwarded {
		req.Header.Set(ForwardedHeader, f.self)
	}
	req.Header.Set("Content-Type", "application/octet-stream")
	resp, err := f.client.Do(req)
	return resp, sent, err
}

func sendError(sent bool, err error) error {
	if !sent {
		return fmt.Errorf("%w (leader unreachable: %v)", ErrNoLeader, err)
	}
	return fmt.Errorf("%w (lost contact with the leader: %v)", ErrUnknownOutcome, err)
}
