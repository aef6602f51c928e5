package gogs

import (
	"bytes"
	"encoding/json"
	"io"
)

// wantMembers is what each known event's payload has in every real Gogs
// capture and no other event's payload has all of; the fuzz targets check
// the decoder against it.
var wantMembers = map[string][]string{
	"push":          {"ref", "before", "after", "commits"},
	"create":        {"ref", "ref_type", "default_branch"},
	"delete":        {"ref", "ref_type", "pusher_type"},
	"fork":          {"forkee"},
	"issues":        {"action", "number", "issue"},
	"issue_comment": {"action", "issue", "comment"},
	"pull_request":  {"action", "number", "pull_request"},
	"release":       {"action", "release"},
}

// strictRead is an independent reading of payload with the standard
// library's tokenizer: its top-level members (the raw JSON of each), and
// whether any object repeats a member name exactly.
func strictRead(payload []byte) (top map[string]json.RawMessage, dup, ok bool) {
	dec := json.NewDecoder(bytes.NewReader(payload))
	top = map[string]json.RawMessage{}
	var walk func(depth int) bool
	walk = func(depth int) bool {
		tok, err := dec.Token()
		if err != nil {
			return false
		}
		switch tok {
		case json.Delim('{'):
			seen := map[string]bool{}
			for dec.More() {
				k, err := dec.Token()
				if err != nil {
					return false
				}
				name := k.(string)
				dup = dup || seen[name]
				seen[name] = true
				if depth == 0 {
					var raw json.RawMessage
					if err := dec.Decode(&raw); err != nil {
						return false
					}
					top[name] = raw
					sub := json.NewDecoder(bytes.NewReader(raw))
					outer := dec
					dec = sub
					okSub := walk(1)
					dec = outer
					if !okSub {
						return false
					}
					continue
				}
				if !walk(depth + 1) {
					return false
				}
			}
			_, err := dec.Token()
			return err == nil
		case json.Delim('['):
			for dec.More() {
				if !walk(depth + 1) {
					return false
				}
			}
			_, err := dec.Token()
			return err == nil
		}
		return true
	}
	if !walk(0) {
		return nil, false, false
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, false, false
	}
	return top, dup, true
}
