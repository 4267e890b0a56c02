//! The reports page: the auditor API's report ([`auditor::report`]) and the
//! volume per organisation over time, drawn as plain SVG here (no script,
//! no chart library).

use std::fmt::Write as _;

use bytes::Bytes;
use serde_json::Value;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::form::{Form, local_time};
use super::html::{esc, input, label, page, row};
use crate::http::dto::ReportRequest;
use crate::http::{ApiError, App, Reply, auditor};

/// Time bins of the volume chart.
const BINS: i64 = 24;
/// Organisations drawn separately in the volume chart; the rest are "other".
const SERIES: usize = 5;
/// Fill colours of the series (the last is "other").
const PALETTE: [&str; SERIES + 1] = [
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#7f7f7f",
];

/// The report form's fields.
pub const REPORT_FIELDS: &[&str] = &["from", "to"];

/// `GET /console/reports` (`form` None: the last 24 hours) or
/// `POST /console/reports` (the form's range).
pub async fn reports(app: &App, form: Option<&Bytes>) -> Result<Reply, ApiError> {
    let f = match form {
        Some(b) => Form::parse(b, REPORT_FIELDS)?,
        None => Form::default(),
    };
    let req = ReportRequest {
        from: local_time(f.get("from")),
        to: local_time(f.get("to")),
        top: Some(10),
    };
    let report = auditor::report(app, req).await?.body;
    let from = report["from"].as_str().unwrap_or_default().to_owned();
    let to = report["to"].as_str().unwrap_or_default().to_owned();

    let mut main = String::from(
        "<form method=\"post\" action=\"/console/reports\" id=\"report-range\" class=\"inline\">\n",
    );
    main += &row(
        "from",
        "起（北京时间）",
        "From (China Standard Time)",
        &input("from", "datetime-local", None, ""),
    );
    main += &row(
        "to",
        "止（不含）",
        "To (exclusive)",
        &input("to", "datetime-local", None, ""),
    );
    let _ = write!(
        main,
        "<div class=\"row\"><button type=\"submit\">{}</button></div></form>\n<p>{} <code>{}</code> — <code>{}</code> (UTC)</p>\n",
        label("更新", "Update"),
        label("时间范围", "Range"),
        esc(&from),
        esc(&to)
    );

    main += &format!(
        "<h2>{}</h2>\n",
        label(
            "各机构访问量随时间变化",
            "Volume per organisation over time"
        )
    );
    main += &volume_chart(app, &from, &to).await?;

    main += &format!(
        "<h2>{}</h2>\n",
        label("各机构访问量", "Volume per organisation")
    );
    let volume: Vec<(String, f64)> = rows(&report["volume"])
        .map(|v| (who(v), v["total"].as_f64().unwrap_or(0.0)))
        .collect();
    main += &hbars("chart-volume", &volume, PALETTE[0]);

    main += &format!("<h2>{}</h2>\n", label("拒绝", "Denials"));
    let denied: Vec<(String, f64)> = rows(&report["denied"])
        .map(|d| {
            (
                format!("{} · {}", who(d), d["outcome"].as_str().unwrap_or("")),
                d["count"].as_f64().unwrap_or(0.0),
            )
        })
        .collect();
    main += &hbars("chart-denied", &denied, PALETTE[1]);

    main += &format!(
        "<h2>{}</h2>\n",
        label("异常与配额拒绝", "Anomalies and quota refusals")
    );
    let hourly: Vec<&Value> = rows(&report["anomalies"]["hourly"]).collect();
    let mut refusals: Vec<(String, f64)> = Vec::new();
    for h in &hourly {
        if let Some(n) = h["refused"].as_f64().filter(|n| *n > 0.0) {
            refusals.push((
                format!("{} · {}", who(h), h["hour"].as_str().unwrap_or("")),
                n,
            ));
        }
    }
    main += &hbars("chart-quota", &refusals, PALETTE[3]);
    main += &anomaly_table(&hourly, &report["anomalies"]["this_node"]);

    main += &format!(
        "<h2>{}</h2>\n",
        label("被查询最多的主体", "Most-queried subjects")
    );
    let top: Vec<(String, f64)> = rows(&report["top_subjects"])
        .map(|s| {
            let h = s["subject"].as_str().unwrap_or("");
            (
                format!("{} · {} orgs", h.get(..16).unwrap_or(h), s["organisations"]),
                s["queries"].as_f64().unwrap_or(0.0),
            )
        })
        .collect();
    main += &hbars("chart-subjects", &top, PALETTE[2]);

    Ok(super::page(page(
        ("报表", "Reports"),
        "/console/reports",
        &main,
    )))
}

fn rows(v: &Value) -> impl Iterator<Item = &Value> {
    v.as_array().into_iter().flatten()
}

/// "code name" of a report row's organisation.
fn who(v: &Value) -> String {
    match (v["org"].as_str(), v["name"].as_str()) {
        (Some(o), Some(n)) => format!("{o} {n}"),
        (Some(o), None) => o.to_owned(),
        _ => "(no organisation / 无机构)".to_owned(),
    }
}

/// The log's timestamp layout, `YYYY-MM-DDTHH:MM:SS.mmmZ` (UTC).
fn log_ts(t: OffsetDateTime) -> String {
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.millisecond()
    )
}

/// Stacked columns: per time bin, each organisation's request count.
async fn volume_chart(app: &App, from: &str, to: &str) -> Result<String, ApiError> {
    let (Ok(start), Ok(end)) = (
        OffsetDateTime::parse(from, &Rfc3339),
        OffsetDateTime::parse(to, &Rfc3339),
    ) else {
        return Ok(String::new());
    };
    let step = (end - start) / BINS as f64;
    if step <= time::Duration::ZERO {
        return Ok(String::new());
    }
    let mut edges: Vec<String> = (0..BINS).map(|i| log_ts(start + step * i as f64)).collect();
    edges.push(to.to_owned());
    // Per bin, per organisation (one query for all bins).
    let mut bins: Vec<Vec<(String, i64)>> = vec![Vec::new(); BINS as usize];
    let mut totals: Vec<(String, i64)> = Vec::new();
    for (bin, org, n) in app.store.audit_volume_bins(&edges).await? {
        let o = org.unwrap_or_else(|| "—".into());
        match totals.iter_mut().find(|(k, _)| *k == o) {
            Some((_, t)) => *t += n,
            None => totals.push((o.clone(), n)),
        }
        if let Some(b) = bins.get_mut(bin) {
            b.push((o, n));
        }
    }
    totals.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    let named: Vec<String> = totals.iter().take(SERIES).map(|(o, _)| o.clone()).collect();
    let series_of = |org: &str| named.iter().position(|n| n == org).unwrap_or(SERIES);
    let max = bins
        .iter()
        .map(|b| b.iter().map(|(_, n)| n).sum::<i64>())
        .max()
        .unwrap_or(0)
        .max(1);
    let (w, h, left, bottom, top) = (760.0, 260.0, 48.0, 40.0, 10.0);
    let plot_h = h - bottom - top;
    let col_w = (w - left - 10.0) / BINS as f64;
    let mut svg = format!(
        "<svg id=\"chart-timeline\" class=\"chart\" viewBox=\"0 0 {w} {}\" role=\"img\" aria-label=\"volume per organisation over time\">\n",
        h + 20.0 * (named.len() as f64 + 1.0)
    );
    let _ = writeln!(
        svg,
        "<line x1=\"{left}\" y1=\"{top}\" x2=\"{left}\" y2=\"{}\" stroke=\"#444\"/><line x1=\"{left}\" y1=\"{y}\" x2=\"{}\" y2=\"{y}\" stroke=\"#444\"/>\
<text x=\"{}\" y=\"{}\" text-anchor=\"end\" font-size=\"11\">{max}</text><text x=\"{}\" y=\"{y}\" text-anchor=\"end\" font-size=\"11\">0</text>",
        h - bottom,
        w - 10.0,
        left - 4.0,
        top + 10.0,
        left - 4.0,
        y = h - bottom,
    );
    for (i, bin) in bins.iter().enumerate() {
        let x = left + col_w * i as f64 + 1.0;
        let mut y = h - bottom;
        let mut stack = [0i64; SERIES + 1];
        for (o, n) in bin {
            stack[series_of(o)] += n;
        }
        for (s, n) in stack.iter().enumerate().filter(|(_, n)| **n > 0) {
            let bh = plot_h * *n as f64 / max as f64;
            y -= bh;
            let _ = writeln!(
                svg,
                "<rect x=\"{x:.1}\" y=\"{y:.1}\" width=\"{:.1}\" height=\"{bh:.1}\" fill=\"{}\"><title>{} {n}</title></rect>",
                (col_w - 2.0).max(1.0),
                PALETTE[s],
                esc(edges[i].get(..16).unwrap_or(&edges[i])),
            );
        }
        if i % 4 == 0 {
            let _ = writeln!(
                svg,
                "<text x=\"{x:.1}\" y=\"{:.1}\" font-size=\"10\">{}</text>",
                h - bottom + 14.0,
                esc(edges[i].get(5..16).unwrap_or(&edges[i]))
            );
        }
    }
    let mut legend: Vec<String> = named.iter().map(|o| org_label(app, o)).collect();
    if totals.len() > SERIES {
        legend.push("其他 other".into());
    }
    for (i, name) in legend.iter().enumerate() {
        let y = h + 20.0 * i as f64;
        let c = if i < named.len() {
            PALETTE[i]
        } else {
            PALETTE[SERIES]
        };
        let _ = writeln!(
            svg,
            "<rect x=\"{left}\" y=\"{:.1}\" width=\"12\" height=\"12\" fill=\"{c}\"/><text x=\"{}\" y=\"{:.1}\" font-size=\"12\">{}</text>",
            y - 10.0,
            left + 18.0,
            y,
            esc(name)
        );
    }
    if named.is_empty() {
        let _ = writeln!(
            svg,
            "<text x=\"{}\" y=\"{}\" font-size=\"13\">无数据 no data</text>",
            left + 10.0,
            top + 40.0
        );
    }
    svg.push_str("</svg>\n");
    Ok(svg)
}

fn org_label(app: &App, code: &str) -> String {
    let name = crate::ids::CreditCode::parse(code)
        .ok()
        .and_then(|c| app.policy.organisation(&c).map(|o| o.name.clone()));
    match name {
        Some(n) => format!("{code} {n}"),
        None => code.to_owned(),
    }
}

/// Horizontal bars, one per item, labelled and with its value.
fn hbars(id: &str, items: &[(String, f64)], colour: &str) -> String {
    if items.is_empty() {
        return format!(
            "<p class=\"empty\" id=\"{id}\">{}</p>\n",
            label("此时间范围内没有数据。", "Nothing in this range.")
        );
    }
    let max = items.iter().map(|(_, v)| *v).fold(1.0, f64::max);
    let (w, bar, gap, text_w) = (960.0, 18.0, 6.0, 520.0);
    let h = (bar + gap) * items.len() as f64 + gap;
    let mut svg =
        format!("<svg id=\"{id}\" class=\"chart\" viewBox=\"0 0 {w} {h}\" role=\"img\">\n");
    for (i, (name, v)) in items.iter().enumerate() {
        let y = gap + (bar + gap) * i as f64;
        let bw = ((w - text_w - 60.0) * v / max).max(1.0);
        let _ = writeln!(
            svg,
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\" font-size=\"12\">{}</text>\
<rect x=\"{text_w}\" y=\"{y:.1}\" width=\"{bw:.1}\" height=\"{bar}\" fill=\"{colour}\"/>\
<text x=\"{:.1}\" y=\"{:.1}\" font-size=\"12\">{v}</text>",
            text_w - 6.0,
            y + 13.0,
            esc(name),
            text_w + bw + 4.0,
            y + 13.0,
        );
    }
    svg + "</svg>\n"
}

fn anomaly_table(hourly: &[&Value], this_node: &Value) -> String {
    let mut t = String::new();
    if !hourly.is_empty() {
        let _ = writeln!(
            t,
            "<table class=\"results\" id=\"anomalies\"><thead><tr><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th></tr></thead><tbody>",
            label("机构", "Organisation"),
            label("小时", "Hour"),
            label("类型", "Kind"),
            label("数值", "Value"),
            label("阈值", "Limit"),
            label("配额拒绝", "Quota refusals"),
        );
        for h in hourly {
            let _ = writeln!(
                t,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td></tr>",
                esc(&who(h)),
                esc(h["hour"].as_str().unwrap_or("")),
                esc(h["kind"].as_str().unwrap_or("")),
                h["value"],
                h["limit"],
                h["refused"].as_i64().unwrap_or(0),
            );
        }
        t += "</tbody></table>\n";
    }
    let flagged: Vec<&Value> = rows(this_node)
        .filter(|s| s["flags"].as_array().is_some_and(|f| !f.is_empty()))
        .collect();
    let _ = writeln!(
        t,
        "<p>{} <strong id=\"flagged-count\">{}</strong></p>",
        label(
            "本节点当前小时被标记的机构",
            "Organisations flagged on this node this hour"
        ),
        flagged.len()
    );
    for s in flagged {
        let flags: Vec<&str> = rows(&s["flags"]).filter_map(Value::as_str).collect();
        let _ = writeln!(
            t,
            "<p class=\"flag\">{} — {}</p>",
            esc(&who(s)),
            esc(&flags.join(", "))
        );
    }
    t
}
