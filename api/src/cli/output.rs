//! How commands print what a node answered: JSON (the default, for
//! scripts and `jq`) or a table (`--output table`, for people).

use std::sync::OnceLock;

use clap::ValueEnum;
use serde_json::Value;

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq, Default)]
pub enum Output {
    #[default]
    Json,
    Table,
}

static FORMAT: OnceLock<Output> = OnceLock::new();

/// Chosen once, from `--output`, before any command prints.
pub fn set(format: Output) {
    let _ = FORMAT.set(format);
}

pub fn print(v: &Value) {
    match FORMAT.get().copied().unwrap_or_default() {
        Output::Json => out(&serde_json::to_string_pretty(v).unwrap_or_default()),
        Output::Table => out(table(v).trim_end_matches('\n')),
    }
}

/// Writes `text` and a newline to standard output. When the reader has
/// gone (`synod task list | head -1`), the command ends quietly with the
/// status a shell shows for SIGPIPE, instead of panicking as `println!`
/// does.
pub fn out(text: &str) {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    if let Err(e) = writeln!(stdout, "{text}").and_then(|()| stdout.flush()) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(141);
        }
        eprintln!("error: writing the output: {e}");
        std::process::exit(1);
    }
}

/// Columns that name a row come first, in this order.
const FIRST: [&str; 12] =
    ["id", "name", "username", "type", "state", "role", "tenant", "kind", "version", "dimension", "points", "metric"];

/// The widest a cell gets before it is cut (with `…`).
const CELL: usize = 48;

/// The rows of a listing: the answer itself when it is a list, else its one
/// field that is a list of objects (`{"tasks": [...], "next_cursor": ...}`).
fn rows(v: &Value) -> Option<&Vec<Value>> {
    if let Value::Array(items) = v {
        return Some(items);
    }
    let lists: Vec<&Vec<Value>> = v
        .as_object()?
        .values()
        .filter_map(|f| f.as_array())
        .filter(|a| a.first().is_some_and(Value::is_object) || a.is_empty())
        .collect();
    match lists.as_slice() {
        [one] => Some(one),
        _ => None,
    }
}

fn cell(v: Option<&Value>) -> String {
    let s = match v {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    };
    let s = s.replace(['\n', '\t'], " ");
    if s.chars().count() > CELL { format!("{}…", s.chars().take(CELL - 1).collect::<String>()) } else { s }
}

/// A listing as aligned columns (the union of the rows' fields, in the
/// order first seen); anything else as `field  value` lines. The fields
/// beside a listing (a cursor, a count) follow it.
pub fn table(v: &Value) -> String {
    let mut out = String::new();
    match rows(v) {
        Some(items) => {
            // Scalar fields only (nested ones are for --output json), the
            // naming ones first.
            let mut columns: Vec<String> = Vec::new();
            for item in items {
                for (k, f) in item.as_object().into_iter().flat_map(|o| o.iter()) {
                    if !f.is_object() && !f.is_array() && !columns.contains(k) {
                        columns.push(k.clone());
                    }
                }
            }
            columns.retain(|c| items.iter().all(|i| i.get(c).is_none_or(|f| !f.is_object() && !f.is_array())));
            let rank = |c: &String| FIRST.iter().position(|f| f == c).unwrap_or(FIRST.len());
            columns.sort_by_key(rank);
            if columns.is_empty() {
                columns.push("value".into());
            }
            let cells: Vec<Vec<String>> = items
                .iter()
                .map(|item| match item {
                    Value::Object(o) => columns.iter().map(|c| cell(o.get(c))).collect(),
                    other => vec![cell(Some(other))],
                })
                .collect();
            let widths: Vec<usize> = columns
                .iter()
                .enumerate()
                .map(|(i, c)| {
                    cells.iter().map(|r| r.get(i).map_or(0, |s| s.chars().count())).max().unwrap_or(0).max(c.len())
                })
                .collect();
            let line = |fields: Vec<&str>| -> String {
                let mut l = String::new();
                for (i, f) in fields.iter().enumerate() {
                    l.push_str(f);
                    if i + 1 < fields.len() {
                        l.push_str(&" ".repeat(widths[i] - f.chars().count() + 2));
                    }
                }
                l.trim_end().to_string() + "\n"
            };
            let header: Vec<String> = columns.iter().map(|c| c.to_uppercase()).collect();
            out.push_str(&line(header.iter().map(String::as_str).collect()));
            for r in &cells {
                out.push_str(&line(r.iter().map(String::as_str).collect()));
            }
            if let Value::Object(o) = v {
                for (k, f) in o.iter().filter(|(_, f)| !f.is_array() && !f.is_null()) {
                    out.push_str(&format!("{k}: {}\n", cell(Some(f))));
                }
            }
        }
        None => match v {
            Value::Object(o) => {
                let width = o.keys().map(|k| k.len()).max().unwrap_or(0);
                for (k, f) in o {
                    out.push_str(&format!("{k:width$}  {}\n", cell(Some(f))));
                }
            }
            other => out.push_str(&format!("{}\n", cell(Some(other)))),
        },
    }
    out
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_listing_becomes_aligned_columns_with_its_cursor_after() {
        let v = json!({"tasks": [{"id": "a", "state": "queued"}, {"id": "bbbb", "state": "succeeded", "attempts": 2}],
                       "next_cursor": "c1"});
        let t = table(&v);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines[0], "ID    STATE      ATTEMPTS");
        assert_eq!(lines[1], "a     queued");
        assert_eq!(lines[2], "bbbb  succeeded  2");
        assert_eq!(lines[3], "next_cursor: c1");
        // Nested fields are left to --output json; naming ones lead.
        let t = table(&json!([{"labels": {"a": "b"}, "state": "x", "id": "1"}]));
        assert_eq!(t.lines().next(), Some("ID  STATE"));
    }

    #[test]
    fn one_record_becomes_field_value_lines_and_long_cells_are_cut() {
        let long = "x".repeat(100);
        let t = table(&json!({"name": "docs", "note": long}));
        assert!(t.starts_with("name  docs\n"), "{t}");
        assert!(t.lines().nth(1).is_some_and(|l| l.ends_with('…') && l.chars().count() < 60), "{t}");
        // Control: two lists side by side are not guessed at.
        assert!(rows(&json!({"a": [{"x": 1}], "b": [{"y": 2}]})).is_none());
    }
}
