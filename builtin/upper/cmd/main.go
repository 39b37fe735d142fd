// Command upper serves the upper builtin out of process (mode = "process").
package main

import (
	"github.com/plugvisor/plugvisor/builtin/upper"
	"github.com/plugvisor/plugvisor/sdk"
)

func main() { sdk.Serve(upper.Plugin) }
