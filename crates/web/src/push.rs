//! Which resources an HTML page links that are worth pushing over HTTP/2: stylesheets
//! (`<link rel=stylesheet href>`), scripts (`<script src>`) and images (`<img src>`) on the same
//! site. A small tag scanner, not an HTML parser: it only has to find attribute values.

/// Most resources pushed for one page.
pub const MAX_PUSH: usize = 16;

/// The same-site paths linked by `html`, resolved against the page's URL path `page`.
pub fn linked_resources(html: &[u8], page: &str) -> Vec<String> {
    let text = String::from_utf8_lossy(html);
    let mut out: Vec<String> = Vec::new();
    let mut rest: &str = &text;
    while let Some(start) = rest.find('<') {
        rest = &rest[start + 1..];
        let end = rest.find('>').unwrap_or(rest.len());
        let tag = &rest[..end];
        rest = &rest[end..];
        let name: String =
            tag.chars().take_while(|c| c.is_ascii_alphanumeric()).collect::<String>().to_ascii_lowercase();
        let link = match name.as_str() {
            "img" | "script" => attr(tag, "src"),
            "link" => {
                let rel = attr(tag, "rel").unwrap_or_default().to_ascii_lowercase();
                if rel.split_whitespace().any(|r| r == "stylesheet" || r == "icon") {
                    attr(tag, "href")
                } else {
                    None
                }
            }
            _ => None,
        };
        if let Some(path) = link.and_then(|l| resolve(page, &l))
            && !out.contains(&path)
        {
            out.push(path);
            if out.len() >= MAX_PUSH {
                break;
            }
        }
    }
    out
}

/// The value of attribute `name` in a tag's text (quoted or not).
fn attr(tag: &str, name: &str) -> Option<String> {
    let lower = tag.to_ascii_lowercase();
    let mut from = 0;
    while let Some(pos) = lower[from..].find(name) {
        let at = from + pos;
        from = at + name.len();
        let before_ok = at > 0 && lower.as_bytes()[at - 1].is_ascii_whitespace();
        let after = lower[from..].trim_start();
        if !before_ok || !after.starts_with('=') {
            continue;
        }
        let value_start = tag.len() - after.len() + 1;
        let v = tag[value_start..].trim_start();
        return Some(match v.chars().next() {
            Some(q @ ('"' | '\'')) => v[1..].split(q).next().unwrap_or("").to_string(),
            _ => v.split(|c: char| c.is_whitespace() || c == '>').next().unwrap_or("").to_string(),
        });
    }
    None
}

/// Resolves a link against the page path; `None` for other sites, fragments, queries, data: URLs.
fn resolve(page: &str, link: &str) -> Option<String> {
    let link = link.trim();
    if link.is_empty() || link.starts_with("//") || link.starts_with('#') || link.contains('?') {
        return None;
    }
    if let Some(colon) = link.find(':')
        && !link[..colon].contains('/')
    {
        return None; // has a scheme
    }
    let joined = if link.starts_with('/') {
        link.to_string()
    } else {
        let dir = &page[..page.rfind('/').map_or(0, |i| i + 1)];
        format!("{dir}{link}")
    };
    // Normalise . and .. so the pushed path is the one the client would request.
    let mut segs: Vec<&str> = Vec::new();
    for s in joined.split('/') {
        match s {
            "" | "." => {}
            ".." => {
                segs.pop();
            }
            s => segs.push(s),
        }
    }
    Some(format!("/{}", segs.join("/")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_styles_scripts_images() {
        let html = br#"<html><head><link rel="stylesheet" href="style.css"><link rel=icon href=/favicon.ico>
            <link rel="alternate" href="feed.xml"><script src='/js/app.js'></script></head>
            <body><img SRC="img/a.jpg"><img src="http://other/x.png"><img src="//cdn/x.png">
            <a href="page2.html">next</a><img src="../up.png"><img src="img/a.jpg"></body></html>"#;
        assert_eq!(
            linked_resources(html, "/dept/home.html"),
            vec!["/dept/style.css", "/favicon.ico", "/js/app.js", "/dept/img/a.jpg", "/up.png"]
        );
    }

    #[test]
    fn bounded_and_robust() {
        let many: String = (0..40).map(|i| format!("<img src=\"i{i}.png\">")).collect();
        assert_eq!(linked_resources(many.as_bytes(), "/").len(), MAX_PUSH);
        assert!(linked_resources(b"<img src=", "/").is_empty());
        assert!(linked_resources(b"<<<>>><img", "/").is_empty());
    }
}
