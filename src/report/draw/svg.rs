//! The SVG picture of a laid-out network, written directly (no Graphviz).

use super::{Drawing, escape};
use std::fmt::Write;

const STYLE: &str = concat!(
    "<style>.cluster rect{fill:#fafbfc;stroke:#b9c1cc;stroke-dasharray:4 3}",
    ".cluster.stage rect{fill:#f3f6fa;stroke:#8a99ad;stroke-dasharray:none}",
    ".cluster-label{fill:#4a5a70;font-weight:bold;paint-order:stroke;stroke:#fafbfc;stroke-width:5px}",
    ".cluster-label.stage{stroke:#f3f6fa}.node rect{stroke:#3d4f66;stroke-width:1.2}",
    ".node text{fill:#1d2633}.conv rect{fill:#dcebfa}.fc rect{fill:#fde8cf}.pool rect{fill:#dff3e2}",
    ".join rect{fill:#fff6c7}.input rect{fill:#ececec}.block rect{fill:#e9e2f8}.other rect{fill:#f4f4f4}",
    ".edge path{fill:none;stroke:#556;stroke-width:1.2;marker-end:url(#arrow)}",
    ".edge text{fill:#6b7686;font-size:10px}</style>\n"
);

/// The drawing as an SVG document.
pub fn graph_svg(d: &Drawing) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w:.0}" height="{h:.0}" viewBox="0 0 {w:.0} {h:.0}" font-family="DejaVu Sans Mono, Menlo, Consolas, monospace" font-size="12">"#,
        w = d.width,
        h = d.height
    );
    s.push_str(concat!(
        "<defs><marker id=\"arrow\" viewBox=\"0 0 10 10\" refX=\"9\" refY=\"5\" markerWidth=\"7\" markerHeight=\"7\" ",
        "orient=\"auto-start-reverse\"><path d=\"M 0 0 L 10 5 L 0 10 z\" fill=\"#556\"/></marker></defs>\n"
    ));
    s.push_str(STYLE);
    let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(s, r#"<text x="24" y="32" font-size="15" font-weight="bold">{}</text>"#, escape(&d.title));
    for c in &d.clusters {
        let _ = writeln!(
            s,
            r#"<g class="cluster{}"><rect x="{:.1}" y="{:.1}" width="{:.1}" height="{:.1}" rx="8"/></g>"#,
            if c.stage { " stage" } else { "" },
            c.x,
            c.y,
            c.w,
            c.h
        );
    }
    for e in &d.edges {
        let path: Vec<String> = e
            .points
            .iter()
            .enumerate()
            .map(|(i, p)| format!("{}{:.1} {:.1}", if i == 0 { "M" } else { "L" }, p.0, p.1))
            .collect();
        let _ = write!(s, r#"<g class="edge"><path d="{}"/>"#, path.join(" "));
        if let (false, Some(&(x, y))) = (e.label.is_empty(), e.points.first()) {
            // Just below the source, beside the edge: edges converging on a join leave from
            // different boxes, so their labels never share a place.
            let _ = write!(s, r#"<text x="{:.1}" y="{:.1}">{}</text>"#, x + 6.0, y + 14.0, escape(&e.label));
        }
        s.push_str("</g>\n");
    }
    // Cluster labels go over the edges, with a halo, so a line passing under one stays readable.
    for c in &d.clusters {
        let _ = writeln!(
            s,
            r#"<text class="cluster-label{}" x="{:.1}" y="{:.1}">{}</text>"#,
            if c.stage { " stage" } else { "" },
            c.x + 10.0,
            c.y + 16.0,
            escape(&c.label)
        );
    }
    for b in &d.boxes {
        let _ = write!(
            s,
            r#"<g class="node {}" id="node-{}"><rect x="{:.1}" y="{:.1}" width="{:.1}" height="{:.1}" rx="5"/>"#,
            b.class,
            escape(&b.id),
            b.x,
            b.y,
            b.w,
            b.h
        );
        let line_h = 15.0;
        let top = b.y + (b.h - line_h * b.lines.len() as f64) / 2.0 + 11.0;
        for (i, line) in b.lines.iter().enumerate() {
            let weight = if i == 0 { r#" font-weight="bold""# } else { "" };
            let _ = write!(
                s,
                r#"<text x="{:.1}" y="{:.1}"{weight}>{}</text>"#,
                b.x + 10.0,
                top + i as f64 * line_h,
                escape(line)
            );
        }
        s.push_str("</g>\n");
    }
    s.push_str("</svg>\n");
    s
}
