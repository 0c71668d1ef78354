package actors

import (
	"context"

	"github.com/troupe-kv/troupe/storage"
)

// ProposeRaw proposes bytes as they are, as a forwarded command would
// arrive: tests use it to commit what the API would refuse.
func (c *Client) ProposeRaw(ctx context.Context, data []byte) (storage.Result, error) {
	return c.propose(ctx, data, true)
}

// StallRaftClose makes every node of this process hang in Raft's shutdown,
// as it stops, until stall returns; the returned func undoes it. Set it
// before the nodes start.
func StallRaftClose(stall func()) (undo func()) {
	raftCloseStall = stall
	return func() { raftCloseStall = nil }
}
