//! The generated directory listing (when a directory has no index file and listings are on).

use std::fmt::Write as _;
use std::time::SystemTime;

/// One directory entry to list.
#[derive(Debug, Clone)]
pub struct Entry {
    /// The file name.
    pub name: String,
    /// Whether it is a directory (listed with a trailing `/`).
    pub is_dir: bool,
    /// Size in bytes (files only).
    pub size: u64,
    /// Modification time.
    pub modified: Option<SystemTime>,
}

/// Escapes text for HTML element content and attribute values.
pub fn html_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Renders an HTML listing of `entries` (sorted: directories first, then by name) for `url_path`.
pub fn render(url_path: &str, entries: &mut [Entry]) -> String {
    entries.sort_by(|a, b| b.is_dir.cmp(&a.is_dir).then_with(|| a.name.cmp(&b.name)));
    let title = html_escape(url_path);
    let mut out = format!(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>Index of {title}</title></head>\n\
         <body><h1>Index of {title}</h1><table>\n<tr><th>Name</th><th>Size</th><th>Modified</th></tr>\n"
    );
    if url_path != "/" {
        out.push_str("<tr><td><a href=\"../\">../</a></td><td></td><td></td></tr>\n");
    }
    for e in entries.iter() {
        let slash = if e.is_dir { "/" } else { "" };
        let href = super::path::encode_segment(&e.name);
        let size = if e.is_dir { "-".to_string() } else { e.size.to_string() };
        let modified = e.modified.map(httpdate::fmt_http_date).unwrap_or_default();
        let _ = writeln!(
            out,
            "<tr><td><a href=\"{href}{slash}\">{}{slash}</a></td><td>{size}</td><td>{modified}</td></tr>",
            html_escape(&e.name)
        );
    }
    out.push_str("</table></body></html>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listing_escapes_and_orders() {
        let mut entries = vec![
            Entry { name: "b<script>.txt".into(), is_dir: false, size: 3, modified: None },
            Entry { name: "a dir".into(), is_dir: true, size: 0, modified: None },
        ];
        let html = render("/x/", &mut entries);
        assert!(html.contains("<a href=\"a%20dir/\">a dir/</a>"));
        assert!(html.contains("b&lt;script&gt;.txt"));
        assert!(!html.contains("<script>"));
        assert!(html.find("a dir").unwrap() < html.find("b&lt;").unwrap());
        assert!(html.contains("href=\"../\""));
    }
}
