//! What hookctl prints, and how it fails: tables, JSON, exit statuses.

/// Exit statuses: 0 ok, 1 invalid input or refused, 2 usage, 3 hookd unreachable, 4 not found.
pub const EXIT_INVALID: u8 = 1;
pub const EXIT_UNREACHABLE: u8 = 3;
pub const EXIT_NOT_FOUND: u8 = 4;

/// A command that failed: its exit status and message.
pub struct Failure(pub u8, pub String);

/// Command output, or why there is none.
pub type Outcome = Result<String, Failure>;

pub fn table(rows: &[Vec<String>]) -> String {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..cols)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for r in rows {
        let line: Vec<String> = r
            .iter()
            .enumerate()
            .map(|(i, s)| format!("{s:<w$}", w = widths[i]))
            .collect();
        out += line.join("  ").trim_end();
        out.push('\n');
    }
    out
}

pub fn json<T: serde::Serialize>(v: &T) -> Result<String, Failure> {
    serde_json::to_string_pretty(v).map_err(|e| Failure(EXIT_INVALID, e.to_string()))
}

/// The contents of FILE, or stdin for "-", up to hookd's size limit.
pub fn read_input(file: &str) -> Result<String, Failure> {
    use std::io::Read;
    let mut xml = String::new();
    let limit = hookd_model::xml_tree::MAX_XML_BYTES as u64 + 1;
    let read = if file == "-" {
        std::io::stdin().take(limit).read_to_string(&mut xml)
    } else {
        std::fs::File::open(file).and_then(|f| f.take(limit).read_to_string(&mut xml))
    };
    read.map_err(|e| Failure(EXIT_INVALID, format!("{file}: {e}")))?;
    Ok(xml)
}
