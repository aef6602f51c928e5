package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"

	"github.com/spf13/cobra"
)

func init() { register(newProbeCmd) }

// newProbeCmd is the container healthcheck: the image has no shell or curl.
func newProbeCmd() *cobra.Command {
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "probe <url>",
		Short: "GET a URL (e.g. http://127.0.0.1:8080/readyz); exit 0 on a 2xx answer, 1 otherwise",
		Long: `probe is for container healthchecks, where the image has no shell or curl:
it GETs the URL once within --timeout and exits 0 when the answer is 2xx,
1 for any other answer or error, and prints the status and the first line of
the body.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			u, err := url.Parse(args[0])
			if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
				return usage(fmt.Errorf("probe %q: want an http:// or https:// URL", args[0]))
			}
			ranCommand = true
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
			defer cancel()
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
			if err != nil {
				return err
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				return fmt.Errorf("probe %s: %w", u.Redacted(), err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
			fmt.Fprintf(cmd.OutOrStdout(), "%s %s\n", resp.Status, firstLine(body))
			if resp.StatusCode/100 != 2 {
				return fmt.Errorf("probe %s: %s", u.Redacted(), resp.Status)
			}
			return nil
		},
	}
	cmd.Flags().DurationVar(&timeout, "timeout", 3*time.Second, "how long to wait for the answer")
	return cmd
}

func firstLine(b []byte) string {
	for i, c := range b {
		if c == '\n' || c == '\r' {
			return string(b[:i])
		}
	}
	return string(b)
}
