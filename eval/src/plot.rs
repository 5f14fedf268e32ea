//! A hand-written SVG of ΔPPL against bits per weight: one panel per model, one series per
//! scheme family, log-scaled ΔPPL. Generated from sweep reports, never drawn by hand.

use std::fmt::Write as _;

use crate::sweep::SweepReport;

const PANEL_W: f64 = 380.0;
const PANEL_H: f64 = 300.0;
const MARGIN_L: f64 = 62.0;
const MARGIN_T: f64 = 58.0;
const GAP: f64 = 40.0;
/// Room under the legend rows for two lines of notes.
const LEGEND_H: f64 = 44.0;
const LEGEND_COL: f64 = 215.0;

/// Colour, dash and marker of a series, stable across models: a `+f16emb` series takes its
/// base family's colour, a dotted line and square markers.
fn style(family: &str) -> (&'static str, &'static str, bool) {
    if let Some(base) = family.strip_suffix("+f16emb") {
        return (style(base).0, "1,3", true);
    }
    let (color, dash) = match family {
        "m0e4-search" => ("#d62728", ""),
        "m0e4-search+imp" => ("#9467bd", ""),
        "m0e4-minmax" => ("#1f77b4", "5,3"),
        "q4_0" => ("#2ca02c", ""),
        "int4-zp" => ("#ff7f0e", "2,2"),
        "q4_1-minmax" => ("#8c564b", "6,2,2,2"),
        "q4_1-search" => ("#e377c2", "6,2,2,2"),
        _ => ("#7f7f7f", "1,2"),
    };
    (color, dash, false)
}

/// A circle, or a square when `square`, centred on `(x, y)`, with an optional tooltip.
fn marker(x: f64, y: f64, color: &str, fill: &str, square: bool, title: &str) -> String {
    let title = if title.is_empty() {
        String::new()
    } else {
        format!("<title>{title}</title>")
    };
    if square {
        format!(
            r#"<rect x="{:.1}" y="{:.1}" width="8" height="8" fill="{fill}" stroke="{color}" stroke-width="1.5">{title}</rect>"#,
            x - 4.0,
            y - 4.0
        )
    } else {
        format!(
            r#"<circle cx="{x:.1}" cy="{y:.1}" r="4" fill="{fill}" stroke="{color}" stroke-width="1.5">{title}</circle>"#
        )
    }
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The SVG document. ΔPPL values at or below the floor of the axis (the decade under the
/// smallest positive value, at least 0.01 %) are drawn on the floor as hollow markers.
pub fn delta_ppl_svg(reports: &[SweepReport], title: &str) -> String {
    let rows = || reports.iter().flat_map(|r| &r.rows);
    let (mut x0, mut x1) = rows().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), r| {
        (a.min(r.bits_per_weight), b.max(r.bits_per_weight))
    });
    if !x0.is_finite() {
        (x0, x1) = (4.0, 5.0);
    }
    let pad = ((x1 - x0) * 0.06).max(0.05);
    let (x0, x1) = (x0 - pad, x1 + pad);
    let min_pos = rows()
        .map(|r| r.delta_ppl_pct)
        .filter(|&d| d > 0.0)
        .fold(f64::INFINITY, f64::min);
    let max_v = rows().map(|r| r.delta_ppl_pct).fold(1.0, f64::max);
    let lo = if min_pos.is_finite() {
        min_pos.log10().floor().max(-2.0)
    } else {
        -1.0
    };
    let hi = (max_v.log10() + 0.12).max(lo + 1.0);
    let n = reports.len().max(1) as f64;
    let width = MARGIN_L + n * PANEL_W + (n - 1.0) * GAP + 20.0;
    let cols = (((width - MARGIN_L) / LEGEND_COL) as usize).max(1);
    let n_fams = {
        let mut f: Vec<&str> = rows().map(|r| r.family.as_str()).collect();
        f.sort();
        f.dedup();
        f.len()
    };
    let height = MARGIN_T + PANEL_H + 50.0 + LEGEND_H + n_fams.div_ceil(cols) as f64 * 18.0;
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0}" height="{height:.0}" viewBox="0 0 {width:.0} {height:.0}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(
        s,
        r#"<rect width="100%" height="100%" fill="white"/><text x="{:.0}" y="22" font-size="16" text-anchor="middle">{}</text>"#,
        width / 2.0,
        esc(title)
    );
    let mut families: Vec<String> = Vec::new();
    for (pi, rep) in reports.iter().enumerate() {
        let left = MARGIN_L + pi as f64 * (PANEL_W + GAP);
        let px = |b: f64| left + (b - x0) / (x1 - x0) * PANEL_W;
        let py = |d: f64| {
            let v = d.max(10f64.powf(lo)).log10();
            MARGIN_T + PANEL_H - (v - lo) / (hi - lo) * PANEL_H
        };
        let name = rep.model.rsplit('/').find(|p| !p.is_empty()).unwrap_or("");
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="middle" font-size="13">{} (base PPL {:.3}, {} × {})</text>"#,
            left + PANEL_W / 2.0,
            MARGIN_T - 10.0,
            esc(name),
            rep.base_ppl,
            rep.windows,
            rep.ctx
        );
        let _ = writeln!(
            s,
            r##"<rect x="{left:.1}" y="{MARGIN_T:.1}" width="{PANEL_W}" height="{PANEL_H}" fill="none" stroke="#444"/>"##
        );
        // Grid and labels at 1, 2 and 5 times each decade.
        for e in (lo as i32)..=(hi.ceil() as i32) {
            for m in [1.0, 2.0, 5.0] {
                let v = m * 10f64.powi(e);
                if v.log10() > hi + 1e-9 {
                    continue;
                }
                let y = py(v);
                let _ = writeln!(
                    s,
                    r##"<line x1="{left:.1}" x2="{:.1}" y1="{y:.1}" y2="{y:.1}" stroke="{}"/><text x="{:.1}" y="{:.1}" text-anchor="end">{}%</text>"##,
                    left + PANEL_W,
                    if m == 1.0 { "#ccc" } else { "#eee" },
                    left - 4.0,
                    y + 4.0,
                    fmt_pct(v)
                );
            }
        }
        let mut b = (x0 * 4.0).ceil() / 4.0;
        while b <= x1 + 1e-9 {
            let x = px(b);
            let _ = writeln!(
                s,
                r##"<line x1="{x:.1}" x2="{x:.1}" y1="{MARGIN_T:.1}" y2="{:.1}" stroke="#eee"/><text x="{x:.1}" y="{:.1}" text-anchor="middle">{b:.2}</text>"##,
                MARGIN_T + PANEL_H,
                MARGIN_T + PANEL_H + 16.0
            );
            b += 0.25;
        }
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">bits per weight</text>"#,
            left + PANEL_W / 2.0,
            MARGIN_T + PANEL_H + 34.0
        );
        if pi == 0 {
            let _ = writeln!(
                s,
                r#"<text transform="translate({:.1},{:.1}) rotate(-90)" text-anchor="middle">ΔPPL (log scale)</text>"#,
                left - 46.0,
                MARGIN_T + PANEL_H / 2.0
            );
        }
        let mut fams: Vec<&str> = rep.rows.iter().map(|r| r.family.as_str()).collect();
        fams.dedup();
        fams.sort();
        fams.dedup();
        for fam in fams {
            if !families.iter().any(|f| f == fam) {
                families.push(fam.to_owned());
            }
            let (color, dash, square) = style(fam);
            let mut pts: Vec<_> = rep.rows.iter().filter(|r| r.family == fam).collect();
            pts.sort_by(|a, b| a.bits_per_weight.total_cmp(&b.bits_per_weight));
            let path: Vec<String> = pts
                .iter()
                .map(|r| format!("{:.1},{:.1}", px(r.bits_per_weight), py(r.delta_ppl_pct)))
                .collect();
            let _ = writeln!(
                s,
                r#"<polyline points="{}" fill="none" stroke="{color}" stroke-width="2" stroke-dasharray="{dash}"/>"#,
                path.join(" ")
            );
            for r in pts {
                let floor = r.delta_ppl_pct <= 10f64.powf(lo);
                let title = format!(
                    "{} {}: ΔPPL {:+.2}%, {:.3} bpw",
                    esc(name),
                    esc(&r.config),
                    r.delta_ppl_pct,
                    r.bits_per_weight
                );
                let fill = if floor { "white" } else { color };
                let (x, y) = (px(r.bits_per_weight), py(r.delta_ppl_pct));
                let _ = writeln!(s, "{}", marker(x, y, color, fill, square, &title));
                let _ = writeln!(
                    s,
                    r#"<text x="{:.1}" y="{:.1}" font-size="9" fill="{color}">g{}</text>"#,
                    px(r.bits_per_weight) + 5.0,
                    py(r.delta_ppl_pct) - 5.0,
                    r.group
                );
            }
        }
    }
    // Legend.
    let ly = MARGIN_T + PANEL_H + 56.0;
    let cols = (((width - MARGIN_L) / LEGEND_COL) as usize).max(1);
    let legend_rows = families.len().div_ceil(cols);
    for (i, fam) in families.iter().enumerate() {
        let (color, dash, square) = style(fam);
        let x = MARGIN_L + (i % cols) as f64 * LEGEND_COL;
        let y = ly + (i / cols) as f64 * 18.0;
        let _ = writeln!(
            s,
            r#"<line x1="{x:.1}" x2="{:.1}" y1="{y:.1}" y2="{y:.1}" stroke="{color}" stroke-width="2" stroke-dasharray="{dash}"/>{}<text x="{:.1}" y="{:.1}">{}</text>"#,
            x + 28.0,
            marker(x + 14.0, y, color, color, square, ""),
            x + 34.0,
            y + 4.0,
            esc(fam)
        );
    }
    for (k, line) in [
        "Labels give the group size. Squares (+f16emb): embedding and LM head kept in f16, bits per weight of the other matrices.",
        "Points at g = 32 flatter asymmetric schemes (the packaged weights already lie on 32-wide grids). Hollow: at or below the axis floor.",
    ]
    .iter()
    .enumerate()
    {
        let _ = writeln!(
            s,
            r##"<text x="{MARGIN_L:.1}" y="{:.1}" font-size="11" fill="#555">{line}</text>"##,
            ly + legend_rows as f64 * 18.0 + 6.0 + k as f64 * 14.0
        );
    }
    s.push_str("</svg>\n");
    s
}

/// A percentage tick label with no more decimals than it needs.
fn fmt_pct(v: f64) -> String {
    let decimals = if v >= 1.0 {
        0
    } else {
        (-v.log10()).ceil() as usize
    };
    format!("{v:.decimals$}")
}
