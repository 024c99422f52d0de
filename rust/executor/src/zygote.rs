//! The zygote side: a pre-warmed interpreter (single-threaded, never running untrusted code)
//! that forks one sandboxed child at a time and reaps it.
//!
//! The zygote never sees a job's bytes. It hands each waiting child's pipes (and a pidfd) to
//! the host over its control socket; the host writes the job into the child, reads its output
//! and result, and kills it when a limit is reached. The zygote only forks, reaps and reports
//! exit status and resource use. So its memory, which every later child inherits, holds no
//! program, input, expected value or result of any job.
//!
//! This code runs inside the zygote's Python process (the extension module is loaded there), but
//! it is plain Rust over file descriptor 0 (the control socket).

use std::io;
use std::mem::ManuallyDrop;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::fdpass;
use crate::protocol::{read_frame, ChildJob, Exit, Hello, ZygoteConfig, ZygoteMsg};
use crate::sandbox::{self, Prepared, SANDBOX_FAILED_EXIT};

/// The control socket (a SOCK_SEQPACKET end the host created).
const CONTROL: RawFd = 0;

pub enum Forked {
    /// We are the child, sandboxed: run this job and exit.
    Child(ChildJob),
    /// The host closed the control socket: the zygote should exit.
    Shutdown,
}

static PREPARED: Mutex<Option<(Prepared, ZygoteConfig)>> = Mutex::new(None);

fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as RawFd; 2];
    // SAFETY: fds is a valid two-element array.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: both descriptors are fresh and owned here.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

pub fn pidfd_open(pid: libc::pid_t) -> io::Result<OwnedFd> {
    // SAFETY: plain syscall; the descriptor is owned from here.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// Sets up namespaces, the minimal filesystem and the Landlock rules (before the interpreter
/// freezes its heap). Returns the work directory as children will see it.
pub fn prepare(read_paths: &[PathBuf], staging: &Path, cfg: ZygoteConfig) -> io::Result<PathBuf> {
    let prep = Prepared::new(read_paths, staging)?;
    let workdir = prep.workdir.clone();
    *PREPARED.lock().unwrap() = Some((prep, cfg));
    Ok(workdir)
}

/// The zygote's main loop. Returns in the zygote only on shutdown, and in each child once.
///
/// After each child is reaped the zygote at once forks the next one, which sandboxes itself and
/// waits for its job; fork and set-up overlap with the host's turn-around instead of adding to
/// every job's latency.
pub fn serve(python: &str) -> io::Result<Forked> {
    let (prep, cfg) = PREPARED
        .lock()
        .unwrap()
        .take()
        .ok_or_else(|| io::Error::other("prepare() was not called"))?;
    // SAFETY: ignoring SIGINT; the host handles Ctrl-C and closes our socket.
    unsafe {
        libc::signal(libc::SIGINT, libc::SIG_IGN);
        libc::signal(libc::SIGPIPE, libc::SIG_IGN);
    }
    if prep.seccomp {
        // SAFETY: a filter on this single-threaded process; it leaves fork, signals, mounts and
        // files (all the zygote needs) alone.
        unsafe {
            if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
                return Err(io::Error::last_os_error());
            }
            sandbox::install_filter(&sandbox::zygote_filter())?;
        }
    }
    let hello = Hello {
        pid: std::process::id(),
        landlock_abi: prep.landlock_abi,
        seccomp: prep.seccomp,
        workdir_bytes: prep.workdir_bytes,
        python: python.to_string(),
        sandbox_uid: prep.sandbox_ids.map_or(0, |(u, _)| u),
        layers: prep
            .layers
            .iter()
            .map(|l| (l.name.clone(), l.active, l.detail.clone()))
            .collect(),
    };
    fdpass::send(CONTROL, &ZygoteMsg::Hello(hello).encode(), &[])?;
    // SAFETY: getpid has no preconditions.
    let zygote = unsafe { libc::getpid() };
    loop {
        let spare = match fork_child(&prep, &cfg, zygote)? {
            Fork::Parent(s) => s,
            Fork::Child(job) => {
                // Its descriptors are closed already; nothing of it is needed any more.
                std::mem::forget(prep);
                return Ok(Forked::Child(job));
            }
        };
        let mut fds = vec![spare.job_w.as_raw_fd(), spare.res_r.as_raw_fd()];
        if let Some(o) = &spare.out_r {
            fds.push(o.as_raw_fd());
        }
        fds.push(spare.pidfd.as_raw_fd());
        let msg = ZygoteMsg::Spare { pid: spare.pid }.encode();
        if let Err(e) = fdpass::send(CONTROL, &msg, &fds) {
            spare.kill_and_reap();
            return Err(e);
        }
        let Spare {
            pid,
            pidfd,
            job_w,
            res_r,
            out_r,
        } = spare;
        // The host holds the only data ends now.
        drop((job_w, res_r, out_r));
        if !wait_for_exit(&pidfd)? {
            // SAFETY: our own unreaped child.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            reap(pid);
            return Ok(Forked::Shutdown);
        }
        let (exit, cpu_us, max_rss_kb) = reap(pid);
        let msg = ZygoteMsg::Exited {
            pid,
            exit,
            cpu_us,
            max_rss_kb,
        };
        fdpass::send(CONTROL, &msg.encode(), &[])?;
        prep.renew_workdir()?;
    }
}

/// Waits until the child exits (true) or the host closes the control socket (false).
fn wait_for_exit(pidfd: &OwnedFd) -> io::Result<bool> {
    loop {
        let mut fds = [
            libc::pollfd {
                fd: CONTROL,
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: pidfd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        // SAFETY: a valid pollfd array.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), 2, -1) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        if fds[0].revents != 0 {
            // The host sends nothing but may close: end of stream (or an error) means shutdown.
            let mut buf = [0u8; 64];
            match fdpass::recv(CONTROL, &mut buf) {
                Ok((0, _)) | Err(_) => return Ok(false),
                Ok(_) => {}
            }
        }
        if fds[1].revents != 0 {
            return Ok(true);
        }
    }
}

fn reap(pid: libc::pid_t) -> (Exit, u64, u64) {
    let mut status = 0;
    // SAFETY: zeroed rusage is a valid out-parameter; pid is our unreaped child.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        let r = unsafe { libc::wait4(pid, &mut status, 0, &mut ru) };
        if r >= 0 || io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
            break;
        }
    }
    let exit = if libc::WIFSIGNALED(status) {
        Exit::Signal(libc::WTERMSIG(status))
    } else {
        Exit::Code(libc::WEXITSTATUS(status))
    };
    let tv = |t: libc::timeval| t.tv_sec as u64 * 1_000_000 + t.tv_usec as u64;
    (
        exit,
        tv(ru.ru_utime) + tv(ru.ru_stime),
        ru.ru_maxrss.max(0) as u64,
    )
}

/// A forked, sandboxed child waiting for its job.
struct Spare {
    pid: libc::pid_t,
    pidfd: OwnedFd,
    job_w: OwnedFd,
    out_r: Option<OwnedFd>,
    res_r: OwnedFd,
}

impl Spare {
    fn kill_and_reap(self) {
        // SAFETY: our own unreaped child.
        unsafe { libc::kill(self.pid, libc::SIGKILL) };
        reap(self.pid);
    }
}

enum Fork {
    Parent(Spare),
    Child(ChildJob),
}

fn fork_child(prep: &Prepared, cfg: &ZygoteConfig, zygote: libc::pid_t) -> io::Result<Fork> {
    let out = if cfg.capture_stdout {
        Some(pipe()?)
    } else {
        None
    };
    let (res_r, res_w) = pipe()?;
    let (job_r, job_w) = pipe()?;
    // SAFETY: fork in a single-threaded process.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(io::Error::last_os_error());
    }
    if pid == 0 {
        let out_w = out.as_ref().map(|(_, w)| w.as_raw_fd());
        // SAFETY: we are the freshly forked, single-threaded child.
        unsafe {
            if let Err(e) = sandbox::enter(
                prep,
                cfg,
                out_w,
                res_w.as_raw_fd(),
                job_r.as_raw_fd(),
                zygote,
            ) {
                // No marker was written, so the host knows this text is ours, not a program's.
                let msg = e.to_string();
                if libc::write(res_w.as_raw_fd(), msg.as_ptr().cast(), msg.len()) < 0 {
                    libc::write(3, msg.as_ptr().cast(), msg.len());
                }
                libc::_exit(SANDBOX_FAILED_EXIT);
            }
        }
        // Descriptors >= 5 are already closed by `enter`; forget them instead of closing twice.
        std::mem::forget(out);
        std::mem::forget((res_r, res_w, job_r, job_w));
        // SAFETY: fd 4 is the job pipe, ours alone; it is closed before the program runs.
        let mut jobs = ManuallyDrop::new(unsafe { std::fs::File::from_raw_fd(4) });
        let job = read_frame(&mut *jobs)
            .ok()
            .flatten()
            .and_then(|f| ChildJob::decode(&f).ok());
        // SAFETY: closing our own descriptor once.
        unsafe { libc::close(4) };
        match job {
            Some(j) => {
                if j.cpu_secs < cfg.cpu_secs {
                    let s = j.cpu_secs.max(1);
                    let lim = libc::rlimit {
                        rlim_cur: s,
                        rlim_max: s + 1,
                    };
                    // SAFETY: lowering our own limit.
                    unsafe { libc::setrlimit(libc::RLIMIT_CPU, &lim) };
                }
                return Ok(Fork::Child(j));
            }
            // The host dropped this child or sent garbage: nothing to run.
            None => unsafe { libc::_exit(0) },
        }
    }
    drop((res_w, job_r));
    let out_r = out.map(|(r, w)| {
        drop(w);
        r
    });
    let pidfd = match pidfd_open(pid) {
        Ok(p) => p,
        Err(e) => {
            // SAFETY: our own unreaped child.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            reap(pid);
            return Err(e);
        }
    };
    Ok(Fork::Parent(Spare {
        pid,
        pidfd,
        job_w,
        out_r,
        res_r,
    }))
}
