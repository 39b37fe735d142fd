// Package upper is the "upper" builtin: string case functions.
package upper

import (
	"context"
	"strings"

	"github.com/plugvisor/plugvisor/sdk"
)

// Plugin is the builtin; builtin/upper/cmd serves it out of process.
var Plugin = sdk.Plugin{
	Name: "upper", Version: "1.0.0",
	Functions: map[string]any{"upper": upper, "lower": lower},
}

func upper(ctx context.Context, s string) (string, error) {
	if _, err := sdk.StateOf(ctx).IncrCounter("calls", 1); err != nil {
		return "", err
	}
	return strings.ToUpper(s), nil
}

func lower(s string) (string, error) { return strings.ToLower(s), nil }
