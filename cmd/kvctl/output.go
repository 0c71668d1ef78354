package main

import (
	"fmt"
	"io"
	"strconv"
	"text/tabwriter"
	"unicode"
	"unicode/utf8"

	"github.com/troupe-kv/troupe/client"
)

func newTable(w io.Writer) *tabwriter.Writer {
	return tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
}

// maxCell bounds a value shown in a table: tables are for looking at; the
// full value is one `kvctl get` or `-o json` away.
const maxCell = 60

// cell renders a value for a table: printable text as is, anything else
// (newlines, tabs, binary) quoted so it cannot break the layout.
func cell(v []byte) string {
	s := string(v)
	printable := utf8.Valid(v)
	for _, r := range s {
		if !printable || !unicode.IsPrint(r) {
			printable = false
			break
		}
	}
	if !printable {
		s = strconv.Quote(s)
	}
	if utf8.RuneCountInString(s) > maxCell {
		s = string([]rune(s)[:maxCell-3]) + "..."
	}
	return s
}

func printPairs(w io.Writer, pairs []*client.KVPair) error {
	if len(pairs) == 0 {
		return nil
	}
	tw := newTable(w)
	fmt.Fprintln(tw, "KEY\tVALUE")
	for _, p := range pairs {
		fmt.Fprintf(tw, "%s\t%s\n", cell([]byte(p.Key)), cell(p.Value))
	}
	return tw.Flush()
}

func printMembers(w io.Writer, ms []client.Member) error {
	tw := newTable(w)
	fmt.Fprintln(tw, "ID\tRAFT ADDRESS\tHTTP ADDRESS\tROLE\tVERSION")
	for _, m := range ms {
		// Members come from the Raft configuration, which says nothing of
		// liveness: a dead voter is still a voter, not a "follower".
		role := "voter"
		switch {
		case m.Leader:
			role = "leader"
		case !m.Voter:
			role = "nonvoter"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", m.ID, m.RaftAddr, orDash(m.HTTPAddr), role, orDash(m.Version))
	}
	return tw.Flush()
}

func printStatus(w io.Writer, st *client.Status) error {
	tw := newTable(w)
	leader := "none known"
	if st.LeaderID != "" {
		leader = fmt.Sprintf("%s (raft %s, http %s)", st.LeaderID, st.LeaderRaftAddr, orDash(st.LeaderHTTPAddr))
	}
	contact := ms(st.LastContactMS)
	if st.LeaderID == st.ID {
		contact = "- (this node leads)"
	}
	for _, row := range [][2]string{
		{"Node", st.ID},
		{"State", st.State},
		{"Term", strconv.FormatUint(st.Term, 10)},
		{"Leader", leader},
		{"Last contact", contact},
		{"Commit index", strconv.FormatUint(st.CommitIndex, 10)},
		{"Applied index", strconv.FormatUint(st.AppliedIndex, 10)},
		{"Last log index", strconv.FormatUint(st.LastLogIndex, 10)},
		{"Last snapshot index", strconv.FormatUint(st.LastSnapshotIndex, 10)},
		{"Version", fmt.Sprintf("%s (commit %s, %s)", orDash(st.Version), orDash(st.Commit), orDash(st.GoVersion))},
	} {
		fmt.Fprintf(tw, "%s:\t%s\n", row[0], row[1])
	}
	return tw.Flush()
}

func printStatusTable(w io.Writer, rows []nodeStatus) error {
	tw := newTable(w)
	fmt.Fprintln(tw, "ENDPOINT\tID\tSTATE\tTERM\tCOMMIT\tAPPLIED\tLEADER\tCONTACT\tVERSION")
	for _, r := range rows {
		if r.Status == nil {
			// Every cell is filled so tabwriter keeps the columns aligned;
			// the error itself goes to stderr.
			fmt.Fprintf(tw, "%s\t-\tunreachable\t-\t-\t-\t-\t-\t-\n", r.Endpoint)
			continue
		}
		st := r.Status
		contact := ms(st.LastContactMS)
		if st.LeaderID == st.ID {
			contact = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%d\t%s\t%s\t%s\n", r.Endpoint, st.ID, st.State, st.Term,
			st.CommitIndex, st.AppliedIndex, orDash(st.LeaderID), contact, orDash(st.Version))
	}
	return tw.Flush()
}
