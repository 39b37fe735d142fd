package main

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/plugvisor/plugvisor/builtin"
	"github.com/plugvisor/plugvisor/config"
)

// configFlag adds -c/--config to cmd.
func configFlag(cmd *cobra.Command, path *string) {
	cmd.Flags().StringVarP(path, "config", "c", "config.toml", "config file")
}

// loadConfig loads and validates the config with the builtin registry.
func loadConfig(path string) (*config.Config, error) {
	return config.Load(path, config.Registry(builtin.Sources()))
}

func validateCmd() *cobra.Command {
	var path string
	var types bool
	var typesTimeout time.Duration
	cmd := &cobra.Command{
		Use:   "validate",
		Short: "Check a config file without running it",
		Long: `Validate loads the config file the way the daemon would (schema, values,
driver resolution) and prints OK or every problem with its key and line.
Pipelines must name configured plugins; the symbols they name are checked
here for builtin plugins (their symbols are compiled into plugvisor), and
for every plugin by the daemon, once the plugin has announced its symbols:
a config edit naming a missing symbol is refused.

When the config has pipelines, it then builds and starts the plugins they
use — privately (own bin and state dir), nothing flows, no API — to learn
their schemas, and refuses a pipeline whose stages do not fit (a source's
item into a function's input, … into the sink's item), naming the stages
and both types. --types=false skips that.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadConfig(path)
			if err == nil {
				err = checkPipelineSymbols(cfg)
			}
			if err != nil {
				// Each problem on its own line, then a failing exit.
				for _, e := range splitJoined(err) {
					fmt.Fprintf(cmd.ErrOrStderr(), "plugvisor: %v\n", e)
				}
				return &exitError{code: 1, silent: true, err: err}
			}
			if types {
				if err := checkPipelineTypes(cmd.Context(), cfg, typesTimeout); err != nil {
					for _, e := range splitJoined(err) {
						fmt.Fprintf(cmd.ErrOrStderr(), "plugvisor: %v\n", e)
					}
					return &exitError{code: 1, silent: true, err: err}
				}
			}
			fmt.Fprintf(cmd.OutOrStdout(), "OK: %s: %d plugins, %d pipelines\n", cfg.Path, len(cfg.Plugins), len(cfg.Pipelines))
			return nil
		},
	}
	configFlag(cmd, &path)
	cmd.Flags().BoolVar(&types, "types", true, "build and start the plugins the pipelines use (privately, nothing flows) to check their stages' schemas fit")
	cmd.Flags().DurationVar(&typesTimeout, "types-timeout", 2*time.Minute, "how long building and starting them may take")
	return cmd
}

// splitJoined unpacks errors.Join so each problem prints on one line.
func splitJoined(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range j.Unwrap() {
			out = append(out, splitJoined(e)...)
		}
		return out
	}
	return []error{err}
}
