//! The JSON dialect of the 2019 authority (§5.3): ugorji `codec` with
//! `Canonical`, `IntegerAsString` and `MapKeyAsString`.
//!
//! Writing: object keys sorted bytewise, integers as quoted decimal strings,
//! floats as Go's `strconv.AppendFloat(f, 'G', -1, 64)` (plus `.0` when the
//! result has neither `.` nor `E`), byte strings as padded standard base64,
//! strings escaped as ugorji does (HTML characters as `\u00XX`).
//!
//! Reading: a `serde_json::Value` tree (bounded by the input; serde_json caps
//! nesting at 128) read through lenient accessors: integers as strings or
//! numbers, `null` or a missing field as the zero value, unknown fields ignored.

use base64::alphabet;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::Engine as _;
use serde_json::{Map, Value};

/// Standard padded base64; like Go's `StdEncoding`, non-zero trailing bits are accepted.
const B64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_encode_padding(true)
        .with_decode_padding_mode(DecodePaddingMode::RequireCanonical)
        .with_decode_allow_trailing_bits(true),
);

/// Encodes bytes as padded standard base64.
pub(crate) fn b64_encode(b: &[u8]) -> String {
    B64.encode(b)
}

/// Decodes padded standard base64.
pub(crate) fn b64_decode(s: &str) -> Option<Vec<u8>> {
    B64.decode(s).ok()
}

// ------------------------------------------------------------------ writing

/// Appends `s` as a JSON string literal, escaped as ugorji's encoder does
/// (the one JSON string writer: the PKI documents and the Kaetzchen keyserver
/// messages both came from ugorji): `"` and `\` escaped, `\b \f \n \r \t`
/// short forms, other control characters and the HTML characters `< > &` as
/// `\u00XX`, U+2028/U+2029 as `\u202X`, everything else as is, U+007F
/// included (ugorji, like Go's encoding/json, counts every byte from 0x20 to
/// 0x7F as safe but `"`, `\` and the HTML ones).
pub(crate) fn write_str(out: &mut Vec<u8>, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push(b'"');
    for c in s.chars() {
        match c {
            '"' => out.extend_from_slice(b"\\\""),
            '\\' => out.extend_from_slice(b"\\\\"),
            '\n' => out.extend_from_slice(b"\\n"),
            '\r' => out.extend_from_slice(b"\\r"),
            '\u{8}' => out.extend_from_slice(b"\\b"),
            '\u{c}' => out.extend_from_slice(b"\\f"),
            '\t' => out.extend_from_slice(b"\\t"),
            '\u{0}'..='\u{1f}' | '<' | '>' | '&' => {
                let b = c as u8;
                out.extend_from_slice(b"\\u00");
                out.push(HEX[usize::from(b >> 4)]);
                out.push(HEX[usize::from(b & 0xf)]);
            }
            '\u{2028}' => out.extend_from_slice(b"\\u2028"),
            '\u{2029}' => out.extend_from_slice(b"\\u2029"),
            c => {
                let mut buf = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            }
        }
    }
    out.push(b'"');
}

/// Appends an unsigned integer the IntegerAsString way: `"123"`.
pub(crate) fn write_uint(out: &mut Vec<u8>, v: u64) {
    out.push(b'"');
    out.extend_from_slice(v.to_string().as_bytes());
    out.push(b'"');
}

/// Appends a signed integer the IntegerAsString way.
pub(crate) fn write_int(out: &mut Vec<u8>, v: i64) {
    out.push(b'"');
    out.extend_from_slice(v.to_string().as_bytes());
    out.push(b'"');
}

/// Appends bytes as base64, or `null` when empty (a nil Go slice).
pub(crate) fn write_bytes_or_null(out: &mut Vec<u8>, b: &[u8]) {
    if b.is_empty() {
        out.extend_from_slice(b"null");
    } else {
        write_str(out, &b64_encode(b));
    }
}

/// Go's `strconv.FormatFloat(f, 'G', -1, 64)` followed by ugorji's `.0`
/// suffix rule. `None` for NaN and infinities (not representable in JSON).
pub(crate) fn go_float(f: f64) -> Option<String> {
    if !f.is_finite() {
        return None;
    }
    let mut s = String::new();
    if f.is_sign_negative() {
        s.push('-');
    }
    let a = f.abs();
    if a == 0.0 {
        s.push_str("0.0");
        return Some(s);
    }
    // Shortest round-trip digits and decimal exponent from Rust's `{:e}`.
    let sci = format!("{a:e}");
    let (mant, exp) = sci.split_once('e')?;
    let exp: i32 = exp.parse().ok()?;
    let digits: String = mant.chars().filter(|c| *c != '.').collect();
    let nd = digits.len() as i32;
    let dp = exp + 1; // position of the decimal point relative to the digits
                      // %G with shortest precision: exponent form when exp < -4 || exp >= 6.
    if !(-4..6).contains(&exp) {
        s.push_str(&digits[..1]);
        if nd > 1 {
            s.push('.');
            s.push_str(&digits[1..]);
        }
        s.push('E');
        s.push(if exp < 0 { '-' } else { '+' });
        let e = exp.unsigned_abs();
        if e < 10 {
            s.push('0');
        }
        s.push_str(&e.to_string());
    } else {
        if dp > 0 {
            let dpu = dp as usize;
            if nd >= dp {
                s.push_str(&digits[..dpu]);
            } else {
                s.push_str(&digits);
                s.extend(std::iter::repeat_n('0', (dp - nd) as usize));
            }
        } else {
            s.push('0');
        }
        if nd > dp {
            s.push('.');
            if dp < 0 {
                s.extend(std::iter::repeat_n('0', (-dp) as usize));
            }
            s.push_str(&digits[dp.max(0) as usize..]);
        }
    }
    if !s.contains('.') && !s.contains('E') {
        s.push_str(".0");
    }
    Some(s)
}

/// Appends a `serde_json::Value` canonically (sorted keys, integers as strings).
/// `None` if it holds a non-finite float (cannot happen for parsed values).
pub(crate) fn write_value(out: &mut Vec<u8>, v: &Value) -> Option<()> {
    match v {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
        Value::Number(n) => {
            if let Some(u) = n.as_u64() {
                write_uint(out, u);
            } else if let Some(i) = n.as_i64() {
                write_int(out, i);
            } else {
                out.extend_from_slice(go_float(n.as_f64()?)?.as_bytes());
            }
        }
        Value::String(s) => write_str(out, s),
        Value::Array(a) => {
            out.push(b'[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_value(out, x)?;
            }
            out.push(b']');
        }
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            out.push(b'{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_str(out, k);
                out.push(b':');
                write_value(out, &m[k])?;
            }
            out.push(b'}');
        }
    }
    Some(())
}

/// Writes a JSON object whose keys the caller passes in sorted order.
pub(crate) struct ObjectWriter<'a> {
    out: &'a mut Vec<u8>,
    first: bool,
}

impl<'a> ObjectWriter<'a> {
    pub(crate) fn new(out: &'a mut Vec<u8>) -> Self {
        out.push(b'{');
        ObjectWriter { out, first: true }
    }

    /// Writes `"key":` and returns the buffer for the value.
    pub(crate) fn key(&mut self, k: &str) -> &mut Vec<u8> {
        if !self.first {
            self.out.push(b',');
        }
        self.first = false;
        write_str(self.out, k);
        self.out.push(b':');
        self.out
    }

    pub(crate) fn finish(self) {
        self.out.push(b'}');
    }
}

// ------------------------------------------------------------------ reading

/// Why a field could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FieldErr {
    /// Wrong JSON type.
    Type,
    /// Integer syntax or range.
    Integer,
    /// Not padded standard base64.
    Base64,
    /// Wrong decoded length.
    Length,
    /// Required but absent or null.
    Missing,
}

impl FieldErr {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            FieldErr::Type => "wrong JSON type",
            FieldErr::Integer => "not an integer in range",
            FieldErr::Base64 => "not padded standard base64",
            FieldErr::Length => "wrong length",
            FieldErr::Missing => "missing",
        }
    }
}

/// A field's value, with `null` treated as absent.
pub(crate) fn field<'a>(obj: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    obj.get(key).filter(|v| !v.is_null())
}

/// Parses an IntegerAsString value: decimal digits in a string, or a JSON integer.
pub(crate) fn uint_value(v: &Value) -> Result<u64, FieldErr> {
    match v {
        Value::String(s) => parse_decimal(s).ok_or(FieldErr::Integer),
        Value::Number(n) => n.as_u64().ok_or(FieldErr::Integer),
        _ => Err(FieldErr::Type),
    }
}

/// Decimal digits only (no sign, no spaces), within u64.
pub(crate) fn parse_decimal(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// An unsigned integer field; absent or null is 0.
pub(crate) fn uint(obj: &Map<String, Value>, key: &str) -> Result<u64, FieldErr> {
    field(obj, key).map_or(Ok(0), uint_value)
}

/// A u8 field; absent or null is 0.
pub(crate) fn uint8(obj: &Map<String, Value>, key: &str) -> Result<u8, FieldErr> {
    u8::try_from(uint(obj, key)?).map_err(|_| FieldErr::Integer)
}

/// A float field (JSON number, or a numeric string); absent or null is 0.
pub(crate) fn float(obj: &Map<String, Value>, key: &str) -> Result<f64, FieldErr> {
    match field(obj, key) {
        None => Ok(0.0),
        Some(Value::Number(n)) => n.as_f64().ok_or(FieldErr::Type),
        Some(Value::String(s)) => s
            .parse::<f64>()
            .ok()
            .filter(|f| f.is_finite())
            .ok_or(FieldErr::Type),
        Some(_) => Err(FieldErr::Type),
    }
}

/// A string field; absent or null is "".
pub(crate) fn string(obj: &Map<String, Value>, key: &str) -> Result<String, FieldErr> {
    match field(obj, key) {
        None => Ok(String::new()),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(_) => Err(FieldErr::Type),
    }
}

/// A base64 byte string value.
pub(crate) fn bytes_value(v: &Value) -> Result<Vec<u8>, FieldErr> {
    match v {
        Value::String(s) => b64_decode(s).ok_or(FieldErr::Base64),
        _ => Err(FieldErr::Type),
    }
}

/// A byte-string field; absent or null is empty.
pub(crate) fn bytes(obj: &Map<String, Value>, key: &str) -> Result<Vec<u8>, FieldErr> {
    field(obj, key).map_or(Ok(Vec::new()), bytes_value)
}

/// A 32-byte key value in base64.
pub(crate) fn key32_value(v: &Value) -> Result<[u8; 32], FieldErr> {
    bytes_value(v)?
        .as_slice()
        .try_into()
        .map_err(|_| FieldErr::Length)
}

/// A required 32-byte key field.
pub(crate) fn key32(obj: &Map<String, Value>, key: &str) -> Result<[u8; 32], FieldErr> {
    field(obj, key).map_or(Err(FieldErr::Missing), key32_value)
}

/// An array field; absent or null is empty.
pub(crate) fn array<'a>(obj: &'a Map<String, Value>, key: &str) -> Result<&'a [Value], FieldErr> {
    match field(obj, key) {
        None => Ok(&[]),
        Some(Value::Array(a)) => Ok(a),
        Some(_) => Err(FieldErr::Type),
    }
}

/// An object field; absent or null is `None`.
pub(crate) fn object<'a>(
    obj: &'a Map<String, Value>,
    key: &str,
) -> Result<Option<&'a Map<String, Value>>, FieldErr> {
    match field(obj, key) {
        None => Ok(None),
        Some(Value::Object(m)) => Ok(Some(m)),
        Some(_) => Err(FieldErr::Type),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_float_matches_strconv_g() {
        // Expected strings are Go's FormatFloat(f, 'G', -1, 64) (+ ".0").
        let cases: &[(f64, &str)] = &[
            (0.00025, "0.00025"),
            (0.0001, "0.0001"),
            (0.000025, "2.5E-05"),
            (1.0, "1.0"),
            (100.0, "100.0"),
            (123456.0, "123456.0"),
            (1234567.0, "1.234567E+06"),
            (1e6, "1E+06"),
            (1e21, "1E+21"),
            (0.5, "0.5"),
            (-2.75, "-2.75"),
            (0.0, "0.0"),
            (1.5e-300, "1.5E-300"),
            (12.345, "12.345"),
            (0.1 + 0.2, "0.30000000000000004"),
        ];
        for (f, want) in cases {
            assert_eq!(go_float(*f).as_deref(), Some(*want), "{f}");
        }
        assert_eq!(go_float(f64::NAN), None);
        assert_eq!(go_float(f64::INFINITY), None);
    }

    proptest::proptest! {
        #[test]
        fn go_float_round_trips(bits in proptest::num::u64::ANY) {
            let f = f64::from_bits(bits);
            if let Some(s) = go_float(f) {
                let back: f64 = s.parse().unwrap();
                proptest::prop_assert_eq!(back.to_bits(), f.to_bits(), "{}", s);
                // serde_json (float_roundtrip) reads it back exactly too.
                let v: f64 = serde_json::from_str(&s).unwrap();
                proptest::prop_assert_eq!(v.to_bits(), f.to_bits(), "{}", s);
            } else {
                proptest::prop_assert!(!f.is_finite());
            }
        }
    }

    #[test]
    fn del_is_not_escaped() {
        let mut out = Vec::new();
        write_str(&mut out, "a\u{7f}b\u{80}");
        assert_eq!(out, "\"a\u{7f}b\u{80}\"".as_bytes());
    }

    #[test]
    fn strings_are_escaped_like_ugorji() {
        let mut out = Vec::new();
        write_str(&mut out, "a\"b\\c\n<&>\u{1}é\u{2028}/+");
        assert_eq!(
            String::from_utf8(out).unwrap(),
            r#""a\"b\\c\n\u003c\u0026\u003e\u0001é\u2028/+""#
        );
    }

    #[test]
    fn integers_as_strings_or_numbers() {
        let v: Value = serde_json::json!({"a": "27708", "b": 5, "c": "-1", "d": "1.0", "e": 1.5, "f": null, "g": "+5", "h": ""});
        let m = v.as_object().unwrap();
        assert_eq!(uint(m, "a"), Ok(27708));
        assert_eq!(uint(m, "b"), Ok(5));
        assert_eq!(uint(m, "c"), Err(FieldErr::Integer));
        assert_eq!(uint(m, "d"), Err(FieldErr::Integer));
        assert_eq!(uint(m, "e"), Err(FieldErr::Integer));
        assert_eq!(uint(m, "f"), Ok(0));
        assert_eq!(uint(m, "g"), Err(FieldErr::Integer));
        assert_eq!(uint(m, "h"), Err(FieldErr::Integer));
        assert_eq!(uint(m, "missing"), Ok(0));
        assert_eq!(uint8(m, "a"), Err(FieldErr::Integer));
    }

    #[test]
    fn base64_rules() {
        assert_eq!(b64_decode("AAEC"), Some(vec![0, 1, 2]));
        assert_eq!(b64_decode("AAE="), Some(vec![0, 1]));
        assert_eq!(b64_decode("AAE"), None, "padding is required");
        assert_eq!(b64_decode("AA-_"), None, "URL alphabet is rejected");
        assert_eq!(b64_encode(&[0, 1]), "AAE=");
    }
}
