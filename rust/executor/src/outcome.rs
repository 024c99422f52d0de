//! Turning what the zygote observed into a status. Everything here is a pure function of the
//! response, so each rule is unit-tested without running anything.

use crate::protocol::{Exit, Response};
use crate::value::{self, Value};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Ok,
    Error,
    Timeout,
    MemoryLimit,
    OutputLimit,
    Violation,
    Crashed,
    Internal,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Error => "error",
            Status::Timeout => "timeout",
            Status::MemoryLimit => "memory_limit",
            Status::OutputLimit => "output_limit",
            Status::Violation => "violation",
            Status::Crashed => "crashed",
            Status::Internal => "internal",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub status: Status,
    pub value: Option<String>,
    pub error: Option<String>,
    pub stdout: String,
    pub wall_ms: f64,
    pub cpu_ms: f64,
    pub max_rss_kb: u64,
    pub matched: Option<bool>,
    /// The value as the child marshalled it; decode with `value::decode`.
    pub encoded: Option<Vec<u8>>,
}

impl Outcome {
    pub fn internal(msg: impl Into<String>) -> Outcome {
        Outcome {
            status: Status::Internal,
            value: None,
            error: Some(msg.into()),
            stdout: String::new(),
            wall_ms: 0.0,
            cpu_ms: 0.0,
            max_rss_kb: 0,
            matched: None,
            encoded: None,
        }
    }
}

// Codes the child runner reports (python side: the runner in zygote.py).
const CHILD_OK: i64 = 0;
const CHILD_ERROR: i64 = 1;
const CHILD_MEMORY: i64 = 2;
const CHILD_VALUE_TOO_LARGE: i64 = 3;
const CHILD_VIOLATION: i64 = 4;

struct Report {
    code: i64,
    repr: Option<String>,
    blob: Option<Vec<u8>>,
    error: Option<String>,
}

fn small_int(v: &Value) -> Option<i64> {
    match v {
        Value::Int(neg, d) if d.len() <= 2 => {
            let m = d.iter().rev().fold(0i64, |acc, &x| (acc << 15) | x as i64);
            Some(if *neg { -m } else { m })
        }
        Value::Int(..) => None,
        _ => None,
    }
}

fn opt_text(v: &Value) -> Option<Option<String>> {
    match v {
        Value::None => Some(None),
        Value::Str(s) => Some(Some(String::from_utf8_lossy(s).into_owned())),
        _ => None,
    }
}

fn parse_report(blob: &[u8]) -> Option<Report> {
    let Value::Tuple(t) = value::decode(blob).ok()? else {
        return None;
    };
    if t.len() != 4 {
        return None;
    }
    Some(Report {
        code: small_int(&t[0])?,
        repr: opt_text(&t[1])?,
        blob: match &t[2] {
            Value::None => None,
            Value::Bytes(b) => Some(b.to_vec()),
            _ => return None,
        },
        error: opt_text(&t[3])?,
    })
}

fn signal_name(sig: i32) -> String {
    let name = match sig {
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGABRT => "SIGABRT",
        libc::SIGBUS => "SIGBUS",
        libc::SIGILL => "SIGILL",
        libc::SIGFPE => "SIGFPE",
        libc::SIGKILL => "SIGKILL",
        libc::SIGXCPU => "SIGXCPU",
        libc::SIGSYS => "SIGSYS",
        libc::SIGTERM => "SIGTERM",
        libc::SIGXFSZ => "SIGXFSZ",
        _ => return format!("signal {sig}"),
    };
    name.to_string()
}

/// Classifies one response. `cpu_limit_s` is the RLIMIT_CPU the child ran under.
pub fn classify(resp: &Response, cpu_limit_s: u64) -> Outcome {
    let mut o = Outcome {
        status: Status::Ok,
        value: None,
        error: None,
        stdout: String::from_utf8_lossy(&resp.stdout).into_owned(),
        wall_ms: resp.wall_us as f64 / 1000.0,
        cpu_ms: resp.cpu_us as f64 / 1000.0,
        max_rss_kb: resp.max_rss_kb,
        matched: None,
        encoded: None,
    };
    let cpu_exhausted = resp.cpu_us + 50_000 >= cpu_limit_s * 1_000_000;
    // Order matters: a limit we enforced explains the death better than the signal does.
    let (status, error) = if let Some(e) = &resp.sandbox_error {
        let why = if e.is_empty() {
            "the sandbox could not be set up"
        } else {
            e
        };
        (Status::Internal, why.to_string())
    } else if resp.timed_out {
        (
            Status::Timeout,
            "wall-clock time limit exceeded".to_string(),
        )
    } else if resp.output_exceeded {
        (
            Status::OutputLimit,
            "stdout exceeded max_output_bytes".to_string(),
        )
    } else if resp.result_overflow {
        (
            Status::OutputLimit,
            "return value exceeded max_value_bytes".to_string(),
        )
    } else {
        match resp.exit {
            Exit::Signal(s) if s == libc::SIGXCPU || (s == libc::SIGKILL && cpu_exhausted) => {
                (Status::Timeout, "CPU time limit exceeded".to_string())
            }
            Exit::Signal(s) if s == libc::SIGSYS => (
                Status::Violation,
                "killed by the syscall filter (SIGSYS)".to_string(),
            ),
            Exit::Signal(s) => (Status::Crashed, format!("killed by {}", signal_name(s))),
            Exit::Code(c) => match parse_report(&resp.result) {
                _ if resp.result.is_empty() => (
                    Status::Error,
                    format!("the program exited with status {c} before returning"),
                ),
                None => (
                    Status::Violation,
                    "the result channel was corrupted by the program".to_string(),
                ),
                Some(r) => {
                    o.value = r.repr;
                    let st = match r.code {
                        CHILD_OK => Status::Ok,
                        CHILD_ERROR => Status::Error,
                        CHILD_MEMORY => Status::MemoryLimit,
                        CHILD_VALUE_TOO_LARGE => Status::OutputLimit,
                        CHILD_VIOLATION => Status::Violation,
                        _ => Status::Violation,
                    };
                    if st == Status::Ok {
                        o.encoded = r.blob;
                    }
                    o.status = st;
                    o.error = r.error;
                    return o;
                }
            },
        }
    };
    o.status = status;
    o.error = Some(error);
    o
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sandbox::SANDBOX_FAILED_EXIT;

    fn resp(exit: Exit, result: &[u8]) -> Response {
        Response {
            exit,
            timed_out: false,
            output_exceeded: false,
            result_overflow: false,
            stdout: b"hi\xff\x00".to_vec(),
            result: result.to_vec(),
            wall_us: 1500,
            cpu_us: 1000,
            max_rss_kb: 10,
            sandbox_error: None,
        }
    }

    // marshal.dumps((0, '5', marshal.dumps(5), None))
    const OK_5: &[u8] = b")\x04\xe9\x00\x00\x00\x00\xda\x015s\x05\x00\x00\x00\xe9\x05\x00\x00\x00N";

    #[test]
    fn ok_report() {
        let o = classify(&resp(Exit::Code(0), OK_5), 5);
        assert_eq!(o.status, Status::Ok);
        assert_eq!(o.value.as_deref(), Some("5"));
        assert_eq!(o.stdout, "hi\u{fffd}\u{0}");
        let v = value::decode(o.encoded.as_deref().unwrap()).unwrap();
        assert!(value::equal(&v, &value::int_from_i64(5)));
        assert_eq!(o.wall_ms, 1.5);
    }

    #[test]
    fn limits_and_signals() {
        let mut r = resp(Exit::Signal(libc::SIGKILL), b"");
        r.timed_out = true;
        assert_eq!(classify(&r, 5).status, Status::Timeout);
        let mut r = resp(Exit::Signal(libc::SIGKILL), b"");
        r.cpu_us = 5_000_000;
        assert_eq!(classify(&r, 5).status, Status::Timeout);
        assert_eq!(
            classify(&resp(Exit::Signal(libc::SIGXCPU), b""), 5).status,
            Status::Timeout
        );
        let r = resp(Exit::Signal(libc::SIGSEGV), b"");
        let o = classify(&r, 5);
        assert_eq!(o.status, Status::Crashed);
        assert!(o.error.unwrap().contains("SIGSEGV"));
        let mut r = resp(Exit::Signal(libc::SIGKILL), b"");
        r.output_exceeded = true;
        assert_eq!(classify(&r, 5).status, Status::OutputLimit);
    }

    #[test]
    fn exits_without_report() {
        let o = classify(&resp(Exit::Code(0), b""), 5);
        assert_eq!(o.status, Status::Error);
        assert!(o.error.unwrap().contains("before returning"));
        let mut r = resp(Exit::Code(SANDBOX_FAILED_EXIT), b"");
        r.sandbox_error = Some("sandbox set-up failed at seccomp: EINVAL".into());
        let o = classify(&r, 5);
        assert_eq!(o.status, Status::Internal);
        assert!(o.error.unwrap().contains("seccomp"));
        // A program exiting with the same status is just a program exiting.
        let o = classify(&resp(Exit::Code(SANDBOX_FAILED_EXIT), b""), 5);
        assert_eq!(o.status, Status::Error);
        let o = classify(&resp(Exit::Code(0), b"garbage"), 5);
        assert_eq!(o.status, Status::Violation);
    }
}
