//! Presentation of a clean check: the per-layer table with stage subtotals and totals, and the
//! JSON object of `cnnc check --json`.

use crate::analysis::check::{CheckReport, Checked};
use crate::analysis::diag::LineIndex;
use serde_json::json;

/// `1234567` -> `1,234,567`.
pub fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, ch) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

/// Bytes in binary units with one decimal: `12.2 MiB`.
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 { format!("{bytes} B") } else { format!("{v:.1} {}", UNITS[unit]) }
}

fn percent(part: u64, whole: u64) -> String {
    if whole == 0 { "-".into() } else { format!("{:.1}%", part as f64 * 100.0 / whole as f64) }
}

fn rf_text(rf: [u64; 2], jump: [u64; 2]) -> String {
    let size = if rf[0] == rf[1] { rf[0].to_string() } else { format!("{}x{}", rf[0], rf[1]) };
    let stride = if jump[0] == jump[1] { jump[0].to_string() } else { format!("{}x{}", jump[0], jump[1]) };
    format!("{size} /{stride}")
}

/// The receptive field of the network's last feature map: the last layer with a spatial output
/// before global pooling, flatten or fc (which see the whole input). Through branches and sums the
/// larger field counts, so an inception module reports its widest branch.
pub(crate) fn feature_receptive_field(c: &Checked) -> [u64; 2] {
    use crate::ir::geometry::Shape;
    use crate::ops::Op;
    c.network
        .nodes
        .iter()
        .zip(&c.costs)
        .zip(&c.shapes)
        .filter(|((n, _), s)| {
            matches!(s, Shape::Map { .. }) && !matches!(n.op, Op::Gap(_) | Op::AdaptiveAvgPool(_) | Op::Input(_))
        })
        .last()
        .map_or([1, 1], |((_, cost), _)| cost.rf)
}

/// The per-layer table of `cnnc check`: output shape, parameters, MACs, activation memory and
/// receptive field per layer, stage subtotals, then the totals.
pub fn render_table(c: &Checked) -> String {
    let net = &c.network;
    let header = ["layer", "op", "output", "params", "MACs", "activations", "RF /stride"];
    let mut rows: Vec<[String; 7]> = Vec::new();
    let mut subtotal_after: Vec<Option<usize>> = Vec::new();
    for (i, (node, cost)) in net.nodes.iter().zip(&c.costs).enumerate() {
        rows.push([
            node.name.clone(),
            node.op.describe(),
            c.shapes[i].to_string(),
            thousands(cost.params()),
            thousands(cost.macs),
            human_bytes(cost.activation_bytes),
            rf_text(cost.rf, cost.jump),
        ]);
        let stage_ends = node.stage.is_some() && net.nodes.get(i + 1).is_none_or(|n| n.stage != node.stage);
        subtotal_after.push(if stage_ends { node.stage } else { None });
    }
    let mut widths = header.map(str::len);
    for r in &rows {
        for (w, cell) in widths.iter_mut().zip(r) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: &[String; 7]| {
        let mut s = String::new();
        for (k, cell) in cells.iter().enumerate() {
            // Names, ops and shapes read left to right; numbers align right.
            if k < 3 {
                s += &format!("{cell:<w$}  ", w = widths[k]);
            } else {
                s += &format!("{cell:>w$}  ", w = widths[k]);
            }
        }
        s.trim_end().to_string() + "\n"
    };
    let mut out = format!("network {}  input {}\n\n", net.name, c.input);
    out += &line(&header.map(String::from));
    let rule_width: usize = widths.iter().sum::<usize>() + 2 * (widths.len() - 1);
    out += &format!("{}\n", "-".repeat(rule_width));
    for (row, sub) in rows.iter().zip(&subtotal_after) {
        out += &line(row);
        if let Some(s) = sub {
            let (params, macs) = c.totals.stages[*s];
            let mut cells: [String; 7] = Default::default();
            cells[0] = format!("  {} total", net.stages[*s]);
            cells[3] = thousands(params);
            cells[4] = thousands(macs);
            out += &line(&cells);
            out += "\n";
        }
    }
    out += &format!("{}\n", "-".repeat(rule_width));
    out += &render_totals(c);
    out
}

/// The totals block under the table.
pub fn render_totals(c: &Checked) -> String {
    let t = &c.totals;
    let mut out = String::new();
    let row = |label: &str, value: String, note: &str| format!("{label:<22}{value:>18}  {note}\n");
    out += &row("params", thousands(t.params), "weights and biases, BN gamma and beta (as torchvision counts)");
    for k in &t.by_kind {
        if k.params > 0 {
            out += &row(&format!("  {}", k.kind), thousands(k.params), &percent(k.params, t.params));
        }
    }
    out += &row("buffers", thousands(t.buffers), "BN running mean and variance (not parameters)");
    out += &row("MACs", thousands(t.macs), "multiply-accumulates of conv and fc");
    for k in &t.by_kind {
        if k.macs > 0 {
            out += &row(&format!("  {}", k.kind), thousands(k.macs), &percent(k.macs, t.macs));
        }
    }
    out += &row("FLOPs", thousands(t.macs.saturating_mul(2)), "2 x MACs");
    out += &row("depth", t.depth.to_string(), "conv and fc layers on the longest path");
    out += &row(
        "peak activations",
        human_bytes(c.peak_activation_bytes),
        &format!("{} bytes at batch 1, from tensor lifetimes", thousands(c.peak_activation_bytes)),
    );
    let rf = feature_receptive_field(c);
    out += &row("receptive field", format!("{}x{}", rf[0], rf[1]), "of the last feature map (before gap, flatten, fc)");
    out
}

/// The JSON object of `cnnc check --json`.
pub fn report_json(report: &CheckReport, source: &str) -> serde_json::Value {
    let index = LineIndex::new(source);
    let diagnostics: Vec<_> = report.diagnostics.iter().map(|d| d.to_json(&index)).collect();
    let Some(c) = &report.checked else {
        return json!({ "ok": false, "diagnostics": diagnostics });
    };
    let net = &c.network;
    let layers: Vec<_> = net
        .nodes
        .iter()
        .zip(&c.costs)
        .enumerate()
        .map(|(i, (n, cost))| {
            json!({
                "name": n.name,
                "op": n.op.keyword(),
                "description": n.op.describe(),
                // The op's resolved arguments (kernel, stride, padding, eps, ...), for tools that
                // rebuild the network elsewhere (the Python package's PyTorch bridge).
                "attrs": crate::ops::with_op!(&n.op, o => serde_json::to_value(o)).unwrap_or_default(),
                "stage": n.stage.map(|s| net.stages[s].clone()),
                "inputs": n.inputs.iter().map(|&j| net.nodes[j].name.clone()).collect::<Vec<_>>(),
                "output": c.shapes[i].to_vec(),
                "params": cost.params(),
                "weight_params": cost.weight_params,
                "bias_params": cost.bias_params,
                "buffers": cost.buffers,
                "macs": cost.macs,
                "flops": cost.macs.saturating_mul(2),
                "activation_bytes": cost.activation_bytes,
                "receptive_field": cost.rf,
                "effective_stride": cost.jump,
            })
        })
        .collect();
    let t = &c.totals;
    json!({
        "ok": report.errors() == 0,
        "network": net.name,
        "input": [c.input.c, c.input.h, c.input.w],
        "declared_input": [net.input.c, net.input.h, net.input.w],
        "output": c.shapes.last().map(|s| s.to_vec()),
        "total_params": t.params,
        "total_buffers": t.buffers,
        "total_macs": t.macs,
        "total_flops": t.macs.saturating_mul(2),
        "depth": t.depth,
        "peak_activation_bytes": c.peak_activation_bytes,
        "receptive_field": feature_receptive_field(c),
        "by_kind": t.by_kind.iter().map(|k| json!({"kind": k.kind, "params": k.params, "macs": k.macs})).collect::<Vec<_>>(),
        "stages": net.stages.iter().zip(&t.stages).map(|(s, (p, m))| json!({"name": s, "params": p, "macs": m})).collect::<Vec<_>>(),
        "layers": layers,
        "diagnostics": diagnostics,
    })
}
