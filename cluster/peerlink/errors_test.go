package peerlink

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/troupe-kv/troupe/storage"
)

var sentinels = []error{ErrNotLeader, ErrNoLeader, ErrUnknownOutcome, ErrBusy, storage.ErrNoSpace}

func TestErrorCodeRoundTrip(t *testing.T) {
	seen := map[string]bool{}
	for _, err := range sentinels {
		for _, e := range []error{err, fmt.Errorf("context: %w", err)} {
			code := ErrorCode(e)
			if code == "" {
				t.Fatalf("%v has no code", e)
			}
			back := errorFromCode(code, e.Error())
			if !errors.Is(back, err) {
				t.Fatalf("%v -> %q -> %v, not the same sentinel", e, code, back)
			}
			for _, other := range sentinels {
				if other != err && errors.Is(back, other) {
					t.Fatalf("%q decodes to %v, which is also %v", code, back, other)
				}
			}
		}
		seen[ErrorCode(err)] = true
	}
	if len(seen) != len(sentinels) {
		t.Fatalf("codes are not distinct: %v", seen)
	}
	if c := ErrorCode(io.EOF); c != "" {
		t.Fatalf("ErrorCode(io.EOF) = %q", c)
	}
	if c := ErrorCode(nil); c != "" {
		t.Fatalf("ErrorCode(nil) = %q", c)
	}
	// The leader's message is kept where it adds information.
	if err := errorFromCode("unknown-outcome", "leadership lost"); !strings.Contains(err.Error(), "leadership lost") {
		t.Fatalf("unknown-outcome lost the leader's message: %v", err)
	}
	full := &storage.NoSpaceError{Alarms: []storage.Alarm{{Type: storage.AlarmNoSpace, Member: "n2", Reason: "over quota"}}}
	if err := errorFromCode(ErrorCode(full), full.Error()); err.Error() != full.Error() || !errors.Is(err, storage.ErrNoSpace) {
		t.Fatalf("nospace lost the leader's message: %v", err)
	}
	if err := errorFromCode("", "disk on fire"); err.Error() != "disk on fire" {
		t.Fatalf("code-less error: %v", err)
	}
}

func TestRemoteError(t *testing.T) {
	jsonBody := func(code, msg string) []byte {
		b, _ := json.Marshal(errorBody{Code: code, Error: msg})
		return b
	}
	for _, err := range sentinels {
		got := remoteError(http.StatusServiceUnavailable, jsonBody(ErrorCode(err), err.Error()))
		if !errors.Is(got, err) {
			t.Errorf("code %q: %v, want %v", ErrorCode(err), got, err)
		}
	}

	var re *RemoteError
	for _, tc := range []struct {
		status int
		body   string
		msg    string
	}{
		{413, `{"error":"value too large: 600000 > 524288"}`, "value too large: 600000 > 524288"},
		{413, "request entity too large\n", "request entity too large"},
		{400, `{"code":"","error":"bad key"}`, "bad key"},
		{500, "<html>oops</html>", "<html>oops</html>"},
		{502, "", ""},
		{500, `{"error":""}`, `{"error":""}`},
		{500, `{"error":`, `{"error":`},
		{500, `["error"]`, `["error"]`},
	} {
		err := remoteError(tc.status, []byte(tc.body))
		if !errors.As(err, &re) {
			t.Errorf("%d %q: %T %v, want *RemoteError", tc.status, tc.body, err, err)
			continue
		}
		if re.Status != tc.status || re.Message != tc.msg {
			t.Errorf("%d %q: %+v, want status %d message %q", tc.status, tc.body, re, tc.status, tc.msg)
		}
		for _, s := range sentinels {
			if errors.Is(err, s) {
				t.Errorf("%d %q: a code-less answer became %v", tc.status, tc.body, s)
			}
		}
		if !strings.Contains(err.Error(), fmt.Sprint(tc.status)) {
			t.Errorf("RemoteError text %q does not name the status", err)
		}
	}
}
