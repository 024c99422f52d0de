//! The zygote side: a pre-warmed interpreter (single-threaded, never running untrusted code)
//! that forks one child per job, supervises it from outside and reports what it observed.
//!
//! This code runs inside the zygote's Python process (the extension module is loaded there), but
//! it is plain Rust over file descriptors 0 (requests) and 1 (responses).

use std::io;
use std::mem::ManuallyDrop;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::protocol::{read_frame, write_frame, ChildJob, Exit, Hello, Request, Response};
use crate::sandbox::{self, Prepared, SANDBOX_FAILED_EXIT, SANDBOX_READY};

/// Cap on the child's own report beyond the value cap: the tuple around it and the error text.
const RESULT_SLACK: u64 = 64 << 10;

pub enum Forked {
    /// We are the child, sandboxed: run this job and exit.
    Child(ChildJob),
    /// The host closed the request stream: the zygote should exit.
    Shutdown,
}

fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as RawFd; 2];
    // SAFETY: fds is a valid two-element array.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: both descriptors are fresh and owned here.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

fn set_nonblocking(fd: RawFd) {
    // SAFETY: fcntl on a valid descriptor.
    unsafe {
        let fl = libc::fcntl(fd, libc::F_GETFL);
        libc::fcntl(fd, libc::F_SETFL, fl | libc::O_NONBLOCK);
    }
}

/// The zygote's main loop. Returns in the zygote only on shutdown, and in each child once.
///
/// After every job the zygote forks the next child at once ("spare"), which sandboxes itself and
/// waits for its job on a pipe; fork and set-up then overlap with the host's turn-around instead
/// of adding to every job's latency.
pub fn serve(read_paths: &[PathBuf], workdir: &Path, python: &str) -> io::Result<Forked> {
    // SAFETY: ignoring SIGINT; the host handles Ctrl-C and closes our stdin.
    unsafe {
        libc::signal(libc::SIGINT, libc::SIG_IGN);
        libc::signal(libc::SIGPIPE, libc::SIG_IGN);
    }
    let prep = Prepared::new(read_paths, workdir)?;
    if prep.seccomp {
        // SAFETY: a filter on this single-threaded process; it leaves fork, signals and files
        // (all the zygote needs) alone.
        unsafe {
            if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
                return Err(io::Error::last_os_error());
            }
            sandbox::install_filter(&sandbox::zygote_filter())?;
        }
    }
    // fds 0 and 1 belong to the protocol; never close them from here.
    let mut input = ManuallyDrop::new(unsafe { std::fs::File::from_raw_fd(0) });
    let mut output = ManuallyDrop::new(unsafe { std::fs::File::from_raw_fd(1) });
    let hello = Hello {
        pid: std::process::id(),
        landlock_abi: prep.landlock_abi,
        seccomp: prep.seccomp,
        workdir_bytes: prep.workdir_bytes,
        python: python.to_string(),
    };
    write_frame(&mut *output, &hello.encode())?;
    let mut spare: Option<Spare> = None;
    loop {
        let Some(frame) = read_frame(&mut *input)? else {
            if let Some(s) = spare.take() {
                s.discard();
            }
            return Ok(Forked::Shutdown);
        };
        let req = Request::decode(&frame)?;
        let child = match spare.take() {
            Some(s) if s.key == SpareKey::of(&req) => s,
            other => {
                if let Some(s) = other {
                    s.discard();
                }
                match fork_child(&prep, &req)? {
                    Fork::Parent(s) => s,
                    Fork::Child(job) => return Ok(Forked::Child(job)),
                }
            }
        };
        let resp = child.run(&frame, &req);
        clean_workdir(&prep.workdir);
        write_frame(&mut *output, &resp.encode())?;
        match fork_child(&prep, &req)? {
            Fork::Parent(s) => spare = Some(s),
            Fork::Child(job) => return Ok(Forked::Child(job)),
        }
    }
}

/// What a spare child was prepared for; a request with other limits needs a fresh child.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct SpareKey {
    cpu_secs: u64,
    memory_bytes: u64,
    capture_stdout: bool,
}

impl SpareKey {
    fn of(req: &Request) -> SpareKey {
        SpareKey {
            cpu_secs: req.cpu_secs,
            memory_bytes: req.memory_bytes,
            capture_stdout: req.capture_stdout,
        }
    }
}

/// A forked, sandboxed child waiting for its job.
struct Spare {
    pid: libc::pid_t,
    key: SpareKey,
    job_w: OwnedFd,
    out_r: Option<OwnedFd>,
    res_r: OwnedFd,
}

enum Fork {
    Parent(Spare),
    Child(ChildJob),
}

fn fork_child(prep: &Prepared, req: &Request) -> io::Result<Fork> {
    let out = if req.capture_stdout {
        Some(pipe()?)
    } else {
        None
    };
    let (res_r, res_w) = pipe()?;
    let (job_r, job_w) = pipe()?;
    // SAFETY: getpid/fork in a single-threaded process.
    let zygote = unsafe { libc::getpid() };
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
                req,
                out_w,
                res_w.as_raw_fd(),
                job_r.as_raw_fd(),
                zygote,
            ) {
                // No marker was written, so the zygote knows this text is ours, not a program's.
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
        let mut jobs = unsafe { std::fs::File::from_raw_fd(4) };
        let job = read_frame(&mut jobs)
            .ok()
            .flatten()
            .and_then(|f| Request::decode(&f).ok())
            .map(|r| r.job);
        drop(jobs);
        match job {
            Some(j) => return Ok(Fork::Child(j)),
            // The zygote went away or sent garbage: nothing to run.
            None => unsafe { libc::_exit(0) },
        }
    }
    drop((res_w, job_r));
    let out_r = out.map(|(r, w)| {
        drop(w);
        r
    });
    Ok(Fork::Parent(Spare {
        pid,
        key: SpareKey::of(req),
        job_w,
        out_r,
        res_r,
    }))
}

impl Spare {
    fn run(self, frame: &[u8], req: &Request) -> Response {
        let start = Instant::now();
        let Spare {
            pid,
            job_w,
            out_r,
            res_r,
            ..
        } = self;
        // A child that died during set-up makes this fail with EPIPE; `supervise` reports why.
        let mut w = std::fs::File::from(job_w);
        let _ = write_frame(&mut w, frame);
        drop(w);
        supervise(pid, start, req, out_r, res_r)
    }

    /// Kills and reaps an unused spare.
    fn discard(self) {
        // SAFETY: our own unreaped child.
        unsafe {
            libc::kill(self.pid, libc::SIGKILL);
            let mut status = 0;
            libc::waitpid(self.pid, &mut status, 0);
        }
    }
}

struct Sink {
    fd: Option<OwnedFd>,
    buf: Vec<u8>,
    cap: usize,
    exceeded: bool,
}

impl Sink {
    fn new(fd: Option<OwnedFd>, cap: usize) -> Sink {
        if let Some(f) = &fd {
            set_nonblocking(f.as_raw_fd());
        }
        Sink {
            fd,
            buf: Vec::new(),
            cap,
            exceeded: false,
        }
    }

    /// Reads what is available. Keeps at most `cap` bytes and notes when more arrived.
    fn drain(&mut self) {
        let Some(fd) = &self.fd else { return };
        let mut chunk = [0u8; 65536];
        loop {
            // SAFETY: reading into a local buffer from an owned descriptor.
            let n = unsafe { libc::read(fd.as_raw_fd(), chunk.as_mut_ptr().cast(), chunk.len()) };
            if n > 0 {
                let n = n as usize;
                let room = self.cap.saturating_sub(self.buf.len());
                self.buf.extend_from_slice(&chunk[..n.min(room)]);
                if n > room {
                    self.exceeded = true;
                    return;
                }
            } else if n == 0 {
                self.fd = None; // writer closed
                return;
            } else {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                if e.kind() != io::ErrorKind::WouldBlock {
                    self.fd = None;
                }
                return;
            }
        }
    }
}

fn pidfd_open(pid: libc::pid_t) -> Option<OwnedFd> {
    // SAFETY: plain syscall; the descriptor is owned from here.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    (fd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

fn supervise(
    pid: libc::pid_t,
    start: Instant,
    req: &Request,
    out_r: Option<OwnedFd>,
    res_r: OwnedFd,
) -> Response {
    let deadline = start + Duration::from_micros(req.wall_timeout_us);
    let mut out = Sink::new(out_r, req.max_output_bytes as usize);
    let res_cap = (req.job.max_value_bytes * 2 + RESULT_SLACK) as usize;
    let mut res = Sink::new(Some(res_r), res_cap);
    let pidfd = pidfd_open(pid);
    let mut killed = false;
    let mut timed_out = false;
    let kill = |killed: &mut bool| {
        if !*killed {
            // SAFETY: the child is ours and unreaped, so the pid cannot have been reused.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            *killed = true;
        }
    };
    loop {
        let mut fds: Vec<libc::pollfd> = Vec::with_capacity(3);
        for s in [&out, &res] {
            if let Some(fd) = &s.fd {
                fds.push(libc::pollfd {
                    fd: fd.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                });
            }
        }
        if let Some(p) = &pidfd {
            fds.push(libc::pollfd {
                fd: p.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            });
        }
        let timeout_ms = if killed {
            // Without a pidfd, poll the exit status in short steps.
            if pidfd.is_some() {
                -1
            } else {
                5
            }
        } else {
            let left = deadline.saturating_duration_since(Instant::now());
            // Round up so the loop never spins on a sub-millisecond remainder.
            let ms = (left.as_micros().div_ceil(1000)).min(i32::MAX as u128) as i32;
            if pidfd.is_some() {
                ms
            } else {
                ms.min(5)
            }
        };
        // SAFETY: fds is a valid array of pollfd.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout_ms) };
        if n < 0 && io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
            kill(&mut killed);
        }
        out.drain();
        res.drain();
        if out.exceeded || res.exceeded {
            kill(&mut killed);
        }
        let exited = match &pidfd {
            Some(p) => fds.iter().any(|f| f.fd == p.as_raw_fd() && f.revents != 0),
            None => child_exited(pid),
        };
        if exited {
            break;
        }
        if !killed && Instant::now() >= deadline {
            timed_out = true;
            kill(&mut killed);
        }
    }
    // The child is gone; whatever it wrote is still in the pipes.
    out.drain();
    res.drain();
    let mut status = 0;
    // SAFETY: zeroed rusage is a valid out-parameter.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::wait4(pid, &mut status, 0, &mut ru) };
    let wall_us = start.elapsed().as_micros() as u64;
    let exit = if libc::WIFSIGNALED(status) {
        Exit::Signal(libc::WTERMSIG(status))
    } else {
        Exit::Code(libc::WEXITSTATUS(status))
    };
    let tv = |t: libc::timeval| t.tv_sec as u64 * 1_000_000 + t.tv_usec as u64;
    let mut result = res.buf;
    let ready = result.first() == Some(&SANDBOX_READY);
    if ready {
        result.remove(0);
    }
    // A child that never confirmed its sandbox ran nothing of the program's; what it wrote is
    // its set-up error.
    let (exit, result, sandbox_error) = if ready {
        (exit, result, None)
    } else {
        let why = String::from_utf8_lossy(&result).into_owned();
        (Exit::Code(SANDBOX_FAILED_EXIT), Vec::new(), Some(why))
    };
    Response {
        exit,
        timed_out,
        output_exceeded: out.exceeded,
        result_overflow: res.exceeded,
        stdout: out.buf,
        result,
        wall_us,
        cpu_us: tv(ru.ru_utime) + tv(ru.ru_stime),
        max_rss_kb: ru.ru_maxrss.max(0) as u64,
        sandbox_error,
    }
}

fn child_exited(pid: libc::pid_t) -> bool {
    // WNOWAIT leaves the child reapable so wait4 still collects its rusage.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    let r = unsafe {
        libc::waitid(
            libc::P_PID,
            pid as libc::id_t,
            &mut info,
            libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
        )
    };
    r == 0 && unsafe { info.si_pid() } == pid
}

/// Empties the work directory so the next child starts from nothing.
fn clean_workdir(dir: &Path) {
    let Ok(mut entries) = std::fs::read_dir(dir) else {
        return;
    };
    if entries.next().is_none() {
        return;
    }
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        let r = if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
            std::fs::remove_dir_all(&p)
        } else {
            std::fs::remove_file(&p)
        };
        let _ = r;
    }
}
