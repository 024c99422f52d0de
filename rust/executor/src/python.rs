//! The PyO3 layer: converts arguments and results, maps core errors to the exceptions defined in
//! `azr.errors`, and releases the GIL while the core waits. No logic lives here.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyTuple};

use crate::error::ExecError;
use crate::limits::Limits;
use crate::outcome::Outcome;
use crate::pool::{blobs_equal, Job, Pool, PoolConfig, Reply};
use crate::protocol::{JobKind, ZygoteConfig};
use crate::value::Tolerance;
use crate::zygote::{prepare, serve, Forked};

pyo3::import_exception!(azr.errors, InvalidJob);
pyo3::import_exception!(azr.errors, SourceTooLarge);
pyo3::import_exception!(azr.errors, ConfigError);
pyo3::import_exception!(azr.errors, ExecutorClosed);
pyo3::import_exception!(azr.errors, ExecutorError);
pyo3::import_exception!(azr.errors, SandboxUnavailable);

/// The one mapping from core errors to Python exceptions.
fn to_py(e: ExecError) -> PyErr {
    let msg = e.to_string();
    match e {
        ExecError::InvalidJob(_) => InvalidJob::new_err(msg),
        ExecError::SourceTooLarge { .. } => SourceTooLarge::new_err(msg),
        ExecError::InvalidLimits(_) => ConfigError::new_err(msg),
        ExecError::Closed => ExecutorClosed::new_err(msg),
        ExecError::Unavailable(_) => SandboxUnavailable::new_err(msg),
        ExecError::Io(_) => ExecutorError::new_err(msg),
    }
}

type LimitsTuple = (f64, f64, u64, usize, usize, usize, u32, u32, bool);
/// (kind, program, inputs, expected, hash_seed, random_seed, clock_offset_s, time_limit_s,
/// atol, rtol, entry)
type JobTuple = (
    u8,
    String,
    String,
    Option<String>,
    u32,
    u64,
    f64,
    Option<f64>,
    f64,
    f64,
    String,
);

fn job_from(t: JobTuple) -> PyResult<Job> {
    let kind = match t.0 {
        0 => JobKind::Call,
        1 => JobKind::Eval,
        k => return Err(InvalidJob::new_err(format!("unknown job kind {k}"))),
    };
    Ok(Job {
        kind,
        program: t.1,
        inputs: t.2,
        expected: t.3,
        hash_seed: t.4,
        random_seed: t.5,
        clock_offset_s: t.6,
        time_limit_s: t.7,
        tolerance: Tolerance {
            atol: t.8,
            rtol: t.9,
        },
        entry: t.10,
    })
}

fn outcome_tuple(py: Python<'_>, o: Outcome) -> PyResult<Bound<'_, PyTuple>> {
    let enc = o.encoded.map(|b| PyBytes::new(py, &b));
    let t = (
        o.status.as_str(),
        o.value,
        o.error,
        o.stdout,
        o.wall_ms,
        o.cpu_ms,
        o.max_rss_kb,
        o.matched,
        enc,
    );
    t.into_pyobject(py)
}

/// A flag shared with queued jobs: set it and jobs that have not started are skipped.
#[pyclass(frozen, module = "azr._executor")]
struct CancelToken(Arc<AtomicBool>);

#[pymethods]
impl CancelToken {
    #[new]
    fn new() -> Self {
        CancelToken(Arc::new(AtomicBool::new(false)))
    }
    fn cancel(&self) {
        self.0.store(true, Ordering::SeqCst);
    }
    #[getter]
    fn cancelled(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

#[pyclass(frozen, module = "azr._executor", name = "Pool")]
struct PyPool {
    pool: Pool,
}

#[pymethods]
impl PyPool {
    #[new]
    fn new(
        py: Python<'_>,
        workers: usize,
        python: PathBuf,
        extension: PathBuf,
        limits: LimitsTuple,
    ) -> PyResult<Self> {
        let limits = Limits {
            wall_timeout_s: limits.0,
            cpu_time_s: limits.1,
            memory_bytes: limits.2,
            max_output_bytes: limits.3,
            max_value_bytes: limits.4,
            max_source_bytes: limits.5,
            recursion_limit: limits.6,
            int_max_str_digits: limits.7,
            capture_stdout: limits.8,
        };
        let cfg = PoolConfig {
            workers,
            python,
            extension,
            limits,
        };
        let pool = py.detach(|| Pool::new(cfg)).map_err(to_py)?;
        Ok(PyPool { pool })
    }

    /// Runs jobs in parallel; results in order. Ctrl-C cancels the jobs not yet started.
    fn run_batch<'py>(
        &self,
        py: Python<'py>,
        jobs: Vec<JobTuple>,
    ) -> PyResult<Vec<Bound<'py, PyTuple>>> {
        let jobs = jobs
            .into_iter()
            .map(job_from)
            .collect::<PyResult<Vec<_>>>()?;
        let res = py.detach(|| {
            self.pool
                .run_batch(jobs, || Python::attach(|py| py.check_signals()))
        });
        let outcomes = res?.map_err(to_py)?;
        outcomes.into_iter().map(|o| outcome_tuple(py, o)).collect()
    }

    /// Queues one job; `callback(result_tuple)` is called once, from a worker thread.
    #[pyo3(signature = (job, callback, cancel=None))]
    fn submit(
        &self,
        job: JobTuple,
        callback: Py<PyAny>,
        cancel: Option<&CancelToken>,
    ) -> PyResult<()> {
        let job = job_from(job)?;
        let reply: Reply = Box::new(move |o| {
            Python::attach(|py| {
                let r = outcome_tuple(py, o).and_then(|t| callback.call1(py, (t,)));
                if let Err(e) = r {
                    e.write_unraisable(py, None);
                }
            })
        });
        self.pool
            .submit(job, reply, cancel.map(|c| c.0.clone()))
            .map_err(to_py)
    }

    /// Raises the error `submit` would raise for this job, without running it.
    fn validate(&self, job: JobTuple) -> PyResult<()> {
        self.pool.validate(&job_from(job)?).map_err(to_py)
    }

    fn close(&self, py: Python<'_>) {
        py.detach(|| self.pool.close());
    }

    #[getter]
    fn closed(&self) -> bool {
        self.pool.is_closed()
    }

    #[getter]
    fn workers(&self) -> usize {
        self.pool.workers()
    }

    fn isolation<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        if let Some(i) = self.pool.isolation() {
            d.set_item("landlock_abi", i.landlock_abi)?;
            d.set_item("seccomp", i.seccomp)?;
            d.set_item("workdir_limit_bytes", i.workdir_bytes)?;
            d.set_item("python", i.python)?;
            d.set_item("sandbox_uid", i.sandbox_uid)?;
            let unavailable = PyDict::new(py);
            for (name, on, detail) in i.layers {
                d.set_item(&name, on)?;
                if !on {
                    unavailable.set_item(&name, detail)?;
                }
            }
            d.set_item("unavailable", unavailable)?;
        }
        Ok(d)
    }

    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let s = self.pool.stats();
        let d = PyDict::new(py);
        d.set_item("executions", s.executions)?;
        d.set_item("zygotes_started", s.zygotes_started)?;
        d.set_item("zygotes_lost", s.zygotes_lost)?;
        d.set_item("internal_errors", s.internal_errors)?;
        d.set_item("rechecks", s.rechecks)?;
        Ok(d)
    }
}

/// Structural equality of two encoded values (`Execution.encoded`), decoded in Rust; floats
/// within `atol + rtol * |b|`.
#[pyfunction]
#[pyo3(signature = (a, b, atol=0.0, rtol=0.0))]
fn values_equal(py: Python<'_>, a: &[u8], b: &[u8], atol: f64, rtol: f64) -> PyResult<bool> {
    let tol = Tolerance { atol, rtol };
    tol.validate()
        .map_err(|m| to_py(ExecError::InvalidJob(m.into())))?;
    Ok(py.detach(|| blobs_equal(a, b, tol)))
}

/// Zygote set-up (namespaces, minimal filesystem, Landlock rules); only the zygote bootstrap
/// calls it, before freezing its heap. Returns the work directory children see, as a str: a
/// `PathBuf` would come back as a `pathlib.Path`, whose import (with `urllib.parse` and
/// `ipaddress`) would sit in the heap every fork copies.
#[pyfunction]
fn _zygote_prepare(read_paths: Vec<PathBuf>, staging: PathBuf, config: &str) -> PyResult<String> {
    let cfg = ZygoteConfig::from_arg(config).map_err(|e| PyValueError::new_err(e.to_string()))?;
    let workdir = prepare(&read_paths, &staging, cfg)
        .map_err(|e| PyValueError::new_err(format!("zygote set-up failed: {e}")))?;
    workdir
        .into_os_string()
        .into_string()
        .map_err(|p| PyValueError::new_err(format!("work directory is not UTF-8: {p:?}")))
}

/// The zygote's loop; only the zygote bootstrap calls it. Returns once in each forked child
/// (with the job to run, sandbox applied) and returns None in the zygote at shutdown.
#[pyfunction]
#[allow(clippy::type_complexity)]
fn _zygote_serve(
    python: String,
) -> PyResult<Option<(u8, String, String, u64, u32, u32, u64, i64, String)>> {
    // The GIL stays held: the zygote is single-threaded by design, and fork needs that.
    match serve(&python) {
        Ok(Forked::Child(j)) => Ok(Some((
            j.kind as u8,
            j.program,
            j.inputs,
            j.random_seed,
            j.recursion_limit,
            j.int_max_str_digits,
            j.max_value_bytes,
            j.clock_offset_ns,
            j.entry,
        ))),
        Ok(Forked::Shutdown) => Ok(None),
        Err(e) => Err(PyValueError::new_err(format!("zygote failed: {e}"))),
    }
}

#[pymodule]
#[pyo3(name = "_executor")]
fn executor_module(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyPool>()?;
    m.add_class::<CancelToken>()?;
    m.add_function(wrap_pyfunction!(values_equal, m)?)?;
    m.add_function(wrap_pyfunction!(_zygote_prepare, m)?)?;
    m.add_function(wrap_pyfunction!(_zygote_serve, m)?)?;
    m.add("ZYGOTE_SOURCE", crate::pool::ZYGOTE_SOURCE)?;
    Ok(())
}
