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

/// What the child needs to run one job.
#[derive(Debug, Clone, PartialEq)]
pub struct ChildJob {
    pub kind: JobKind,
    pub program: String,
    pub inputs: String,
    pub random_seed: u64,
    pub recursion_limit: u32,
    pub int_max_str_digits: u32,
    pub max_value_bytes: u64,
}

/// Host -> zygote: run one job under these limits.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    pub job: ChildJob,
    pub wall_timeout_us: u64,
    pub cpu_secs: u64,
    pub memory_bytes: u64,
    pub max_output_bytes: u64,
    pub capture_stdout: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Code(i32),
    Signal(i32),
}

/// Zygote -> host: what happened to the child, as observed from outside it.
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

/// Zygote -> host, once at start: which isolation layers this zygote can apply.
#[derive(Debug, Clone, PartialEq)]
pub struct Hello {
    pub pid: u32,
    pub landlock_abi: u32,
    pub seccomp: bool,
    /// Size cap of the private tmpfs work directory; 0 when it is a plain directory.
    pub workdir_bytes: u64,
    pub python: String,
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

impl Request {
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::default();
        w.u8(self.job.kind as u8)
            .bytes(self.job.program.as_bytes())
            .bytes(self.job.inputs.as_bytes())
            .u64(self.job.random_seed)
            .u32(self.job.recursion_limit)
            .u32(self.job.int_max_str_digits)
            .u64(self.job.max_value_bytes)
            .u64(self.wall_timeout_us)
            .u64(self.cpu_secs)
            .u64(self.memory_bytes)
            .u64(self.max_output_bytes)
            .u8(self.capture_stdout as u8);
        w.0
    }

    pub fn decode(buf: &[u8]) -> io::Result<Self> {
        let mut r = Reader::new(buf);
        let kind = match r.u8()? {
            0 => JobKind::Call,
            1 => JobKind::Eval,
            _ => return Err(io::Error::new(io::ErrorKind::InvalidData, "bad job kind")),
        };
        let req = Request {
            job: ChildJob {
                kind,
                program: r.string()?,
                inputs: r.string()?,
                random_seed: r.u64()?,
                recursion_limit: r.u32()?,
                int_max_str_digits: r.u32()?,
                max_value_bytes: r.u64()?,
            },
            wall_timeout_us: r.u64()?,
            cpu_secs: r.u64()?,
            memory_bytes: r.u64()?,
            max_output_bytes: r.u64()?,
            capture_stdout: r.bool()?,
        };
        r.finish()?;
        Ok(req)
    }
}

impl Response {
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::default();
        match self.exit {
            Exit::Code(c) => w.u8(0).i32(c),
            Exit::Signal(s) => w.u8(1).i32(s),
        };
        w.u8(self.timed_out as u8)
            .u8(self.output_exceeded as u8)
            .u8(self.result_overflow as u8)
            .bytes(&self.stdout)
            .bytes(&self.result)
            .u64(self.wall_us)
            .u64(self.cpu_us)
            .u64(self.max_rss_kb);
        match &self.sandbox_error {
            None => w.u8(0),
            Some(e) => w.u8(1).bytes(e.as_bytes()),
        };
        w.0
    }

    pub fn decode(buf: &[u8]) -> io::Result<Self> {
        let mut r = Reader::new(buf);
        let exit = match r.u8()? {
            0 => Exit::Code(r.i32()?),
            1 => Exit::Signal(r.i32()?),
            _ => return Err(io::Error::new(io::ErrorKind::InvalidData, "bad exit tag")),
        };
        let resp = Response {
            exit,
            timed_out: r.bool()?,
            output_exceeded: r.bool()?,
            result_overflow: r.bool()?,
            stdout: r.bytes()?,
            result: r.bytes()?,
            wall_us: r.u64()?,
            cpu_us: r.u64()?,
            max_rss_kb: r.u64()?,
            sandbox_error: if r.bool()? { Some(r.string()?) } else { None },
        };
        r.finish()?;
        Ok(resp)
    }
}

impl Hello {
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::default();
        w.u32(self.pid)
            .u32(self.landlock_abi)
            .u8(self.seccomp as u8)
            .u64(self.workdir_bytes)
            .bytes(self.python.as_bytes());
        w.0
    }

    pub fn decode(buf: &[u8]) -> io::Result<Self> {
        let mut r = Reader::new(buf);
        let h = Hello {
            pid: r.u32()?,
            landlock_abi: r.u32()?,
            seccomp: r.bool()?,
            workdir_bytes: r.u64()?,
            python: r.string()?,
        };
        r.finish()?;
        Ok(h)
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

    fn request() -> Request {
        Request {
            job: ChildJob {
                kind: JobKind::Eval,
                program: "def f(a):\n    return a ✓".into(),
                inputs: "'x', [1, 2]".into(),
                random_seed: u64::MAX,
                recursion_limit: 1000,
                int_max_str_digits: 4300,
                max_value_bytes: 1 << 20,
            },
            wall_timeout_us: 5_000_000,
            cpu_secs: 5,
            memory_bytes: 512 << 20,
            max_output_bytes: 65536,
            capture_stdout: true,
        }
    }

    #[test]
    fn request_round_trips() {
        let r = request();
        assert_eq!(Request::decode(&r.encode()).unwrap(), r);
    }

    #[test]
    fn response_round_trips() {
        let r = Response {
            exit: Exit::Signal(9),
            timed_out: true,
            output_exceeded: false,
            result_overflow: true,
            stdout: vec![0, 255, 10],
            result: b"abc".to_vec(),
            wall_us: 1,
            cpu_us: 2,
            max_rss_kb: 3,
            sandbox_error: Some("setsid: EPERM".into()),
        };
        assert_eq!(Response::decode(&r.encode()).unwrap(), r);
    }

    #[test]
    fn hello_round_trips() {
        let h = Hello {
            pid: 7,
            landlock_abi: 6,
            seccomp: true,
            workdir_bytes: 64 << 20,
            python: "3.11.7".into(),
        };
        assert_eq!(Hello::decode(&h.encode()).unwrap(), h);
    }

    #[test]
    fn truncated_and_trailing_frames_are_errors() {
        let enc = request().encode();
        for cut in 0..enc.len() {
            assert!(Request::decode(&enc[..cut]).is_err(), "cut at {cut}");
        }
        let mut long = enc.clone();
        long.push(0);
        assert!(Request::decode(&long).is_err());
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
