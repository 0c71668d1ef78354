package main

import (
	"fmt"

	"github.com/spf13/pflag"

	"github.com/troupe-kv/troupe/client"
)

var alarmCommand = &command{
	name: "alarm", group: clusterGroup, args: "<subcommand> [arguments]",
	summary: "list and disarm the cluster's alarms (NOSPACE)",
	long: `A member whose state file holds more live data than its quota_bytes, or
whose data directory's file system has less free space than min_free_bytes,
raises the NOSPACE alarm through Raft. While it is raised every node refuses
writes that would grow the state (HTTP 507, "database space exceeded");
reads and deletes work. Free space (delete keys, or give the disk room),
then disarm it. A member still past its limits raises it again within a
second.`,
	example: `  kvctl alarm list
  kvctl delete --recurse old/
  kvctl alarm disarm`,
	subs: []*command{alarmListCommand, alarmDisarmCommand},
}

var alarmListCommand = &command{
	name: "list", group: clusterGroup, maxArgs: 0,
	summary: "list the raised alarms",
	long: `List the raised alarms as the answering node's state holds them: the type,
the member that raised it, the log index it was raised at, and what the
member measured. With --check the status is 1 while any alarm is raised.`,
	example: `  kvctl alarm list
  kvctl alarm list --check || echo "writes are refused"`,
	setup: func(fs *pflag.FlagSet) action {
		check := fs.Bool("check", false, "exit 1 while any alarm is raised")
		return func(inv *invocation, args []string) error {
			alarms, err := inv.client.Alarms(inv.ctx)
			if err != nil {
				return err
			}
			if inv.json {
				if alarms == nil {
					alarms = []client.Alarm{}
				}
				if err := inv.printJSON(alarms); err != nil {
					return err
				}
			} else if len(alarms) == 0 {
				fmt.Fprintln(inv.stdout, "no alarm is raised")
			} else {
				tw := newTable(inv.stdout)
				fmt.Fprintln(tw, "TYPE\tMEMBER\tINDEX\tREASON")
				for _, a := range alarms {
					fmt.Fprintf(tw, "%s\t%s\t%d\t%s\n", a.Type, a.Member, a.Index, a.Reason)
				}
				if err := tw.Flush(); err != nil {
					return err
				}
			}
			if *check && len(alarms) > 0 {
				return no("%d alarm(s) raised", len(alarms))
			}
			return nil
		}
	},
}

var alarmDisarmCommand = &command{
	name: "disarm", group: clusterGroup, maxArgs: 0,
	summary: "disarm alarms once space is back",
	long: `Clear the raised alarms (all of them, or those --type and --member name),
as etcdctl alarm disarm does. Free space first: a member still past its
limits raises its alarm again within a second (see kvctl alarm list).`,
	example: `  kvctl alarm disarm
  kvctl alarm disarm --member n2`,
	setup: func(fs *pflag.FlagSet) action {
		typ := fs.String("type", "", "only alarms of this type ("+client.AlarmNoSpace+")")
		member := fs.String("member", "", "only alarms this member raised")
		return func(inv *invocation, args []string) error {
			disarmed, err := inv.client.Disarm(inv.ctx, *typ, *member)
			if err != nil {
				return err
			}
			if inv.json {
				return inv.printJSON(map[string]bool{"disarmed": disarmed})
			}
			if !disarmed {
				fmt.Fprintln(inv.stdout, "no such alarm was raised")
				return nil
			}
			fmt.Fprintln(inv.stdout, "disarmed; a member still past its limits raises it again within a second: check with kvctl alarm list")
			return nil
		}
	},
}
