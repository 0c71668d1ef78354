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
