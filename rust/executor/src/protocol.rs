//! The wire format between the host pool and its zygotes: length-prefixed frames of a small
//! hand-rolled binary encoding. Both ends are this crate, so the format needs no schema
//! evolution; it needs to be bounded (a hostile peer cannot make us allocate without limit) and
//! unambiguous.

use std::io::{self, Read, Write};

/// Largest frame either side accepts: a 256 MiB program plus headroom.
pub const MAX_FRAME: usize = 300 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobKind {
    /// `exec(program)`, then `f(<inputs>)`.
    Call = 0,
    /// Evaluate `program` as one expression.
    Eval = 1,
}

/// What the child needs to run one job. The host writes it straight into the child's own job
/// pipe: the zygote never holds a job's bytes, so no later child can find them in memory it
/// inherited.
#[derive(Debug, Clone, PartialEq)]
pub struct ChildJob {
    pub kind: JobKind,
    pub program: String,
    pub inputs: String,
    pub random_seed: u64,
    pub recursion_limit: u32,
    pub int_max_str_digits: u32,
    pub max_value_bytes: u64,
    /// Added to every wall clock the program reads (time.time, datetime.now, ...).
    pub clock_offset_ns: i64,
    /// This job's CPU limit in whole seconds (the child lowers its RLIMIT_CPU to it).
    pub cpu_secs: u64,
    /// The function the inputs are passed to (`f` unless the job names another).
    pub entry: String,
}

/// Limits fixed for a zygote's lifetime, applied by each child before its job arrives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ZygoteConfig {
    pub cpu_secs: u64,
    pub memory_bytes: u64,
    pub capture_stdout: bool,
}

impl ZygoteConfig {
    /// The form passed on the zygote's command line.
    pub fn to_arg(&self) -> String {
        format!(
            "{}:{}:{}",
            self.cpu_secs, self.memory_bytes, self.capture_stdout as u8
        )
    }

    pub fn from_arg(s: &str) -> io::Result<Self> {
        let bad = || io::Error::new(io::ErrorKind::InvalidInput, "bad zygote config");
        let mut it = s.split(':');
        let mut next = || it.next().ok_or_else(bad);
        let cfg = ZygoteConfig {
            cpu_secs: next()?.parse().map_err(|_| bad())?,
            memory_bytes: next()?.parse().map_err(|_| bad())?,
            capture_stdout: next()? == "1",
        };
        Ok(cfg)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Code(i32),
    Signal(i32),
}

/// What happened to one child, as the host observed it (pipes, pidfd) and the zygote reaped it.
#[derive(Debug, Clone, PartialEq)]
pub struct Response {
    pub exit: Exit,
    pub timed_out: bool,
    pub output_exceeded: bool,
    pub result_overflow: bool,
    pub stdout: Vec<u8>,
    /// The child's own report (a marshal blob), unverified: the child may have forged it.
    pub result: Vec<u8>,
    pub wall_us: u64,
    pub cpu_us: u64,
    pub max_rss_kb: u64,
    /// Set when the child could not set up its sandbox (it then ran nothing).
    pub sandbox_error: Option<String>,
}

/// One isolation layer in the zygote's hello: name, whether it is on, and what it does or why
/// the host forbids it.
pub type LayerReport = (String, bool, String);

/// Zygote -> host messages on the control socket.
#[derive(Debug, Clone, PartialEq)]
pub enum ZygoteMsg {
    /// Once at start: which isolation layers this zygote applies.
    Hello(Hello),
    /// A sandboxed child is waiting for its job. Comes with its descriptors: the job pipe's
    /// write end, the result pipe's read end, the stdout pipe's read end (when captured) and a
    /// pidfd.
    Spare { pid: i32 },
    /// That child is gone: how it ended and what it used.
    Exited {
        pid: i32,
        exit: Exit,
        cpu_us: u64,
        max_rss_kb: u64,
    },
}

/// Zygote -> host, once at start: which isolation layers this zygote can apply.
#[derive(Debug, Clone, PartialEq)]
pub struct Hello {
    pub pid: u32,
    pub landlock_abi: u32,
    pub seccomp: bool,
    /// Size cap of the private tmpfs work directory; 0 when it is a plain directory.
    pub workdir_bytes: u64,
    pub python: String,
    /// User id children run as; 0 when they keep the executor's.
    pub sandbox_uid: u32,
    pub layers: Vec<LayerReport>,
}

#[derive(Default)]
pub struct Writer(pub Vec<u8>);

impl Writer {
    pub fn u8(&mut self, v: u8) -> &mut Self {
        self.0.push(v);
        self
    }
    pub fn u32(&mut self, v: u32) -> &mut Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    pub fn u64(&mut self, v: u64) -> &mut Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    pub fn i32(&mut self, v: i32) -> &mut Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    pub fn bytes(&mut self, v: &[u8]) -> &mut Self {
        self.u64(v.len() as u64);
        self.0.extend_from_slice(v);
        self
    }
}

pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

fn short() -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, "truncated frame")
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }
    fn take(&mut self, n: usize) -> io::Result<&'a [u8]> {
        let end = self.pos.checked_add(n).ok_or_else(short)?;
        let s = self.buf.get(self.pos..end).ok_or_else(short)?;
        self.pos = end;
        Ok(s)
    }
    pub fn u8(&mut self) -> io::Result<u8> {
        Ok(self.take(1)?[0])
    }
    pub fn u32(&mut self) -> io::Result<u32> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().unwrap()))
    }
    pub fn u64(&mut self) -> io::Result<u64> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().unwrap()))
    }
    pub fn i32(&mut self) -> io::Result<i32> {
        Ok(i32::from_le_bytes(self.take(4)?.try_into().unwrap()))
    }
    pub fn bool(&mut self) -> io::Result<bool> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(io::Error::new(io::ErrorKind::InvalidData, "bad bool")),
        }
    }
    pub fn bytes(&mut self) -> io::Result<Vec<u8>> {
        let n = usize::try_from(self.u64()?).map_err(|_| short())?;
        Ok(self.take(n)?.to_vec())
    }
    pub fn string(&mut self) -> io::Result<String> {
        String::from_utf8(self.bytes()?)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "bad utf-8"))
    }
    pub fn finish(&self) -> io::Result<()> {
        if self.pos == self.buf.len() {
            Ok(())
        } else {
            Err(io::Error::new(io::ErrorKind::InvalidData, "trailing bytes"))
        }
    }
}

impl ChildJob {
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::default();
        w.u8(self.kind as u8)
            .bytes(self.program.as_bytes())
            .bytes(self.inputs.as_bytes())
            .u64(self.random_seed)
            .u32(self.recursion_limit)
            .u32(self.int_max_str_digits)
            .u64(self.max_value_bytes)
            .u64(self.clock_offset_ns as u64)
            .u64(self.cpu_secs)
            .bytes(self.entry.as_bytes());
        w.0
    }

    pub fn decode(buf: &[u8]) -> io::Result<Self> {
        let mut r = Reader::new(buf);
        let kind = match r.u8()? {
            0 => JobKind::Call,
            1 => JobKind::Eval,
            _ => return Err(io::Error::new(io::ErrorKind::InvalidData, "bad job kind")),
        };
        let job = ChildJob {
            kind,
            program: r.string()?,
            inputs: r.string()?,
            random_seed: r.u64()?,
            recursion_limit: r.u32()?,
            int_max_str_digits: r.u32()?,
            max_value_bytes: r.u64()?,
            clock_offset_ns: r.u64()? as i64,
            cpu_secs: r.u64()?,
            entry: r.string()?,
        };
        r.finish()?;
        Ok(job)
    }
}

fn write_exit(w: &mut Writer, exit: Exit) {
    match exit {
        Exit::Code(c) => w.u8(0).i32(c),
        Exit::Signal(s) => w.u8(1).i32(s),
    };
}

fn read_exit(r: &mut Reader<'_>) -> io::Result<Exit> {
    match r.u8()? {
        0 => Ok(Exit::Code(r.i32()?)),
        1 => Ok(Exit::Signal(r.i32()?)),
        _ => Err(io::Error::new(io::ErrorKind::InvalidData, "bad exit tag")),
    }
}

impl ZygoteMsg {
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::default();
        match self {
            ZygoteMsg::Hello(h) => {
                w.u8(0)
                    .u32(h.pid)
                    .u32(h.landlock_abi)
                    .u8(h.seccomp as u8)
                    .u64(h.workdir_bytes)
                    .bytes(h.python.as_bytes())
                    .u32(h.sandbox_uid)
                    .u32(h.layers.len() as u32);
                for (name, on, detail) in &h.layers {
                    w.bytes(name.as_bytes())
                        .u8(*on as u8)
                        .bytes(detail.as_bytes());
                }
            }
            ZygoteMsg::Spare { pid } => {
                w.u8(1).i32(*pid);
            }
            ZygoteMsg::Exited {
                pid,
                exit,
                cpu_us,
                max_rss_kb,
            } => {
                w.u8(2).i32(*pid);
                write_exit(&mut w, *exit);
                w.u64(*cpu_us).u64(*max_rss_kb);
            }
        }
        w.0
    }

    pub fn decode(buf: &[u8]) -> io::Result<Self> {
        let mut r = Reader::new(buf);
        let m = match r.u8()? {
            0 => {
                let mut h = Hello {
                    pid: r.u32()?,
                    landlock_abi: r.u32()?,
                    seccomp: r.bool()?,
                    workdir_bytes: r.u64()?,
                    python: r.string()?,
                    sandbox_uid: r.u32()?,
                    layers: Vec::new(),
                };
                let n = r.u32()?;
                for _ in 0..n.min(256) {
                    h.layers.push((r.string()?, r.bool()?, r.string()?));
                }
                ZygoteMsg::Hello(h)
            }
            1 => ZygoteMsg::Spare { pid: r.i32()? },
            2 => ZygoteMsg::Exited {
                pid: r.i32()?,
                exit: read_exit(&mut r)?,
                cpu_us: r.u64()?,
                max_rss_kb: r.u64()?,
            },
            _ => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "bad message tag",
                ))
            }
        };
        r.finish()?;
        Ok(m)
    }
}

/// Writes one length-prefixed frame.
pub fn write_frame(w: &mut impl Write, payload: &[u8]) -> io::Result<()> {
    if payload.len() > MAX_FRAME {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "frame too large",
        ));
    }
    w.write_all(&(payload.len() as u32).to_le_bytes())?;
    w.write_all(payload)?;
    w.flush()
}

/// Reads one frame; `Ok(None)` on a clean end of stream before the frame starts.
pub fn read_frame(r: &mut impl Read) -> io::Result<Option<Vec<u8>>> {
    let mut len = [0u8; 4];
    let mut got = 0;
    while got < 4 {
        match r.read(&mut len[got..]) {
            Ok(0) if got == 0 => return Ok(None),
            Ok(0) => return Err(short()),
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    let n = u32::from_le_bytes(len) as usize;
    if n > MAX_FRAME {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "frame too large",
        ));
    }
    let mut buf = vec![0u8; n];
    r.read_exact(&mut buf)?;
    Ok(Some(buf))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job() -> ChildJob {
        ChildJob {
            kind: JobKind::Eval,
            program: "def f(a):\n    return a ✓".into(),
            inputs: "'x', [1, 2]".into(),
            random_seed: u64::MAX,
            recursion_limit: 1000,
            int_max_str_digits: 4300,
            max_value_bytes: 1 << 20,
            clock_offset_ns: -86_400_000_000_000,
            cpu_secs: 5,
            entry: "solve".into(),
        }
    }

    #[test]
    fn job_round_trips() {
        let j = job();
        assert_eq!(ChildJob::decode(&j.encode()).unwrap(), j);
    }

    #[test]
    fn messages_round_trip() {
        let msgs = [
            ZygoteMsg::Hello(Hello {
                pid: 7,
                landlock_abi: 6,
                seccomp: true,
                workdir_bytes: 64 << 20,
                python: "3.11.7".into(),
                sandbox_uid: 1_600_000_007,
                layers: vec![("ipc_namespace".into(), false, "EPERM".into())],
            }),
            ZygoteMsg::Spare { pid: 42 },
            ZygoteMsg::Exited {
                pid: 42,
                exit: Exit::Signal(9),
                cpu_us: 1,
                max_rss_kb: 2,
            },
        ];
        for m in msgs {
            assert_eq!(ZygoteMsg::decode(&m.encode()).unwrap(), m);
        }
    }

    #[test]
    fn config_round_trips() {
        let c = ZygoteConfig {
            cpu_secs: 3,
            memory_bytes: 1 << 30,
            capture_stdout: false,
        };
        assert_eq!(ZygoteConfig::from_arg(&c.to_arg()).unwrap(), c);
        assert!(ZygoteConfig::from_arg("1:x:1").is_err());
    }

    #[test]
    fn truncated_and_trailing_frames_are_errors() {
        let enc = job().encode();
        for cut in 0..enc.len() {
            assert!(ChildJob::decode(&enc[..cut]).is_err(), "cut at {cut}");
        }
        let mut long = enc.clone();
        long.push(0);
        assert!(ChildJob::decode(&long).is_err());
    }

    #[test]
    fn huge_length_prefix_does_not_allocate() {
        let mut r = Reader::new(&[0xff; 16]);
        assert!(r.bytes().is_err());
        let mut frame: &[u8] = &[0xff, 0xff, 0xff, 0xff];
        assert!(read_frame(&mut frame).is_err());
    }

    #[test]
    fn frames_round_trip() {
        let mut buf = Vec::new();
        write_frame(&mut buf, b"hello").unwrap();
        write_frame(&mut buf, b"").unwrap();
        let mut rd: &[u8] = &buf;
        assert_eq!(read_frame(&mut rd).unwrap().unwrap(), b"hello");
        assert_eq!(read_frame(&mut rd).unwrap().unwrap(), b"");
        assert!(read_frame(&mut rd).unwrap().is_none());
    }
}
