//! Plain-data values as CPython's `marshal` writes them, and Python `==` on them.
//!
//! The child encodes its return value with `marshal` (fast, C, exact types only: a subclass with
//! a lying `__eq__` cannot be encoded). The host decodes here, in Rust, with bounded memory and
//! work, so untrusted bytes are never unmarshalled by a Python interpreter and no Python
//! `__eq__` of a program's object ever runs where the answer is judged.

use std::collections::HashMap;
use std::rc::Rc;

/// Deepest nesting accepted; CPython's marshal refuses deeper data itself.
const MAX_DEPTH: usize = 2000;

#[derive(Debug, Clone)]
pub enum Value {
    None,
    Ellipsis,
    StopIteration,
    Bool(bool),
    /// Sign and magnitude in CPython's base-2**15 digits, little endian, no leading zeros.
    Int(bool, Rc<[u16]>),
    Float(f64),
    Complex(f64, f64),
    /// UTF-8 with surrogates passed through, exactly as marshal writes it.
    Str(Rc<[u8]>),
    Bytes(Rc<[u8]>),
    Tuple(Rc<[Value]>),
    List(Rc<[Value]>),
    Dict(Rc<[(Value, Value)]>),
    Set(Rc<[Value]>),
    FrozenSet(Rc<[Value]>),
}

#[derive(Debug, PartialEq, Eq)]
pub enum DecodeError {
    Truncated,
    Trailing,
    TooDeep,
    BadRef,
    Unsupported(u8),
    BadData(&'static str),
}

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DecodeError::Truncated => write!(f, "truncated value"),
            DecodeError::Trailing => write!(f, "trailing bytes after value"),
            DecodeError::TooDeep => write!(f, "value nested too deeply"),
            DecodeError::BadRef => write!(f, "invalid or recursive back-reference"),
            DecodeError::Unsupported(c) => write!(f, "unsupported type code {c:#04x}"),
            DecodeError::BadData(m) => write!(f, "bad value data: {m}"),
        }
    }
}

const FLAG_REF: u8 = 0x80;

struct Decoder<'a> {
    buf: &'a [u8],
    pos: usize,
    refs: Vec<Option<Value>>,
}

/// Decodes one marshal blob (versions 2 to 5) holding plain data.
pub fn decode(buf: &[u8]) -> Result<Value, DecodeError> {
    let mut d = Decoder {
        buf,
        pos: 0,
        refs: Vec::new(),
    };
    let v = d.value(0)?;
    if d.pos != buf.len() {
        return Err(DecodeError::Trailing);
    }
    Ok(v)
}

impl<'a> Decoder<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        let end = self.pos.checked_add(n).ok_or(DecodeError::Truncated)?;
        let s = self.buf.get(self.pos..end).ok_or(DecodeError::Truncated)?;
        self.pos = end;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1)?[0])
    }
    fn i32(&mut self) -> Result<i32, DecodeError> {
        Ok(i32::from_le_bytes(self.take(4)?.try_into().unwrap()))
    }
    fn len32(&mut self) -> Result<usize, DecodeError> {
        let n = self.i32()?;
        if n < 0 {
            return Err(DecodeError::BadData("negative length"));
        }
        let n = n as usize;
        // Every element takes at least one byte, so a count beyond the rest is a lie.
        if n > self.buf.len() - self.pos {
            return Err(DecodeError::Truncated);
        }
        Ok(n)
    }
    fn f64(&mut self) -> Result<f64, DecodeError> {
        Ok(f64::from_le_bytes(self.take(8)?.try_into().unwrap()))
    }

    fn value(&mut self, depth: usize) -> Result<Value, DecodeError> {
        if depth > MAX_DEPTH {
            return Err(DecodeError::TooDeep);
        }
        let code = self.u8()?;
        let flag = code & FLAG_REF != 0;
        let code = code & !FLAG_REF;
        // Containers reserve their slot before their contents, as CPython does, so a reference
        // to an unfinished container (a cycle) is detected as such.
        let slot = if flag {
            self.refs.push(None);
            Some(self.refs.len() - 1)
        } else {
            None
        };
        let v = match code {
            b'N' => Value::None,
            b'F' => Value::Bool(false),
            b'T' => Value::Bool(true),
            b'.' => Value::Ellipsis,
            b'S' => Value::StopIteration,
            b'i' => int_from_i64(self.i32()? as i64),
            b'l' => {
                let n = self.i32()?;
                let count = n.unsigned_abs() as usize;
                if count > (self.buf.len() - self.pos) / 2 {
                    return Err(DecodeError::Truncated);
                }
                let mut digits = Vec::with_capacity(count);
                for _ in 0..count {
                    let d = u16::from_le_bytes(self.take(2)?.try_into().unwrap());
                    if d >= 1 << 15 {
                        return Err(DecodeError::BadData("long digit out of range"));
                    }
                    digits.push(d);
                }
                make_int(n < 0, digits)
            }
            b'g' => Value::Float(self.f64()?),
            b'y' => {
                let re = self.f64()?;
                let im = self.f64()?;
                Value::Complex(re, im)
            }
            b's' => {
                let n = self.len32()?;
                Value::Bytes(self.take(n)?.into())
            }
            b'u' | b't' | b'a' | b'A' => {
                let n = self.len32()?;
                Value::Str(self.take(n)?.into())
            }
            b'z' | b'Z' => {
                let n = self.u8()? as usize;
                Value::Str(self.take(n)?.into())
            }
            b')' => {
                let n = self.u8()? as usize;
                Value::Tuple(self.seq(n, depth)?.into())
            }
            b'(' => {
                let n = self.len32()?;
                Value::Tuple(self.seq(n, depth)?.into())
            }
            b'[' => {
                let n = self.len32()?;
                Value::List(self.seq(n, depth)?.into())
            }
            b'<' => {
                let n = self.len32()?;
                Value::Set(self.seq(n, depth)?.into())
            }
            b'>' => {
                let n = self.len32()?;
                Value::FrozenSet(self.seq(n, depth)?.into())
            }
            b'{' => {
                let mut items = Vec::new();
                loop {
                    if self.buf.get(self.pos) == Some(&b'0') {
                        self.pos += 1;
                        break;
                    }
                    let k = self.value(depth + 1)?;
                    let v = self.value(depth + 1)?;
                    items.push((k, v));
                }
                Value::Dict(items.into())
            }
            b'r' => {
                let i = self.i32()?;
                let v = usize::try_from(i)
                    .ok()
                    .and_then(|i| self.refs.get(i))
                    .and_then(|v| v.clone())
                    .ok_or(DecodeError::BadRef)?;
                return Ok(v);
            }
            other => return Err(DecodeError::Unsupported(other)),
        };
        if let Some(s) = slot {
            self.refs[s] = Some(v.clone());
        }
        Ok(v)
    }

    fn seq(&mut self, n: usize, depth: usize) -> Result<Vec<Value>, DecodeError> {
        let mut out = Vec::with_capacity(n.min(1 << 16));
        for _ in 0..n {
            out.push(self.value(depth + 1)?);
        }
        Ok(out)
    }
}

fn make_int(neg: bool, mut digits: Vec<u16>) -> Value {
    while digits.last() == Some(&0) {
        digits.pop();
    }
    let neg = neg && !digits.is_empty();
    Value::Int(neg, digits.into())
}

fn int_from_u64(neg: bool, mut m: u64) -> Value {
    let mut d = Vec::new();
    while m > 0 {
        d.push((m & 0x7fff) as u16);
        m >>= 15;
    }
    make_int(neg, d)
}

pub fn int_from_i64(v: i64) -> Value {
    int_from_u64(v < 0, v.unsigned_abs())
}

/// The exact integer value of an integral, finite float.
fn int_from_integral_float(x: f64) -> Value {
    debug_assert!(x.is_finite() && x.fract() == 0.0);
    if x.abs() < 9.0e18 {
        return int_from_i64(x as i64);
    }
    let bits = x.to_bits();
    let exp = ((bits >> 52) & 0x7ff) as i64 - 1075;
    let mant = (bits & ((1 << 52) - 1)) | (1 << 52);
    // |x| >= 9e18 > 2**53 means exp > 0: the value is mant * 2**exp.
    let shift = exp as usize;
    let mut digits = vec![0u16; shift / 15];
    let mut acc: u128 = (mant as u128) << (shift % 15);
    while acc > 0 {
        digits.push((acc & 0x7fff) as u16);
        acc >>= 15;
    }
    make_int(x < 0.0, digits)
}

/// A float tolerance for comparisons: numbers `x` (found) and `y` (expected), at least one of
/// them a float or complex, are equal when `|x - y| <= atol + rtol * |y|` (as numpy's
/// `isclose`). Infinities must match exactly; NaN equals NaN. Exact by default.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Tolerance {
    pub atol: f64,
    pub rtol: f64,
}

impl Tolerance {
    pub const EXACT: Tolerance = Tolerance {
        atol: 0.0,
        rtol: 0.0,
    };

    pub fn is_exact(&self) -> bool {
        self.atol == 0.0 && self.rtol == 0.0
    }

    pub fn validate(&self) -> Result<(), &'static str> {
        if !(self.atol.is_finite() && self.atol >= 0.0) {
            return Err("atol must be finite and >= 0");
        }
        if !(self.rtol.is_finite() && self.rtol >= 0.0) {
            return Err("rtol must be finite and >= 0");
        }
        Ok(())
    }

    fn close(&self, x: f64, y: f64) -> bool {
        if x == y || (x.is_nan() && y.is_nan()) {
            return true;
        }
        if !(x.is_finite() && y.is_finite()) {
            return false;
        }
        (x - y).abs() <= self.atol + self.rtol * y.abs()
    }
}

/// A canonical node: Python-equal values get the same node (1 == 1.0 == True == 1+0j,
/// set == frozenset, dicts and sets in any order), so two values are equal exactly when their
/// canonical ids are. Children are ids, so each node is hashed once.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Node {
    None,
    Ellipsis,
    StopIteration,
    Int(bool, Rc<[u16]>),
    Float(u64),
    NaN,
    Complex(u64, u64),
    Str(Rc<[u8]>),
    Bytes(Rc<[u8]>),
    Tuple(Vec<u32>),
    List(Vec<u32>),
    Set(Vec<u32>),
    Dict(Vec<(u32, u32)>),
}

fn float_node(x: f64) -> Node {
    if x.is_nan() {
        Node::NaN
    } else if x.is_finite() && x.fract() == 0.0 {
        match int_from_integral_float(x) {
            Value::Int(n, d) => Node::Int(n, d),
            _ => unreachable!(),
        }
    } else {
        Node::Float(x.to_bits())
    }
}

fn float_bits(x: f64) -> u64 {
    if x.is_nan() {
        f64::NAN.to_bits()
    } else if x == 0.0 {
        0
    } else {
        x.to_bits()
    }
}

/// Where a value's shared part lives: decoded back-references share one allocation, so
/// memoising by address makes the work linear in the encoded size, however often a part is
/// referenced.
/// An allocation's address and the kind of value living there.
type Addr = (usize, u8);

fn shared_addr(v: &Value) -> Option<Addr> {
    let addr = |p: *const u8, tag: u8| Some((p as usize, tag));
    match v {
        Value::Tuple(t) => addr(t.as_ptr().cast(), 0),
        Value::List(t) => addr(t.as_ptr().cast(), 1),
        Value::Set(t) => addr(t.as_ptr().cast(), 2),
        Value::FrozenSet(t) => addr(t.as_ptr().cast(), 3),
        Value::Dict(t) => addr(t.as_ptr().cast(), 4),
        Value::Str(s) => addr(s.as_ptr(), 5),
        Value::Bytes(s) => addr(s.as_ptr(), 6),
        _ => None,
    }
}

#[derive(Default)]
struct Canon {
    ids: HashMap<Node, u32>,
    by_addr: HashMap<Addr, u32>,
}

impl Canon {
    fn intern(&mut self, n: Node) -> u32 {
        let next = self.ids.len() as u32;
        *self.ids.entry(n).or_insert(next)
    }

    fn id(&mut self, v: &Value) -> u32 {
        let addr = shared_addr(v);
        if let Some(a) = addr {
            if let Some(&id) = self.by_addr.get(&a) {
                return id;
            }
        }
        let node = match v {
            Value::None => Node::None,
            Value::Ellipsis => Node::Ellipsis,
            Value::StopIteration => Node::StopIteration,
            Value::Bool(b) => Node::Int(
                false,
                if *b {
                    Rc::from(&[1u16][..])
                } else {
                    Rc::from(&[][..])
                },
            ),
            Value::Int(n, d) => Node::Int(*n, d.clone()),
            Value::Float(x) => float_node(*x),
            Value::Complex(re, im) if *im == 0.0 => float_node(*re),
            Value::Complex(re, im) => Node::Complex(float_bits(*re), float_bits(*im)),
            Value::Str(s) => Node::Str(s.clone()),
            Value::Bytes(b) => Node::Bytes(b.clone()),
            Value::Tuple(t) => Node::Tuple(t.iter().map(|x| self.id(x)).collect()),
            Value::List(t) => Node::List(t.iter().map(|x| self.id(x)).collect()),
            Value::Set(t) | Value::FrozenSet(t) => {
                let mut k: Vec<u32> = t.iter().map(|x| self.id(x)).collect();
                k.sort_unstable();
                k.dedup();
                Node::Set(k)
            }
            Value::Dict(items) => Node::Dict(self.dict_items(items)),
        };
        let id = self.intern(node);
        if let Some(a) = addr {
            self.by_addr.insert(a, id);
        }
        id
    }

    /// (key id, value id) sorted by key; a repeated key keeps its last value, as in Python.
    fn dict_items(&mut self, items: &[(Value, Value)]) -> Vec<(u32, u32)> {
        let mut m: HashMap<u32, u32> = HashMap::with_capacity(items.len());
        for (k, v) in items {
            let (k, v) = (self.id(k), self.id(v));
            m.insert(k, v);
        }
        let mut out: Vec<(u32, u32)> = m.into_iter().collect();
        out.sort_unstable();
        out
    }
}

/// A number for tolerant comparison; None for non-numbers.
fn as_complex(v: &Value) -> Option<(f64, f64, bool)> {
    // (re, im, is_integer)
    match v {
        Value::Bool(b) => Some((*b as u8 as f64, 0.0, true)),
        Value::Int(n, d) => {
            let m = d
                .iter()
                .rev()
                .fold(0f64, |acc, &x| acc * 32768.0 + x as f64);
            Some((if *n { -m } else { m }, 0.0, true))
        }
        Value::Float(x) => Some((*x, 0.0, false)),
        Value::Complex(re, im) => Some((*re, *im, false)),
        _ => None,
    }
}

/// Python `==` on plain data, with NaN equal to NaN (as the reprs would be).
pub fn equal(a: &Value, b: &Value) -> bool {
    equal_within(a, b, Tolerance::EXACT)
}

/// `equal`, with floats compared within `tol` (`b` is the expected value). Sets and dict keys
/// are always compared exactly. Work is linear in the values' encoded sizes.
pub fn equal_within(a: &Value, b: &Value, tol: Tolerance) -> bool {
    let mut canon = Canon::default();
    let (ia, ib) = (canon.id(a), canon.id(b));
    if ia == ib {
        return true;
    }
    if tol.is_exact() {
        return false;
    }
    // Each step pairs two nodes; the memo of pairs keeps shared parts from being walked twice,
    // and the budget keeps mismatched sharing from costing more than a linear amount.
    let budget = 8 * (canon.ids.len() as u64 + 16) + 10_000;
    let mut walk = TolerantWalk {
        canon,
        tol,
        memo: HashMap::new(),
        budget,
    };
    walk.eq(a, b).unwrap_or(false)
}

struct TolerantWalk {
    canon: Canon,
    tol: Tolerance,
    memo: HashMap<(Addr, Addr), bool>,
    budget: u64,
}

impl TolerantWalk {
    fn eq(&mut self, a: &Value, b: &Value) -> Option<bool> {
        self.budget = self.budget.checked_sub(1)?;
        if let (Some(x), Some(y)) = (as_complex(a), as_complex(b)) {
            if x.2 && y.2 {
                return Some(self.canon.id(a) == self.canon.id(b));
            }
            return Some(self.tol.close(x.0, y.0) && self.tol.close(x.1, y.1));
        }
        let key = match (shared_addr(a), shared_addr(b)) {
            (Some(p), Some(q)) => Some((p, q)),
            _ => None,
        };
        if let Some(k) = key {
            if let Some(&r) = self.memo.get(&k) {
                return Some(r);
            }
        }
        let r = match (a, b) {
            (Value::Tuple(x), Value::Tuple(y)) | (Value::List(x), Value::List(y)) => {
                if x.len() != y.len() {
                    false
                } else {
                    let mut all = true;
                    for (p, q) in x.iter().zip(y.iter()) {
                        if !self.eq(p, q)? {
                            all = false;
                            break;
                        }
                    }
                    all
                }
            }
            (Value::Dict(x), Value::Dict(y)) => {
                let mut mx: HashMap<u32, &Value> = HashMap::new();
                for (k, v) in x.iter() {
                    mx.insert(self.canon.id(k), v);
                }
                let mut my: HashMap<u32, &Value> = HashMap::new();
                for (k, v) in y.iter() {
                    my.insert(self.canon.id(k), v);
                }
                if mx.len() != my.len() {
                    false
                } else {
                    let mut all = true;
                    for (k, v) in &mx {
                        match my.get(k) {
                            Some(w) if self.eq(v, w)? => {}
                            _ => {
                                all = false;
                                break;
                            }
                        }
                    }
                    all
                }
            }
            _ => self.canon.id(a) == self.canon.id(b),
        };
        if let Some(k) = key {
            self.memo.insert(k, r);
        }
        Some(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Blobs below were produced by CPython 3.11 `marshal.dumps(value, 4)`.
    fn d(b: &[u8]) -> Value {
        decode(b).unwrap()
    }

    #[test]
    fn scalars() {
        assert!(matches!(d(b"N"), Value::None));
        assert!(matches!(d(b"T"), Value::Bool(true)));
        // 5
        assert!(equal(&d(b"\xe9\x05\x00\x00\x00"), &int_from_i64(5)));
        // 'ab' as short ascii interned (flag set)
        assert!(equal(&d(b"\xda\x02ab"), &Value::Str(Rc::from(&b"ab"[..]))));
    }

    #[test]
    fn numbers_compare_across_types() {
        let one = int_from_i64(1);
        assert!(equal(&one, &Value::Float(1.0)));
        assert!(equal(&one, &Value::Bool(true)));
        assert!(equal(&one, &Value::Complex(1.0, 0.0)));
        assert!(!equal(&one, &Value::Complex(1.0, 1.0)));
        assert!(!equal(&one, &Value::Float(1.5)));
        assert!(equal(&Value::Float(f64::NAN), &Value::Float(f64::NAN)));
        assert!(equal(&Value::Float(0.0), &Value::Float(-0.0)));
        let big = int_from_integral_float(1e300);
        assert!(equal(&big, &Value::Float(1e300)));
        assert!(!equal(&big, &Value::Float(1e299)));
        assert!(!equal(&Value::Str(Rc::from(&b"1"[..])), &one));
    }

    #[test]
    fn float_to_int_is_exact() {
        // 2**70 = 1180591620717411303424: digits in base 2**15 are [0,0,0,0, 1024]
        let v = int_from_integral_float(2f64.powi(70));
        match v {
            Value::Int(false, d) => assert_eq!(&*d, &[0, 0, 0, 0, 1 << 10]),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn containers() {
        let a = Value::List(vec![int_from_i64(1), Value::Str(Rc::from(&b"x"[..]))].into());
        let b = Value::List(vec![Value::Float(1.0), Value::Str(Rc::from(&b"x"[..]))].into());
        let t = Value::Tuple(vec![int_from_i64(1), Value::Str(Rc::from(&b"x"[..]))].into());
        assert!(equal(&a, &b));
        assert!(!equal(&a, &t));
        let s1 = Value::Set(vec![int_from_i64(2), int_from_i64(1)].into());
        let s2 = Value::FrozenSet(vec![Value::Float(1.0), int_from_i64(2)].into());
        assert!(equal(&s1, &s2));
        let d1 = Value::Dict(vec![(int_from_i64(1), a.clone()), (Value::None, t.clone())].into());
        let d2 = Value::Dict(vec![(Value::None, t.clone()), (Value::Bool(true), b.clone())].into());
        assert!(equal(&d1, &d2));
        let d3 = Value::Dict(vec![(Value::None, a.clone()), (Value::Bool(true), b)].into());
        assert!(!equal(&d1, &d3));
    }

    #[test]
    fn tolerance() {
        let tol = Tolerance {
            atol: 1e-6,
            rtol: 0.0,
        };
        let x = Value::List(vec![Value::Float(0.1 + 0.2), int_from_i64(3)].into());
        let y = Value::List(vec![Value::Float(0.3), Value::Float(3.0000001)].into());
        assert!(!equal(&x, &y));
        assert!(equal_within(&x, &y, tol));
        assert!(!equal_within(&Value::Float(1.0), &Value::Float(1.1), tol));
        // Integers stay exact; infinities must match; NaN equals NaN.
        assert!(!equal_within(
            &int_from_i64(1),
            &int_from_i64(2),
            Tolerance {
                atol: 5.0,
                rtol: 0.0
            }
        ));
        assert!(!equal_within(
            &Value::Float(f64::INFINITY),
            &Value::Float(1e308),
            tol
        ));
        assert!(equal_within(
            &Value::Float(f64::NAN),
            &Value::Float(f64::NAN),
            tol
        ));
        let rel = Tolerance {
            atol: 0.0,
            rtol: 1e-3,
        };
        assert!(equal_within(
            &Value::Float(1000.5),
            &Value::Float(1000.0),
            rel
        ));
        // Dict keys are exact, values tolerant.
        let d1 = Value::Dict(vec![(Value::Float(0.5), Value::Float(1.0))].into());
        let d2 = Value::Dict(vec![(Value::Float(0.5), Value::Float(1.0 + 1e-9))].into());
        let d3 = Value::Dict(vec![(Value::Float(0.5 + 1e-9), Value::Float(1.0))].into());
        assert!(equal_within(&d1, &d2, tol));
        assert!(!equal_within(&d1, &d3, tol));
        assert!(Tolerance {
            atol: -1.0,
            rtol: 0.0
        }
        .validate()
        .is_err());
        assert!(Tolerance {
            atol: f64::NAN,
            rtol: 0.0
        }
        .validate()
        .is_err());
    }

    fn with_big_stack(f: impl FnOnce() + Send + 'static) {
        // Debug builds use far larger frames than release builds; give the recursion room.
        std::thread::Builder::new()
            .stack_size(256 << 20)
            .spawn(f)
            .unwrap()
            .join()
            .unwrap();
    }

    #[test]
    fn hostile_blobs_are_errors_not_panics() {
        with_big_stack(hostile_blobs);
    }

    fn hostile_blobs() {
        for blob in [
            &b""[..],
            b"l\xff\xff\xff\x7f",
            b"[\xff\xff\xff\x7f",
            b"r\x00\x00\x00\x00",
            b"\xdb\x01\x00\x00\x00r\x00\x00\x00\x00",
            b"c",
            b"NN",
            b"{N",
        ] {
            assert!(decode(blob).is_err(), "{blob:?}");
        }
        // Nesting past the limit.
        let mut deep = vec![b'['; 0];
        for _ in 0..3000 {
            deep.extend_from_slice(b"[\x01\x00\x00\x00");
        }
        deep.push(b'N');
        assert_eq!(decode(&deep).unwrap_err(), DecodeError::TooDeep);
    }

    /// a = [leaf]; then `levels` times a = [a, a]: 2**levels leaves if expanded.
    fn doubling(levels: usize, leaf: i32) -> Vec<u8> {
        let mut blob = Vec::new();
        for _ in 0..levels {
            blob.extend_from_slice(b"\xdb\x02\x00\x00\x00");
        }
        blob.extend_from_slice(b"\xdb\x01\x00\x00\x00\xe9");
        blob.extend_from_slice(&leaf.to_le_bytes());
        // Closing pairs: each level's second element refers back to its first.
        for i in (0..levels as i32).rev() {
            blob.push(b'r');
            blob.extend_from_slice(&(i + 1).to_le_bytes());
        }
        blob
    }

    #[test]
    fn shared_refs_compare_in_linear_work() {
        with_big_stack(|| {
            let (a, b, c) = (doubling(60, 1), doubling(60, 1), doubling(60, 2));
            let (va, vb, vc) = (d(&a), d(&b), d(&c));
            // Separately decoded, 2**60 leaves each: equal values compare equal, different ones
            // unequal, without walking the expansion.
            assert!(equal(&va, &va));
            assert!(equal(&va, &vb));
            assert!(!equal(&va, &vc));
            let tol = Tolerance {
                atol: 0.5,
                rtol: 0.0,
            };
            assert!(equal_within(&va, &vb, tol));
            assert!(!equal_within(&va, &vc, tol));
            // A tree and a DAG of the same value are equal too.
            let mut tree = int_from_i64(1);
            tree = Value::List(vec![tree].into());
            for _ in 0..10 {
                tree = Value::List(vec![tree.clone(), tree].into());
            }
            assert!(equal(&tree, &d(&doubling(10, 1))));
        });
    }
}
