package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/troupe-kv/troupe/cluster"
	"github.com/troupe-kv/troupe/server"
	"github.com/troupe-kv/troupe/storage"
)

// recoverUsage explains `kvnode recover`.
const recoverUsage = `Usage: kvnode recover --members id=raft-address[,...] [kvnode flags]

Rewrites the Raft membership of a stopped node, keeping its data, for a
cluster that lost a majority of its members for good (or was given members
that will never answer), where no leader can be elected to change it.

Run it on ONE surviving node, the one with the highest last_log_index
(kvctl status --all before the loss, or the logs), with that node alone
or with the survivors it should form the new cluster with; then start
that node as usual. Wipe the other survivors' data directories and let
them join it. Entries the node had but the cluster never committed are
applied too. docs/operations.md has the whole procedure.

The node's settings (data_dir, node_id, --config) are read as kvnode reads
them.
`

// runRecover is 'kvnode recover': it finds --members among args, reads
// the node's configuration from the rest, and rewrites its membership.
func runRecover(args []string) error {
	var members string
	var rest []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "--help" || a == "-h":
			fmt.Fprint(os.Stderr, recoverUsage)
			return errHelp
		case a == "--members" && i+1 < len(args):
			members = args[i+1]
			i++
		case strings.HasPrefix(a, "--members="):
			members = strings.TrimPrefix(a, "--members=")
		default:
			rest = append(rest, a)
		}
	}
	if strings.TrimSpace(members) == "" {
		return errors.New("recover: --members id=raft-address[,...] is required (see kvnode recover --help)")
	}
	servers, err := cluster.ParseInitialCluster(members)
	if err != nil {
		return fmt.Errorf("recover: --members: %w", err)
	}
	cfg, err := loadConfig(rest)
	if err != nil {
		return err
	}
	if owner, err := os.ReadFile(filepath.Join(cfg.DataDir, "node_id")); err != nil || strings.TrimSpace(string(owner)) != cfg.NodeID {
		return fmt.Errorf("recover: %s is not the data directory of node %q", cfg.DataDir, cfg.NodeID)
	}
	store, err := storage.Open(filepath.Join(cfg.DataDir, server.StateFileName))
	if err != nil {
		return fmt.Errorf("recover: %w (is the node still running?)", err)
	}
	defer store.Close()
	if err := cluster.Recover(cfg.NodeID, cfg.DataDir, store, servers, newRaftLogger(cfg, os.Stderr)); err != nil {
		return err
	}
	fmt.Printf("recovered %s: members are now %s, at applied index %d; start the node as usual\n", cfg.NodeID, members, store.AppliedIndex())
	return nil
}
