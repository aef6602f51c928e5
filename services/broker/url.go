package broker

import (
	"net/url"
	"strings"
)

// redactURLs hides passwords in a comma-separated URL list.
func redactURLs(list string) string {
	parts := strings.Split(list, ",")
	for i, p := range parts {
		u, err := url.Parse(strings.TrimSpace(p))
		if err != nil {
			parts[i] = "[unparsable url]"
			continue
		}
		parts[i] = u.Redacted()
	}
	return strings.Join(parts, ",")
}
