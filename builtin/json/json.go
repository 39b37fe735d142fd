// Package json is the "json" builtin: JSON utilities as plugin functions.
package json

import (
	"bytes"
	"context"
	stdjson "encoding/json"
	"fmt"

	"github.com/plugvisor/plugvisor/sdk"
)

// Plugin is the builtin; builtin/json/cmd serves it out of process.
var Plugin = sdk.Plugin{
	Name: "json", Version: "1.0.0",
	Functions: map[string]any{"pretty": pretty, "compact": compact, "keys": keys},
}

// pretty indents any JSON value; the input passes through raw.
func pretty(ctx context.Context, in []byte) ([]byte, error) {
	var b bytes.Buffer
	if err := stdjson.Indent(&b, in, "", "  "); err != nil {
		return nil, fmt.Errorf("pretty: input is not JSON: %w", err)
	}
	out, err := stdjson.Marshal(b.String())
	if err == nil {
		_, err = sdk.StateOf(ctx).IncrCounter("pretty", 1)
	}
	return out, err
}

// compact removes insignificant space and returns the compact JSON itself.
func compact(in []byte) ([]byte, error) {
	var b bytes.Buffer
	if err := stdjson.Compact(&b, in); err != nil {
		return nil, fmt.Errorf("compact: input is not JSON: %w", err)
	}
	return b.Bytes(), nil
}

// keys lists the keys of a JSON object.
func keys(in map[string]any) ([]string, error) {
	out := make([]string, 0, len(in))
	for k := range in {
		out = append(out, k)
	}
	sortStrings(out)
	return out, nil
}

func sortStrings(s []string) {
	for i := 1; i < len(s); i++ {
		for j := i; j > 0 && s[j] < s[j-1]; j-- {
			s[j], s[j-1] = s[j-1], s[j]
		}
	}
}
