package procnet

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/spotmesh/spotmesh/node/runtime/process"
)

func readStat(pid int) (procStat, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return procStat{}, err
	}
	return parseStat(pid, b)
}

func readCmdline(pid int) ([]byte, error) {
	return os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
}

// killGroup kills the process group that pid leads.
func killGroup(pid int) error { return syscall.Kill(-pid, syscall.SIGKILL) }

// rssOf reads a process's resident set, in bytes; 0 when unknown.
func rssOf(pid int) uint64 { return process.StatusBytes(pid, "VmRSS") }

// spawn starts bin with args in its own session (setsid: a terminal's
// Ctrl-C does not reach it, and it outlives this process), in dir, with
// stdout and stderr appended to logPath. It does not wait for the
// process: reap collects it if it ends while this process runs.
func spawn(bin string, args []string, dir, logPath string, env []string) (pid int, start uint64, err error) {
	logf, err := os.OpenFile(logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return 0, 0, err
	}
	defer logf.Close()
	var cmd *exec.Cmd
	// A freshly copied binary may be held open for writing by the child
	// of a concurrent fork until that child execs: ETXTBSY, which passes
	// in milliseconds.
	for attempt := 0; attempt < 20; attempt++ {
		cmd = &exec.Cmd{
			Path: bin, Args: append([]string{bin}, args...), Dir: dir, Env: env,
			Stdout: logf, Stderr: logf,
			SysProcAttr: &syscall.SysProcAttr{Setsid: true},
		}
		err = cmd.Start()
		if !errors.Is(err, syscall.ETXTBSY) {
			break
		}
		time.Sleep(time.Duration(attempt+1) * 5 * time.Millisecond)
	}
	if err != nil {
		return 0, 0, err
	}
	pid = cmd.Process.Pid
	// Drop os/exec's handle without waiting; reap waits with WNOHANG.
	_ = cmd.Process.Release()
	st, err := readStat(pid)
	if err != nil {
		return pid, 0, fmt.Errorf("pid %d ended as it started: %w", pid, err)
	}
	// The kernel sets the new command line up a moment after exec
	// commits, which is when cmd.Start returns; until then it reads
	// empty, as an exiting process's does. Wait, so that probes tell
	// them apart.
	for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		if cl, err := readCmdline(pid); err != nil || len(cl) > 0 {
			break
		}
	}
	return pid, st.start, nil
}

// reap collects pid if it is a child of this process that has ended;
// otherwise it does nothing.
func reap(pid int) {
	var ws syscall.WaitStatus
	_, _ = syscall.Wait4(pid, &ws, syscall.WNOHANG, nil)
}

// signalIf sends sig to pid if check, run after a pidfd for pid is open,
// passes: the signal then reaches the process that check saw, even if it
// ends and its PID is reused in between. Kernels without pidfds (before
// 5.3) get a plain kill after the check.
func signalIf(pid int, sig syscall.Signal, check func() error) error {
	gone := func() error {
		if err := check(); err != nil {
			return err
		}
		return fmt.Errorf("pid %d: %w", pid, ErrNotRunning)
	}
	if pid <= 0 {
		return gone()
	}
	fd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		if errors.Is(err, syscall.ESRCH) {
			return gone()
		}
		if !errors.Is(err, syscall.ENOSYS) {
			return fmt.Errorf("pidfd_open %d: %w", pid, err)
		}
		if err := check(); err != nil {
			return err
		}
		return syscall.Kill(pid, sig)
	}
	defer unix.Close(fd)
	if err := check(); err != nil {
		return err
	}
	if err := unix.PidfdSendSignal(fd, sig, nil, 0); err != nil {
		if errors.Is(err, syscall.ESRCH) {
			return gone()
		}
		return fmt.Errorf("signal %v to pid %d: %w", sig, pid, err)
	}
	return nil
}

// lockDir takes an exclusive flock on <dir>/testnet.lock, waiting up to
// wait for it; unlock releases it. The lock goes with the process, so a
// crashed operation leaves none behind.
func lockDir(path string, wait time.Duration) (unlock func(), err error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, err
	}
	deadline := time.Now().Add(wait)
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return func() { _ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN); f.Close() }, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			f.Close()
			return nil, fmt.Errorf("lock %s: %w", path, err)
		}
		if time.Now().After(deadline) {
			f.Close()
			return nil, fmt.Errorf("%s: %w: another 'spotmesh testnet' command is working on it; wait for it to finish", path, ErrBusy)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

const supported = true
