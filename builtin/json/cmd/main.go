// Command json serves the json builtin out of process (mode = "process").
package main

import (
	"github.com/plugvisor/plugvisor/builtin/json"
	"github.com/plugvisor/plugvisor/sdk"
)

func main() { sdk.Serve(json.Plugin) }
