package supervisor_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"

	"github.com/plugvisor/plugvisor/sdk"
	"github.com/plugvisor/plugvisor/supervisor"
)

// osHelper runs the helper modes of the containment tests.
func osHelper(mode string, env sdk.Env) (int, bool) {
	switch mode {
	case "spawn":
		// Two children that hold the plugin's stderr: one in its process
		// group, one in a session of its own (Popen start_new_session).
		group, err1 := startSleeper(false)
		session, err2 := startSleeper(true)
		if err1 != nil || err2 != nil {
			fmt.Fprintln(os.Stderr, "spawn:", err1, err2)
			return 1, true
		}
		fmt.Fprintf(os.Stderr, "CHILDREN %d %d\n", group, session)
		return serve(helperPlugin(), env), true
	case "spawn-escape":
		// A child in its own session with an empty environment (no tag),
		// holding stdout and stderr: nothing finds it, only the pipes.
		cmd := exec.Command("/bin/sleep", "300")
		cmd.Env = []string{}
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
		if err := cmd.Start(); err != nil {
			fmt.Fprintln(os.Stderr, "spawn:", err)
			return 1, true
		}
		fmt.Fprintf(os.Stderr, "CHILDREN %d\n", cmd.Process.Pid)
		return serve(helperPlugin(), env), true
	case "flood":
		go func() {
			chunk := []byte(strings.Repeat("x", 64<<10)) // no newline, ever
			for {
				if _, err := os.Stderr.Write(chunk); err != nil {
					return
				}
			}
		}()
		return serve(helperPlugin(), env), true
	case "host-spawn", "host-spawn-untied":
		return runHostSpawn(mode == "host-spawn"), true
	}
	return 0, false
}

func startSleeper(setsid bool) (int, error) {
	cmd := exec.Command("sleep", "300")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: setsid}
	if err := cmd.Start(); err != nil {
		return 0, err
	}
	go func() { _ = cmd.Wait() }()
	return cmd.Process.Pid, nil
}

// runHostSpawn is a host for the "kill -9 the host" containment test: it
// runs the spawn plugin on PV_TEST_STATE, prints the pids and waits.
func runHostSpawn(tie bool) int {
	supervisor.SetTieToHost(tie)
	var o supervisor.Options
	o.StateDir, o.HeartbeatInterval.Duration = os.Getenv("PV_TEST_STATE"), 200*time.Millisecond
	sup, err := supervisor.New(o)
	if err != nil {
		fmt.Println("ERR", err)
		return 1
	}
	p, _ := sup.Add("spawner", helperSpec("spawn"))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := p.Call(ctx, "count", []byte(`"x"`)); err != nil {
		fmt.Println("ERR", err)
		return 1
	}
	for ctx.Err() == nil {
		if kids := childrenOf(p); kids != "" {
			fmt.Println("PIDS", p.Status().PID, kids, sup.SocketDir())
			select {}
		}
		time.Sleep(5 * time.Millisecond) // a helper process polling its own log; not a test's synchronisation
	}
	fmt.Println("ERR no CHILDREN line")
	return 1
}

// childrenOf returns "<group child> <session child>" of the plugin's
// current generation, from its log, or "".
func childrenOf(p *supervisor.Plugin) string {
	gen := p.Status().Generation
	for _, l := range p.Logs(0) {
		if kids, ok := strings.CutPrefix(l.Line, "CHILDREN "); ok && l.Generation == gen {
			return kids
		}
	}
	return ""
}
