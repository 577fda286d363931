//! Compact JSON output for progress files and pv-ctrl answers: keys in call order, no spaces.
use std::fmt::Write;

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Append `s` as a quoted JSON string.
pub fn escape_str(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 => {
                let n = c as usize;
                out.push_str("\\u00");
                out.push(HEX.get(n >> 4).copied().unwrap_or(b'0') as char);
                out.push(HEX.get(n & 0xf).copied().unwrap_or(b'0') as char);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Builds one JSON object: `let mut w = ObjectWriter::new(); w.str("status", "DONE").num("progress", 100); w.finish()`.
#[derive(Debug)]
pub struct ObjectWriter {
    buf: String,
}

impl Default for ObjectWriter {
    fn default() -> Self {
        Self::new()
    }
}

impl ObjectWriter {
    pub fn new() -> Self {
        ObjectWriter {
            buf: String::from("{"),
        }
    }

    fn key(&mut self, k: &str) -> &mut String {
        if self.buf.len() > 1 {
            self.buf.push(',');
        }
        escape_str(k, &mut self.buf);
        self.buf.push(':');
        &mut self.buf
    }

    pub fn str(&mut self, k: &str, v: &str) -> &mut Self {
        escape_str(v, self.key(k));
        self
    }

    pub fn num(&mut self, k: &str, v: i64) -> &mut Self {
        let _ = write!(self.key(k), "{v}");
        self
    }

    pub fn uint(&mut self, k: &str, v: u64) -> &mut Self {
        let _ = write!(self.key(k), "{v}");
        self
    }

    pub fn bool(&mut self, k: &str, v: bool) -> &mut Self {
        self.key(k).push_str(if v { "true" } else { "false" });
        self
    }

    pub fn null(&mut self, k: &str) -> &mut Self {
        self.key(k).push_str("null");
        self
    }

    /// `raw_json` must be one valid JSON value (e.g. from another writer or a state's raw text).
    pub fn raw(&mut self, k: &str, raw_json: &str) -> &mut Self {
        self.key(k).push_str(raw_json);
        self
    }

    pub fn finish(mut self) -> String {
        self.buf.push('}');
        self.buf
    }
}

/// Builds one JSON array, elements in call order.
#[derive(Debug)]
pub struct ArrayWriter {
    buf: String,
}

impl Default for ArrayWriter {
    fn default() -> Self {
        Self::new()
    }
}

impl ArrayWriter {
    pub fn new() -> Self {
        ArrayWriter {
            buf: String::from("["),
        }
    }

    fn next(&mut self) -> &mut String {
        if self.buf.len() > 1 {
            self.buf.push(',');
        }
        &mut self.buf
    }

    pub fn str(&mut self, v: &str) -> &mut Self {
        escape_str(v, self.next());
        self
    }

    pub fn num(&mut self, v: i64) -> &mut Self {
        let _ = write!(self.next(), "{v}");
        self
    }

    pub fn uint(&mut self, v: u64) -> &mut Self {
        let _ = write!(self.next(), "{v}");
        self
    }

    pub fn bool(&mut self, v: bool) -> &mut Self {
        self.next().push_str(if v { "true" } else { "false" });
        self
    }

    pub fn null(&mut self) -> &mut Self {
        self.next().push_str("null");
        self
    }

    /// `raw_json` must be one valid JSON value.
    pub fn raw(&mut self, raw_json: &str) -> &mut Self {
        self.next().push_str(raw_json);
        self
    }

    pub fn finish(mut self) -> String {
        self.buf.push(']');
        self.buf
    }
}
