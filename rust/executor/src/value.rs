//! Plain-data values as CPython's `marshal` writes them, and Python `==` on them.
//!
//! The child encodes its return value with `marshal` (fast, C, exact types only: a subclass with
//! a lying `__eq__` cannot be encoded). The host decodes here, in Rust, with bounded memory and
//! work, so untrusted bytes are never unmarshalled by a Python interpreter and no Python
//! `__eq__` of a program's object ever runs where the answer is judged.

use std::cmp::Ordering;
use std::rc::Rc;

/// Deepest nesting accepted; CPython's marshal refuses deeper data itself.
const MAX_DEPTH: usize = 2000;
/// Upper bound on nodes visited by one comparison; shared sub-objects (marshal refs) could
/// otherwise make a small blob exponentially expensive to compare.
const WORK_BUDGET: u64 = 20_000_000;

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

/// A canonical, totally ordered form of a hashable value: Python-equal values map to equal keys
/// (1 == 1.0 == True, set == frozenset), so sets and dict keys can be compared by sorting.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum Key {
    None,
    Ellipsis,
    StopIteration,
    Int(bool, Rc<[u16]>),
    Float(u64),
    NaN,
    Complex(u64, u64),
    Str(Rc<[u8]>),
    Bytes(Rc<[u8]>),
    Tuple(Vec<Key>),
    FrozenSet(Vec<Key>),
    // Unhashable in Python; only reachable from forged blobs. Keyed structurally anyway.
    List(Vec<Key>),
    Dict(Vec<(Key, Key)>),
}

fn float_key(x: f64) -> Key {
    if x.is_nan() {
        Key::NaN
    } else if x.is_finite() && x.fract() == 0.0 {
        match int_from_integral_float(x) {
            Value::Int(n, d) => Key::Int(n, d),
            _ => unreachable!(),
        }
    } else {
        Key::Float(x.to_bits())
    }
}

fn key(v: &Value, budget: &mut u64) -> Option<Key> {
    *budget = budget.checked_sub(1)?;
    Some(match v {
        Value::None => Key::None,
        Value::Ellipsis => Key::Ellipsis,
        Value::StopIteration => Key::StopIteration,
        Value::Bool(b) => match int_from_i64(*b as i64) {
            Value::Int(n, d) => Key::Int(n, d),
            _ => unreachable!(),
        },
        Value::Int(n, d) => Key::Int(*n, d.clone()),
        Value::Float(x) => float_key(*x),
        Value::Complex(re, im) if *im == 0.0 => float_key(*re),
        Value::Complex(re, im) => Key::Complex(float_bits(*re), float_bits(*im)),
        Value::Str(s) => Key::Str(s.clone()),
        Value::Bytes(b) => Key::Bytes(b.clone()),
        Value::Tuple(t) => Key::Tuple(keys(t, budget)?),
        Value::List(t) => Key::List(keys(t, budget)?),
        Value::Set(t) | Value::FrozenSet(t) => {
            let mut k = keys(t, budget)?;
            k.sort();
            k.dedup();
            Key::FrozenSet(k)
        }
        Value::Dict(items) => {
            let mut k = Vec::with_capacity(items.len());
            for (a, b) in items.iter() {
                k.push((key(a, budget)?, key(b, budget)?));
            }
            k.sort();
            Key::Dict(k)
        }
    })
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

fn keys(vs: &[Value], budget: &mut u64) -> Option<Vec<Key>> {
    vs.iter().map(|v| key(v, budget)).collect()
}

/// A number as (real, imag) for cross-type comparison; None for non-numbers.
enum Num<'a> {
    Int(bool, &'a [u16]),
    Float(f64),
    Complex(f64, f64),
}

fn as_num(v: &Value) -> Option<Num<'_>> {
    match v {
        Value::Bool(false) => Some(Num::Int(false, &[])),
        Value::Bool(true) => Some(Num::Int(false, &[1])),
        Value::Int(n, d) => Some(Num::Int(*n, d)),
        Value::Float(x) => Some(Num::Float(*x)),
        Value::Complex(re, im) => Some(Num::Complex(*re, *im)),
        _ => None,
    }
}

fn float_eq(a: f64, b: f64) -> bool {
    a == b || (a.is_nan() && b.is_nan())
}

fn int_float_eq(neg: bool, d: &[u16], x: f64) -> bool {
    if !x.is_finite() || x.fract() != 0.0 {
        return false;
    }
    match int_from_integral_float(x) {
        Value::Int(n2, d2) => n2 == neg && *d2 == *d,
        _ => false,
    }
}

fn num_eq(a: Num<'_>, b: Num<'_>) -> bool {
    match (a, b) {
        (Num::Int(n1, d1), Num::Int(n2, d2)) => n1 == n2 && d1 == d2,
        (Num::Int(n, d), Num::Float(x)) | (Num::Float(x), Num::Int(n, d)) => int_float_eq(n, d, x),
        (Num::Float(x), Num::Float(y)) => float_eq(x, y),
        (Num::Complex(r1, i1), Num::Complex(r2, i2)) => float_eq(r1, r2) && float_eq(i1, i2),
        (Num::Complex(r, i), other) | (other, Num::Complex(r, i)) => {
            i == 0.0 && num_eq(Num::Float(r), other)
        }
    }
}

/// Python `==` on plain data (with NaN equal to NaN, as the reprs would be). Gives up (false)
/// past a fixed work budget.
pub fn equal(a: &Value, b: &Value) -> bool {
    let mut budget = WORK_BUDGET;
    eq(a, b, &mut budget).unwrap_or(false)
}

fn eq(a: &Value, b: &Value, budget: &mut u64) -> Option<bool> {
    *budget = budget.checked_sub(1)?;
    if let (Some(x), Some(y)) = (as_num(a), as_num(b)) {
        return Some(num_eq(x, y));
    }
    Some(match (a, b) {
        (Value::None, Value::None) => true,
        (Value::Ellipsis, Value::Ellipsis) => true,
        (Value::StopIteration, Value::StopIteration) => true,
        (Value::Str(x), Value::Str(y)) => x == y,
        (Value::Bytes(x), Value::Bytes(y)) => x == y,
        (Value::Tuple(x), Value::Tuple(y)) | (Value::List(x), Value::List(y)) => {
            if x.len() != y.len() {
                return Some(false);
            }
            for (p, q) in x.iter().zip(y.iter()) {
                if !eq(p, q, budget)? {
                    return Some(false);
                }
            }
            true
        }
        (Value::Set(x) | Value::FrozenSet(x), Value::Set(y) | Value::FrozenSet(y)) => {
            let mut kx = keys(x, budget)?;
            let mut ky = keys(y, budget)?;
            kx.sort();
            kx.dedup();
            ky.sort();
            ky.dedup();
            kx == ky
        }
        (Value::Dict(x), Value::Dict(y)) => {
            if x.len() != y.len() {
                return Some(false);
            }
            let mut kx = Vec::with_capacity(x.len());
            for (k, v) in x.iter() {
                kx.push((key(k, budget)?, v));
            }
            let mut ky = Vec::with_capacity(y.len());
            for (k, v) in y.iter() {
                ky.push((key(k, budget)?, v));
            }
            kx.sort_by(|p, q| p.0.cmp(&q.0));
            ky.sort_by(|p, q| p.0.cmp(&q.0));
            for ((k1, v1), (k2, v2)) in kx.iter().zip(ky.iter()) {
                if k1.cmp(k2) != Ordering::Equal || !eq(v1, v2, budget)? {
                    return Some(false);
                }
            }
            true
        }
        _ => false,
    })
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

    #[test]
    fn shared_refs_do_not_blow_up() {
        // a = [1]; for _ in range(60): a = [a, a]  -> 2**60 leaves if expanded.
        let mut blob = Vec::new();
        for _ in 0..60 {
            blob.extend_from_slice(b"\xdb\x02\x00\x00\x00");
        }
        blob.extend_from_slice(b"\xdb\x01\x00\x00\x00\xe9\x01\x00\x00\x00");
        // Closing pairs: each level's second element refers back to its first.
        for i in (0..60i32).rev() {
            blob.push(b'r');
            blob.extend_from_slice(&(i + 1).to_le_bytes());
        }
        let v = decode(&blob).unwrap();
        // Comparing the value with itself would take 2**60 steps; the budget stops it.
        assert!(!equal(&v, &v));
    }
}
