package config

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"

	"github.com/BurntSushi/toml"
)

// LoadSupervisor reads only the [supervisor] table of the config file at
// path, validated and with its folders made absolute: what a client of
// the daemon needs (the API address, the state folder with the token)
// without resolving or checking any plugin.
func LoadSupervisor(path string) (Supervisor, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Supervisor{}, fmt.Errorf("read config: %w", err)
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return Supervisor{}, fmt.Errorf("config %s: %w", path, err)
	}
	doc, err := decodeDoc(data, path)
	if err != nil {
		return Supervisor{}, err
	}
	p := &parser{file: path, lines: locateKeys(string(data))}
	s := DefaultSupervisor()
	v, ok := doc["supervisor"]
	if !ok {
		v = map[string]any{}
	}
	p.supervisor([]string{"supervisor"}, v, &s, filepath.Dir(abs))
	if len(p.errs) > 0 {
		sort.SliceStable(p.errs, func(i, j int) bool { return p.errs[i].Line < p.errs[j].Line })
		return Supervisor{}, joinErrors(p.errs)
	}
	return s, nil
}

// decodeDoc decodes TOML into its generic form; a syntax error names the
// file and line.
func decodeDoc(data []byte, file string) (map[string]any, error) {
	var doc map[string]any
	if _, err := toml.Decode(string(data), &doc); err != nil {
		var pe toml.ParseError
		if errors.As(err, &pe) {
			return nil, &Error{File: file, Line: pe.Position.Line, Msg: "syntax: " + pe.Message, Err: err}
		}
		return nil, &Error{File: file, Msg: err.Error(), Err: err}
	}
	return doc, nil
}
