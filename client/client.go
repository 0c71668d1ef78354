package client

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"strings"
	"sync/atomic"
	"time"
)

// DefaultEndpoint is where a Client with no endpoints looks, matching
// kvnode's default --http-addr (and Consul's agent).
const DefaultEndpoint = "127.0.0.1:8500"

// Defaults for failover. The backoff only applies once every endpoint has
// been tried, so a dead node costs one refused dial and no sleep. Waiting out
// an election is mostly the server's job (a node holds a request for up to
// its request timeout, 5s by default, until a leader appears); the backoff
// only spaces out later passes so that many clients do not retry in
// lockstep. The dial timeout is short because a node that silently drops
// packets would otherwise eat the caller's whole deadline.
const (
	DefaultBackoff     = 100 * time.Millisecond
	DefaultMaxBackoff  = time.Second
	DefaultDialTimeout = 2 * time.Second
)

// Client sends requests to a Troupe cluster. It is safe for concurrent use,
// and meant to be shared: its connection pool is what makes many concurrent
// callers cheap.
type Client struct {
	endpoints   []endpoint
	hc          *http.Client
	preferred   atomic.Uint32
	maxAttempts int
	backoff     time.Duration
	maxBackoff  time.Duration
	// tls, when set, is the TLS configuration for every request, and
	// makes bare host:port endpoints https.
	tls   *tls.Config
	token string
}

// endpoint is one node's base URL. A malformed address is kept with its
// error, because New cannot fail; requests to it fail as not-applied, which
// lets failover skip it.
type endpoint struct {
	url  *url.URL
	name string
	err  error
}

// Option configures a Client at construction.
type Option func(*Client)

// WithHTTPClient replaces the pooled HTTP client, e.g. to add TLS
// settings or an in-memory transport in tests. Its Timeout, if any, bounds
// every attempt, which would cut blocking queries short; prefer contexts.
func WithHTTPClient(hc *http.Client) Option {
	return func(c *Client) { c.hc = hc }
}

// WithTLS makes the client speak TLS with cfg (see certs.ClientConfig for
// one built from PEM files): endpoints given as bare host:port use https,
// and cfg verifies the servers and supplies the client certificate. An
// endpoint spelled http:// stays plaintext. cfg is cloned, so the caller
// may reuse it. With WithHTTPClient, cfg is applied to a clone of that
// client's *http.Transport; any other RoundTripper is used as given.
func WithTLS(cfg *tls.Config) Option {
	return func(c *Client) {
		if cfg != nil {
			c.tls = cfg.Clone()
		}
	}
}

// WithMaxAttempts bounds how many requests one call may make across
// failover; 1 disables failover. The default is the number of endpoints
// plus four.
func WithMaxAttempts(n int) Option {
	return func(c *Client) {
		if n > 0 {
			c.maxAttempts = n
		}
	}
}

// WithToken sends token with every request, as X-Consul-Token (the
// header Consul's own clients use), for a cluster with ACLs on.
func WithToken(token string) Option {
	return func(c *Client) { c.token = token }
}

// WithBackoff sets the pause between passes over the endpoints: base after
// the first full pass, doubling up to max. Zero base retries immediately,
// which tests want.
func WithBackoff(base, max time.Duration) Option {
	return func(c *Client) { c.backoff, c.maxBackoff = base, max }
}

// NewTransport returns the pooled transport New uses by default: sized for
// hundreds of concurrent callers per node (keep-alive connections are what
// keep latency flat under load) and with a short dial timeout, so a node that
// silently drops packets costs seconds, not the whole request budget. There
// is no response timeout, because blocking queries legitimately wait for
// minutes; bound requests with contexts.
func NewTransport() *http.Transport {
	return &http.Transport{
		Proxy: http.ProxyFromEnvironment,
		DialContext: (&net.Dialer{
			Timeout:   DefaultDialTimeout,
			KeepAlive: 30 * time.Second,
		}).DialContext,
		MaxIdleConns:          1024,
		MaxIdleConnsPerHost:   512,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   5 * time.Second,
		ExpectContinueTimeout: time.Second,
		ForceAttemptHTTP2:     true,
	}
}

// New returns a client for the given endpoints, each "host:port" or a full
// URL ("https://host:port/prefix"). The first endpoint is preferred until it
// fails. New makes no request, so it cannot fail: malformed endpoints are
// reported by the requests that try them (use ParseEndpoint to validate up
// front).
func New(endpoints []string, opts ...Option) *Client {
	if len(endpoints) == 0 {
		endpoints = []string{DefaultEndpoint}
	}
	c := &Client{backoff: DefaultBackoff, maxBackoff: DefaultMaxBackoff, maxAttempts: len(endpoints) + 4}
	for _, o := range opts {
		o(c)
	}
	for _, s := range endpoints {
		c.endpoints = append(c.endpoints, c.endpointOf(s))
	}
	switch {
	case c.hc == nil:
		t := NewTransport()
		t.TLSClientConfig = c.tls
		c.hc = &http.Client{Transport: t}
	case c.tls != nil:
		// Applied to a copy: the caller's client may be shared with
		// code that wants no TLS settings of ours.
		if t, ok := c.hc.Transport.(*http.Transport); ok {
			t = t.Clone()
			t.TLSClientConfig = c.tls
			hc := *c.hc
			hc.Transport = t
			c.hc = &hc
		}
	}
	return c
}

// ParseEndpoint normalises an endpoint the way New does and reports why it
// is unusable, so a command line can reject a typo before sending anything.
func ParseEndpoint(s string) (string, error) {
	u, err := parseEndpoint(s, "http")
	if err != nil {
		return "", err
	}
	return u.String(), nil
}

// parseEndpoint normalises s, giving a bare host:port scheme.
func parseEndpoint(s, scheme string) (*url.URL, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil, errors.New("empty endpoint")
	}
	if !strings.Contains(s, "://") {
		s = scheme + "://" + s
	}
	u, err := url.Parse(s)
	if err != nil {
		return nil, fmt.Errorf("bad endpoint %q: %v", s, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf("bad endpoint %q: scheme must be http or https", s)
	}
	if u.Host == "" {
		return nil, fmt.Errorf("bad endpoint %q: no host", s)
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("bad endpoint %q: no query or fragment allowed", s)
	}
	u.Path = strings.TrimSuffix(u.Path, "/")
	u.RawPath = ""
	return u, nil
}

// Endpoints returns the normalised endpoints, in failover order, so callers
// can address a single node (e.g. per-node status) with a one-endpoint
// client.
func (c *Client) Endpoints() []string {
	out := make([]string, len(c.endpoints))
	for i, ep := range c.endpoints {
		out[i] = ep.name
	}
	return out
}

// CloseIdleConnections drops pooled connections, e.g. after a test whose
// servers are gone.
func (c *Client) CloseIdleConnections() { c.hc.CloseIdleConnections() }

// request is one logical call; do may send it to several endpoints.
type request struct {
	method      string
	path        string // unescaped, e.g. "/v1/kv/a b"
	query       url.Values
	body        []byte
	contentType string
	// read marks a request without side effects, which may be retried
	// after any failure.
	read bool
	// accept lists the statuses that are answers rather than errors (404 is
	// an answer for a KV read).
	accept []int
	// bodyFrom, when set, opens the body afresh for each attempt (a
	// stream too large to hold, e.g. a snapshot), instead of body.
	bodyFrom func() (io.Reader, error)
	// into, when set, takes the body of a 200 answer as a stream instead
	// of its being read into memory; it starts over on each attempt.
	into func(io.Reader) error
}

type response struct {
	status   int
	header   http.Header
	body     []byte
	endpoint string
	read     bool
}

// do sends r to the preferred endpoint and fails over while that is safe.
// On success the answering endpoint becomes the preferred one, so a dead
// node is not dialled again by every later call.
func (c *Client) do(ctx context.Context, r *request) (*response, error) {
	n := len(c.endpoints)
	start := int(c.preferred.Load() % uint32(n))
	var last, answered *Error
	attempts := 0
	for attempts < c.maxAttempts {
		if attempts > 0 && !c.pause(ctx, attempts, n) {
			break
		}
		i := (start + attempts) % n
		attempts++
		resp, err := c.once(ctx, c.endpoints[i], r)
		if err == nil {
			c.preferred.Store(uint32(i))
			return resp, nil
		}
		last = err
		if err.Status != 0 {
			answered = err
		}
		if ctx.Err() != nil || !retryable(r, err) {
			break
		}
		// A certificate refused, by either side, is refused again on
		// every retry: try each other endpoint once, then stop.
		if attempts >= n && certificateRefused(err) {
			break
		}
	}
	last.Attempts = attempts
	if last.Status == 0 && answered != nil {
		last.Previous = answered
	}
	return nil, last
}

// retryable is the failover rule: a read can go anywhere after any server
// or transport failure; a write only when it certainly did not happen and
// the failure is the cluster's (no leader, overload, node down), not a
// verdict on the request itself.
func retryable(r *request, e *Error) bool {
	switch {
	case e.Status == 0:
		return r.read || e.Outcome == OutcomeNotApplied
	case e.Status == http.StatusTooManyRequests || e.Status == http.StatusServiceUnavailable:
		return r.read || e.Outcome == OutcomeNotApplied
	case e.Status >= 500:
		return r.read
	}
	return false
}

// certificateRefused reports a TLS handshake that failed over a
// certificate: this side's verification of the server's, or the server's
// alert refusing ours.
func certificateRefused(e *Error) bool {
	var verify *tls.CertificateVerificationError
	if errors.As(e.Err, &verify) {
		return true
	}
	// A received alert is a *net.OpError "remote error" around an
	// unexported type, so its text is all there is to go on.
	var op *net.OpError
	if errors.As(e.Err, &op) && op.Op == "remote error" && op.Err != nil {
		msg := op.Err.Error()
		return strings.Contains(msg, "certificate") || strings.Contains(msg, "access denied")
	}
	return false
}

// pause waits before attempt number attempt. The first pass over the
// endpoints is immediate; later passes back off exponentially with jitter,
// so clients do not hammer a cluster in the middle of an election in
// lockstep. It reports false when ctx ends first.
func (c *Client) pause(ctx context.Context, attempt, n int) bool {
	pass := attempt / n
	if pass == 0 || c.backoff <= 0 {
		return ctx.Err() == nil
	}
	d := c.backoff
	for i := 1; i < pass && d < c.maxBackoff; i++ {
		d *= 2
	}
	if c.maxBackoff > 0 && d > c.maxBackoff {
		d = c.maxBackoff
	}
	d = d/2 + rand.N(d/2+1)
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// once sends r to one endpoint. It watches the request being written
// (httptrace WroteRequest): a connection that fails before the request was
// fully sent cannot have changed anything, one that fails afterwards may
// have.
func (c *Client) once(ctx context.Context, ep endpoint, r *request) (*response, *Error) {
	if ep.err != nil {
		return nil, &Error{Endpoint: ep.name, Message: ep.err.Error(), Outcome: OutcomeNotApplied, Err: ep.err}
	}
	u := *ep.url
	u.Path = ep.url.Path + r.path
	u.RawQuery = r.query.Encode()

	var wrote atomic.Bool
	trace := &httptrace.ClientTrace{WroteRequest: func(i httptrace.WroteRequestInfo) {
		if i.Err == nil {
			wrote.Store(true)
		}
	}}
	var body io.Reader
	if r.body != nil {
		body = bytes.NewReader(r.body)
	}
	if r.bodyFrom != nil {
		var err error
		if body, err = r.bodyFrom(); err != nil {
			return nil, &Error{Endpoint: ep.name, Message: err.Error(), Outcome: OutcomeNotApplied, Err: err}
		}
	}
	req, err := http.NewRequestWithContext(httptrace.WithClientTrace(ctx, trace), r.method, u.String(), body)
	if err != nil {
		return nil, &Error{Endpoint: ep.name, Message: err.Error(), Outcome: OutcomeNotApplied, Err: err}
	}
	if r.contentType != "" {
		req.Header.Set("Content-Type", r.contentType)
	}
	if c.token != "" {
		req.Header.Set("X-Consul-Token", c.token)
	}
	unknownIfWrote := func() string {
		if !r.read && wrote.Load() {
			return OutcomeUnknown
		}
		return OutcomeNotApplied
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		e := &Error{Endpoint: ep.name, Message: transportMessage(err), Outcome: unknownIfWrote(), Err: err}
		// With TLS 1.3 the request is written before the server has
		// judged our certificate; a server that refused it never read
		// the request.
		if certificateRefused(e) {
			e.Outcome = OutcomeNotApplied
		}
		return nil, e
	}
	defer resp.Body.Close()
	if r.into != nil && resp.StatusCode == http.StatusOK {
		if err := r.into(resp.Body); err != nil {
			return nil, &Error{Endpoint: ep.name, Message: "reading the response: " + transportMessage(err), Outcome: unknownIfWrote(), Err: err}
		}
		return &response{status: resp.StatusCode, header: resp.Header, endpoint: ep.name, read: r.read}, nil
	}
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		// The server answered, so it processed the request; only the
		// answer (e.g. CAS true/false) is lost.
		return nil, &Error{Endpoint: ep.name, Message: "reading the response: " + transportMessage(err), Outcome: unknownIfWrote(), Err: err}
	}
	for _, s := range r.accept {
		if resp.StatusCode == s {
			return &response{status: resp.StatusCode, header: resp.Header, body: data, endpoint: ep.name, read: r.read}, nil
		}
	}
	return nil, responseError(ep.name, r, resp, data)
}

// responseError classifies an error answer. The server's outcome header is
// authoritative; the native endpoints carry a JSON code instead; without
// either, a 4xx is a refusal (nothing applied) and a 5xx may hide anything.
func responseError(endpoint string, r *request, resp *http.Response, data []byte) *Error {
	e := &Error{Status: resp.StatusCode, Endpoint: endpoint, Message: strings.TrimSpace(string(data))}
	var je struct {
		Code  string `json:"code"`
		Error string `json:"error"`
	}
	if strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") && json.Unmarshal(data, &je) == nil && je.Error != "" {
		e.Message, e.Code = je.Error, je.Code
	}
	if e.Message == "" {
		e.Message = http.StatusText(resp.StatusCode)
	}
	switch {
	case r.read:
		e.Outcome = OutcomeNotApplied
	case resp.Header.Get(OutcomeHeader) != "":
		e.Outcome = resp.Header.Get(OutcomeHeader)
	case e.Code == "not-leader" || e.Code == "no-leader" || e.Code == "busy":
		e.Outcome = OutcomeNotApplied
	case e.Code == "unknown-outcome":
		e.Outcome = OutcomeUnknown
	case resp.StatusCode < 500:
		e.Outcome = OutcomeNotApplied
	default:
		e.Outcome = OutcomeUnknown
	}
	return e
}

// transportMessage drops net/http's `Put "http://...":` prefix, which only
// repeats the endpoint the Error already names.
func transportMessage(err error) string {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err.Error()
	}
	return err.Error()
}
