//! PostgreSQL values as JSON, the way Neon's HTTP endpoint returns them (and
//! `@neondatabase/serverless` expects): booleans, int2/int4 and floats as JSON scalars, json and
//! jsonb parsed, arrays as JSON arrays, and everything else as PostgreSQL's text output (int8
//! and numeric stay strings so no precision is lost in JavaScript).
//!
//! tokio-postgres reads results in binary format, so the text output of the supported types is
//! produced here. A column of a type not listed gets a clear error asking for a `::text` cast.

use chrono::{Duration, NaiveDate, NaiveDateTime, NaiveTime};
use fallible_iterator::FallibleIterator as _;
use serde_json::Value;
use tokio_postgres::types::{FromSql, Kind, Type};

/// A column value's raw bytes (binary format), whatever its type.
pub struct Raw<'a>(pub &'a [u8]);

impl<'a> FromSql<'a> for Raw<'a> {
    fn from_sql(_ty: &Type, raw: &'a [u8]) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(Self(raw))
    }

    fn accepts(_ty: &Type) -> bool {
        true
    }
}

/// A value whose type the router cannot render.
#[derive(Debug, Clone, thiserror::Error)]
#[error("type {0} is not supported by /sql yet; cast the column to text (e.g. `col::text`)")]
pub struct UnsupportedType(pub String);

type Decoded = Result<Value, UnsupportedType>;

fn text<'a, T: FromSql<'a>>(ty: &Type, raw: &'a [u8]) -> Result<T, UnsupportedType> {
    T::from_sql(ty, raw).map_err(|_| UnsupportedType(ty.name().to_owned()))
}

/// Converts one non-NULL value. With `raw_text`, every scalar is returned as its text output.
pub fn to_json(ty: &Type, raw: &[u8], raw_text: bool) -> Decoded {
    match ty.kind() {
        Kind::Array(element) => return array_to_json(ty, element, raw, raw_text),
        Kind::Domain(inner) => return to_json(inner, raw, raw_text),
        Kind::Enum(_) => return Ok(Value::String(text::<String>(&Type::TEXT, raw)?)),
        _ => {}
    }
    let typed = match *ty {
        Type::BOOL => Value::Bool(text::<bool>(ty, raw)?),
        Type::INT2 => Value::from(text::<i16>(ty, raw)?),
        Type::INT4 => Value::from(text::<i32>(ty, raw)?),
        Type::FLOAT4 => float(f64::from(text::<f32>(ty, raw)?)),
        Type::FLOAT8 => float(text::<f64>(ty, raw)?),
        Type::JSON | Type::JSONB => text::<serde_json::Value>(ty, raw)?,
        _ => return Ok(Value::String(to_text(ty, raw)?)),
    };
    if raw_text {
        return Ok(Value::String(match typed {
            Value::Bool(b) => if b { "t" } else { "f" }.to_owned(),
            Value::String(s) => s,
            other => other.to_string(),
        }));
    }
    Ok(typed)
}

fn float(value: f64) -> Value {
    serde_json::Number::from_f64(value).map_or_else(
        || {
            Value::String(if value.is_nan() {
                "NaN".into()
            } else if value > 0.0 {
                "Infinity".into()
            } else {
                "-Infinity".into()
            })
        },
        Value::Number,
    )
}

fn pg_epoch() -> NaiveDateTime {
    NaiveDate::from_ymd_opt(2000, 1, 1).unwrap_or_default().and_time(NaiveTime::MIN)
}

/// Seconds with the fraction PostgreSQL would print (trailing zeros trimmed).
fn format_time_of_day(time: NaiveTime) -> String {
    let base = time.format("%H:%M:%S").to_string();
    let micros = chrono::Timelike::nanosecond(&time) / 1000;
    if micros == 0 {
        base
    } else {
        format!("{base}.{}", format!("{micros:06}").trim_end_matches('0'))
    }
}

fn timestamp_text(ty: &Type, raw: &[u8]) -> Result<String, UnsupportedType> {
    let micros = text::<i64>(&Type::INT8, raw).map_err(|_| UnsupportedType(ty.name().to_owned()))?;
    match micros {
        i64::MAX => return Ok("infinity".into()),
        i64::MIN => return Ok("-infinity".into()),
        _ => {}
    }
    let at = pg_epoch()
        .checked_add_signed(Duration::microseconds(micros))
        .ok_or_else(|| UnsupportedType(format!("{} beyond year 262142", ty.name())))?;
    let mut out = format!("{} {}", at.format("%Y-%m-%d"), format_time_of_day(at.time()));
    if *ty == Type::TIMESTAMPTZ {
        out.push_str("+00");
    }
    Ok(out)
}

/// PostgreSQL's text output of the scalar types we support.
fn to_text(ty: &Type, raw: &[u8]) -> Result<String, UnsupportedType> {
    Ok(match *ty {
        Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME | Type::UNKNOWN => text::<String>(ty, raw)?,
        Type::CHAR => (text::<i8>(ty, raw)? as u8 as char).to_string(),
        Type::INT8 => text::<i64>(ty, raw)?.to_string(),
        Type::OID => text::<u32>(ty, raw)?.to_string(),
        Type::NUMERIC => numeric_text(raw).ok_or_else(|| UnsupportedType("numeric".into()))?,
        Type::UUID => text::<uuid::Uuid>(ty, raw)?.hyphenated().to_string(),
        Type::BYTEA => format!("\\x{}", hex::encode(raw)),
        Type::TIMESTAMP | Type::TIMESTAMPTZ => timestamp_text(ty, raw)?,
        Type::DATE => match text::<i32>(&Type::INT4, raw)? {
            i32::MAX => "infinity".into(),
            i32::MIN => "-infinity".into(),
            days => pg_epoch()
                .date()
                .checked_add_signed(Duration::days(i64::from(days)))
                .ok_or_else(|| UnsupportedType("date beyond year 262142".into()))?
                .format("%Y-%m-%d")
                .to_string(),
        },
        Type::TIME => format_time_of_day(text::<NaiveTime>(ty, raw)?),
        Type::INET | Type::CIDR => text::<std::net::IpAddr>(&Type::INET, raw)?.to_string(),
        // A function returning nothing (`SELECT pg_sleep(1)`): its text output is empty.
        Type::VOID => String::new(),
        _ => return Err(UnsupportedType(ty.name().to_owned())),
    })
}

fn array_to_json(ty: &Type, element: &Type, raw: &[u8], raw_text: bool) -> Decoded {
    let unsupported = || UnsupportedType(ty.name().to_owned());
    let array = postgres_protocol::types::array_from_sql(raw).map_err(|_| unsupported())?;
    let dims: Vec<usize> = array
        .dimensions()
        .map(|d| Ok(usize::try_from(d.len).unwrap_or(0)))
        .collect()
        .map_err(|_: Box<dyn std::error::Error + Sync + Send>| unsupported())?;
    let values: Vec<Value> = array
        .values()
        .map(Ok)
        .collect::<Vec<Option<&[u8]>>>()
        .map_err(|_| unsupported())?
        .into_iter()
        .map(|v| v.map_or(Ok(Value::Null), |bytes| to_json(element, bytes, raw_text)))
        .collect::<Result<_, _>>()?;
    Ok(nest(&dims, &mut values.into_iter()))
}

/// Builds nested arrays of the given dimensions from a flat list of values.
fn nest(dims: &[usize], values: &mut impl Iterator<Item = Value>) -> Value {
    match dims.split_first() {
        None => Value::Array(Vec::new()),
        Some((len, [])) => Value::Array(values.take(*len).collect()),
        Some((len, rest)) => Value::Array((0..*len).map(|_| nest(rest, values)).collect()),
    }
}

/// Decodes PostgreSQL's binary numeric (base-10000 digits) into its text output.
fn numeric_text(raw: &[u8]) -> Option<String> {
    let word = |i: usize| raw.get(i..i + 2).map(|b| u16::from_be_bytes([b[0], b[1]]));
    let ndigits = usize::from(word(0)?);
    let weight = i32::from(word(2)? as i16);
    let sign = word(4)?;
    let dscale = usize::from(word(6)?);
    match sign {
        0xC000 => return Some("NaN".into()),
        0xD000 => return Some("Infinity".into()),
        0xF000 => return Some("-Infinity".into()),
        _ => {}
    }
    let digits: Vec<u16> = (0..ndigits).map(|i| word(8 + 2 * i)).collect::<Option<_>>()?;
    let digit = |i: i32| usize::try_from(i).ok().and_then(|i| digits.get(i)).copied().unwrap_or(0);
    let mut out = String::new();
    if sign == 0x4000 {
        out.push('-');
    }
    if weight < 0 {
        out.push('0');
    } else {
        out.push_str(&digit(0).to_string());
        for i in 1..=weight {
            out.push_str(&format!("{:04}", digit(i)));
        }
    }
    if dscale > 0 {
        let mut fraction = String::new();
        let mut i = weight + 1;
        while fraction.len() < dscale {
            fraction.push_str(&format!("{:04}", digit(i)));
            i += 1;
        }
        fraction.truncate(dscale);
        out.push('.');
        out.push_str(&fraction);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn numeric(weight: i16, sign: u16, dscale: u16, digits: &[u16]) -> Vec<u8> {
        let mut raw = Vec::new();
        for w in [digits.len() as u16, weight as u16, sign, dscale].into_iter().chain(digits.iter().copied())
        {
            raw.extend_from_slice(&w.to_be_bytes());
        }
        raw
    }

    #[test]
    fn numeric_text_matches_postgres_output() {
        assert_eq!(numeric_text(&numeric(0, 0, 0, &[])).unwrap(), "0");
        assert_eq!(numeric_text(&numeric(0, 0, 2, &[12, 3400])).unwrap(), "12.34");
        assert_eq!(numeric_text(&numeric(1, 0x4000, 0, &[1, 2])).unwrap(), "-10002");
        assert_eq!(numeric_text(&numeric(-2, 0, 6, &[1200])).unwrap(), "0.000012");
        assert_eq!(numeric_text(&numeric(-2, 0, 8, &[12])).unwrap(), "0.00000012");
        assert_eq!(numeric_text(&numeric(0, 0xC000, 0, &[])).unwrap(), "NaN");
    }

    #[test]
    fn timestamps_print_like_postgres() {
        let raw = 1_000_000i64.to_be_bytes();
        assert_eq!(timestamp_text(&Type::TIMESTAMPTZ, &raw).unwrap(), "2000-01-01 00:00:01+00");
        let raw = 1_500_000i64.to_be_bytes();
        assert_eq!(timestamp_text(&Type::TIMESTAMP, &raw).unwrap(), "2000-01-01 00:00:01.5");
        assert_eq!(timestamp_text(&Type::TIMESTAMP, &i64::MAX.to_be_bytes()).unwrap(), "infinity");
    }

    #[test]
    fn floats_that_json_cannot_hold_become_strings() {
        assert_eq!(float(f64::NAN), Value::String("NaN".into()));
        assert_eq!(float(f64::NEG_INFINITY), Value::String("-Infinity".into()));
        assert_eq!(float(1.5), serde_json::json!(1.5));
    }
}
