// Package process is the runtime driver that runs appliance bundles as
// local processes, for testnets, demos and small sellers.
//
// A bundle is a tar archive (optionally gzipped) with an executable named
// run at its root, or one executable (ELF or a #! script). Provision
// unpacks it into the instance's directory and starts ./run there, in its
// own session and process group (setsid), with this environment and no
// other (the node's own environment is not passed on):
//
//	PORT                      a free port it must listen on
//	HOST                      the address to listen on (Config.BindHost)
//	SPOTMESH_LEASE_ID         the lease's ID
//	SPOTMESH_ACCESS_KEY_FILE  path of a file (0600) holding the buyer's access key
//	SPOTMESH_ENDPOINT         host:port handed to the buyer
//	SPOTMESH_VCPU, SPOTMESH_MEMORY, SPOTMESH_DISK   the lease's limits (bytes)
//	SPOTMESH_LEASE_ENDS       the lease's end, RFC 3339 (when known)
//	SPOTMESH_APPLIANCE_CID    the appliance's CID
//	HOME, TMPDIR, PATH        its directory, a scratch directory, /usr/local/bin:/usr/bin:/bin
//
// plus the lease's own Env. The instance is running once something accepts
// TCP connections on PORT; one that does not within Config.StartTimeout
// failed and is stopped.
//
// # Limits
//
// The lease's limits are always set as rlimits, before the program runs a
// single instruction: the child stops at exec under ptrace, the driver sets
// them with prlimit(2) and lets it go (where ptrace is not permitted, just
// after the start, and the instance's LimitNotes say so). Memory is
// RLIMIT_DATA, disk RLIMIT_FSIZE (per file), CPU time RLIMIT_CPU as a
// backstop (vCPU × the lease's length + slack), and RLIMIT_NOFILE. Where the
// machine has a writable cgroup v2 hierarchy, every instance also gets its
// own cgroup, entered at clone (CLONE_INTO_CGROUP), with memory.max,
// cpu.max and pids.max for the controllers that are available; usage then
// comes from the cgroup, and cgroup.kill ends it. Each instance reports
// which limits were enforced and how (Instance.Enforced), and why others
// were not (Instance.LimitNotes). The driver terminates an instance that
// runs past its lease's end + Config.WallGrace.
//
// # State and re-adoption
//
// Each instance has a directory <Dir>/instances/<lease>/ holding its
// record (instance.json, rewritten atomically at every state change), its
// access key, its output (output.log: stdout and stderr), its files (app/,
// the working directory) and a scratch directory (tmp/). Instances outlive
// the node: on restart, New reloads the records and Recover re-adopts every
// instance whose process still runs, recognised by PID and start time
// (field 22 of /proc/<pid>/stat), so that a PID reused by another process
// is never taken for an instance; the others are marked exited. The
// driver reaps its own children with wait4 and polls /proc for adopted
// ones. App and scratch files go when an instance ends; the record and
// output stay for Config.Retention.
//
// Instances run in their own session, so signals to the node's terminal
// or process group do not reach them. A service manager that kills the
// node's whole cgroup when it stops it (systemd's KillMode=control-group)
// reaches them only when they share it: with cgroup v2 they have their own
// cgroups outside the node's (Config.CgroupParent); without, run the node
// with KillMode=process.
//
// Counters: CPU time from the cgroup's cpu.stat, or else the sum of
// utime+stime (and of waited-for children) over the process group in
// /proc; memory high-water from memory.peak, or else the sum of VmHWM over
// the group; wall time from the start. Network bytes are not measured.
//
// The driver needs Linux; New fails elsewhere with runtime.ErrUnsupported.
package process
