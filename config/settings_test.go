package config

import (
	"reflect"
	"strings"
	"testing"
	"time"
)

// Every Supervisor field is a [supervisor] key: a field added without its
// line in supervisorSettings could not be set from config.toml. And each
// key spells its field (underscores aside), which catches a line that
// points a key at the wrong field of the same type.
func TestSupervisorSettingsCoverEveryField(t *testing.T) {
	named := map[string]string{}
	for _, s := range supervisorSettings {
		if strings.ReplaceAll(s.key, "_", "") != strings.ToLower(s.field) {
			t.Errorf("key %q sets field %s: the key should spell the field", s.key, s.field)
		}
		named[s.field] = s.key
	}
	for _, f := range reflect.VisibleFields(reflect.TypeFor[Supervisor]()) {
		if _, ok := named[f.Name]; !ok {
			t.Errorf("Supervisor.%s has no key: add a line to supervisorSettings (config/settings.go)", f.Name)
		}
	}
}

func TestIndexSettingsRefusesTableMistakes(t *testing.T) {
	type fields struct {
		N int
		D Duration
	}
	for name, s := range map[string]setting{
		"no such field":      {"m", "M", positiveDuration},
		"wrong type":         {"n", "N", positiveDuration},
		"int as a bool":      {"n", "N", boolean},
		"duration as an int": {"d", "D", intRange(1, 2, "x")},
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%s: indexSettings accepted %+v", name, s)
				}
			}()
			indexSettings(reflect.TypeFor[fields](), []setting{s})
		}()
	}
	if m := indexSettings(reflect.TypeFor[fields](), []setting{{"n", "N", intRange(1, 2, "x")}, {"d", "D", positiveDuration}}); m["d"].index != 1 {
		t.Errorf("d indexed as field %d, want 1", m["d"].index)
	}
}

func TestWithDefaults(t *testing.T) {
	if got := (Supervisor{}).WithDefaults(); !reflect.DeepEqual(got, DefaultSupervisor()) {
		t.Errorf("zero settings with defaults:\n got %+v\nwant %+v", got, DefaultSupervisor())
	}
	s := Supervisor{StateDir: "/st", StopGrace: Duration{time.Second}, DrainTimeout: Duration{-time.Second},
		MaxFrame: 1 << 20, LogLines: -1, EnvInherit: []string{}, Poll: true}
	got := s.WithDefaults()
	def := DefaultSupervisor()
	if got.StateDir != "/st" || got.StopGrace.Duration != time.Second || got.MaxFrame != 1<<20 || !got.Poll {
		t.Errorf("set fields changed: %+v", got)
	}
	if got.DrainTimeout != def.DrainTimeout || got.LogLines != def.LogLines || got.BinDir != def.BinDir {
		t.Errorf("unset (negative, empty) fields not defaulted: drain %v, log_lines %d, bin_dir %q", got.DrainTimeout, got.LogLines, got.BinDir)
	}
	if got.EnvInherit == nil {
		t.Error("an empty env_inherit (pass none) became nil (the default)")
	}
}
