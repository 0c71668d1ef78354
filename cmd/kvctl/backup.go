package main

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/troupe-kv/troupe/client"
	"github.com/troupe-kv/troupe/storage"
)

// snapshotCommand saves, restores and inspects backups of the whole
// state. Bare "kvctl snapshot" keeps its old meaning, a compaction (see
// snapshotCompactCommand), so scripts written for it still work.
var snapshotCommand = &command{
	name: "snapshot", group: clusterGroup, args: "[save|restore|inspect|compact] [arguments]", maxArgs: 0,
	summary: "back up, restore or inspect the whole state; bare: compact a node's Raft log",
	long: `Back up the whole state of the cluster to a file, restore a cluster from one,
or inspect a file without a cluster. The endpoints are Consul's
(GET and PUT /v1/snapshot), and need a management token when ACLs are on.

Without a subcommand, "kvctl snapshot" is "kvctl snapshot compact", as in
earlier releases: the answering node takes a Raft snapshot and compacts its
log. That is no backup.`,
	example: `  kvctl snapshot save backup.snap
  kvctl snapshot inspect backup.snap
  kvctl snapshot restore backup.snap
  kvctl --addr 10.0.0.2:8500 snapshot compact`,
	subs:  []*command{snapshotSaveCommand, snapshotRestoreCommand, snapshotInspectCommand, snapshotCompactCommand},
	setup: compact,
}

var snapshotCompactCommand = &command{
	name: "compact", group: clusterGroup, maxArgs: 0,
	summary: "make a node take a Raft snapshot now and compact its log",
	long: `Make the answering node snapshot its state and compact its Raft log, e.g.
before maintenance, so a restart replays less. This is not a backup: use
"kvctl snapshot save" for one.`,
	example: `  kvctl --addr 10.0.0.2:8500 snapshot compact`,
	setup:   compact,
}

func compact(fs *pflag.FlagSet) action {
	return func(inv *invocation, args []string) error {
		idx, err := inv.client.Snapshot(inv.ctx)
		if err != nil {
			return err
		}
		if inv.json {
			return inv.printJSON(map[string]uint64{"index": idx})
		}
		fmt.Fprintf(inv.stdout, "snapshot taken at index %d\n", idx)
		return nil
	}
}

var snapshotSaveCommand = &command{
	name: "save", group: clusterGroup, args: "<file>", minArgs: 1, maxArgs: 1, unbounded: true,
	summary: "save a snapshot of the whole state to a file",
	long: `Save a consistent snapshot of the whole state (keys, sessions, ACLs) to a file.
The answering node takes it after a read barrier, so it holds every write
acknowledged before the command started (--stale skips that, and may be
older). The file is written beside its final name, checked (its SHA-256
covers the whole file), fsynced and only then renamed into place.`,
	example: `  kvctl snapshot save /var/backups/troupe/$(date +%F).snap`,
	setup: func(fs *pflag.FlagSet) action {
		stale := fs.Bool("stale", false, "let any node answer without a read barrier")
		return func(inv *invocation, args []string) error {
			path := args[0]
			tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
			if err != nil {
				return err
			}
			defer os.Remove(tmp.Name())
			defer tmp.Close()
			meta, err := inv.client.SnapshotSave(inv.ctx, *stale, func() (io.Writer, error) {
				if err := tmp.Truncate(0); err != nil {
					return nil, err
				}
				_, err := tmp.Seek(0, io.SeekStart)
				return tmp, err
			})
			if err != nil {
				return err
			}
			if _, err := tmp.Seek(0, io.SeekStart); err != nil {
				return err
			}
			info, err := storage.ReadBackup(tmp, nil)
			if err != nil {
				return fmt.Errorf("the snapshot received is damaged (%v); nothing was saved", err)
			}
			if info.Index != meta.Index {
				return fmt.Errorf("the snapshot is of index %d, the server said %d; nothing was saved", info.Index, meta.Index)
			}
			if err := tmp.Sync(); err != nil {
				return err
			}
			if err := tmp.Close(); err != nil {
				return err
			}
			if err := os.Rename(tmp.Name(), path); err != nil {
				return err
			}
			storage.SyncDir(filepath.Dir(path))
			if inv.json {
				return inv.printJSON(info)
			}
			fmt.Fprintf(inv.stdout, "saved snapshot of index %d to %s: %d keys, %d bytes, sha256 %s\n", info.Index, path, info.Keys, info.Size, info.SHA256)
			return nil
		}
	},
}

var snapshotRestoreCommand = &command{
	name: "restore", group: clusterGroup, args: "<file>", minArgs: 1, maxArgs: 1, unbounded: true,
	summary: "replace the whole cluster's state with a snapshot",
	long: `Replace the whole state of the cluster (every key, session and ACL) with the
snapshot in the file, through the leader and Raft, on every node. The file
is checked here first and again by the cluster: a damaged or cut file is
refused and changes nothing. Writes wait (HTTP 429) while the restore runs.
Every key comes back with a ModifyIndex above every index the cluster
handed out before, so watchers wake and no compare-and-set prepared
against the old state can succeed.`,
	example: `  kvctl snapshot restore /var/backups/troupe/2024-05-01.snap`,
	setup: func(fs *pflag.FlagSet) action {
		return func(inv *invocation, args []string) error {
			f, err := os.Open(args[0])
			if err != nil {
				return err
			}
			defer f.Close()
			if _, err := storage.ReadBackup(f, nil); err != nil {
				return fmt.Errorf("%s: %v; nothing was sent to the cluster", args[0], err)
			}
			info, err := inv.client.SnapshotRestore(inv.ctx, func() (io.Reader, error) {
				_, err := f.Seek(0, io.SeekStart)
				return f, err
			})
			if err != nil {
				return err
			}
			if inv.json {
				return inv.printJSON(info)
			}
			fmt.Fprintf(inv.stdout, "restored the snapshot of index %d (%d keys); the cluster's state now stands at index %d\n", info.Index, info.Keys, info.RestoredAt)
			return nil
		}
	},
}

var snapshotInspectCommand = &command{
	name: "inspect", group: clusterGroup, args: "<file>", minArgs: 1, maxArgs: 1, local: true,
	summary: "check a snapshot file and say what it holds (no cluster needed)",
	long: `Read a snapshot file whole, check its checksum, and print its index, the term
and node that wrote it, the number of keys and records of each table, its
size and SHA-256. A damaged or cut file prints what could be read and
exits 2.`,
	example: `  kvctl snapshot inspect backup.snap`,
	setup: func(fs *pflag.FlagSet) action {
		return func(inv *invocation, args []string) error {
			f, err := os.Open(args[0])
			if err != nil {
				return err
			}
			defer f.Close()
			info, rerr := storage.ReadBackup(f, nil)
			if inv.json {
				out := struct {
					storage.BackupInfo
					Checksum string `json:"checksum"`
					Error    string `json:"error,omitempty"`
				}{BackupInfo: info, Checksum: "ok"}
				if rerr != nil {
					out.Checksum, out.Error = "bad", rerr.Error()
				}
				if err := inv.printJSON(out); err != nil {
					return err
				}
				return rerr
			}
			tw := newTable(inv.stdout)
			row := func(k string, v any) { fmt.Fprintf(tw, "%s\t%v\n", k, v) }
			row("File", args[0])
			if info.Format != 0 {
				row("Index", info.Index)
				row("Term", orDash(fmt.Sprint(info.Term)))
				row("Node", orDash(info.Node))
				row("Cluster ID", orDash(info.ClusterID))
				row("Version", orDash(info.Version))
				row("Created", info.Created.Format(time.RFC3339))
			}
			if rerr != nil {
				row("Checksum", "BAD")
				tw.Flush()
				return rerr
			}
			row("Keys", info.Keys)
			for _, name := range []string{"sessions", "acl"} {
				row("Records in "+name, info.Records[name])
			}
			row("Size", fmt.Sprintf("%d bytes", info.Size))
			row("SHA-256", info.SHA256)
			row("Checksum", "ok")
			return tw.Flush()
		}
	},
}

// kvCommand groups export and import in Consul's JSON form.
var kvCommand = &command{
	name: "kv", group: kv, args: "<export|import> [arguments]",
	summary: "export and import keys in consul kv export's JSON form",
	long: `Export keys to, and import them from, the JSON that "consul kv export" writes:
a list of {"key", "flags", "value"} objects, the value in base64.`,
	example: `  kvctl kv export app/ > app.json
  kvctl kv import app.json`,
	subs: []*command{kvExportCommand, kvImportCommand},
}

// exportedPair is one key as consul kv export writes it.
type exportedPair struct {
	Key   string `json:"key"`
	Flags uint64 `json:"flags"`
	Value string `json:"value"`
}

var kvExportCommand = &command{
	name: "export", group: kv, args: "[prefix]", maxArgs: 1,
	summary: "print every key under a prefix as consul kv export's JSON",
	long: `Print every key under the prefix (all keys without one) with its flags and
value, as "consul kv export" does. The read is linearizable unless --stale.`,
	example: `  kvctl kv export > everything.json
  kvctl kv export app/ > app.json`,
	setup: func(fs *pflag.FlagSet) action {
		stale := fs.Bool("stale", false, "let any node answer from its own state")
		return func(inv *invocation, args []string) error {
			prefix := ""
			if len(args) == 1 {
				prefix = args[0]
			}
			pairs, _, err := inv.client.List(inv.ctx, prefix, client.ReadOptions{Stale: *stale})
			if err != nil {
				return err
			}
			out := make([]exportedPair, 0, len(pairs))
			for _, p := range pairs {
				out = append(out, exportedPair{Key: p.Key, Flags: p.Flags, Value: base64.StdEncoding.EncodeToString(p.Value)})
			}
			data, err := json.MarshalIndent(out, "", "\t")
			if err != nil {
				return err
			}
			_, err = fmt.Fprintf(inv.stdout, "%s\n", data)
			return err
		}
	},
}

var kvImportCommand = &command{
	name: "import", group: kv, args: "[file|-]", maxArgs: 1, unbounded: true,
	summary: "write the keys of consul kv export's JSON",
	long: `Write every key of a file in "consul kv export" form (standard input without
one, or with -). The whole file is read and checked first: a malformed one
is refused and nothing is written. Keys are written with set operations in
transactions of --batch keys (at most the cluster's txn_max_ops, 128 by
default), so importing the same file again changes nothing. Each batch is
atomic; the import as a whole is not: after a failure, run it again.`,
	example: `  kvctl kv import app.json
  consul kv export | kvctl kv import -`,
	setup: func(fs *pflag.FlagSet) action {
		batch := fs.Int("batch", 64, "keys per transaction (at most the cluster's txn_max_ops)")
		return func(inv *invocation, args []string) error {
			if *batch < 1 {
				return usagef("--batch must be at least 1")
			}
			src, name := inv.stdin, "stdin"
			if len(args) == 1 && args[0] != "-" {
				f, err := os.Open(args[0])
				if err != nil {
					return err
				}
				defer f.Close()
				src, name = f, args[0]
			}
			ops, err := parseExport(src)
			if err != nil {
				return fmt.Errorf("%s: %v; nothing was written", name, err)
			}
			written := 0
			for start := 0; start < len(ops); start += *batch {
				part := ops[start:min(start+*batch, len(ops))]
				ok, resp, _, err := inv.client.Txn(inv.ctx, part, client.ReadOptions{})
				if err == nil && !ok {
					err = fmt.Errorf("the transaction was rolled back: %+v", resp.Errors)
				}
				if err != nil {
					return fmt.Errorf("importing keys %d to %d of %d (%d written before; importing again is safe): %w", start+1, start+len(part), len(ops), written, err)
				}
				written += len(part)
			}
			if inv.json {
				return inv.printJSON(map[string]int{"imported": written})
			}
			fmt.Fprintf(inv.stdout, "imported %d keys\n", written)
			return nil
		}
	},
}

// parseExport reads consul kv export's JSON strictly into set operations.
func parseExport(r io.Reader) ([]client.TxnOp, error) {
	data, err := io.ReadAll(r)
	if err != nil {
		return nil, err
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var pairs []exportedPair
	if err := dec.Decode(&pairs); err != nil {
		return nil, fmt.Errorf("not a consul kv export list of {key, flags, value}: %v", err)
	}
	if dec.More() {
		return nil, errors.New("data after the list")
	}
	seen := map[string]bool{}
	ops := make([]client.TxnOp, 0, len(pairs))
	for i, p := range pairs {
		switch {
		case p.Key == "":
			return nil, fmt.Errorf("entry %d has no key", i)
		case strings.HasPrefix(p.Key, "/"):
			return nil, fmt.Errorf("entry %d: key %q starts with '/'", i, p.Key)
		case seen[p.Key]:
			return nil, fmt.Errorf("entry %d: key %q appears twice", i, p.Key)
		}
		seen[p.Key] = true
		v, err := base64.StdEncoding.DecodeString(p.Value)
		if err != nil {
			return nil, fmt.Errorf("entry %d (key %q): the value is not base64: %v", i, p.Key, err)
		}
		ops = append(ops, client.TxnOp{Verb: "set", Key: p.Key, Value: v, Flags: p.Flags})
	}
	return ops, nil
}
