package main

import (
	"fmt"
	"io"
	"os"
	"regexp"
	"strings"

	"github.com/spf13/pflag"

	"github.com/troupe-kv/troupe/client"
)

// The token comes from --token, else TROUPE_TOKEN, else Consul's own
// variable, so a shell already set up for Consul's CLI works unchanged.
const (
	envToken       = "TROUPE_TOKEN"
	envConsulToken = "CONSUL_HTTP_TOKEN"
)

const aclGroup = "ACL commands (nodes started with acl_enabled)"

// tokenOf resolves the token for this invocation.
func (c *cli) tokenOf(fs *pflag.FlagSet, flag string) string {
	if fs.Changed("token") {
		return flag
	}
	if t := c.getenv(envToken); t != "" {
		return t
	}
	return c.getenv(envConsulToken)
}

var uuidRE = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)

var aclCommand = &command{
	name: "acl", group: aclGroup, args: "<subcommand> [arguments]",
	summary: "manage ACL policies and tokens",
	long: `Manage who may do what, on a cluster whose nodes run with acl_enabled.
A policy holds rules in Consul's language; a token links policies. Start
with 'kvctl acl bootstrap' (once per cluster) for the first management token,
then pass tokens with --token or $` + envToken + `.`,
	example: `  kvctl acl bootstrap
  export TROUPE_TOKEN=<SecretID>
  kvctl acl policy create app-rw --rules 'key_prefix "app/" { policy = "write" }'
  kvctl acl token create --policy-name app-rw --description "app servers"`,
	subs: []*command{aclBootstrapCommand, aclPolicyCommand, aclTokenCommand},
}

var aclBootstrapCommand = &command{
	name: "bootstrap", group: aclGroup, maxArgs: 0,
	summary: "create the first management token (once per cluster)",
	long: `Create the cluster's first management token. It works once; afterwards the
cluster answers 403 "ACL bootstrap no longer allowed". Keep the SecretID
safe: the cluster stores only its hash and can never show it again.`,
	example: `  kvctl acl bootstrap
  kvctl -o json acl bootstrap | jq -r .SecretID`,
	setup: func(fs *pflag.FlagSet) action {
		return func(inv *invocation, args []string) error {
			tok, err := inv.client.ACLBootstrap(inv.ctx)
			if err != nil {
				return err
			}
			return inv.printToken(tok)
		}
	},
}

var aclPolicyCommand = &command{
	name: "policy", group: aclGroup, args: "<subcommand> [arguments]",
	summary: "create, list, read and delete policies",
	long: `Policies hold rules in Consul's language, HCL or its JSON form:

  key "<key>" { policy = "read" }          one key
  key_prefix "<prefix>" { policy = "write" }  every key starting with prefix

policy is read, list (treated as read), write or deny. The longest matching
rule wins; an exact key rule beats a key_prefix rule of the same length.`,
	example: `  kvctl acl policy create app-rw --rules 'key_prefix "app/" { policy = "write" }'
  kvctl acl policy list`,
	subs: []*command{aclPolicyCreateCommand, aclPolicyListCommand, aclPolicyReadCommand, aclPolicyDeleteCommand},
}

var aclPolicyCreateCommand = &command{
	name: "create", group: aclGroup, args: "<name>", minArgs: 1, maxArgs: 1,
	summary: "create a policy",
	long:    `Create a policy named name with the rules given by --rules or --rules-file ("-" reads stdin).`,
	example: `  kvctl acl policy create app-rw --rules 'key_prefix "app/" { policy = "write" }'
  kvctl acl policy create ops --rules-file ops.hcl --description "operators"`,
	setup: func(fs *pflag.FlagSet) action {
		rules := fs.String("rules", "", "the policy's rules")
		file := fs.String("rules-file", "", "read the rules from this file (- for stdin)")
		desc := fs.String("description", "", "what the policy is for")
		return func(inv *invocation, args []string) error {
			text := *rules
			switch {
			case *file != "" && fs.Changed("rules"):
				return usagef("--rules and --rules-file are mutually exclusive")
			case *file == "-":
				b, err := io.ReadAll(inv.stdin)
				if err != nil {
					return err
				}
				text = string(b)
			case *file != "":
				b, err := os.ReadFile(*file)
				if err != nil {
					return err
				}
				text = string(b)
			case !fs.Changed("rules"):
				return usagef("give the rules with --rules or --rules-file")
			}
			p, err := inv.client.ACLPolicyCreate(inv.ctx, client.ACLPolicy{Name: args[0], Description: *desc, Rules: text})
			if err != nil {
				return err
			}
			return inv.printPolicy(p)
		}
	},
}

var aclPolicyListCommand = &command{
	name: "list", group: aclGroup, maxArgs: 0,
	summary: "list policies",
	long:    `List every policy: the builtin global-management and the ones created.`,
	example: `  kvctl acl policy list`,
	setup: func(fs *pflag.FlagSet) action {
		return func(inv *invocation, args []string) error {
			ps, err := inv.client.ACLPolicies(inv.ctx)
			if err != nil {
				return err
			}
			if inv.json {
				return inv.printJSON(ps)
			}
			tw := newTable(inv.stdout)
			fmt.Fprintln(tw, "ID\tNAME\tDESCRIPTION")
			for _, p := range ps {
				fmt.Fprintf(tw, "%s\t%s\t%s\n", p.ID, p.Name, cell([]byte(p.Description)))
			}
			return tw.Flush()
		}
	},
}

// policyByRef reads a policy named by ID (a UUID) or by name.
func (inv *invocation) policyByRef(ref string) (*client.ACLPolicy, error) {
	if uuidRE.MatchString(ref) {
		return inv.client.ACLPolicy(inv.ctx, ref)
	}
	return inv.client.ACLPolicyByName(inv.ctx, ref)
}

var aclPolicyReadCommand = &command{
	name: "read", group: aclGroup, args: "<id-or-name>", minArgs: 1, maxArgs: 1,
	summary: "show a policy and its rules",
	long:    `Show one policy, named by its ID or its name, with its rules.`,
	example: `  kvctl acl policy read app-rw`,
	setup: func(fs *pflag.FlagSet) action {
		return func(inv *invocation, args []string) error {
			p, err := inv.policyByRef(args[0])
			if err != nil {
				return err
			}
			return inv.printPolicy(p)
		}
	},
}

var aclPolicyDeleteCommand = &command{
	name: "delete", group: aclGroup, args: "<id-or-name>", minArgs: 1, maxArgs: 1,
	summary: "delete a policy",
	long:    `Delete a policy, named by its ID or its name. Tokens that linked it lose what it granted.`,
	example: `  kvctl acl policy delete app-rw`,
	setup: func(fs *pflag.FlagSet) action {
		return func(inv *invocation, args []string) error {
			p, err := inv.policyByRef(args[0])
			if err != nil {
				return err
			}
			if err := inv.client.ACLPolicyDelete(inv.ctx, p.ID); err != nil {
				return err
			}
			if inv.json {
				return inv.printJSON(map[string]string{"deleted": p.ID})
			}
			fmt.Fprintf(inv.stdout, "deleted policy %s (%s)\n", p.Name, p.ID)
			return nil
		}
	},
}

var aclTokenCommand = &command{
	name: "token", group: aclGroup, args: "<subcommand> [arguments]",
	summary: "create, list, read and delete tokens",
	long: `A token is an AccessorID (its public name) and a SecretID (what clients send).
The SecretID is shown once, when the token is created.`,
	example: `  kvctl acl token create --policy-name app-rw
  kvctl acl token read self`,
	subs: []*command{aclTokenCreateCommand, aclTokenListCommand, aclTokenReadCommand, aclTokenDeleteCommand},
}

var aclTokenCreateCommand = &command{
	name: "create", group: aclGroup, maxArgs: 0,
	summary: "create a token linked to policies",
	long:    `Create a token linked to the named policies (--policy-name, repeatable; global-management makes a management token).`,
	example: `  kvctl acl token create --policy-name app-rw --description "app servers"
  kvctl -o json acl token create --policy-name global-management | jq -r .SecretID`,
	setup: func(fs *pflag.FlagSet) action {
		names := fs.StringSlice("policy-name", nil, "a policy to link, by name (repeatable, or comma-separated)")
		desc := fs.String("description", "", "what the token is for")
		return func(inv *invocation, args []string) error {
			if len(*names) == 0 {
				return usagef("give at least one --policy-name: a token without policies can do nothing")
			}
			t := client.ACLToken{Description: *desc}
			for _, n := range *names {
				t.Policies = append(t.Policies, client.ACLLink{Name: strings.TrimSpace(n)})
			}
			tok, err := inv.client.ACLTokenCreate(inv.ctx, t)
			if err != nil {
				return err
			}
			return inv.printToken(tok)
		}
	},
}

var aclTokenListCommand = &command{
	name: "list", group: aclGroup, maxArgs: 0,
	summary: "list tokens (without secrets)",
	long:    `List every token by AccessorID, with its policies. Secrets are never shown.`,
	example: `  kvctl acl token list`,
	setup: func(fs *pflag.FlagSet) action {
		return func(inv *invocation, args []string) error {
			ts, err := inv.client.ACLTokens(inv.ctx)
			if err != nil {
				return err
			}
			if inv.json {
				return inv.printJSON(ts)
			}
			tw := newTable(inv.stdout)
			fmt.Fprintln(tw, "ACCESSOR ID\tPOLICIES\tDESCRIPTION")
			for _, t := range ts {
				fmt.Fprintf(tw, "%s\t%s\t%s\n", t.AccessorID, policyNames(t.Policies), cell([]byte(t.Description)))
			}
			return tw.Flush()
		}
	},
}

var aclTokenReadCommand = &command{
	name: "read", group: aclGroup, args: "<accessor-id|self>", minArgs: 1, maxArgs: 1,
	summary: "show a token (self: the one kvctl sends)",
	long:    `Show one token by AccessorID; "self" shows the token kvctl itself sends, which any valid token may.`,
	example: `  kvctl acl token read self`,
	setup: func(fs *pflag.FlagSet) action {
		return func(inv *invocation, args []string) error {
			tok, err := inv.client.ACLToken(inv.ctx, args[0])
			if err != nil {
				return err
			}
			return inv.printToken(tok)
		}
	},
}

var aclTokenDeleteCommand = &command{
	name: "delete", group: aclGroup, args: "<accessor-id>", minArgs: 1, maxArgs: 1,
	summary: "delete a token",
	long:    `Delete a token by AccessorID; requests that send it are refused from then on.`,
	example: `  kvctl acl token delete 6a1f0c2e-0000-4000-8000-000000000000`,
	setup: func(fs *pflag.FlagSet) action {
		return func(inv *invocation, args []string) error {
			if err := inv.client.ACLTokenDelete(inv.ctx, args[0]); err != nil {
				return err
			}
			if inv.json {
				return inv.printJSON(map[string]string{"deleted": args[0]})
			}
			fmt.Fprintf(inv.stdout, "deleted token %s\n", args[0])
			return nil
		}
	},
}

func policyNames(links []client.ACLLink) string {
	var names []string
	for _, l := range links {
		names = append(names, l.Name)
	}
	return strings.Join(names, ",")
}

func (inv *invocation) printToken(t *client.ACLToken) error {
	if inv.json {
		return inv.printJSON(t)
	}
	fmt.Fprintf(inv.stdout, "AccessorID:   %s\n", t.AccessorID)
	if t.SecretID != "" {
		fmt.Fprintf(inv.stdout, "SecretID:     %s\n", t.SecretID)
	}
	fmt.Fprintf(inv.stdout, "Description:  %s\n", t.Description)
	fmt.Fprintf(inv.stdout, "Policies:     %s\n", policyNames(t.Policies))
	return nil
}

func (inv *invocation) printPolicy(p *client.ACLPolicy) error {
	if inv.json {
		return inv.printJSON(p)
	}
	fmt.Fprintf(inv.stdout, "ID:           %s\nName:         %s\nDescription:  %s\nRules:\n%s\n", p.ID, p.Name, p.Description, p.Rules)
	return nil
}
