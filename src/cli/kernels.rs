//! `cnnc kernels`: a convolution's filters as a picture, and its dead filters.

use super::load_model;
use cnnc::{Limits, RunError, Usage, WeightsSource};
use std::path::Path;

pub(crate) fn cmd_kernels(
    model_path: &Path,
    weights: Option<&Path>,
    output: &Path,
    layer: Option<&str>,
    force: bool,
    limits: &Limits,
) -> Result<(), RunError> {
    let model = load_model(model_path, None)?;
    let (weights, source, _) = cnnc::resolve_weights(&model, weights, Usage::WeightsOnly, limits)?;
    if let WeightsSource::Random { seed } = source {
        eprintln!("warning: no weights found: showing a random He initialisation (seed {seed})");
    }
    let net = model.network();
    let id = cnnc::find_conv(net, layer).map_err(RunError::Weights)?;
    let name = net.nodes[id].name.clone();
    let spec = model.params().into_iter().find(|p| p.node == id).expect("a conv has a weight tensor");
    let shape = [spec.shape[0], spec.shape[1], spec.shape[2], spec.shape[3]];
    let filters = cnnc::Filters { layer: name.clone(), shape, data: weights.get(&spec.name) };
    let dead = cnnc::dead_filters(&filters);
    let picture = cnnc::render_filters(&filters, &dead);
    let mut png = std::io::Cursor::new(Vec::new());
    picture
        .image
        .write_to(&mut png, image::ImageFormat::Png)
        .map_err(|e| RunError::Weights(format!("cannot encode {}: {e}", output.display())))?;
    cnnc::write_atomic(output, png.get_ref(), force, true)?;
    println!(
        "{name}: {} filters of {}x{}x{}; wrote {} ({}x{} pixels)",
        shape[0],
        shape[1],
        shape[2],
        shape[3],
        output.display(),
        picture.image.width(),
        picture.image.height()
    );
    if picture.shown_filters < shape[0] || (shape[1] != 3 && picture.shown_channels < shape[1]) {
        println!(
            "(showing the first {} filters and {} channels of each)",
            picture.shown_filters, picture.shown_channels
        );
    }
    match dead.len() {
        0 => println!("no dead filters"),
        n => println!(
            "{n} dead filter{} (norm below {} of the median): {}",
            if n == 1 { "" } else { "s" },
            cnnc::DEAD_FRACTION,
            dead.iter().map(|o| format!("{name}[{o}]")).collect::<Vec<_>>().join(", ")
        ),
    }
    Ok(())
}
