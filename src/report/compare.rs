//! `cnnc compare`: several networks side by side, with each figure's ratio to the first
//! network's. The figures are those of `cnnc check` (one place computes them).

use crate::analysis::check::Checked;
use crate::report::table::{feature_receptive_field, human_bytes, thousands};
use serde_json::json;

/// One network's figures for `cnnc compare`.
#[derive(Clone, Debug, PartialEq)]
pub struct Summary {
    /// The network's name.
    pub name: String,
    /// The file it came from.
    pub file: String,
    /// Parameters.
    pub params: u64,
    /// Parameters by op kind (`conv`, `bn`, `fc`, ...), in the check table's order: they add up
    /// to `params`.
    pub params_by_kind: Vec<(String, u64)>,
    /// Multiply-accumulates.
    pub macs: u64,
    /// The memory plan's peak.
    pub peak_activation_bytes: u64,
    /// Conv and fc layers on the longest path.
    pub depth: u64,
    /// Receptive field of the last feature map.
    pub receptive_field: [u64; 2],
    /// Activation layers and relu suffixes: the non-linearities a stack of small kernels gains.
    pub activations: u64,
    /// The output shape.
    pub output: String,
}

/// The figures of a checked network, `file` naming it.
pub fn summarize(c: &Checked, file: &str) -> Summary {
    let activations = c.network.nodes.iter().filter(|n| n.op.def().traits().activation.is_some()).count() as u64;
    let params_by_kind =
        c.totals.by_kind.iter().filter(|t| t.params > 0).map(|t| (t.kind.to_string(), t.params)).collect();
    Summary {
        name: c.network.name.clone(),
        file: file.to_string(),
        params: c.totals.params,
        params_by_kind,
        macs: c.totals.macs,
        peak_activation_bytes: c.peak_activation_bytes,
        depth: c.totals.depth,
        receptive_field: feature_receptive_field(c),
        activations,
        output: c.shapes.last().map_or(String::new(), |s| s.to_string()),
    }
}

fn ratio(v: u64, base: u64) -> Option<f64> {
    (base > 0).then(|| v as f64 / base as f64)
}

impl Summary {
    /// The parameters of op kind `kind` (0 if it has none).
    pub fn kind_params(&self, kind: &str) -> u64 {
        self.params_by_kind.iter().find(|(k, _)| k == kind).map_or(0, |&(_, p)| p)
    }
}

/// The op kinds with parameters in any of `summaries`, each once, in order of appearance.
fn kinds(summaries: &[Summary]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for (k, _) in summaries.iter().flat_map(|s| &s.params_by_kind) {
        if !out.contains(k) {
            out.push(k.clone());
        }
    }
    out
}

/// The numeric rows: label, value per summary, and how to print a value. The parameter rows of
/// every kind any network has add up to the total.
fn rows(s: &Summary, kinds: &[String]) -> Vec<(String, u64, fn(u64) -> String)> {
    let rf = s.receptive_field[0].max(s.receptive_field[1]);
    let mut out: Vec<(String, u64, fn(u64) -> String)> = vec![("params".into(), s.params, thousands)];
    out.extend(kinds.iter().map(|k| (format!("  {k}"), s.kind_params(k), thousands as fn(u64) -> String)));
    let more: Vec<(&str, u64, fn(u64) -> String)> = vec![
        ("MACs", s.macs, thousands),
        ("FLOPs (2 x MACs)", s.macs.saturating_mul(2), thousands),
        ("peak activations", s.peak_activation_bytes, human_bytes),
        ("depth (conv + fc)", s.depth, |v| v.to_string()),
        ("receptive field", rf, |v| format!("{v}x{v}")),
        ("activations", s.activations, |v| v.to_string()),
    ];
    out.extend(more.into_iter().map(|(l, v, f)| (l.to_string(), v, f)));
    out
}

/// The comparison table, one column per network, ratios to the first.
pub fn render_comparison(summaries: &[Summary]) -> String {
    let Some(first) = summaries.first() else { return String::new() };
    let kinds = kinds(summaries);
    let base = rows(first, &kinds);
    let mut table: Vec<Vec<String>> =
        vec![std::iter::once(String::new()).chain(summaries.iter().map(|s| s.name.clone())).collect()];
    for (r, (label, _, _)) in base.iter().enumerate() {
        let mut line = vec![label.to_string()];
        for (k, s) in summaries.iter().enumerate() {
            let (_, v, show) = rows(s, &kinds)[r];
            let cell = match (k, ratio(v, base[r].1)) {
                (0, _) => show(v),
                (_, Some(q)) => format!("{} ({q:.2}x)", show(v)),
                (_, None) => show(v),
            };
            line.push(cell);
        }
        table.push(line);
    }
    table.push(std::iter::once("output".to_string()).chain(summaries.iter().map(|s| s.output.clone())).collect());
    let widths: Vec<usize> =
        (0..table[0].len()).map(|c| table.iter().map(|r| r[c].chars().count()).max().unwrap_or(0)).collect();
    let mut out = String::new();
    for (i, row) in table.iter().enumerate() {
        let mut line = String::new();
        for (c, cell) in row.iter().enumerate() {
            if c == 0 {
                line += &format!("{cell:<w$}", w = widths[c]);
            } else {
                line += &format!("  {cell:>w$}", w = widths[c]);
            }
        }
        out += line.trim_end();
        out += "\n";
        if i == 0 {
            out += &format!("{}\n", "-".repeat(widths.iter().sum::<usize>() + 2 * (widths.len() - 1)));
        }
    }
    out += &format!("ratios in parentheses are relative to {}\n", first.name);
    out
}

/// The comparison as JSON.
pub fn comparison_json(summaries: &[Summary]) -> serde_json::Value {
    let first = summaries.first();
    let networks: Vec<_> = summaries
        .iter()
        .map(|s| {
            let r = |v: u64, b: fn(&Summary) -> u64| first.and_then(|f| ratio(v, b(f)));
            json!({
                "network": s.name,
                "file": s.file,
                "params": s.params,
                "conv_params": s.kind_params("conv"),
                "fc_params": s.kind_params("fc"),
                "params_by_kind": s.params_by_kind.iter().map(|(k, p)| (k.clone(), json!(p))).collect::<serde_json::Map<_, _>>(),
                "macs": s.macs,
                "flops": s.macs.saturating_mul(2),
                "peak_activation_bytes": s.peak_activation_bytes,
                "depth": s.depth,
                "receptive_field": s.receptive_field,
                "activations": s.activations,
                "output": s.output,
                "ratios": {
                    "params": r(s.params, |f| f.params),
                    "macs": r(s.macs, |f| f.macs),
                    "peak_activation_bytes": r(s.peak_activation_bytes, |f| f.peak_activation_bytes),
                    "depth": r(s.depth, |f| f.depth),
                },
            })
        })
        .collect();
    json!({ "baseline": first.map(|f| f.name.clone()), "networks": networks })
}
