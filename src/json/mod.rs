//! Raw-preserving JSON (RFC 8259, strict).
//!
//! Pantavisor keeps the state JSON byte-exact: inline JSON trail files and pvs signature payloads
//! are compared with the *raw text* of a value. So every parsed [`Value`] remembers its source byte
//! span, objects keep their members in document order, and numbers keep their text.
//!
//! The parser never panics and never overflows the stack: input length and nesting depth are
//! bounded by [`Limits`], and memory grows linearly with the input. A small writer for output JSON
//! (progress, pv-ctrl answers) lives in [`write`].

mod write;

pub use write::{escape_str, ArrayWriter, ObjectWriter};

use std::fmt;

/// Nesting is parsed recursively; this cap keeps the stack bounded (also when values are
/// dropped, which recurses too) whatever `Limits::max_depth` a caller asks for.
const DEPTH_CAP: usize = 512;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Deepest nesting of arrays/objects accepted (capped internally at 512).
    pub max_depth: usize,
    /// Largest input accepted, in bytes.
    pub max_len: usize,
    /// Most values (of any kind) in one document: a parsed value costs ~70 bytes however
    /// short its text (measured: 256 Ki values of `[0,0,...]` took 18 MB), so this, not
    /// `max_len`, bounds the memory of hostile input on a board with little RAM. The default
    /// (64 Ki, ~4.5 MB at most) is ~2.5 MiB of typical state text (~40 bytes a value).
    pub max_values: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_depth: 64,
            max_len: 16 * 1024 * 1024,
            max_values: 64 * 1024,
        }
    }
}

/// A parsed value with its source span `start..end` (byte offsets into the input).
#[derive(Clone, Debug, PartialEq)]
pub struct Value {
    pub start: usize,
    pub end: usize,
    pub kind: Kind,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Kind {
    Null,
    Bool(bool),
    /// The number's text exactly as written (already checked against the JSON grammar).
    Number(String),
    /// Decoded string.
    String(String),
    Array(Vec<Value>),
    /// Members in document order; keys are unique (duplicates are a parse error).
    Object(Vec<(String, Value)>),
}

impl Value {
    /// The exact source text of this value. `doc` must be the text this value was parsed from;
    /// anything else gives "" rather than a panic.
    pub fn raw<'a>(&self, doc: &'a str) -> &'a str {
        doc.get(self.start..self.end).unwrap_or("")
    }

    pub fn as_str(&self) -> Option<&str> {
        match &self.kind {
            Kind::String(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match self.kind {
            Kind::Bool(b) => Some(b),
            _ => None,
        }
    }

    pub fn as_array(&self) -> Option<&[Value]> {
        match &self.kind {
            Kind::Array(a) => Some(a),
            _ => None,
        }
    }

    pub fn as_object(&self) -> Option<&[(String, Value)]> {
        match &self.kind {
            Kind::Object(o) => Some(o),
            _ => None,
        }
    }

    /// Member `key` of an object (None for non-objects).
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.as_object()?
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v)
    }

    /// The number's text, if this is a number.
    pub fn number_text(&self) -> Option<&str> {
        match &self.kind {
            Kind::Number(n) => Some(n),
            _ => None,
        }
    }

    /// Integral numbers that fit a u64 ("1.0", "1e3", "-1" do not).
    pub fn as_u64(&self) -> Option<u64> {
        self.number_text()?.parse().ok()
    }

    /// Integral numbers that fit an i64.
    pub fn as_i64(&self) -> Option<i64> {
        self.number_text()?.parse().ok()
    }

    /// Any number whose value is finite as an f64 ("1e999" is not).
    pub fn as_f64(&self) -> Option<f64> {
        parse_f64(self.number_text()?)
    }

    /// JSON type name, for error messages.
    pub fn type_name(&self) -> &'static str {
        match self.kind {
            Kind::Null => "null",
            Kind::Bool(_) => "a boolean",
            Kind::Number(_) => "a number",
            Kind::String(_) => "a string",
            Kind::Array(_) => "an array",
            Kind::Object(_) => "an object",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Error {
    /// Byte offset in the input where the problem was found.
    pub offset: usize,
    pub kind: ErrorKind,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    TooLarge { len: usize, max: usize },
    InvalidUtf8,
    TooDeep { max: usize },
    TooManyValues { max: usize },
    UnexpectedEnd,
    ExpectedValue,
    ExpectedKey,
    ExpectedColon,
    ExpectedCommaOrEnd,
    InvalidNumber,
    InvalidEscape,
    LoneSurrogate,
    ControlCharInString,
    DuplicateKey(String),
    TrailingCharacters,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "byte {}: ", self.offset)?;
        match &self.kind {
            ErrorKind::TooLarge { len, max } => {
                write!(f, "document of {len} bytes exceeds the limit of {max}")
            }
            ErrorKind::InvalidUtf8 => f.write_str("invalid UTF-8"),
            ErrorKind::TooDeep { max } => write!(f, "nesting deeper than {max}"),
            ErrorKind::TooManyValues { max } => write!(f, "more than {max} values"),
            ErrorKind::UnexpectedEnd => f.write_str("unexpected end of input"),
            ErrorKind::ExpectedValue => f.write_str("expected a value"),
            ErrorKind::ExpectedKey => f.write_str("expected a string key"),
            ErrorKind::ExpectedColon => f.write_str("expected ':'"),
            ErrorKind::ExpectedCommaOrEnd => f.write_str("expected ',' or a closing bracket"),
            ErrorKind::InvalidNumber => f.write_str("invalid number"),
            ErrorKind::InvalidEscape => f.write_str("invalid escape sequence"),
            ErrorKind::LoneSurrogate => f.write_str("unpaired UTF-16 surrogate in \\u escape"),
            ErrorKind::ControlCharInString => f.write_str("unescaped control character in string"),
            ErrorKind::DuplicateKey(k) => write!(f, "duplicate key \"{}\"", k.escape_debug()),
            ErrorKind::TrailingCharacters => f.write_str("trailing characters after the value"),
        }
    }
}

impl std::error::Error for Error {}

/// A lower bound of a document's values seen in pieces: each comma outside a string
/// separates two values (or two members, each with one). So an upload streamed to storage is
/// refused for `max_values` from what was counted as it arrived, without being read back
/// and parsed.
#[derive(Clone, Debug, Default)]
pub struct ValueCount {
    commas: usize,
    in_str: bool,
    escaped: bool,
}

impl ValueCount {
    pub fn feed(&mut self, piece: &[u8]) {
        for &b in piece {
            match (self.in_str, self.escaped, b) {
                (true, true, _) => self.escaped = false,
                (true, false, b'\\') => self.escaped = true,
                (true, false, b'"') => self.in_str = false,
                (false, _, b'"') => self.in_str = true,
                (false, _, b',') => self.commas += 1,
                _ => {}
            }
        }
    }

    /// The document has at least this many values (if it is JSON at all).
    pub fn at_least(&self) -> usize {
        self.commas.saturating_add(1)
    }
}

/// Parse one JSON document from bytes (must be UTF-8).
pub fn parse(input: &[u8], limits: Limits) -> Result<Value, Error> {
    check_len(input.len(), limits)?;
    let text = std::str::from_utf8(input).map_err(|e| Error {
        offset: e.valid_up_to(),
        kind: ErrorKind::InvalidUtf8,
    })?;
    parse_str(text, limits)
}

/// Parse one JSON document from text that is already known to be UTF-8.
pub fn parse_str(text: &str, limits: Limits) -> Result<Value, Error> {
    check_len(text.len(), limits)?;
    let mut p = Parser {
        s: text,
        b: text.as_bytes(),
        pos: 0,
        depth: 0,
        max_depth: limits.max_depth.min(DEPTH_CAP),
        values_left: limits.max_values,
        max_values: limits.max_values,
    };
    p.skip_ws();
    let v = p.value()?;
    p.skip_ws();
    if p.pos < p.b.len() {
        return Err(p.err(ErrorKind::TrailingCharacters));
    }
    Ok(v)
}

fn check_len(len: usize, limits: Limits) -> Result<(), Error> {
    if len > limits.max_len {
        return Err(Error {
            offset: limits.max_len,
            kind: ErrorKind::TooLarge {
                len,
                max: limits.max_len,
            },
        });
    }
    Ok(())
}

struct Parser<'a> {
    s: &'a str,
    b: &'a [u8],
    pos: usize,
    depth: usize,
    max_depth: usize,
    values_left: usize,
    max_values: usize,
}

impl Parser<'_> {
    fn err(&self, kind: ErrorKind) -> Error {
        Error {
            offset: self.pos,
            kind,
        }
    }

    fn peek(&self) -> Option<u8> {
        self.b.get(self.pos).copied()
    }

    fn skip_ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.pos += 1;
        }
    }

    fn value(&mut self) -> Result<Value, Error> {
        let start = self.pos;
        self.values_left = match self.values_left.checked_sub(1) {
            Some(n) => n,
            None => {
                return Err(self.err(ErrorKind::TooManyValues {
                    max: self.max_values,
                }))
            }
        };
        let kind = match self.peek() {
            None => return Err(self.err(ErrorKind::UnexpectedEnd)),
            Some(b'{') => self.object()?,
            Some(b'[') => self.array()?,
            Some(b'"') => Kind::String(self.string()?),
            Some(b'-' | b'0'..=b'9') => self.number()?,
            Some(b't') => self.literal(b"true", Kind::Bool(true))?,
            Some(b'f') => self.literal(b"false", Kind::Bool(false))?,
            Some(b'n') => self.literal(b"null", Kind::Null)?,
            Some(_) => return Err(self.err(ErrorKind::ExpectedValue)),
        };
        Ok(Value {
            start,
            end: self.pos,
            kind,
        })
    }

    fn literal(&mut self, word: &[u8], kind: Kind) -> Result<Kind, Error> {
        if self.b.get(self.pos..self.pos + word.len()) == Some(word) {
            self.pos += word.len();
            Ok(kind)
        } else {
            Err(self.err(ErrorKind::ExpectedValue))
        }
    }

    fn enter(&mut self) -> Result<(), Error> {
        if self.depth >= self.max_depth {
            return Err(self.err(ErrorKind::TooDeep {
                max: self.max_depth,
            }));
        }
        self.depth += 1;
        self.pos += 1; // the opening bracket
        self.skip_ws();
        Ok(())
    }

    /// After an element: `,` (continue, returns false) or `close` (done, returns true).
    fn next_or_close(&mut self, close: u8) -> Result<bool, Error> {
        self.skip_ws();
        match self.peek() {
            Some(b',') => {
                self.pos += 1;
                self.skip_ws();
                Ok(false)
            }
            Some(c) if c == close => {
                self.pos += 1;
                self.depth -= 1;
                Ok(true)
            }
            None => Err(self.err(ErrorKind::UnexpectedEnd)),
            Some(_) => Err(self.err(ErrorKind::ExpectedCommaOrEnd)),
        }
    }

    fn array(&mut self) -> Result<Kind, Error> {
        self.enter()?;
        let mut items = Vec::new();
        if self.peek() == Some(b']') {
            self.pos += 1;
            self.depth -= 1;
            return Ok(Kind::Array(items));
        }
        loop {
            items.push(self.value()?);
            if self.next_or_close(b']')? {
                return Ok(Kind::Array(items));
            }
        }
    }

    fn object(&mut self) -> Result<Kind, Error> {
        let start = self.pos;
        self.enter()?;
        let mut members: Vec<(String, Value)> = Vec::new();
        if self.peek() == Some(b'}') {
            self.pos += 1;
            self.depth -= 1;
            return Ok(Kind::Object(members));
        }
        loop {
            match self.peek() {
                Some(b'"') => {}
                None => return Err(self.err(ErrorKind::UnexpectedEnd)),
                Some(_) => return Err(self.err(ErrorKind::ExpectedKey)),
            }
            let key = self.string()?;
            self.skip_ws();
            match self.peek() {
                Some(b':') => self.pos += 1,
                None => return Err(self.err(ErrorKind::UnexpectedEnd)),
                Some(_) => return Err(self.err(ErrorKind::ExpectedColon)),
            }
            self.skip_ws();
            let v = self.value()?;
            members.push((key, v));
            if self.next_or_close(b'}')? {
                break;
            }
        }
        if let Some(dup) = duplicate_key(&members) {
            return Err(Error {
                offset: start,
                kind: ErrorKind::DuplicateKey(dup.to_string()),
            });
        }
        Ok(Kind::Object(members))
    }

    fn string(&mut self) -> Result<String, Error> {
        self.pos += 1; // opening quote
        let mut out = String::new();
        loop {
            let run = self.pos;
            while let Some(c) = self.peek() {
                if c == b'"' || c == b'\\' || c < 0x20 {
                    break;
                }
                self.pos += 1;
            }
            // The run stops at an ASCII byte (or the end), so both ends are char boundaries.
            out.push_str(self.s.get(run..self.pos).unwrap_or(""));
            match self.peek() {
                None => return Err(self.err(ErrorKind::UnexpectedEnd)),
                Some(b'"') => {
                    self.pos += 1;
                    return Ok(out);
                }
                Some(b'\\') => self.escape(&mut out)?,
                Some(_) => return Err(self.err(ErrorKind::ControlCharInString)),
            }
        }
    }

    fn escape(&mut self, out: &mut String) -> Result<(), Error> {
        let at = self.pos;
        self.pos += 1; // backslash
        let c = match self.peek() {
            None => return Err(self.err(ErrorKind::UnexpectedEnd)),
            Some(c) => c,
        };
        self.pos += 1;
        let ch = match c {
            b'"' => '"',
            b'\\' => '\\',
            b'/' => '/',
            b'b' => '\u{8}',
            b'f' => '\u{c}',
            b'n' => '\n',
            b'r' => '\r',
            b't' => '\t',
            b'u' => {
                let hi = self.hex4()?;
                let code = match hi {
                    0xD800..=0xDBFF => {
                        if self.b.get(self.pos..self.pos + 2) != Some(b"\\u") {
                            return Err(Error {
                                offset: at,
                                kind: ErrorKind::LoneSurrogate,
                            });
                        }
                        self.pos += 2;
                        let lo = self.hex4()?;
                        if !(0xDC00..=0xDFFF).contains(&lo) {
                            return Err(Error {
                                offset: at,
                                kind: ErrorKind::LoneSurrogate,
                            });
                        }
                        0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00)
                    }
                    0xDC00..=0xDFFF => {
                        return Err(Error {
                            offset: at,
                            kind: ErrorKind::LoneSurrogate,
                        })
                    }
                    _ => hi,
                };
                char::from_u32(code).ok_or(Error {
                    offset: at,
                    kind: ErrorKind::InvalidEscape,
                })?
            }
            _ => {
                return Err(Error {
                    offset: at,
                    kind: ErrorKind::InvalidEscape,
                })
            }
        };
        out.push(ch);
        Ok(())
    }

    fn hex4(&mut self) -> Result<u32, Error> {
        let mut n = 0u32;
        for _ in 0..4 {
            let d = match self.peek() {
                None => return Err(self.err(ErrorKind::UnexpectedEnd)),
                Some(c) => (c as char)
                    .to_digit(16)
                    .ok_or_else(|| self.err(ErrorKind::InvalidEscape))?,
            };
            n = n * 16 + d;
            self.pos += 1;
        }
        Ok(n)
    }

    fn digits(&mut self) -> usize {
        let from = self.pos;
        while let Some(b'0'..=b'9') = self.peek() {
            self.pos += 1;
        }
        self.pos - from
    }

    /// `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`
    fn number(&mut self) -> Result<Kind, Error> {
        let start = self.pos;
        if self.peek() == Some(b'-') {
            self.pos += 1;
        }
        match self.peek() {
            Some(b'0') => {
                self.pos += 1;
                if let Some(b'0'..=b'9') = self.peek() {
                    return Err(self.err(ErrorKind::InvalidNumber)); // leading zero
                }
            }
            Some(b'1'..=b'9') => {
                self.digits();
            }
            _ => return Err(self.err(ErrorKind::InvalidNumber)),
        }
        if self.peek() == Some(b'.') {
            self.pos += 1;
            if self.digits() == 0 {
                return Err(self.err(ErrorKind::InvalidNumber));
            }
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.pos += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.pos += 1;
            }
            if self.digits() == 0 {
                return Err(self.err(ErrorKind::InvalidNumber));
            }
        }
        Ok(Kind::Number(
            self.s.get(start..self.pos).unwrap_or("").to_string(),
        ))
    }
}

/// First duplicated key of an object, if any. Sorting keeps large objects O(n log n).
fn duplicate_key(members: &[(String, Value)]) -> Option<&str> {
    if members.len() < 2 {
        return None;
    }
    let mut keys: Vec<&str> = members.iter().map(|(k, _)| k.as_str()).collect();
    crate::sort(&mut keys);
    keys.windows(2)
        .find(|w| w.first() == w.get(1))
        .and_then(|w| w.first().copied())
}

#[cfg(test)]
mod tests;

/// A decimal number ("2", "+1.5", ".5", "-2.5e3") as a finite f64, without core's float parser
/// (its tables are ~15 KB of the binary for upstream's one float, `backoff_factor`). Exact, as
/// `str::parse::<f64>` is, for up to 15 significant digits and a power of ten within 10^±22;
/// beyond that within a few ulps. Overflow ("1e999"), "inf" and "nan" are None.
pub fn parse_f64(s: &str) -> Option<f64> {
    let b = s.as_bytes();
    let mut i = usize::from(matches!(b.first(), Some(b'+' | b'-')));
    let (mut m, mut exp, mut digits) = (0u64, 0i64, 0);
    let mut point = false;
    while let Some(&c) = b.get(i) {
        match c {
            b'0'..=b'9' => {
                digits += 1;
                // Digits past u64's 19 only scale the value.
                if m < 1_000_000_000_000_000_000 {
                    m = m * 10 + u64::from(c - b'0');
                    exp -= i64::from(point);
                } else {
                    exp += i64::from(!point);
                }
            }
            b'.' if !point => point = true,
            _ => break,
        }
        i += 1;
    }
    if digits == 0 {
        return None;
    }
    if let Some(b'e' | b'E') = b.get(i) {
        let t = &s[i + 1..];
        let neg = t.starts_with('-');
        let t = t.strip_prefix(['+', '-']).unwrap_or(t);
        if t.is_empty() || !t.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        // Saturate: anything past 10^±99999 is 0 or overflow alike.
        let e = t.parse::<i64>().unwrap_or(99_999).min(99_999);
        exp += if neg { -e } else { e };
        i = b.len();
    }
    if i != b.len() {
        return None;
    }
    let mut f = if m == 0 {
        0.0
    } else {
        scale10(m as f64, exp.clamp(-999, 999) as i32)
    };
    if b[0] == b'-' {
        f = -f;
    }
    f.is_finite().then_some(f)
}

/// Writes `v` as `{}` of an f64 does (plain decimal, no exponent, "2" for 2.0), without core's
/// float formatter (~10 KB): the shortest form for any value parsed from up to 15 significant
/// digits, else rounded to 15 significant digits.
pub fn write_f64(out: &mut String, mut v: f64) {
    if v.is_sign_negative() {
        out.push('-');
        v = -v;
    }
    if !v.is_finite() {
        out.push_str(if v.is_nan() { "NaN" } else { "inf" });
        return;
    }
    if v == 0.0 {
        out.push('0');
        return;
    }
    // Scale into [10^14, 10^15): 15 significant digits; `dot` = digits before the point.
    let mut dot: i32 = 15;
    let mut x = v;
    while x >= 1e15 {
        x /= 10.0;
        dot += 1;
    }
    while x < 1e14 {
        x *= 10.0;
        dot -= 1;
    }
    let s = 15 - dot;
    x = scale10(v, s);
    let mut n = (x + 0.5) as u64;
    if n >= 1_000_000_000_000_000 {
        n /= 10;
        dot += 1;
    }
    let digits = n.to_string();
    let digits = digits.trim_end_matches('0');
    let len = digits.len() as i32;
    if dot <= 0 {
        out.push_str("0.");
        (0..-dot).for_each(|_| out.push('0'));
        out.push_str(digits);
    } else if dot >= len {
        out.push_str(digits);
        (0..dot - len).for_each(|_| out.push('0'));
    } else {
        let (a, b) = digits.split_at(dot as usize);
        out.push_str(a);
        out.push('.');
        out.push_str(b);
    }
}

/// `f * 10^e`, dividing for negative `e`: 10^k for k <= 22 is exact, so that rounds once; the
/// split keeps 10^k itself finite down to subnormal results.
fn scale10(f: f64, e: i32) -> f64 {
    let k = e.unsigned_abs().min(300) as i32;
    let rest = e.unsigned_abs() as i32 - k;
    if e < 0 {
        f / 10f64.powi(k) / 10f64.powi(rest)
    } else {
        f * 10f64.powi(k) * 10f64.powi(rest)
    }
}
