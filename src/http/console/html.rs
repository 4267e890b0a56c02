//! Server-rendered HTML for the console: escaping, the page frame and the
//! bilingual labels. Pages carry no inline script or style (the
//! Content-Security-Policy in [`super::CSP`] forbids both); behaviour is in
//! `console/console.js`, looks in `console/console.css`.

use std::fmt::Write as _;

/// Escape text for HTML element content and double-quoted attributes.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A label in both languages: `中文 English`.
pub fn label(zh: &str, en: &str) -> String {
    format!(
        "<span lang=\"zh-CN\">{}</span> <span lang=\"en\" class=\"en\">{}</span>",
        esc(zh),
        esc(en)
    )
}

/// The navigation entries: path, Chinese, English.
const NAV: [(&str, &str, &str); 4] = [
    ("/console/", "日志检索", "Log search"),
    ("/console/reports", "报表", "Reports"),
    (
        "/console/objections/overdue",
        "逾期异议",
        "Overdue objections",
    ),
    ("/console/export", "导出", "Export"),
];

/// A whole page: `title` in both languages, `current` the navigation path
/// it belongs to, `main` the already-escaped content.
pub fn page(title: (&str, &str), current: &str, main: &str) -> String {
    let mut nav = String::new();
    for (href, zh, en) in NAV {
        let cls = if href == current {
            " class=\"current\""
        } else {
            ""
        };
        let _ = write!(nav, "<a href=\"{href}\"{cls}>{}</a>", label(zh, en));
    }
    format!(
        "<!DOCTYPE html>\n<html lang=\"zh-CN\">\n<head>\n<meta charset=\"utf-8\">\n\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
<title>{zh} {en} · credgate 审计控制台 auditor console</title>\n\
<link rel=\"stylesheet\" href=\"/console/assets/console.css\">\n\
<link rel=\"icon\" href=\"/console/assets/favicon.svg\" type=\"image/svg+xml\">\n\
<script src=\"/console/assets/console.js\" defer></script>\n</head>\n<body>\n\
<header><span class=\"brand\">credgate {brand}</span><nav>{nav}</nav></header>\n\
<main>\n<h1>{h1}</h1>\n{main}</main>\n\
<footer>{footer}</footer>\n</body>\n</html>\n",
        zh = esc(title.0),
        en = esc(title.1),
        brand = label("审计控制台", "auditor console"),
        h1 = label(title.0, title.1),
        footer = label(
            "每次访问本控制台都记入审计日志。",
            "Every request to this console is itself recorded in the audit log."
        ),
    )
}

/// A `<select>` with an empty "any" option first; `options` are
/// (value, Chinese, English); `selected` the current value.
pub fn select(name: &str, options: &[(&str, &str, &str)], selected: Option<&str>) -> String {
    let mut s =
        format!("<select name=\"{name}\" id=\"f-{name}\"><option value=\"\">全部 any</option>");
    for (value, zh, en) in options {
        let sel = if Some(*value) == selected {
            " selected"
        } else {
            ""
        };
        let text = if zh.is_empty() && en.is_empty() {
            esc(value)
        } else {
            format!("{} {}", esc(zh), esc(en))
        };
        let _ = write!(
            s,
            "<option value=\"{v}\"{sel}>{text}</option>",
            v = esc(value)
        );
    }
    s.push_str("</select>");
    s
}

/// A `<select>` without an "any" option.
pub fn select_required(
    name: &str,
    options: &[(&str, &str, &str)],
    selected: Option<&str>,
) -> String {
    let mut s = format!("<select name=\"{name}\" id=\"f-{name}\">");
    for (value, zh, en) in options {
        let sel = if Some(*value) == selected {
            " selected"
        } else {
            ""
        };
        let _ = write!(s, "<option value=\"{value}\"{sel}>{zh} {en}</option>");
    }
    s + "</select>"
}

/// A labelled form row around `control` for the field `name`.
pub fn row(name: &str, zh: &str, en: &str, control: &str) -> String {
    format!(
        "<div class=\"row\"><label for=\"f-{name}\">{}</label>{control}</div>\n",
        label(zh, en)
    )
}

/// A text input.
pub fn input(name: &str, kind: &str, value: Option<&str>, extra: &str) -> String {
    format!(
        "<input type=\"{kind}\" name=\"{name}\" id=\"f-{name}\" value=\"{}\"{extra}>",
        esc(value.unwrap_or(""))
    )
}

/// A hidden input (only when there is a value).
pub fn hidden(name: &str, value: Option<&str>) -> String {
    match value {
        Some(v) => format!(
            "<input type=\"hidden\" name=\"{name}\" value=\"{}\">",
            esc(v)
        ),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_covers_markup_and_attributes() {
        assert_eq!(
            esc("<script>\"x\"&'y'</script>"),
            "&lt;script&gt;&quot;x&quot;&amp;&#39;y&#39;&lt;/script&gt;"
        );
        let p = page(("标题", "Title <b>"), "/console/", "<p>x</p>");
        assert!(p.contains("Title &lt;b&gt;"));
        assert!(!p.contains("<script>"), "no inline script");
        assert!(!p.contains("style="), "no inline style");
    }
}
