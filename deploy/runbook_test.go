package deploy

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/troupe-kv/troupe/internal/deploytest"
)

// The runbook at the top of docs/operations.md claims that tests run each
// procedure. Every "Tested by:" line must name test functions that exist
// in the files it names, so a renamed or deleted test shows here instead
// of leaving a procedure silently untested; and every install.sh flag the
// runbook uses must be one install.sh knows.
func TestOperationsRunbookNamesRealTests(t *testing.T) {
	root := deploytest.Root()
	doc, err := os.ReadFile(filepath.Join(root, "docs", "operations.md"))
	if err != nil {
		t.Fatal(err)
	}
	runbook := section(t, string(doc), "## Runbook: a cluster on VMs")
	for _, p := range checkRunbook(root, runbook) {
		t.Error(p)
	}

	install, err := os.ReadFile(filepath.Join(root, "deploy", "vm", "install.sh"))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(runbook, "\n") {
		if !strings.Contains(line, "./install.sh") {
			continue
		}
		for _, flag := range regexp.MustCompile(`\s(--[a-z-]+)`).FindAllStringSubmatch(line, -1) {
			if !strings.Contains(string(install), "    "+flag[1]+")") {
				t.Errorf("the runbook runs install.sh %s, which install.sh does not take", flag[1])
			}
		}
	}
}

// section is the text of a markdown section, up to the next heading of
// its level.
func section(t *testing.T, doc, heading string) string {
	t.Helper()
	i := strings.Index(doc, heading+"\n")
	if i < 0 {
		t.Fatalf("docs/operations.md has no %q", heading)
	}
	rest := doc[i+len(heading)+1:]
	if j := strings.Index(rest, "\n## "); j >= 0 {
		rest = rest[:j]
	}
	return rest
}

var testedBy = regexp.MustCompile("`(Test[A-Za-z0-9_]+)` \\(([^)]+)\\)")

// checkRunbook checks every procedure names at least one test and that
// each named test exists where it is said to; it returns the problems.
func checkRunbook(root, runbook string) (problems []string) {
	procedures, lines := 0, 0
	for _, line := range strings.Split(runbook, "\n") {
		if strings.HasPrefix(line, "**") && strings.Contains(line, ". ") {
			procedures++
		}
		if !strings.HasPrefix(line, "Tested by:") {
			continue
		}
		lines++
		refs := testedBy.FindAllStringSubmatch(line, -1)
		if len(refs) == 0 {
			problems = append(problems, fmt.Sprintf("a Tested by line names no test: %s", line))
		}
		for _, r := range refs {
			src, err := os.ReadFile(filepath.Join(root, r[2]))
			if err != nil {
				problems = append(problems, fmt.Sprintf("the runbook names %s in %s: %v", r[1], r[2], err))
				continue
			}
			if !strings.Contains(string(src), "func "+r[1]+"(t *testing.T)") {
				problems = append(problems, fmt.Sprintf("the runbook names %s, which %s does not define", r[1], r[2]))
			}
		}
	}
	if procedures == 0 || lines != procedures {
		problems = append(problems, fmt.Sprintf("the runbook has %d procedures and %d Tested by lines: every procedure names its tests", procedures, lines))
	}
	return problems
}

// The checker must catch a runbook that names a test that does not exist
// or a procedure without tests.
func TestRunbookCheckerCatchesMissingTests(t *testing.T) {
	root := deploytest.Root()
	for name, runbook := range map[string]string{
		"no such test":  "**1. Install**\n\nTested by: `TestNoSuchThing` (deploy/vm/vm_test.go).\n",
		"no such file":  "**1. Install**\n\nTested by: `TestVM3` (deploy/vm/nothing_test.go).\n",
		"untested step": "**1. Install**\n\nTested by: `TestVM3` (deploy/vm/vm_test.go).\n\n**2. Upgrade**\n",
	} {
		if len(checkRunbook(root, runbook)) == 0 {
			t.Errorf("%s: the checker passed %q", name, runbook)
		}
	}
}
