//! The host side: a pool of worker threads, each owning zygote processes (one per hash seed in
//! use), fed from one queue. Waiting, timeouts and reaping happen here in Rust, so the Python
//! layer releases the GIL for the whole of a batch.

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender};

use crate::error::{ExecError, Result};
use crate::limits::Limits;
use crate::outcome::{classify, Outcome, Status};
use crate::protocol::{ChildJob, JobKind, LayerReport, ZygoteConfig};
use crate::supervisor::{RunError, SpawnConfig, Zygote};
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
    /// Seconds added to the wall clock the program reads (time.time, datetime.now, ...).
    pub clock_offset_s: f64,
    /// Per-job wall and CPU limits below the pool's (None: the pool's).
    pub time_limit_s: Option<f64>,
    /// Float tolerance of the comparison with `expected`.
    pub tolerance: value::Tolerance,
    /// The function `inputs` are passed to.
    pub entry: String,
}

impl Job {
    pub fn call(program: impl Into<String>, inputs: impl Into<String>) -> Job {
        Job {
            kind: JobKind::Call,
            program: program.into(),
            inputs: inputs.into(),
            expected: None,
            hash_seed: 0,
            random_seed: 0,
            clock_offset_s: 0.0,
            time_limit_s: None,
            tolerance: value::Tolerance::EXACT,
            entry: "f".into(),
        }
    }
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
    pub sandbox_uid: u32,
    pub layers: Vec<LayerReport>,
}

#[derive(Debug, Default, Clone, Copy)]
pub struct Stats {
    pub executions: u64,
    pub zygotes_started: u64,
    pub zygotes_lost: u64,
    pub internal_errors: u64,
    /// Jobs re-run on a fresh zygote after the executor failed under them.
    pub rechecks: u64,
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
    rechecks: AtomicU64,
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
            rechecks: c.rechecks.load(Ordering::Relaxed),
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
    // About 30,000 years either way: far beyond any calendar arithmetic, well inside i64 ns.
    if !(job.clock_offset_s.is_finite() && job.clock_offset_s.abs() <= 1e12) {
        return Err(ExecError::InvalidJob(
            "clock_offset_s must be finite and at most 1e12 seconds either way".into(),
        ));
    }
    if let Some(t) = job.time_limit_s {
        if !(t.is_finite() && t > 0.0 && t <= 3600.0) {
            return Err(ExecError::InvalidJob(
                "time_limit_s must be in (0, 3600]".into(),
            ));
        }
    }
    let ident = |s: &str| {
        s.len() <= 256
            && s.chars()
                .next()
                .is_some_and(|c| c == '_' || c.is_alphabetic())
            && s.chars().all(|c| c == '_' || c.is_alphanumeric())
    };
    if !ident(&job.entry) {
        return Err(ExecError::InvalidJob(format!(
            "entry must be a function name, not {:?}",
            job.entry.chars().take(64).collect::<String>()
        )));
    }
    job.tolerance
        .validate()
        .map_err(|m| ExecError::InvalidJob(m.into()))?;
    if let Some(e) = &job.expected {
        check("expected", e)?;
        if e.trim().is_empty() {
            return Err(ExecError::InvalidJob("the expected value is empty".into()));
        }
    }
    Ok(())
}

/// Structural equality of two marshalled values (as found in `Outcome::encoded`), with a float
/// tolerance. Work is linear in the blobs' sizes, however much they share.
pub fn blobs_equal(a: &[u8], b: &[u8], tol: value::Tolerance) -> bool {
    match (value::decode(a), value::decode(b)) {
        (Ok(x), Ok(y)) => value::equal_within(&x, &y, tol),
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

/// A trivial program a healthy zygote runs without fail: the health check after failures.
const HEALTH_CHECK: &str = "def f():\n    return 1";

impl Worker {
    fn run(&mut self, job: &Job) -> Outcome {
        let gold = job
            .expected
            .as_ref()
            .map(|text| self.gold(text, job.hash_seed));
        let mut o = self.execute(job);
        if let Some(g) = gold {
            o.matched = match (g, &o.encoded) {
                (None, _) => None,
                (Some(_), _) if o.status != Status::Ok => Some(false),
                (Some(g), Some(mine)) => Some(blobs_equal(mine, &g, job.tolerance)),
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
        let mut job = Job::call(text, "");
        job.kind = JobKind::Eval;
        job.hash_seed = seed;
        let o = self.execute(&job);
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

    /// Runs a job; when the executor fails under it, re-runs it on a fresh zygote. Only if that
    /// fails too does a health check on another fresh zygote decide: a healthy executor means
    /// the program itself broke it (a verdict against the program, never `internal`).
    fn execute(&mut self, job: &Job) -> Outcome {
        let first = match self.attempt(job) {
            Ok(o) => return o,
            Err(e) => e,
        };
        if matches!(first, RunError::Closing) {
            return Outcome::internal("the executor was closed while the job ran");
        }
        self.shared
            .counters
            .rechecks
            .fetch_add(1, Ordering::Relaxed);
        let second = match self.attempt(job) {
            Ok(o) => return o,
            Err(RunError::Closing) => {
                return Outcome::internal("the executor was closed while the job ran")
            }
            Err(e) => e,
        };
        let probe = Job::call(HEALTH_CHECK, "");
        match self.attempt(&probe) {
            Ok(o) if o.status == Status::Ok => {
                let mut v = Outcome::internal("");
                v.status = Status::Violation;
                v.error = Some(format!(
                    "the program broke its sandbox's supervisor twice ({})",
                    second.message()
                ));
                v
            }
            _ => Outcome::internal(format!(
                "worker failure: {}; then: {}",
                first.message(),
                second.message()
            )),
        }
    }

    /// One try on this worker's zygote for the job's seed. On failure the zygote is replaced.
    fn attempt(&mut self, job: &Job) -> std::result::Result<Outcome, RunError> {
        let limits = &self.shared.cfg.limits;
        let wall_s = job
            .time_limit_s
            .map_or(limits.wall_timeout_s, |t| t.min(limits.wall_timeout_s));
        let cpu_secs = job.time_limit_s.map_or(limits.cpu_rlimit_secs(), |t| {
            (t.min(limits.cpu_time_s).ceil().max(1.0) as u64).min(limits.cpu_rlimit_secs())
        });
        let child_job = ChildJob {
            kind: job.kind,
            program: job.program.clone(),
            inputs: job.inputs.clone(),
            random_seed: job.random_seed,
            recursion_limit: limits.recursion_limit,
            int_max_str_digits: limits.int_max_str_digits,
            max_value_bytes: limits.max_value_bytes as u64,
            clock_offset_ns: (job.clock_offset_s * 1e9).round() as i64,
            cpu_secs,
            entry: job.entry.clone(),
        };
        let wall = Duration::from_secs_f64(wall_s);
        let max_output = limits.max_output_bytes;
        let shared = self.shared.clone();
        let z = self
            .zygote(job.hash_seed)
            .map_err(|e| RunError::Zygote(format!("could not start a worker: {e}")))?;
        match z.run(&child_job, wall, max_output, ZYGOTE_GRACE, &shared.closing) {
            Ok(resp) => Ok(classify(&resp, cpu_secs)),
            Err(e) => {
                if !matches!(e, RunError::Closing) {
                    shared.counters.zygotes_lost.fetch_add(1, Ordering::Relaxed);
                }
                self.drop_zygote(job.hash_seed);
                Err(e)
            }
        }
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
        let mut z = spawn_zygote(&self.shared, seed)?;
        z.last_used = tick;
        self.zygotes.push(z);
        Ok(self.zygotes.last_mut().unwrap())
    }
}

// ---- zygote processes ----------------------------------------------------------------------

fn read_paths(python: &Path) -> Vec<PathBuf> {
    // The interpreter's own prefixes are passed in by the zygote bootstrap; here only what the
    // host knows: the directory holding the executable's resolved target and its prefix.
    let mut v = Vec::new();
    if let Ok(real) = std::fs::canonicalize(python) {
        if let Some(p) = real.parent().and_then(|p| p.parent()) {
            v.push(p.to_path_buf());
        }
    }
    v
}

fn spawn_zygote(shared: &Shared, seed: u32) -> io::Result<Zygote> {
    let cfg = &shared.cfg;
    // Process-wide, so several pools in one process never share a directory.
    static NEXT_DIR: AtomicU64 = AtomicU64::new(0);
    let n = NEXT_DIR.fetch_add(1, Ordering::Relaxed);
    let workdir = std::env::temp_dir().join(format!("{WORKDIR_PREFIX}{}-{n}", std::process::id()));
    let z = Zygote::spawn(SpawnConfig {
        python: &cfg.python,
        extension: &cfg.extension,
        source: ZYGOTE_SOURCE,
        read_paths: read_paths(&cfg.python),
        zygote: ZygoteConfig {
            cpu_secs: cfg.limits.cpu_rlimit_secs(),
            memory_bytes: cfg.limits.memory_bytes,
            capture_stdout: cfg.limits.capture_stdout,
        },
        hash_seed: seed,
        workdir,
        timeout: SPAWN_TIMEOUT,
    })?;
    shared
        .counters
        .zygotes_started
        .fetch_add(1, Ordering::Relaxed);
    let mut iso = shared.isolation.lock().unwrap();
    if iso.is_none() {
        let h = &z.hello;
        *iso = Some(Isolation {
            landlock_abi: h.landlock_abi,
            seccomp: h.seccomp,
            workdir_bytes: h.workdir_bytes,
            python: h.python.clone(),
            sandbox_uid: h.sandbox_uid,
            layers: h.layers.clone(),
        });
    }
    Ok(z)
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
