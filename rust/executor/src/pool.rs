//! The host side: a pool of worker threads, each owning zygote processes (one per hash seed in
//! use), fed from one queue. Waiting, timeouts and reaping happen here in Rust, so the Python
//! layer releases the GIL for the whole of a batch.

use std::collections::HashMap;
use std::io::{self, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};

use crate::error::{ExecError, Result};
use crate::limits::Limits;
use crate::outcome::{classify, Outcome, Status};
use crate::protocol::{write_frame, ChildJob, Hello, JobKind, Request, Response, MAX_FRAME};
use crate::value;

/// The Python source every zygote runs (bootstrap + child runner).
pub const ZYGOTE_SOURCE: &str = include_str!("zygote.py");

/// How long a zygote may take to start and say hello.
const SPAWN_TIMEOUT: Duration = Duration::from_secs(30);
/// Slack on top of the wall timeout before the zygote itself is presumed stuck.
const ZYGOTE_GRACE: Duration = Duration::from_secs(3);
/// Zygotes kept per worker for distinct hash seeds.
const MAX_SEEDS_PER_WORKER: usize = 4;
/// Evaluated expected values kept (by text).
const GOLD_CACHE_ENTRIES: usize = 16384;

#[derive(Debug, Clone)]
pub struct Job {
    pub kind: JobKind,
    pub program: String,
    pub inputs: String,
    pub expected: Option<String>,
    pub hash_seed: u32,
    pub random_seed: u64,
}

#[derive(Debug, Clone)]
pub struct PoolConfig {
    pub workers: usize,
    /// The interpreter the zygotes run (normally the host's own).
    pub python: PathBuf,
    /// The compiled extension module, which the zygotes load to run their loop.
    pub extension: PathBuf,
    pub limits: Limits,
}

/// Which isolation layers are active, as the first zygote reported them.
#[derive(Debug, Clone, PartialEq)]
pub struct Isolation {
    pub landlock_abi: u32,
    pub seccomp: bool,
    pub workdir_bytes: u64,
    pub python: String,
}

#[derive(Debug, Default, Clone, Copy)]
pub struct Stats {
    pub executions: u64,
    pub zygotes_started: u64,
    pub zygotes_lost: u64,
    pub internal_errors: u64,
}

pub type Reply = Box<dyn FnOnce(Outcome) + Send>;

struct Task {
    job: Job,
    reply: Reply,
    cancelled: Option<Arc<AtomicBool>>,
}

#[derive(Default)]
struct Counters {
    executions: AtomicU64,
    zygotes_started: AtomicU64,
    zygotes_lost: AtomicU64,
    internal_errors: AtomicU64,
}

struct Shared {
    cfg: PoolConfig,
    closing: AtomicBool,
    /// Expected text -> marshal blob of its value (None: it did not evaluate).
    gold: Mutex<HashMap<String, Option<Arc<[u8]>>>>,
    counters: Counters,
    isolation: Mutex<Option<Isolation>>,
}

pub struct Pool {
    tx: Mutex<Option<Sender<Task>>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    shared: Arc<Shared>,
}

impl Pool {
    /// Starts the workers and waits until one zygote is up, so a broken installation fails here
    /// with a clear error instead of on the first job.
    pub fn new(cfg: PoolConfig) -> Result<Pool> {
        cfg.limits.validate()?;
        if cfg.workers == 0 || cfg.workers > 1024 {
            return Err(ExecError::InvalidLimits(
                "workers must be in [1, 1024]".into(),
            ));
        }
        remove_stale_workdirs();
        let shared = Arc::new(Shared {
            cfg: cfg.clone(),
            closing: AtomicBool::new(false),
            gold: Mutex::new(HashMap::new()),
            counters: Counters::default(),
            isolation: Mutex::new(None),
        });
        let (tx, rx) = crossbeam_channel::unbounded::<Task>();
        // Each worker starts its first zygote before taking jobs and reports here, so a broken
        // installation fails now with a clear error, and the first jobs find warm workers.
        let (ready_tx, ready_rx) = crossbeam_channel::bounded::<StartResult>(cfg.workers);
        let mut threads = Vec::new();
        for i in 0..cfg.workers {
            let rx = rx.clone();
            let sh = shared.clone();
            let ready = ready_tx.clone();
            let t = std::thread::Builder::new()
                .name(format!("azr-executor-{i}"))
                // Decoding and comparing values recurses as deep as the data nests.
                .stack_size(32 << 20)
                .spawn(move || worker_main(rx, sh, ready))?;
            threads.push(t);
        }
        drop(ready_tx);
        let pool = Pool {
            tx: Mutex::new(Some(tx)),
            threads: Mutex::new(threads),
            shared,
        };
        for r in ready_rx.iter() {
            if let Err(e) = r {
                pool.close();
                return Err(ExecError::Unavailable(e));
            }
        }
        Ok(pool)
    }

    pub fn limits(&self) -> &Limits {
        &self.shared.cfg.limits
    }

    pub fn workers(&self) -> usize {
        self.shared.cfg.workers
    }

    pub fn isolation(&self) -> Option<Isolation> {
        self.shared.isolation.lock().unwrap().clone()
    }

    pub fn stats(&self) -> Stats {
        let c = &self.shared.counters;
        Stats {
            executions: c.executions.load(Ordering::Relaxed),
            zygotes_started: c.zygotes_started.load(Ordering::Relaxed),
            zygotes_lost: c.zygotes_lost.load(Ordering::Relaxed),
            internal_errors: c.internal_errors.load(Ordering::Relaxed),
        }
    }

    pub fn is_closed(&self) -> bool {
        self.tx.lock().unwrap().is_none()
    }

    /// Checks a job against the limits without running it.
    pub fn validate(&self, job: &Job) -> Result<()> {
        validate_job(job, &self.shared.cfg.limits)
    }

    /// Queues a job; `reply` is called exactly once, from a worker thread.
    pub fn submit(&self, job: Job, reply: Reply, cancelled: Option<Arc<AtomicBool>>) -> Result<()> {
        self.validate(&job)?;
        let guard = self.tx.lock().unwrap();
        let tx = guard.as_ref().ok_or(ExecError::Closed)?;
        tx.send(Task {
            job,
            reply,
            cancelled,
        })
        .map_err(|_| ExecError::Closed)
    }

    /// Runs jobs in parallel and returns their outcomes in order. `poll` is called about every
    /// 50 ms while waiting; returning an error cancels the jobs not yet started and returns it.
    pub fn run_batch<E>(
        &self,
        jobs: Vec<Job>,
        mut poll: impl FnMut() -> std::result::Result<(), E>,
    ) -> std::result::Result<Result<Vec<Outcome>>, E> {
        for j in &jobs {
            if let Err(e) = self.validate(j) {
                return Ok(Err(e));
            }
        }
        let n = jobs.len();
        let (tx, rx) = crossbeam_channel::bounded::<(usize, Outcome)>(n);
        let cancel = Arc::new(AtomicBool::new(false));
        for (i, job) in jobs.into_iter().enumerate() {
            let tx = tx.clone();
            let reply: Reply = Box::new(move |o| {
                let _ = tx.send((i, o));
            });
            if let Err(e) = self.submit(job, reply, Some(cancel.clone())) {
                cancel.store(true, Ordering::SeqCst);
                return Ok(Err(e));
            }
        }
        drop(tx);
        let mut out: Vec<Option<Outcome>> = vec![None; n];
        let mut got = 0;
        while got < n {
            match rx.recv_timeout(Duration::from_millis(50)) {
                Ok((i, o)) => {
                    out[i] = Some(o);
                    got += 1;
                }
                Err(crossbeam_channel::RecvTimeoutError::Timeout) => {
                    if let Err(e) = poll() {
                        cancel.store(true, Ordering::SeqCst);
                        return Err(e);
                    }
                }
                Err(crossbeam_channel::RecvTimeoutError::Disconnected) => break,
            }
        }
        Ok(Ok(out
            .into_iter()
            .map(|o| o.unwrap_or_else(|| Outcome::internal("the executor shut down")))
            .collect()))
    }

    /// Stops accepting jobs, interrupts running ones and stops every zygote.
    pub fn close(&self) {
        self.shared.closing.store(true, Ordering::SeqCst);
        self.tx.lock().unwrap().take();
        let threads: Vec<_> = self.threads.lock().unwrap().drain(..).collect();
        for t in threads {
            let _ = t.join();
        }
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        self.close();
    }
}

pub fn validate_job(job: &Job, limits: &Limits) -> Result<()> {
    if job.program.trim().is_empty() {
        return Err(ExecError::InvalidJob(match job.kind {
            JobKind::Call => "the program is empty".into(),
            JobKind::Eval => "the expression is empty".into(),
        }));
    }
    if job.kind == JobKind::Eval && !job.inputs.is_empty() {
        return Err(ExecError::InvalidJob("an eval job takes no inputs".into()));
    }
    let max = limits.max_source_bytes;
    let check = |what: &'static str, s: &str| {
        if s.len() > max {
            Err(ExecError::SourceTooLarge {
                what,
                size: s.len(),
                limit: max,
            })
        } else {
            Ok(())
        }
    };
    check("program", &job.program)?;
    check("inputs", &job.inputs)?;
    if let Some(e) = &job.expected {
        check("expected", e)?;
        if e.trim().is_empty() {
            return Err(ExecError::InvalidJob("the expected value is empty".into()));
        }
    }
    Ok(())
}

/// Structural equality of two marshalled values (as found in `Outcome::encoded`).
pub fn blobs_equal(a: &[u8], b: &[u8]) -> bool {
    match (value::decode(a), value::decode(b)) {
        (Ok(x), Ok(y)) => value::equal(&x, &y),
        _ => false,
    }
}

// ---- workers -------------------------------------------------------------------------------

type StartResult = std::result::Result<(), String>;

fn worker_main(rx: Receiver<Task>, shared: Arc<Shared>, ready: Sender<StartResult>) {
    let mut w = Worker {
        shared: shared.clone(),
        zygotes: Vec::new(),
        tick: 0,
    };
    let started = w.zygote(0).map(|_| ()).map_err(|e| e.to_string());
    let failed = started.is_err();
    let _ = ready.send(started);
    drop(ready);
    if failed {
        return;
    }
    loop {
        if shared.closing.load(Ordering::SeqCst) {
            // Drain so every reply is still called once.
            for t in rx.try_iter() {
                (t.reply)(Outcome::internal("the executor was closed"));
            }
            break;
        }
        let Ok(task) = rx.recv_timeout(Duration::from_millis(100)) else {
            if rx.is_empty() && shared.closing.load(Ordering::SeqCst) {
                break;
            }
            continue;
        };
        if task
            .cancelled
            .as_ref()
            .is_some_and(|c| c.load(Ordering::SeqCst))
        {
            (task.reply)(Outcome::internal("cancelled before it started"));
            continue;
        }
        let o = w.run(&task.job);
        if o.status == Status::Internal {
            shared
                .counters
                .internal_errors
                .fetch_add(1, Ordering::Relaxed);
        }
        shared.counters.executions.fetch_add(1, Ordering::Relaxed);
        (task.reply)(o);
    }
    // Dropping the zygotes stops them.
}

struct Worker {
    shared: Arc<Shared>,
    zygotes: Vec<Zygote>,
    tick: u64,
}

enum RunError {
    /// The zygote failed or hung: replace it.
    Zygote(String),
    /// The pool is closing.
    Closing,
}

impl Worker {
    fn run(&mut self, job: &Job) -> Outcome {
        let gold = job
            .expected
            .as_ref()
            .map(|text| self.gold(text, job.hash_seed));
        let mut o = self.execute(
            job.kind,
            &job.program,
            &job.inputs,
            job.hash_seed,
            job.random_seed,
        );
        if let Some(g) = gold {
            o.matched = match (g, &o.encoded) {
                (None, _) => None,
                (Some(_), _) if o.status != Status::Ok => Some(false),
                (Some(g), Some(mine)) => Some(blobs_equal(&g, mine)),
                (Some(_), None) => Some(false),
            };
        }
        o
    }

    /// The marshalled value of an expected text, evaluated in a sandbox and cached.
    fn gold(&mut self, text: &str, seed: u32) -> Option<Arc<[u8]>> {
        if let Some(hit) = self.shared.gold.lock().unwrap().get(text) {
            return hit.clone();
        }
        let o = self.execute(JobKind::Eval, text, "", seed, 0);
        if o.status == Status::Internal {
            return None; // not cached: an executor failure says nothing about the text
        }
        let blob: Option<Arc<[u8]>> = o.encoded.map(Arc::from);
        let mut cache = self.shared.gold.lock().unwrap();
        if cache.len() >= GOLD_CACHE_ENTRIES {
            cache.clear();
        }
        cache.insert(text.to_string(), blob.clone());
        blob
    }

    fn execute(
        &mut self,
        kind: JobKind,
        program: &str,
        inputs: &str,
        seed: u32,
        rseed: u64,
    ) -> Outcome {
        let limits = &self.shared.cfg.limits;
        let req = Request {
            job: ChildJob {
                kind,
                program: program.to_string(),
                inputs: inputs.to_string(),
                random_seed: rseed,
                recursion_limit: limits.recursion_limit,
                int_max_str_digits: limits.int_max_str_digits,
                max_value_bytes: limits.max_value_bytes as u64,
            },
            wall_timeout_us: (limits.wall_timeout_s * 1e6) as u64,
            cpu_secs: limits.cpu_rlimit_secs(),
            memory_bytes: limits.memory_bytes,
            max_output_bytes: limits.max_output_bytes as u64,
            capture_stdout: limits.capture_stdout,
        };
        let frame = req.encode();
        let deadline_after = Duration::from_secs_f64(limits.wall_timeout_s) + ZYGOTE_GRACE;
        // One retry: a zygote that died between jobs is replaced without failing the job.
        let mut last = String::new();
        let shared = self.shared.clone();
        for _attempt in 0..2 {
            let z = match self.zygote(seed) {
                Ok(z) => z,
                Err(e) => {
                    last = format!("could not start a worker: {e}");
                    continue;
                }
            };
            match z.call(&frame, deadline_after, &shared.closing) {
                Ok(resp) => return classify(&resp, req.cpu_secs),
                Err(RunError::Closing) => {
                    self.drop_zygote(seed);
                    return Outcome::internal("the executor was closed while the job ran");
                }
                Err(RunError::Zygote(msg)) => {
                    self.shared
                        .counters
                        .zygotes_lost
                        .fetch_add(1, Ordering::Relaxed);
                    self.drop_zygote(seed);
                    last = msg;
                }
            }
        }
        Outcome::internal(format!("worker failure: {last}"))
    }

    fn drop_zygote(&mut self, seed: u32) {
        self.zygotes.retain(|z| z.seed != seed);
    }

    fn zygote(&mut self, seed: u32) -> io::Result<&mut Zygote> {
        self.tick += 1;
        let tick = self.tick;
        if let Some(i) = self.zygotes.iter().position(|z| z.seed == seed) {
            let z = &mut self.zygotes[i];
            z.last_used = tick;
            return Ok(z);
        }
        if self.zygotes.len() >= MAX_SEEDS_PER_WORKER {
            let lru = (0..self.zygotes.len())
                .min_by_key(|&i| self.zygotes[i].last_used)
                .unwrap();
            self.zygotes.swap_remove(lru);
        }
        let mut z = Zygote::spawn(&self.shared, seed)?;
        z.last_used = tick;
        self.zygotes.push(z);
        Ok(self.zygotes.last_mut().unwrap())
    }
}

// ---- zygote processes ----------------------------------------------------------------------

struct Zygote {
    seed: u32,
    child: Child,
    stdin: ChildStdin,
    stdout: ChildStdout,
    workdir: PathBuf,
    buf: Vec<u8>,
    last_used: u64,
}

fn read_paths(python: &Path) -> Vec<PathBuf> {
    // The interpreter's own prefixes are passed in by the zygote bootstrap; here only what the
    // host knows: the directory holding the executable and its resolved target.
    let mut v = Vec::new();
    if let Some(p) = python.parent() {
        v.push(p.to_path_buf());
    }
    if let Ok(real) = std::fs::canonicalize(python) {
        if let Some(p) = real.parent().and_then(|p| p.parent()) {
            v.push(p.to_path_buf());
        }
    }
    v
}

impl Zygote {
    fn spawn(shared: &Shared, seed: u32) -> io::Result<Zygote> {
        let cfg = &shared.cfg;
        // Process-wide, so several pools in one process never share a directory.
        static NEXT_DIR: AtomicU64 = AtomicU64::new(0);
        let n = NEXT_DIR.fetch_add(1, Ordering::Relaxed);
        let workdir =
            std::env::temp_dir().join(format!("{WORKDIR_PREFIX}{}-{n}", std::process::id()));
        std::fs::create_dir_all(&workdir)?;
        let mut cmd = Command::new(&cfg.python);
        // No -E/-I: they would also drop PYTHONHASHSEED. The environment is cleared instead.
        cmd.args(["-s", "-S", "-P", "-c", ZYGOTE_SOURCE])
            .arg(&cfg.extension)
            .arg(&workdir);
        for p in read_paths(&cfg.python) {
            cmd.arg(p);
        }
        cmd.env_clear()
            .env("PYTHONHASHSEED", seed.to_string())
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .env("PYTHONUTF8", "1")
            .env("TZ", "UTC")
            .env("LANG", "C.UTF-8")
            .env("LC_ALL", "C.UTF-8")
            .env("HOME", &workdir)
            .env("TMPDIR", &workdir)
            .current_dir(&workdir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
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
        let mut child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&workdir);
                return Err(e);
            }
        };
        let stdin = child.stdin.take().unwrap();
        let stdout = child.stdout.take().unwrap();
        set_nonblocking(stdout.as_raw_fd());
        let mut z = Zygote {
            seed,
            child,
            stdin,
            stdout,
            workdir,
            buf: Vec::new(),
            last_used: 0,
        };
        let never = AtomicBool::new(false);
        let hello = match z.read_frame(Instant::now() + SPAWN_TIMEOUT, &never) {
            Ok(f) => Hello::decode(&f)?,
            Err(RunError::Zygote(m)) => {
                return Err(io::Error::other(format!(
                "the zygote interpreter did not start ({m}); is the extension importable by {}?",
                cfg.python.display()
            )))
            }
            Err(RunError::Closing) => return Err(io::Error::other("closing")),
        };
        shared
            .counters
            .zygotes_started
            .fetch_add(1, Ordering::Relaxed);
        let mut iso = shared.isolation.lock().unwrap();
        if iso.is_none() {
            *iso = Some(Isolation {
                landlock_abi: hello.landlock_abi,
                seccomp: hello.seccomp,
                workdir_bytes: hello.workdir_bytes,
                python: hello.python,
            });
        }
        Ok(z)
    }

    fn call(
        &mut self,
        frame: &[u8],
        limit: Duration,
        closing: &AtomicBool,
    ) -> std::result::Result<Response, RunError> {
        write_frame(&mut self.stdin, frame).map_err(|e| RunError::Zygote(format!("send: {e}")))?;
        let _ = self.stdin.flush();
        let f = self.read_frame(Instant::now() + limit, closing)?;
        Response::decode(&f).map_err(|e| RunError::Zygote(format!("bad response: {e}")))
    }

    fn read_frame(
        &mut self,
        deadline: Instant,
        closing: &AtomicBool,
    ) -> std::result::Result<Vec<u8>, RunError> {
        loop {
            if self.buf.len() >= 4 {
                let n = u32::from_le_bytes(self.buf[..4].try_into().unwrap()) as usize;
                if n > MAX_FRAME {
                    return Err(RunError::Zygote("oversized frame".into()));
                }
                if self.buf.len() >= 4 + n {
                    let frame = self.buf[4..4 + n].to_vec();
                    self.buf.drain(..4 + n);
                    return Ok(frame);
                }
            }
            if closing.load(Ordering::SeqCst) {
                return Err(RunError::Closing);
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(RunError::Zygote("no response before the deadline".into()));
            }
            let wait = (deadline - now).min(Duration::from_millis(50));
            let fd = self.stdout.as_raw_fd();
            let mut p = libc::pollfd {
                fd,
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one valid pollfd.
            unsafe { libc::poll(&mut p, 1, wait.as_millis().max(1) as i32) };
            let mut chunk = [0u8; 65536];
            loop {
                // SAFETY: reading into a local buffer.
                let r = unsafe { libc::read(fd, chunk.as_mut_ptr().cast(), chunk.len()) };
                if r > 0 {
                    self.buf.extend_from_slice(&chunk[..r as usize]);
                    continue;
                }
                if r == 0 {
                    return Err(RunError::Zygote("the zygote exited".into()));
                }
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                if e.kind() == io::ErrorKind::WouldBlock {
                    break;
                }
                return Err(RunError::Zygote(format!("read: {e}")));
            }
        }
    }
}

const WORKDIR_PREFIX: &str = "azr-exec-";

/// Removes work directories left by hosts that died without cleaning up (named after the host's
/// pid, which no longer exists).
fn remove_stale_workdirs() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(rest) = name.to_str().and_then(|n| n.strip_prefix(WORKDIR_PREFIX)) else {
            continue;
        };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

fn set_nonblocking(fd: RawFd) {
    // SAFETY: fcntl on a valid descriptor.
    unsafe {
        let fl = libc::fcntl(fd, libc::F_GETFL);
        libc::fcntl(fd, libc::F_SETFL, fl | libc::O_NONBLOCK);
    }
}

impl Drop for Zygote {
    fn drop(&mut self) {
        // Killing the zygote's session is enough: a running child has a parent-death signal and
        // cannot have made processes of its own.
        let pid = self.child.id() as libc::pid_t;
        // SAFETY: the zygote is our unreaped child, so its pid (= its session id) is still ours.
        unsafe {
            libc::kill(-pid, libc::SIGKILL);
            libc::kill(pid, libc::SIGKILL);
        }
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.workdir);
    }
}
