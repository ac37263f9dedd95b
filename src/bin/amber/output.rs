//! Parsing of parameters and rendering of values for the command line.

use std::io::Write;

use amber::{Error, ErrorKind, Value};

pub(crate) fn io(e: std::io::Error) -> Error {
    Error::new(ErrorKind::Io, format!("write to stdout: {e}"))
}

pub(crate) fn parse_param(p: &str) -> Result<Value, Error> {
    let bad = |what: &str| {
        Error::new(
            ErrorKind::InvalidInput,
            format!("parameter `{p}` is not {what}"),
        )
    };
    if let Some(r) = p.strip_prefix("i:") {
        return r.parse().map(Value::Integer).map_err(|_| bad("an integer"));
    }
    if let Some(r) = p.strip_prefix("f:") {
        return r.parse().map(Value::Real).map_err(|_| bad("a real"));
    }
    if let Some(r) = p.strip_prefix("s:") {
        return Ok(Value::Text(r.to_owned()));
    }
    if let Some(r) = p.strip_prefix("x:") {
        return parse_hex(r).map(Value::Blob);
    }
    if p.eq_ignore_ascii_case("null") {
        return Ok(Value::Null);
    }
    if let Ok(i) = p.parse::<i64>() {
        return Ok(Value::Integer(i));
    }
    if let Ok(f) = p.parse::<f64>() {
        if f.is_finite() {
            return Ok(Value::Real(f));
        }
    }
    Ok(Value::Text(p.to_owned()))
}

pub(crate) fn parse_hex(s: &str) -> Result<Vec<u8>, Error> {
    if !s.len().is_multiple_of(2) || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(Error::new(
            ErrorKind::InvalidInput,
            format!("`{s}` is not hex"),
        ));
    }
    Ok((0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("checked hex"))
        .collect())
}

pub(crate) fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

pub(crate) fn render(v: &[u8], as_hex: bool) -> String {
    if as_hex {
        return hex(v);
    }
    match std::str::from_utf8(v) {
        Ok(s) => s.to_owned(),
        Err(_) => format!("x:{}", hex(v)),
    }
}

pub(crate) fn cell(v: &Value) -> String {
    match v {
        Value::Null => "NULL".into(),
        Value::Integer(i) => i.to_string(),
        Value::Real(r) => r.to_string(),
        Value::Text(s) => s.clone(),
        Value::Blob(b) => format!("x'{}'", hex(b)),
    }
}

pub(crate) fn to_json(v: &Value) -> serde_json::Value {
    match v {
        Value::Null => serde_json::Value::Null,
        Value::Integer(i) => (*i).into(),
        Value::Real(r) => serde_json::Number::from_f64(*r)
            .map(serde_json::Value::Number)
            .unwrap_or(serde_json::Value::Null),
        Value::Text(s) => s.clone().into(),
        Value::Blob(b) => hex(b).into(),
    }
}

pub(crate) fn print_table(
    out: &mut impl Write,
    columns: &[String],
    rows: &[amber::Row],
) -> Result<(), Error> {
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| r.values().iter().map(cell).collect())
        .collect();
    let mut widths: Vec<usize> = columns.iter().map(|c| c.chars().count()).collect();
    for r in &cells {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |vals: &[String]| {
        vals.iter()
            .zip(&widths)
            .map(|(v, w)| format!("{v:<w$}"))
            .collect::<Vec<_>>()
            .join(" | ")
    };
    writeln!(out, "{}", line(columns)).map_err(io)?;
    writeln!(
        out,
        "{}",
        widths
            .iter()
            .map(|w| "-".repeat(*w))
            .collect::<Vec<_>>()
            .join("-+-")
    )
    .map_err(io)?;
    for r in &cells {
        writeln!(out, "{}", line(r)).map_err(io)?;
    }
    Ok(())
}
