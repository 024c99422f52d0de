//! The host's handle on one zygote: starts it, and runs each job on the child the zygote has
//! waiting, talking to that child directly. The host writes the job into the child's pipe,
//! drains its stdout and result with caps, enforces the wall clock and kills it through a
//! pidfd; the zygote only reports how the child ended.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::fdpass;
use crate::protocol::{ChildJob, Hello, Response, ZygoteConfig, ZygoteMsg};
use crate::sandbox::SANDBOX_READY;

/// Cap on the child's own report beyond the value cap: the tuple around it and the error text.
const RESULT_SLACK: u64 = 64 << 10;
/// Longest single wait between checks of the pool's closing flag.
const TICK: Duration = Duration::from_millis(50);

pub enum RunError {
    /// The zygote failed, hung or broke the protocol: replace it.
    Zygote(String),
    /// A child could not set up its sandbox (it ran nothing): replace the zygote.
    Setup(String),
    /// The pool is closing.
    Closing,
}

impl RunError {
    pub fn message(&self) -> String {
        match self {
            RunError::Zygote(m) => m.clone(),
            RunError::Setup(m) => format!("a child failed its sandbox set-up: {m}"),
            RunError::Closing => "the executor is closing".into(),
        }
    }
}

/// A child waiting for its job, as the host holds it.
struct Spare {
    pid: i32,
    job_w: OwnedFd,
    res_r: OwnedFd,
    out_r: Option<OwnedFd>,
    pidfd: OwnedFd,
}

pub struct SpawnConfig<'a> {
    pub python: &'a Path,
    pub extension: &'a Path,
    pub source: &'a str,
    pub read_paths: Vec<PathBuf>,
    pub zygote: ZygoteConfig,
    pub hash_seed: u32,
    pub workdir: PathBuf,
    pub timeout: Duration,
}

pub struct Zygote {
    pub seed: u32,
    child: Child,
    sock: OwnedFd,
    workdir: PathBuf,
    spare: Option<Spare>,
    pub hello: Hello,
    pub last_used: u64,
    capture_stdout: bool,
    /// Receive buffer for control messages, allocated once.
    msg_buf: Vec<u8>,
}

fn socketpair() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut sv = [0 as RawFd; 2];
    // SAFETY: a valid two-element out array.
    let r = unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC,
            0,
            sv.as_mut_ptr(),
        )
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fresh descriptors, owned from here.
    Ok(unsafe { (OwnedFd::from_raw_fd(sv[0]), OwnedFd::from_raw_fd(sv[1])) })
}

fn poll_one(fd: RawFd, events: i16, timeout: Duration) -> io::Result<bool> {
    let mut p = libc::pollfd {
        fd,
        events,
        revents: 0,
    };
    let ms = timeout.as_millis().min(i32::MAX as u128) as i32;
    // SAFETY: one valid pollfd.
    let n = unsafe { libc::poll(&mut p, 1, ms) };
    if n < 0 {
        let e = io::Error::last_os_error();
        return if e.kind() == io::ErrorKind::Interrupted {
            Ok(false)
        } else {
            Err(e)
        };
    }
    Ok(n > 0)
}

fn set_nonblocking(fd: RawFd) {
    // SAFETY: fcntl on a valid descriptor.
    unsafe {
        let fl = libc::fcntl(fd, libc::F_GETFL);
        libc::fcntl(fd, libc::F_SETFL, fl | libc::O_NONBLOCK);
    }
}

fn kill_pidfd(pidfd: &OwnedFd) {
    // SAFETY: a pidfd names exactly one process, so this can never hit a reused pid.
    unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            libc::SIGKILL,
            std::ptr::null::<libc::siginfo_t>(),
            0u32,
        )
    };
}

impl Zygote {
    pub fn spawn(cfg: SpawnConfig<'_>) -> io::Result<Zygote> {
        std::fs::create_dir_all(&cfg.workdir)?;
        let (host_end, zygote_end) = socketpair()?;
        let mut cmd = Command::new(cfg.python);
        // No -E/-I: they would also drop PYTHONHASHSEED. The environment is cleared instead.
        cmd.args(["-s", "-S", "-P", "-c", cfg.source])
            .arg(cfg.extension)
            .arg(&cfg.workdir)
            .arg(cfg.zygote.to_arg());
        for p in &cfg.read_paths {
            cmd.arg(p);
        }
        cmd.env_clear()
            .env("PYTHONHASHSEED", cfg.hash_seed.to_string())
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .env("PYTHONUTF8", "1")
            .env("TZ", "UTC")
            .env("LANG", "C.UTF-8")
            .env("LC_ALL", "C.UTF-8")
            // Every symbol resolved once, in the zygote: with lazy binding each child resolved
            // the functions the zygote never called itself and wrote them into its copy-on-write
            // GOT pages (a few percent of every execution). The zygote drops the variable.
            .env("LD_BIND_NOW", "1")
            .current_dir(&cfg.workdir)
            .stdin(Stdio::from(zygote_end))
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // SAFETY: only async-signal-safe calls between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                // Own session: a terminal's Ctrl-C or a group kill aimed at the host's group
                // does not hit the zygote directly; the host stops it in order instead.
                libc::setsid();
                // The zygote must not outlive the thread that owns it (worker threads live as
                // long as the pool).
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong);
                Ok(())
            });
        }
        let child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) => {
                let _ = std::fs::remove_dir(&cfg.workdir);
                return Err(e);
            }
        };
        drop(cmd);
        let mut z = Zygote {
            seed: cfg.hash_seed,
            child,
            sock: host_end,
            workdir: cfg.workdir,
            spare: None,
            hello: Hello {
                pid: 0,
                landlock_abi: 0,
                seccomp: false,
                workdir_bytes: 0,
                python: String::new(),
                sandbox_uid: 0,
                layers: Vec::new(),
            },
            last_used: 0,
            capture_stdout: cfg.zygote.capture_stdout,
            msg_buf: vec![0u8; fdpass::MAX_MSG],
        };
        let never = AtomicBool::new(false);
        match z.recv(Instant::now() + cfg.timeout, &never) {
            Ok((ZygoteMsg::Hello(h), _)) => z.hello = h,
            Ok(_) => return Err(io::Error::other("the zygote did not say hello")),
            Err(e) => {
                return Err(io::Error::other(format!(
                    "the zygote interpreter did not start ({}); is the extension importable by {}?",
                    e.message(),
                    cfg.python.display()
                )))
            }
        }
        Ok(z)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    fn recv(
        &mut self,
        deadline: Instant,
        closing: &AtomicBool,
    ) -> Result<(ZygoteMsg, Vec<OwnedFd>), RunError> {
        let fd = self.sock.as_raw_fd();
        loop {
            if closing.load(Ordering::SeqCst) {
                return Err(RunError::Closing);
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(RunError::Zygote("no message before the deadline".into()));
            }
            let ready = poll_one(fd, libc::POLLIN, (deadline - now).min(TICK))
                .map_err(|e| RunError::Zygote(format!("poll: {e}")))?;
            if !ready {
                continue;
            }
            let (n, fds) = fdpass::recv(fd, &mut self.msg_buf)
                .map_err(|e| RunError::Zygote(format!("receive: {e}")))?;
            if n == 0 {
                return Err(RunError::Zygote("the zygote exited".into()));
            }
            let msg = ZygoteMsg::decode(&self.msg_buf[..n])
                .map_err(|e| RunError::Zygote(format!("bad message: {e}")))?;
            return Ok((msg, fds));
        }
    }

    fn take_spare(&mut self, deadline: Instant, closing: &AtomicBool) -> Result<Spare, RunError> {
        if let Some(s) = self.spare.take() {
            return Ok(s);
        }
        let (msg, fds) = self.recv(deadline, closing)?;
        let ZygoteMsg::Spare { pid } = msg else {
            return Err(RunError::Zygote("expected a waiting child".into()));
        };
        let want = if self.capture_stdout { 4 } else { 3 };
        if fds.len() != want {
            return Err(RunError::Zygote("a waiting child without its pipes".into()));
        }
        let mut it = fds.into_iter();
        let job_w = it.next().unwrap();
        let res_r = it.next().unwrap();
        let out_r = if self.capture_stdout { it.next() } else { None };
        let pidfd = it.next().unwrap();
        Ok(Spare {
            pid,
            job_w,
            res_r,
            out_r,
            pidfd,
        })
    }

    /// Runs one job on the waiting child. `grace` bounds how long the zygote may take to
    /// provide a child and to report its end.
    pub fn run(
        &mut self,
        job: &ChildJob,
        wall: Duration,
        max_output: usize,
        grace: Duration,
        closing: &AtomicBool,
    ) -> Result<Response, RunError> {
        let spare = self.take_spare(Instant::now() + grace, closing)?;
        let pid = spare.pid;
        let mut frame = Vec::with_capacity(job_len(job) + 4);
        let body = job.encode();
        frame.extend_from_slice(&(body.len() as u32).to_le_bytes());
        frame.extend_from_slice(&body);
        drop(body);
        let watched = watch(
            spare,
            &frame,
            wall,
            max_output,
            job.max_value_bytes,
            closing,
        );
        let (msg, _) = self.recv(Instant::now() + grace, closing)?;
        let ZygoteMsg::Exited {
            pid: reaped,
            exit,
            cpu_us,
            max_rss_kb,
        } = msg
        else {
            return Err(RunError::Zygote("expected an exit report".into()));
        };
        if reaped != pid {
            return Err(RunError::Zygote("exit report for another child".into()));
        }
        let w = watched?;
        let mut result = w.result;
        if result.first() != Some(&SANDBOX_READY) {
            // A child that never confirmed its sandbox ran nothing of the program's; what it
            // wrote is its set-up error.
            let why = String::from_utf8_lossy(&result).into_owned();
            let why = if why.is_empty() {
                format!("the child ended ({exit:?}) before its sandbox was ready")
            } else {
                why
            };
            return Err(RunError::Setup(why));
        }
        result.remove(0);
        Ok(Response {
            exit,
            timed_out: w.timed_out,
            output_exceeded: w.out_exceeded,
            result_overflow: w.res_exceeded,
            stdout: w.stdout,
            result,
            wall_us: w.wall_us,
            cpu_us,
            max_rss_kb,
            sandbox_error: None,
        })
    }
}

fn job_len(job: &ChildJob) -> usize {
    job.program.len() + job.inputs.len() + 64
}

struct Watched {
    timed_out: bool,
    out_exceeded: bool,
    res_exceeded: bool,
    stdout: Vec<u8>,
    result: Vec<u8>,
    wall_us: u64,
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
        loop {
            // Read straight into the buffer, at most one byte past the cap: that byte, if it
            // comes, only says the cap was exceeded.
            let room = self.cap.saturating_sub(self.buf.len());
            let want = (room + 1).min(64 << 10);
            self.buf.reserve(want);
            let len = self.buf.len();
            // SAFETY: reading into reserved, owned capacity of at least `want` bytes.
            let n =
                unsafe { libc::read(fd.as_raw_fd(), self.buf.as_mut_ptr().add(len).cast(), want) };
            if n > 0 {
                let n = n as usize;
                // SAFETY: the kernel initialised n bytes past len; keep at most `room` of them.
                unsafe { self.buf.set_len(len + n.min(room)) };
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

/// Feeds the job to the child and watches it until it exits: output caps, wall clock, and the
/// pool closing. Kills it through its pidfd when a limit is reached.
fn watch(
    spare: Spare,
    frame: &[u8],
    wall: Duration,
    max_output: usize,
    max_value: u64,
    closing: &AtomicBool,
) -> Result<Watched, RunError> {
    let Spare {
        job_w,
        res_r,
        out_r,
        pidfd,
        ..
    } = spare;
    set_nonblocking(job_w.as_raw_fd());
    let mut job_w = Some(job_w);
    let mut written = 0usize;
    let start = Instant::now();
    let deadline = start + wall;
    let mut out = Sink::new(out_r, max_output);
    let mut res = Sink::new(Some(res_r), (max_value * 2 + RESULT_SLACK) as usize);
    let mut killed = false;
    let mut timed_out = false;
    let mut closed = false;
    let kill = |killed: &mut bool| {
        if !*killed {
            kill_pidfd(&pidfd);
            *killed = true;
        }
    };
    loop {
        // Write as much of the job as the pipe takes; the child reads it after its set-up.
        if let Some(w) = &job_w {
            while written < frame.len() {
                // SAFETY: writing from a live slice to an owned descriptor.
                let n = unsafe {
                    libc::write(
                        w.as_raw_fd(),
                        frame[written..].as_ptr().cast(),
                        frame.len() - written,
                    )
                };
                if n > 0 {
                    written += n as usize;
                } else {
                    let e = io::Error::last_os_error();
                    if e.kind() == io::ErrorKind::Interrupted {
                        continue;
                    }
                    if e.kind() != io::ErrorKind::WouldBlock {
                        written = frame.len(); // EPIPE: the child is gone; its end says why
                    }
                    break;
                }
            }
            if written >= frame.len() {
                job_w = None;
            }
        }
        let mut fds: Vec<libc::pollfd> = Vec::with_capacity(4);
        for s in [&out, &res] {
            if let Some(fd) = &s.fd {
                fds.push(libc::pollfd {
                    fd: fd.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                });
            }
        }
        if let Some(w) = &job_w {
            fds.push(libc::pollfd {
                fd: w.as_raw_fd(),
                events: libc::POLLOUT,
                revents: 0,
            });
        }
        fds.push(libc::pollfd {
            fd: pidfd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        });
        let left = if killed {
            TICK
        } else {
            deadline.saturating_duration_since(Instant::now()).min(TICK)
        };
        // Round up so the loop never spins on a sub-millisecond remainder.
        let ms = left.as_micros().div_ceil(1000) as i32;
        // SAFETY: fds is a valid array of pollfd.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, ms) };
        if n < 0 && io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
            kill(&mut killed);
        }
        out.drain();
        res.drain();
        if out.exceeded || res.exceeded {
            kill(&mut killed);
        }
        let exited = fds.last().is_some_and(|f| f.revents != 0);
        if exited {
            break;
        }
        if !killed && Instant::now() >= deadline {
            timed_out = true;
            kill(&mut killed);
        }
        if closing.load(Ordering::SeqCst) {
            kill(&mut killed);
            closed = true;
        }
    }
    let wall_us = start.elapsed().as_micros() as u64;
    // The child is gone; whatever it wrote is still in the pipes.
    out.drain();
    res.drain();
    if closed && !timed_out {
        return Err(RunError::Closing);
    }
    Ok(Watched {
        timed_out,
        out_exceeded: out.exceeded,
        res_exceeded: res.exceeded,
        stdout: out.buf,
        result: res.buf,
        wall_us,
    })
}

impl Drop for Zygote {
    fn drop(&mut self) {
        // Killing the zygote's session is enough: its children have a parent-death signal and
        // cannot have made processes of their own.
        let pid = self.child.id() as libc::pid_t;
        if let Some(s) = self.spare.take() {
            kill_pidfd(&s.pidfd);
        }
        // SAFETY: the zygote is our unreaped child, so its pid (= its session id) is still ours.
        unsafe {
            libc::kill(-pid, libc::SIGKILL);
            libc::kill(pid, libc::SIGKILL);
        }
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.workdir);
    }
}
