//! The files an ONNX graph reads its tensors from (ONNX "external data": torch 2.9's default
//! exporter writes `model.onnx` next to `model.onnx.data`). They decide the logits as much as
//! the `.onnx` bytes do, so their digests go into stage ids with it.

use prost::Message;
use tract_onnx::pb::{GraphProto, ModelProto, TensorProto, tensor_proto::DataLocation};

/// The `location`s of every external-data tensor of the graph in `bytes` (an `.onnx` file),
/// sorted and without repeats: paths relative to the file's folder. Empty for a graph that
/// holds its weights itself, which is read without decoding it when the word `location` is
/// nowhere in it.
pub fn side_files(bytes: &[u8]) -> Result<Vec<String>, String> {
    if memchr::memmem::find(bytes, b"location").is_none() {
        return Ok(Vec::new());
    }
    let model = ModelProto::decode(bytes).map_err(|e| format!("not an ONNX model ({e})"))?;
    let mut found = Vec::new();
    if let Some(g) = &model.graph {
        graph_files(g, &mut found);
    }
    found.sort();
    found.dedup();
    Ok(found)
}

fn graph_files(graph: &GraphProto, found: &mut Vec<String>) {
    let tensor = |t: &TensorProto, found: &mut Vec<String>| {
        if t.data_location == Some(DataLocation::External as i32) {
            found.extend(
                t.external_data
                    .iter()
                    .filter(|e| e.key == "location")
                    .map(|e| e.value.clone()),
            );
        }
    };
    for t in &graph.initializer {
        tensor(t, found);
    }
    // Constants and control flow (`If`, `Loop`, `Scan`) hold tensors and graphs of their own.
    for attribute in graph.node.iter().flat_map(|n| &n.attribute) {
        for t in attribute.t.iter().chain(&attribute.tensors) {
            tensor(t, found);
        }
        for g in attribute.g.iter().chain(&attribute.graphs) {
            graph_files(g, found);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tract_onnx::pb::{NodeProto, StringStringEntryProto};

    fn external(location: &str) -> TensorProto {
        TensorProto {
            data_location: Some(DataLocation::External as i32),
            external_data: vec![
                StringStringEntryProto {
                    key: "location".into(),
                    value: location.into(),
                },
                StringStringEntryProto {
                    key: "offset".into(),
                    value: "0".into(),
                },
            ],
            ..Default::default()
        }
    }

    #[test]
    fn every_external_tensor_names_its_file_once() {
        let inner = GraphProto {
            initializer: vec![external("loop.bin")],
            ..Default::default()
        };
        let node = NodeProto {
            attribute: vec![tract_onnx::pb::AttributeProto {
                g: Some(inner),
                t: Some(external("const.bin")),
                ..Default::default()
            }],
            ..Default::default()
        };
        let model = ModelProto {
            graph: Some(GraphProto {
                initializer: vec![
                    external("w.data"),
                    external("w.data"),
                    TensorProto::default(),
                ],
                node: vec![node],
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(
            side_files(&model.encode_to_vec()).unwrap(),
            ["const.bin", "loop.bin", "w.data"]
        );
        let shipped = std::fs::read(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("experiments/data/fruit-resnet8.onnx"),
        )
        .unwrap();
        assert_eq!(side_files(&shipped).unwrap(), Vec::<String>::new());
    }
}
