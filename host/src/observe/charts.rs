//! Charts drawn as inline SVG, for reports that open from disk with nothing to fetch: the flow of a pass
//! through the chain, and the rate over time with the run's marks. Every text that reaches a chart goes
//! through [`esc`].

use std::fmt::Write as _;

use crate::pipeline::module_stats::ModuleSnapshot;
use crate::pipeline::telemetry::{Mark, MarkKind, Sample};

/// `text` escaped for HTML and SVG text and attribute values.
pub fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c if c.is_control() && c != '\n' && c != '\t' => {
                let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out
}

/// Colours of the verdicts, the same in every chart and table.
pub const REPLAY: &str = "#2e7d32";
/// Skip.
pub const SKIP: &str = "#f9a825";
/// Discard.
pub const DISCARD: &str = "#6d4c41";
/// Failed.
pub const FAILED: &str = "#c62828";

/// The flow of a pass through the chain: one bar per module, split into what it passed on (replay), skipped,
/// discarded and failed on; widths share one scale (the messages read).
pub fn flow(read: u64, modules: &[ModuleSnapshot]) -> String {
    let width = 760.0;
    let label_w = 180.0;
    let bar_w = width - label_w - 10.0;
    let row_h = 34.0;
    let height = row_h * (modules.len() as f64 + 1.0) + 10.0;
    let scale = |n: u64| if read == 0 { 0.0 } else { bar_w * n as f64 / read as f64 };
    let mut svg = format!(
        r#"<svg class="chart" role="img" aria-label="flow through the chain" viewBox="0 0 {width} {height}" width="{width}" height="{height}">"#
    );
    let mut y = 6.0;
    let _ = write!(
        svg,
        r##"<text x="0" y="{ty}">DLQ (read)</text><rect x="{label_w}" y="{y}" width="{w:.1}" height="22" fill="#455a64"><title>read: {read}</title></rect><text x="{tx:.1}" y="{ty}" class="in">{read}</text>"##,
        ty = y + 16.0,
        w = scale(read),
        tx = label_w + 4.0,
    );
    for module in modules {
        y += row_h;
        let _ = write!(
            svg,
            r#"<text x="0" y="{}">{}</text>"#,
            y + 16.0,
            esc(&crate::core::text::clip(&module.name, 24))
        );
        let mut x = label_w;
        for (what, n, colour) in [
            ("replay", module.replay, REPLAY),
            ("skip", module.skip, SKIP),
            ("discard", module.discard, DISCARD),
            ("failed", module.failed(), FAILED),
        ] {
            let w = scale(n);
            if n == 0 {
                continue;
            }
            let _ = write!(
                svg,
                r#"<rect x="{x:.1}" y="{y}" width="{w:.1}" height="22" fill="{colour}"><title>{}: {what} {n}</title></rect>"#,
                esc(&module.name)
            );
            if w > 40.0 {
                let _ = write!(
                    svg,
                    r#"<text x="{:.1}" y="{}" class="in">{n}</text>"#,
                    x + 4.0,
                    y + 16.0
                );
            }
            x += w;
        }
    }
    svg.push_str("</svg>");
    svg
}

/// Messages per second over the run: read (grey) and confirmed replays (green), with the canary gate and
/// any pause or stop marked as vertical lines.
pub fn rate(samples: &[Sample], marks: &[Mark]) -> String {
    let (width, height, pad) = (760.0, 220.0, 36.0);
    let mut points: Vec<(f64, f64, f64)> = Vec::new(); // (secs, read/s, replayed/s)
    for pair in samples.windows(2) {
        let dt = (pair[1].secs - pair[0].secs).max(1e-3);
        points.push((
            pair[1].secs,
            pair[1].read.saturating_sub(pair[0].read) as f64 / dt,
            pair[1].replayed.saturating_sub(pair[0].replayed) as f64 / dt,
        ));
    }
    let end = samples.last().map_or(1.0, |s| s.secs).max(1.0);
    let top = points.iter().map(|p| p.1.max(p.2)).fold(1.0_f64, f64::max).max(1.0);
    let x = |secs: f64| pad + (width - 2.0 * pad) * secs / end;
    let y = |rate: f64| height - pad - (height - 2.0 * pad) * rate / top;
    let mut svg = format!(
        r##"<svg class="chart" role="img" aria-label="rate over time" viewBox="0 0 {width} {height}" width="{width}" height="{height}"><line x1="{pad}" y1="{b}" x2="{r}" y2="{b}" stroke="#999"/><line x1="{pad}" y1="{pad}" x2="{pad}" y2="{b}" stroke="#999"/><text x="2" y="{t}" class="axis">{top:.0}/s</text><text x="{r}" y="{bl}" class="axis" text-anchor="end">{end:.0} s</text>"##,
        b = height - pad,
        r = width - pad,
        t = pad + 4.0,
        bl = height - 10.0,
    );
    for (series, colour, name) in [(1usize, "#90a4ae", "read"), (2, REPLAY, "replayed")] {
        let line: Vec<String> = points
            .iter()
            .map(|p| {
                let v = if series == 1 { p.1 } else { p.2 };
                format!("{:.1},{:.1}", x(p.0), y(v))
            })
            .collect();
        if !line.is_empty() {
            let _ = write!(
                svg,
                r#"<polyline fill="none" stroke="{colour}" stroke-width="2" points="{}"><title>{name} per second</title></polyline>"#,
                line.join(" ")
            );
        }
    }
    for mark in marks {
        let (label, colour) = match mark.kind {
            MarkKind::GateStarted => ("canary out: gate", "#1565c0"),
            MarkKind::GatePassed => ("gate passed", "#1565c0"),
            MarkKind::GateFailed => ("gate failed", FAILED),
            MarkKind::Paused => ("paused", "#6a1b9a"),
            MarkKind::Resumed => ("resumed", "#6a1b9a"),
            MarkKind::Stopping => ("stop", FAILED),
        };
        let mx = x(mark.secs.min(end));
        let _ = write!(
            svg,
            r#"<line x1="{mx:.1}" y1="{pad}" x2="{mx:.1}" y2="{b}" stroke="{colour}" stroke-dasharray="4 3"><title>{label} at {s:.1} s</title></line><text x="{tx:.1}" y="{ty}" class="mark" fill="{colour}">{label}</text>"#,
            b = height - pad,
            s = mark.secs,
            tx = mx + 3.0,
            ty = pad + 12.0,
        );
    }
    svg.push_str("</svg>");
    svg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_leaves_no_markup_and_no_control_characters() {
        assert_eq!(
            esc("</svg><script>alert('x')</script>&\u{1b}"),
            "&lt;/svg&gt;&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&amp;\\u{1b}"
        );
    }

    #[test]
    fn charts_are_well_formed_with_nothing_to_draw() {
        for svg in [flow(0, &[]), rate(&[], &[])] {
            assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"), "{svg}");
            assert!(!svg.contains("NaN") && !svg.contains("inf"), "{svg}");
        }
    }
}
