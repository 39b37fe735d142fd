package main

import "github.com/spf13/cobra"

func daemonCommands() []*cobra.Command { return nil }
