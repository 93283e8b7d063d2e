//! Reading RESP replies: string and integer values, stream entries (XRANGE, XCLAIM,
//! XREADGROUP in RESP2 and RESP3) and XPENDING rows. Generic: what an entry's fields mean
//! is for its reader (the queue's codec, the stream source) to decide.

use std::collections::HashMap;

use redis::Value;

/// A stream entry's fields.
pub type Fields = HashMap<String, Vec<u8>>;

/// A string-like reply (bulk or simple string, or an integer as its digits) as bytes.
pub fn as_bytes(v: &Value) -> Option<Vec<u8>> {
    match v {
        Value::BulkString(b) => Some(b.clone()),
        Value::SimpleString(s) => Some(s.as_bytes().to_vec()),
        Value::Int(i) => Some(i.to_string().into_bytes()),
        _ => None,
    }
}

/// An integer reply, or a string reply holding one.
pub fn as_u64(v: &Value) -> Option<u64> {
    match v {
        Value::Int(i) => u64::try_from(*i).ok(),
        other => as_bytes(other)
            .and_then(|b| String::from_utf8(b).ok())
            .and_then(|s| s.parse().ok()),
    }
}

/// A string-like reply as UTF-8 text (`None` when it is not valid UTF-8).
pub fn as_string(v: &Value) -> Option<String> {
    as_bytes(v).and_then(|b| String::from_utf8(b).ok())
}

/// A string reply, taking its buffer.
pub fn into_string(v: Value) -> Option<String> {
    match v {
        Value::BulkString(b) => String::from_utf8(b).ok(),
        Value::SimpleString(s) => Some(s),
        other => as_string(&other),
    }
}

/// `[[id, [f, v, …]], …]` (or `[id, nil]` for deleted entries), each entry's field/value list
/// as it came.
pub fn raw_entries(v: Value) -> Vec<(String, Option<Vec<Value>>)> {
    let Value::Array(items) = v else {
        return Vec::new();
    };
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        let Value::Array(mut pair) = item else {
            continue;
        };
        if pair.is_empty() {
            continue;
        }
        let fields_v = if pair.len() > 1 {
            pair.swap_remove(1)
        } else {
            Value::Nil
        };
        let Some(id) = into_string(pair.swap_remove(0)) else {
            continue;
        };
        let fields = match fields_v {
            Value::Array(kv) => Some(kv),
            _ => None,
        };
        out.push((id, fields));
    }
    out
}

/// An entry's field/value list as a map (the last value wins).
pub fn fields_of(kv: Vec<Value>) -> Fields {
    let mut m = HashMap::with_capacity(kv.len() / 2);
    let mut it = kv.into_iter();
    while let (Some(k), Some(v)) = (it.next(), it.next()) {
        if let (Some(k), Value::BulkString(v)) = (into_string(k), v) {
            m.insert(k, v);
        }
    }
    m
}

/// `[[id, [f, v, …]], …]` (or `[id, nil]` for deleted entries).
pub fn parse_entries(v: Value) -> Vec<(String, Option<Fields>)> {
    raw_entries(v)
        .into_iter()
        .map(|(id, kv)| (id, kv.map(fields_of)))
        .collect()
}

/// The entries of an XREADGROUP reply: `[[stream, entries]]` (RESP2) or a map (RESP3); nil
/// on timeout.
pub fn raw_read_reply(v: Value) -> Vec<(String, Option<Vec<Value>>)> {
    match v {
        Value::Array(streams) => streams
            .into_iter()
            .flat_map(|s| match s {
                Value::Array(mut kv) if kv.len() == 2 => raw_entries(kv.swap_remove(1)),
                _ => Vec::new(),
            })
            .collect(),
        Value::Map(kv) => kv.into_iter().flat_map(|(_, e)| raw_entries(e)).collect(),
        _ => Vec::new(),
    }
}

/// XREADGROUP reply: `[[stream, entries]]` (RESP2) or a map (RESP3); nil on timeout.
pub fn parse_read_reply(v: Value) -> Vec<(String, Option<Fields>)> {
    raw_read_reply(v)
        .into_iter()
        .map(|(id, kv)| (id, kv.map(fields_of)))
        .collect()
}

/// XPENDING summary: `[count, min, max, [[consumer, count], …]]`.
pub fn pending_consumers(v: &Value) -> Vec<(String, u64)> {
    let Value::Array(parts) = v else {
        return Vec::new();
    };
    let Some(Value::Array(consumers)) = parts.get(3) else {
        return Vec::new();
    };
    consumers
        .iter()
        .filter_map(|c| match c {
            Value::Array(pair) if pair.len() == 2 => {
                Some((as_string(&pair[0])?, as_u64(&pair[1])?))
            }
            _ => None,
        })
        .collect()
}

/// XPENDING extended: `[[id, consumer, idle, deliveries], …]`.
pub fn pending_ids(v: &Value) -> Vec<String> {
    let Value::Array(rows) = v else {
        return Vec::new();
    };
    rows.iter()
        .filter_map(|r| match r {
            Value::Array(cols) => cols.first().and_then(as_string),
            _ => None,
        })
        .collect()
}
