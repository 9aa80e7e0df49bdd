//! An ONNX model's graph checked against the manifest and the images: its layout, output and
//! scores read from it where not declared (and said), and refused where they cannot be read or
//! where it does not fit the dataset.

use super::onnx::{Layout, OnnxSpec};
use super::{ModelSpec, raw::RawModel};
use crate::manifest::error::Problems;
use crate::onnx::Scores;
use toml::Spanned;

/// The layout of a graph whose input dims are `dims` (`[batch, a, b, c]`), read from where its
/// channels are for images of `channels` channels (when known): the one of `a` and `c` that is
/// fixed, or that equals `channels`, or the smaller.
fn read_layout(dims: &[Option<usize>], channels: Option<usize>) -> Option<Layout> {
    let [_, a, _, c] = dims else {
        return None;
    };
    let is = |d: &Option<usize>| channels.is_some() && *d == channels;
    match (a, c) {
        _ if is(a) && !is(c) => Some(Layout::Nchw),
        _ if is(c) && !is(a) => Some(Layout::Nhwc),
        (Some(_), None) => Some(Layout::Nchw),
        (None, Some(_)) => Some(Layout::Nhwc),
        (Some(a), Some(c)) if a < c => Some(Layout::Nchw),
        (Some(a), Some(c)) if c < a => Some(Layout::Nhwc),
        _ => None,
    }
}

/// Reads the graph of ONNX model `name` (when the file was read) and checks it against images of
/// `[channels, height, width]` and `classes` classes, when the dataset's shape is known: its
/// layout, output and scores, when not declared, are read from it (and said), or refused
/// when they cannot be. The graph's signature is kept for `plan`.
///
/// Stops at the first problem with the graph: with a wrong layout, output or score kind every
/// later check (fit, class count) would report a consequence, not a cause.
pub(crate) fn check_graph(
    name: &str,
    m: &RawModel,
    spec: &mut ModelSpec,
    shape: Option<([usize; 3], usize)>,
    problems: &mut Problems,
) {
    let (Some(o), Some(file)) = (spec.onnx.as_mut(), m.onnx.as_ref()) else {
        return;
    };
    if o.sha256.is_empty() {
        return;
    }
    let chosen = m.output.as_ref().map(|o| o.get_ref().as_str());
    let span = |key: Option<std::ops::Range<usize>>| Some(key.unwrap_or(file.span()));
    // The layout first: which dims are the image's depends on it.
    let declared = m.input.as_ref().and_then(|i| i.get_ref().layout);
    if declared.is_none() {
        let input = match crate::onnx::input_dims(&o.path, &o.digest()) {
            Ok(input) => input,
            Err(e) => return graph_unreadable(name, file, &e, problems),
        };
        let Some(layout) = read_layout(&input, shape.map(|(i, _)| i[0])) else {
            return problems.push(
                span(m.input.as_ref().map(Spanned::span)),
                format!(
                    "`models.{name}`: `{}` takes input {}, which does not show where its channels are",
                    o.path.display(),
                    show(&input)
                ),
                Some("say it: `input = { layout = \"nchw\" }` (PyTorch's) or `\"nhwc\"` (TensorFlow's)".into()),
            );
        };
        o.layout = layout;
        o.read_from_graph.push(format!(
            "layout {} from its input {}",
            layout.name(),
            show(&input)
        ));
    }
    let item = shape.map(|(input, _)| o.item(input));
    let signature = match crate::onnx::inspect(&o.path, &o.digest(), item, chosen) {
        Ok(s) => s,
        Err(e) if e.kind == crate::onnx::ErrorKind::NoSuchOutput => {
            let key = m.output.as_ref().map(Spanned::span);
            return problems.push(span(key), format!("`models.{name}.output`: {e}"), None);
        }
        Err(e) => return graph_unreadable(name, file, &e, problems),
    };
    if signature.outputs.len() > 1 {
        match chosen {
            Some(c) => o.output = Some(c.to_string()),
            None => problems.push(
                span(None),
                format!(
                    "`models.{name}`: `{}` gives {} outputs ({}); kdgrid does not guess which holds the classes' scores",
                    o.path.display(),
                    signature.outputs.len(),
                    crate::onnx::quoted(&signature.outputs)
                ),
                Some(format!("name it: `output = \"{}\"`", signature.outputs[0])),
            ),
        }
        if o.output.is_none() {
            return;
        }
    }
    match m.scores.as_ref() {
        None if signature.ends_in != Scores::Logits => {
            o.scores = signature.ends_in;
            o.read_from_graph.push(format!(
                "{} from its last operator ({}){}",
                o.scores.name(),
                match o.scores {
                    Scores::Probabilities => "Softmax",
                    _ => "LogSoftmax",
                },
                match o.scores {
                    Scores::Probabilities => ": their log is the teacher's logits",
                    _ => "",
                },
            ));
        }
        // Declared: refused where the graph's last operator says otherwise (a softmax end
        // read as logits would change every number silently). Over a graph that seems to end
        // in logits a declaration stands (a softmax written out as `Exp` and `Div`), checked on
        // every batch when it runs.
        Some(s) if *s.get_ref() != signature.ends_in && signature.ends_in != Scores::Logits => {
            problems.push(
                Some(s.span()),
                format!(
                    "`models.{name}.scores` says {}, but the graph's output comes from {}: its values are {}",
                    s.get_ref().name(),
                    match signature.ends_in {
                        Scores::Probabilities => "a Softmax",
                        Scores::LogProbabilities => "a LogSoftmax",
                        Scores::Logits => "neither a Softmax nor a LogSoftmax",
                    },
                    signature.ends_in.name()
                ),
                Some(format!("`scores = \"{}\"` (or leave `scores` out: it is read from the graph)", signature.ends_in.name())),
            );
            return;
        }
        _ => {}
    }
    o.signature = Some(signature);
    let Some((input, classes)) = shape else {
        return;
    };
    if let Err(message) = graph_problem(name, o, input, classes) {
        return problems.push(Some(file.span()), message, None);
    }
    // Optimized for the images too (once per process), so a graph that types but cannot run
    // is refused here, not after training starts.
    let output = o.output.as_deref();
    if let Err(e) = crate::onnx::Graph::load(&o.path, &o.digest(), o.item(input), output) {
        graph_unreadable(name, file, &e, problems);
    }
}

fn graph_unreadable(
    name: &str,
    file: &Spanned<String>,
    e: &crate::onnx::OnnxError,
    problems: &mut Problems,
) {
    let hint = if e.kind == crate::onnx::ErrorKind::Damaged {
        "export it again, or copy it again from where it was made"
    } else {
        "export with `torch.onnx.export(model, example, path)` (or Optimum, tf2onnx); docs/manifest.md lists the operators known to work"
    };
    problems.push(
        Some(file.span()),
        format!("`models.{name}.onnx`: {e}"),
        Some(hint.into()),
    );
}

/// Dims as `[?, 3, 32, 32]`.
fn show(dims: &[Option<usize>]) -> String {
    let d: Vec<String> = dims
        .iter()
        .map(|d| d.map_or("?".into(), |d| d.to_string()))
        .collect();
    format!("[{}]", d.join(", "))
}

/// The message for an ONNX model whose graph does not fit images of `[channels, height,
/// width]` with `classes` classes: its input's rank, channels or fixed size, its output's
/// class count, or its normalization's channels.
pub fn graph_problem(
    name: &str,
    spec: &OnnxSpec,
    input: [usize; 3],
    classes: usize,
) -> Result<(), String> {
    let file = spec.path.display();
    let Some(sig) = &spec.signature else {
        return Ok(());
    };
    let [c, h, w] = input;
    let images = format!("[{c}, {h}, {w}] (channels, height, width)");
    if sig.input.len() != 4 {
        return Err(format!(
            "`models.{name}`: `{file}` takes a rank-{} input {}; an image teacher takes [batch, channels, height, width] (`layout = \"nchw\"`) or [batch, height, width, channels] (`\"nhwc\"`)",
            sig.input.len(),
            show(&sig.input)
        ));
    }
    let item = spec.item(input);
    let want = std::iter::once(None)
        .chain(item.iter().map(|&d| Some(d)))
        .collect::<Vec<_>>();
    let fits = sig
        .input
        .iter()
        .zip(&want)
        .skip(1)
        .all(|(g, w)| g.is_none() || g == w);
    if !fits {
        return Err(format!(
            "`models.{name}`: `{file}` takes input {} (`layout = \"{}\"`), the dataset gives images of {images}{}",
            show(&sig.input),
            spec.layout.name(),
            match spec.size {
                Some(s) => format!(" resized to {s}x{s} by `input.size`"),
                None => String::new(),
            }
        ));
    }
    if let Some((mean, _)) = &spec.normalize
        && mean.len() != c
    {
        return Err(format!(
            "`models.{name}.input`: `mean` and `std` hold {} values, the dataset's images have {c} channels",
            mean.len()
        ));
    }
    let outputs: Option<usize> = sig.output.iter().skip(1).copied().product();
    let Some(outputs) = outputs.filter(|_| !sig.output.is_empty()) else {
        return Ok(());
    };
    match &spec.class_map {
        None if outputs != classes => Err(format!(
            "`models.{name}`: `{file}` gives {outputs} outputs per image (output {}), the dataset has {classes} classes",
            show(&sig.output)
        ) + "; `class-map = [..]` picks the output of each class"),
        Some(map) if map.len() != classes => Err(format!(
            "`models.{name}.class-map` lists {} outputs, the dataset has {classes} classes",
            map.len()
        )),
        Some(map) if map.iter().any(|&i| i >= outputs) => Err(format!(
            "`models.{name}.class-map` names output {}, `{file}` gives {outputs} per image",
            map.iter().max().expect("not empty")
        )),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::{Layout, read_layout};

    #[test]
    fn the_layout_is_read_only_where_the_input_shows_it() {
        let (s, n) = (Some, None);
        // The images' channels decide, when one of dims 1 and 3 is them.
        assert_eq!(
            read_layout(&[n, s(3), s(32), s(32)], Some(3)),
            Some(Layout::Nchw)
        );
        assert_eq!(
            read_layout(&[n, s(32), s(32), s(3)], Some(3)),
            Some(Layout::Nhwc)
        );
        // Else the fixed one, or the smaller.
        assert_eq!(read_layout(&[n, s(3), n, n], None), Some(Layout::Nchw));
        assert_eq!(read_layout(&[n, n, n, s(1)], None), Some(Layout::Nhwc));
        assert_eq!(
            read_layout(&[n, s(3), s(40), s(40)], None),
            Some(Layout::Nchw)
        );
        // Nothing shows where the channels are.
        assert_eq!(read_layout(&[n, n, n, n], Some(3)), None);
        assert_eq!(read_layout(&[n, s(32), n, s(32)], None), None);
        assert_eq!(read_layout(&[n, s(3), s(3), s(3)], Some(3)), None);
        assert_eq!(read_layout(&[n, s(3), s(8)], Some(3)), None);
    }
}
