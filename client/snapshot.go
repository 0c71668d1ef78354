package client

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strconv"
)

// SnapshotInfo is what a snapshot holds, as the server reports it.
type SnapshotInfo struct {
	// Index is the log index the snapshot's state is of.
	Index uint64 `json:"index"`
	// Keys is the number of keys in it.
	Keys int `json:"keys"`
	// Size is its length in bytes; SHA256 its checksum, in hex.
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
	// RestoredAt is, after a restore, the index the cluster's state now
	// stands at: above every index handed out before it.
	RestoredAt uint64 `json:"restored_at,omitempty"`
}

// SnapshotSave streams a snapshot of the whole state (GET /v1/snapshot)
// into the writer that open returns; open is called again, and must
// start over (e.g. truncate its file), when the save fails over to
// another node. stale lets any node answer without a read barrier.
func (c *Client) SnapshotSave(ctx context.Context, stale bool, open func() (io.Writer, error)) (Meta, error) {
	q := url.Values{}
	if stale {
		q.Set("stale", "")
	}
	r := &request{method: http.MethodGet, path: "/v1/snapshot", query: q, read: true, accept: []int{http.StatusOK},
		into: func(body io.Reader) error {
			w, err := open()
			if err != nil {
				return err
			}
			_, err = io.Copy(w, body)
			return err
		}}
	resp, err := c.do(ctx, r)
	if err != nil {
		return Meta{}, err
	}
	var m Meta
	m.Index, _ = strconv.ParseUint(resp.header.Get("X-Consul-Index"), 10, 64)
	return m, nil
}

// SnapshotRestore replaces the whole cluster's state with a snapshot
// (PUT /v1/snapshot); open returns the snapshot from its start, and is
// called again if the request fails over before it was sent.
func (c *Client) SnapshotRestore(ctx context.Context, open func() (io.Reader, error)) (SnapshotInfo, error) {
	r := &request{method: http.MethodPut, path: "/v1/snapshot", contentType: "application/octet-stream", accept: []int{http.StatusOK}, bodyFrom: open}
	resp, err := c.do(ctx, r)
	if err != nil {
		return SnapshotInfo{}, err
	}
	var info SnapshotInfo
	if err := json.Unmarshal(resp.body, &info); err != nil {
		return SnapshotInfo{}, err
	}
	return info, nil
}
